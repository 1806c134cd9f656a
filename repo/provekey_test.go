package repo_test

import (
	"encoding/json"
	"errors"
	"os"
	"path/filepath"
	"slices"
	"testing"

	"github.com/cairnbackup/cairn/repo"
	"github.com/cairnbackup/cairn/repo/repotest"
)

// ProveKey answers while another holder has the repository open (it
// takes no lock and never touches the index), names the wrapped key that
// matched, refuses every wrong credential with a *WrongKeyError, and
// writes nothing.
func TestProveKey(t *testing.T) {
	dir := repotest.Init(t, repotest.Options())
	keys, err := os.ReadDir(filepath.Join(dir, "keys"))
	if err != nil || len(keys) != 1 {
		t.Fatalf("keys/: %v %v", keys, err)
	}
	passKey := keys[0].Name()
	kfDir := t.TempDir()
	kf, err := repo.Init(t.Context(), filepath.Join(kfDir, "kf"), repo.Credentials{}, repotest.Options())
	if err != nil {
		t.Fatal(err)
	}
	garbage := filepath.Join(t.TempDir(), "garbage.key")
	if err := os.WriteFile(garbage, []byte("garbage\n"), 0o600); err != nil {
		t.Fatal(err)
	}
	repotest.Open(t, dir) // held open, as the appliance does
	before := listing(t, dir)

	_, key, err := repo.ProveKey(t.Context(), dir, repotest.Credentials(), repo.Options{})
	if err != nil || key != passKey {
		t.Fatalf("right passphrase: key %q, %v; want %s", key, err, passKey)
	}

	for _, c := range []struct {
		name string
		cred repo.Credentials
		want string
	}{
		{"wrong passphrase", repo.Credentials{Password: []byte("wrong")},
			"wrong passphrase or key file: the passphrase opens none of the 1 passphrase keys in " + filepath.Join(dir, "keys")},
		{"another repository's key file", repo.Credentials{KeyFile: kf},
			"wrong passphrase or key file: key file " + kf + " names key " + keyName(t, kf) + ", which this repository does not have"},
		{"garbage key file", repo.Credentials{KeyFile: garbage},
			"wrong passphrase or key file: key file " + garbage + " is not a cairn key file"},
	} {
		_, key, err := repo.ProveKey(t.Context(), dir, c.cred, repo.Options{})
		var wk *repo.WrongKeyError
		if !errors.As(err, &wk) || !errors.Is(err, repo.ErrWrongKey) || err.Error() != c.want || key != "" {
			t.Errorf("%s: key %q, err %v\nwant %s", c.name, key, err, c.want)
		}
	}
	if after := listing(t, dir); !slices.Equal(before, after) {
		t.Fatalf("ProveKey changed files:\nbefore %v\nafter  %v", before, after)
	}
	// A key file repository, proven while nobody holds it; the proof
	// then opens it.
	kcred, key, err := repo.ProveKey(t.Context(), filepath.Join(kfDir, "kf"), repo.Credentials{KeyFile: kf}, repo.Options{})
	if err != nil || key != keyName(t, kf) {
		t.Fatalf("key file: key %q, %v", key, err)
	}
	r, err := repo.Open(t.Context(), filepath.Join(kfDir, "kf"), kcred, repo.Options{})
	if err != nil {
		t.Fatalf("open with proven credentials: %v", err)
	}
	r.Close()
	// A proof is for its directory only: another repository is opened
	// with the credentials themselves, and refused.
	if _, err := repo.Open(t.Context(), filepath.Join(t.TempDir(), "none"), kcred, repo.Options{}); err == nil {
		t.Fatal("a proof opened another directory")
	}
	if _, err := repo.Open(t.Context(), dir, kcred, repo.Options{}); !errors.Is(err, repo.ErrWrongKey) {
		t.Fatalf("another repository's proven key file: %v", err)
	}
}

// keyName reads the name of the wrapped key a key file opens.
func keyName(t *testing.T, path string) string {
	t.Helper()
	var kf repo.KeyFile
	b, err := os.ReadFile(path)
	if err == nil {
		err = json.Unmarshal(b, &kf)
	}
	if err != nil {
		t.Fatal(err)
	}
	return kf.Key
}
