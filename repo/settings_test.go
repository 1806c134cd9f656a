package repo_test

import (
	"errors"
	"os"
	"path/filepath"
	"testing"

	"github.com/cairnbackup/cairn/repo"
	"github.com/cairnbackup/cairn/repo/repotest"
)

// The library's errors about the caller's settings name the setting (a
// key file, a cache directory), never a flag of the command line: the
// CLI adds its flag names (cmd/cairn flagwords.go), and a caller with a
// configuration file its own words.

func TestNoKeyNamesNoFlag(t *testing.T) {
	dir := filepath.Join(t.TempDir(), "repo")
	kf, err := repo.Init(t.Context(), dir, repo.Credentials{}, repotest.Options())
	if err != nil {
		t.Fatal(err)
	}
	if err := os.Remove(kf); err != nil {
		t.Fatal(err)
	}
	_, err = repo.Open(t.Context(), dir, repo.Credentials{}, repo.Options{})
	var nk *repo.NoKeyError
	if !errors.As(err, &nk) || nk.KeyFile != kf || err.Error() != "no key: give a passphrase or a key file ("+kf+" does not exist)" {
		t.Fatalf("open without a key: %v", err)
	}
}

func TestInitKeyFileExistsNamesNoFlag(t *testing.T) {
	kf := filepath.Join(t.TempDir(), "taken.key")
	if err := os.WriteFile(kf, []byte("mine\n"), 0o600); err != nil {
		t.Fatal(err)
	}
	_, err := repo.Init(t.Context(), filepath.Join(t.TempDir(), "repo"), repo.Credentials{KeyFile: kf}, repotest.Options())
	var ke *repo.KeyFileExistsError
	if !errors.As(err, &ke) || ke.Path != kf || err.Error() != "init: key file "+kf+" exists already; move it away or name another" {
		t.Fatalf("init over a key file: %v", err)
	}
	if b, _ := os.ReadFile(kf); string(b) != "mine\n" {
		t.Fatalf("the file was replaced: %q", b)
	}
}

// A cache directory that holds the index of another location (a replica
// has the same ID, so the same default cache directory) is refused.
func TestObjectStoreCacheOfAnotherNamesNoFlag(t *testing.T) {
	s := newS3Repo(t)
	r := s.open(t, s.options())
	r.Close()
	other := "s3+http://127.0.0.1:1/elsewhere/repo"
	if err := os.WriteFile(filepath.Join(s.cache, "location"), []byte(other+"\n"), 0o600); err != nil {
		t.Fatal(err)
	}
	_, err := repo.Open(t.Context(), s.url, repo.Credentials{}, s.options())
	var ce *repo.CacheDirError
	want := "cache directory " + s.cache + " holds the index of " + other + ", not of " + s.url + " (copies of a repository have the same ID): give this one a cache directory of its own"
	if !errors.As(err, &ce) || ce.Dir != s.cache || err.Error() != want {
		t.Fatalf("open with the cache of another: %v\nwant %s", err, want)
	}
}
