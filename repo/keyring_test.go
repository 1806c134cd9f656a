package repo_test

import (
	"errors"
	"os"
	"path/filepath"
	"slices"
	"syscall"
	"testing"

	"github.com/cairnbackup/cairn/repo"
	"github.com/cairnbackup/cairn/repo/repotest"
)

// keyFileRepo makes a key file repository and returns its directory and
// key file.
func keyFileRepo(t *testing.T) (dir, kf string) {
	t.Helper()
	dir = filepath.Join(t.TempDir(), "repo")
	kf, err := repo.Init(t.Context(), dir, repo.Credentials{}, repotest.Options())
	if err != nil {
		t.Fatal(err)
	}
	return dir, kf
}

func keyring(t *testing.T, dir string, creds ...repo.Credentials) *repo.Keyring {
	t.Helper()
	k, err := repo.OpenKeyring(t.Context(), dir, creds, repo.Options{})
	if err != nil {
		t.Fatal(err)
	}
	k.KDF = repotest.FastKDF
	return k
}

// opens returns the key cred opens, or fails the test.
func opens(t *testing.T, dir string, cred repo.Credentials) string {
	t.Helper()
	_, key, err := repo.ProveKey(t.Context(), dir, cred, repo.Options{})
	if err != nil {
		t.Fatalf("%+v does not open %s: %v", cred, dir, err)
	}
	return key
}

func keyNames(t *testing.T, dir string) []string {
	t.Helper()
	entries, err := os.ReadDir(filepath.Join(dir, "keys"))
	if err != nil {
		t.Fatal(err)
	}
	var out []string
	for _, e := range entries {
		out = append(out, e.Name())
	}
	return out
}

