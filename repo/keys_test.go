package repo_test

import (
	"encoding/json"
	"errors"
	"os"
	"path/filepath"
	"testing"

	"github.com/cairnbackup/cairn/repo"
	"github.com/cairnbackup/cairn/repo/blob"
	"github.com/cairnbackup/cairn/repo/repotest"
)

// onlyKey returns the path of the one file in dir/keys.
func onlyKey(t *testing.T, dir string) string {
	t.Helper()
	names, err := filepath.Glob(filepath.Join(dir, "keys", "*"))
	if err != nil || len(names) != 1 {
		t.Fatalf("keys: %v %v", names, err)
	}
	return names[0]
}

// damageSealed changes one byte of the wrapped key's sealed master key:
// the file still decodes, but no credential opens it.
func damageSealed(t *testing.T, p string) {
	t.Helper()
	b, err := os.ReadFile(p)
	if err != nil {
		t.Fatal(err)
	}
	var w map[string]any
	if err := json.Unmarshal(b, &w); err != nil {
		t.Fatal(err)
	}
	s := []byte(w["sealed"].(string))
	if s[10] == 'A' {
		s[10] = 'B'
	} else {
		s[10] = 'A'
	}
	w["sealed"] = string(s)
	b, _ = json.MarshalIndent(w, "", "  ")
	if err := os.WriteFile(p, b, 0o600); err != nil {
		t.Fatal(err)
	}
}

// A damaged keys/<name> was reported as a wrong passphrase or key file:
// the operator would try other passphrases instead of putting back a
// copy of the file. Keys are named by the SHA-256 of their contents, so
// damage is told apart from a wrong credential and the file is named; a
// wrong passphrase still says so.
func TestDamagedKeyIsNamed(t *testing.T) {
	t.Run("passphrase", func(t *testing.T) {
		dir := repotest.Init(t, repotest.Options())
		key := onlyKey(t, dir)
		if len(filepath.Base(key)) != 64 {
			t.Fatalf("key name %s is not a SHA-256", filepath.Base(key))
		}
		damageSealed(t, key)
		want := "key " + key + " is damaged: its contents do not hash to its name (put back a copy of the file)"
		for _, pw := range []string{repotest.Password, "wrong"} {
			_, err := repo.Open(t.Context(), dir, repo.Credentials{Password: []byte(pw)}, repo.Options{})
			if err == nil || err.Error() != want || errors.Is(err, repo.ErrWrongKey) || !errors.Is(err, blob.ErrCorrupt) {
				t.Errorf("passphrase %q: err = %v\nwant %s", pw, err, want)
			}
		}
	})
	t.Run("key file", func(t *testing.T) {
		dir := filepath.Join(t.TempDir(), "repo")
		if _, err := repo.Init(t.Context(), dir, repo.Credentials{}, repotest.Options()); err != nil {
			t.Fatal(err)
		}
		key := onlyKey(t, dir)
		damageSealed(t, key)
		_, err := repo.Open(t.Context(), dir, repo.Credentials{}, repo.Options{})
		want := "key " + key + " is damaged: its contents do not hash to its name (put back a copy of the file)"
		if err == nil || err.Error() != want || errors.Is(err, repo.ErrWrongKey) {
			t.Errorf("err = %v\nwant %s", err, want)
		}
	})
	t.Run("wrong passphrase, intact key", func(t *testing.T) {
		dir := repotest.Init(t, repotest.Options())
		_, err := repo.Open(t.Context(), dir, repo.Credentials{Password: []byte("wrong")}, repo.Options{})
		want := "wrong passphrase or key file: the passphrase opens none of the 1 passphrase keys in " + filepath.Join(dir, "keys")
		if !errors.Is(err, repo.ErrWrongKey) || err.Error() != want {
			t.Errorf("err = %v\nwant %s", err, want)
		}
	})
	t.Run("wrong passphrase, a second key damaged", func(t *testing.T) {
		dir := repotest.Init(t, repotest.Options())
		good := onlyKey(t, dir)
		b, _ := os.ReadFile(good)
		bad := filepath.Join(dir, "keys", blob.Hash([]byte("another key")).String())
		os.WriteFile(bad, b, 0o600)
		_, err := repo.Open(t.Context(), dir, repo.Credentials{Password: []byte("wrong")}, repo.Options{})
		want := "wrong passphrase or key file: the passphrase opens none of the 1 passphrase keys in " + filepath.Join(dir, "keys") +
			"; damaged: key " + bad + " is damaged: its contents do not hash to its name (put back a copy of the file)"
		if !errors.Is(err, repo.ErrWrongKey) || err.Error() != want {
			t.Errorf("err = %v\nwant %s", err, want)
		}
		// The right passphrase opens the intact key.
		r, err := repo.Open(t.Context(), dir, repotest.Credentials(), repo.Options{})
		if err != nil {
			t.Fatal(err)
		}
		r.Close()
	})
}
