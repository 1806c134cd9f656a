// Package repotest creates real repositories for tests, the way
// net/http/httptest creates real servers: a repository in t.TempDir()
// with a cheap key derivation, opened and closed with the test.
package repotest

import (
	"os"
	"path/filepath"
	"testing"

	"github.com/cairnbackup/cairn/repo"
	"github.com/cairnbackup/cairn/repo/seal"
)

// Password is the passphrase of repositories made by New.
const Password = "correct horse battery staple"

// FastKDF keeps argon2id cheap in tests; real repositories use
// seal.DefaultKDF.
var FastKDF = seal.KDFParams{Time: 1, MemoryKiB: 64, Threads: 1}

// Credentials returns the credentials of repositories made by New.
func Credentials() repo.Credentials {
	return repo.Credentials{Password: []byte(Password), KDF: FastKDF}
}

// Options returns InitOptions with small chunks (so small test files
// still make several chunks) and small packs.
func Options() repo.InitOptions {
	return repo.InitOptions{
		Chunker:  repo.ChunkerParams{Min: 16 << 10, Avg: 64 << 10, Max: 256 << 10},
		PackSize: 1 << 20,
	}
}

// Init creates a repository in a new temporary directory and returns its
// path, without opening it.
func Init(t testing.TB, o repo.InitOptions) string {
	t.Helper()
	dir := filepath.Join(t.TempDir(), "repo")
	if _, err := repo.Init(t.Context(), dir, Credentials(), o); err != nil {
		t.Fatalf("init: %v", err)
	}
	return dir
}

// New creates and opens a repository with [Options]; it is closed when
// the test ends.
func New(t testing.TB) *repo.Repository {
	t.Helper()
	return Open(t, Init(t, Options()))
}

// Open opens the repository in dir; it is closed when the test ends.
func Open(t testing.TB, dir string) *repo.Repository {
	t.Helper()
	r, err := repo.Open(t.Context(), dir, Credentials(), repo.Options{})
	if err != nil {
		t.Fatalf("open: %v", err)
	}
	t.Cleanup(func() {
		if err := r.Close(); err != nil {
			t.Errorf("close: %v", err)
		}
	})
	return r
}

// WriteTree creates files under dir from a map of slash-separated paths
// to contents; a path ending in "/" is a directory.
func WriteTree(t testing.TB, dir string, files map[string]string) {
	t.Helper()
	for p, content := range files {
		full := filepath.Join(dir, filepath.FromSlash(p))
		if p[len(p)-1] == '/' {
			if err := os.MkdirAll(full, 0o755); err != nil {
				t.Fatal(err)
			}
			continue
		}
		if err := os.MkdirAll(filepath.Dir(full), 0o755); err != nil {
			t.Fatal(err)
		}
		if err := os.WriteFile(full, []byte(content), 0o644); err != nil {
			t.Fatal(err)
		}
	}
}

// AssertSameTree fails the test unless got holds the same entries as
// want: types, contents, permission bits, symlink targets, and the
// modification times of files and directories.
func AssertSameTree(t testing.TB, want, got string) {
	t.Helper()
	seen := map[string]bool{}
	err := filepath.Walk(want, func(p string, wi os.FileInfo, err error) error {
		if err != nil {
			return err
		}
		rel, _ := filepath.Rel(want, p)
		seen[rel] = true
		gi, err := os.Lstat(filepath.Join(got, rel))
		if err != nil {
			t.Errorf("%s: missing in restore: %v", rel, err)
			return nil
		}
		if wi.Mode() != gi.Mode() {
			t.Errorf("%s: mode %v, want %v", rel, gi.Mode(), wi.Mode())
		}
		if wi.Mode().Type() != os.ModeSymlink && rel != "." && !wi.ModTime().Equal(gi.ModTime()) {
			t.Errorf("%s: mtime %v, want %v", rel, gi.ModTime(), wi.ModTime())
		}
		switch {
		case wi.Mode().IsRegular():
			a, _ := os.ReadFile(p)
			b, _ := os.ReadFile(filepath.Join(got, rel))
			if string(a) != string(b) {
				t.Errorf("%s: contents differ (%d bytes, want %d)", rel, len(b), len(a))
			}
		case wi.Mode().Type() == os.ModeSymlink:
			a, _ := os.Readlink(p)
			b, _ := os.Readlink(filepath.Join(got, rel))
			if a != b {
				t.Errorf("%s: link target %q, want %q", rel, b, a)
			}
		}
		return nil
	})
	if err != nil {
		t.Fatal(err)
	}
	filepath.Walk(got, func(p string, _ os.FileInfo, err error) error {
		if err != nil {
			return err
		}
		rel, _ := filepath.Rel(got, p)
		if !seen[rel] {
			t.Errorf("%s: in restore but not in the source", rel)
		}
		return nil
	})
}