// A recovery passphrase beside the key file, a second key file, removing
// a lost one, rotating a key file and changing a passphrase, all while
// another holder (the appliance) has the repository open. A key is
// never removed when no key the caller proved would stay.
func TestKeyringChanges(t *testing.T) {
	dir, kf := keyFileRepo(t)
	kcred := repo.Credentials{KeyFile: kf}
	r, err := repo.Open(t.Context(), dir, kcred, repo.Options{}) // held, as the appliance holds it
	if err != nil {
		t.Fatal(err)
	}
	defer r.Close()
	first := opens(t, dir, kcred)

	k := keyring(t, dir, kcred)
	list, err := k.List(t.Context())
	if err != nil || len(list) != 1 || list[0].Name != first || list[0].Kind != repo.KindKeyFile || list[0].Argon2 != nil || list[0].Created.IsZero() {
		t.Fatalf("list: %+v %v", list, err)
	}

	// A recovery passphrase.
	pass, err := k.AddPassphrase(t.Context(), []byte("recovery words"))
	if err != nil {
		t.Fatal(err)
	}
	pcred := repo.Credentials{Password: []byte("recovery words")}
	if got := opens(t, dir, pcred); got != pass {
		t.Fatalf("the passphrase opens %s, want %s", got, pass)
	}
	list, _ = k.List(t.Context())
	i := slices.IndexFunc(list, func(ki repo.KeyInfo) bool { return ki.Name == pass })
	if len(list) != 2 || i < 0 || list[i].Kind != repo.KindPassphrase || *list[i].Argon2 != repotest.FastKDF {
		t.Fatalf("list: %+v", list)
	}

	// The key file's own key is the only one this caller proved: not
	// removed.
	k = keyring(t, dir, kcred)
	err = k.Remove(t.Context(), first)
	var inUse *repo.KeyInUseError
	if !errors.As(err, &inUse) || err.Error() != "keys/"+first+" is the only key the caller's credentials open: prove another key that stays to remove it" {
		t.Fatalf("remove the caller's only proven key: %v", err)
	}
	// With the passphrase proven too, the key file's key goes.
	k = keyring(t, dir, kcred, pcred)
	if err := k.Remove(t.Context(), first); err != nil {
		t.Fatal(err)
	}
	if _, _, err := repo.ProveKey(t.Context(), dir, kcred, repo.Options{}); !errors.Is(err, repo.ErrWrongKey) {
		t.Fatalf("the removed key file still opens: %v", err)
	}
	// Never the last key.
	k = keyring(t, dir, pcred)
	if err := k.Remove(t.Context(), pass); !errors.As(err, &inUse) || err.Error() != "keys/"+pass+" is the only key of this repository" {
		t.Fatalf("remove the last key: %v", err)
	}
	if err := k.Remove(t.Context(), "0123456789abcdef"); err == nil || err.Error() != filepath.Join(dir, "keys")+" has no key 0123456789abcdef: not found" {
		t.Fatalf("remove a missing key: %v", err)
	}

	// A new key file beside the passphrase: never over an existing file,
	// never inside the repository.
	if _, err := k.AddKeyFile(t.Context(), kf); err == nil || err.Error() != "key file "+kf+" exists already; move it away or name another" {
		t.Fatalf("add over an existing file: %v", err)
	}
	if _, err := k.AddKeyFile(t.Context(), filepath.Join(dir, "in.key")); err == nil || err.Error() != "key file "+filepath.Join(dir, "in.key")+" is inside the repository; keep it outside, or a copy of the repository carries its own key" {
		t.Fatalf("add inside the repository: %v", err)
	}
	nkf := filepath.Join(t.TempDir(), "new.key")
	added, err := k.AddKeyFile(t.Context(), nkf)
	if err != nil {
		t.Fatal(err)
	}
	ncred := repo.Credentials{KeyFile: nkf}
	if got := opens(t, dir, ncred); got != added {
		t.Fatalf("the new key file opens %s, want %s", got, added)
	}
	if fi, _ := os.Stat(nkf); fi.Mode().Perm() != 0o600 {
		t.Fatalf("new key file mode %v", fi.Mode())
	}

	// Rotating the key file: copies of the old one stop opening; the
	// file keeps its mode.
	if err := os.Chmod(nkf, 0o640); err != nil {
		t.Fatal(err)
	}
	old := mustRead(t, nkf)
	k = keyring(t, dir, ncred)
	rotated, err := k.RotateKeyFile(t.Context(), nkf, added)
	if err != nil {
		t.Fatal(err)
	}
	if got := opens(t, dir, ncred); got != rotated || rotated == added {
		t.Fatalf("the rotated key file opens %s, want %s (old %s)", got, rotated, added)
	}
	if fi, _ := os.Stat(nkf); fi.Mode().Perm() != 0o640 {
		t.Fatalf("rotated key file mode %v", fi.Mode())
	}
	copyOf := filepath.Join(t.TempDir(), "copy.key")
	os.WriteFile(copyOf, old, 0o600)
	if _, _, err := repo.ProveKey(t.Context(), dir, repo.Credentials{KeyFile: copyOf}, repo.Options{}); !errors.Is(err, repo.ErrWrongKey) {
		t.Fatalf("a copy of the rotated key file still opens: %v", err)
	}

	// Changing the passphrase.
	k = keyring(t, dir, pcred)
	changed, err := k.ChangePassphrase(t.Context(), pass, []byte("new words"))
	if err != nil {
		t.Fatal(err)
	}
	if got := opens(t, dir, repo.Credentials{Password: []byte("new words")}); got != changed {
		t.Fatalf("the new passphrase opens %s, want %s", got, changed)
	}
	if _, _, err := repo.ProveKey(t.Context(), dir, pcred, repo.Options{}); !errors.Is(err, repo.ErrWrongKey) {
		t.Fatalf("the old passphrase still opens: %v", err)
	}
	if got := keyNames(t, dir); !slices.Equal(got, sorted(rotated, changed)) {
		t.Fatalf("keys/ holds %v, want %v", got, sorted(rotated, changed))
	}
}

func sorted(s ...string) []string { slices.Sort(s); return s }

// A key change killed after it stored a new key file's wrapped key, but
// before the file reached its name, leaves a temporary key file holding
// the only copy of that key's secret. The next change removes both; a
// temporary name left after the file reached its name goes alone.
func TestKeyringCleansInterruptedChanges(t *testing.T) {
	dir, kf := keyFileRepo(t)
	kcred := repo.Credentials{KeyFile: kf}
	first := opens(t, dir, kcred)
	k := keyring(t, dir, kcred)
	tmp, orphan, err := k.InterruptKeyFile(t.Context(), kf)
	if err != nil {
		t.Fatal(err)
	}
	if got := keyNames(t, dir); !slices.Equal(got, sorted(first, orphan)) {
		t.Fatalf("keys/ %v", got)
	}
	// Leftovers of a Put in keys/, and garbage with a temporary name.
	os.WriteFile(filepath.Join(dir, "keys", ".tmp-0123456789abcdef"), []byte("half"), 0o600)
	garbage := kf + ".tmp-fedcba9876543210"
	os.WriteFile(garbage, []byte("{"), 0o600)
	other := kf + ".tmp-not-ours"
	os.WriteFile(other, []byte("x"), 0o600)

	k = keyring(t, dir, kcred)
	pass, err := k.AddPassphrase(t.Context(), []byte("pw"))
	if err != nil {
		t.Fatal(err)
	}
	if got := keyNames(t, dir); !slices.Equal(got, sorted(first, pass)) {
		t.Fatalf("keys/ after the next change: %v, want %v", got, sorted(first, pass))
	}
	for _, p := range []string{tmp, garbage} {
		if _, err := os.Stat(p); !errors.Is(err, os.ErrNotExist) {
			t.Errorf("%s left: %v", p, err)
		}
	}
	if _, err := os.Stat(other); err != nil {
		t.Errorf("a file not of the key file's temporary names was removed: %v", err)
	}

	// The file reached its name (linked), its temporary name was left:
	// the key is in use and stays.
	nkf := filepath.Join(t.TempDir(), "n.key")
	tmp, used, err := k.InterruptKeyFile(t.Context(), nkf)
	if err != nil {
		t.Fatal(err)
	}
	if err := os.Link(tmp, nkf); err != nil {
		t.Fatal(err)
	}
	k = keyring(t, dir, kcred)
	if _, err := k.AddKeyFile(t.Context(), nkf); err == nil {
		t.Fatal("added over an existing key file")
	}
	if _, err := os.Stat(tmp); !errors.Is(err, os.ErrNotExist) {
		t.Errorf("temporary name left: %v", err)
	}
	if got := opens(t, dir, repo.Credentials{KeyFile: nkf}); got != used {
		t.Fatalf("the linked key file opens %s, want %s", got, used)
	}
}

// One key change at a time.
func TestKeyringLock(t *testing.T) {
	dir, kf := keyFileRepo(t)
	d, err := os.Open(filepath.Join(dir, "keys"))
	if err != nil {
		t.Fatal(err)
	}
	defer d.Close()
	if err := syscall.Flock(int(d.Fd()), syscall.LOCK_EX); err != nil {
		t.Fatal(err)
	}
	k := keyring(t, dir, repo.Credentials{KeyFile: kf})
	_, err = k.AddPassphrase(t.Context(), []byte("pw"))
	if want := "another key change is running on " + filepath.Join(dir, "keys") + "; try again when it is done"; err == nil || err.Error() != want {
		t.Fatalf("err %v, want %s", err, want)
	}
	if got := keyNames(t, dir); len(got) != 1 {
		t.Fatalf("keys/ %v", got)
	}
}

func mustRead(t *testing.T, p string) []byte {
	t.Helper()
	b, err := os.ReadFile(p)
	if err != nil {
		t.Fatal(err)
	}
	return b
}
