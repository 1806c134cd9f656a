package main

import (
	"bytes"
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"testing"

	"github.com/cairnbackup/cairn/repo"
	"github.com/cairnbackup/cairn/repo/repotest"
)

// runCLI runs cairn with args in this process, as main does, and returns
// its exit code and standard error. No appliance listens on the
// repository's socket, so commands open the repository themselves.
func runCLI(t *testing.T, args ...string) (int, string) {
	t.Helper()
	for _, v := range []string{"CAIRN_REPO", "CAIRN_PASSWORD_FILE", "CAIRN_KEY_FILE", "CAIRN_SOCKET", "CAIRN_STATE_DIR", "CAIRN_CACHE_DIR"} {
		t.Setenv(v, "")
	}
	var stdout, stderr bytes.Buffer
	code := run(t.Context(), &globalOptions{args: args, stdout: &stdout, stderr: &stderr, stdin: bytes.NewReader(nil)})
	return code, stderr.String()
}

// The library names the setting; the CLI names the flags and variables
// that give it.
func TestNoKeyNamesTheFlags(t *testing.T) {
	dir := filepath.Join(t.TempDir(), "repo")
	kf, err := repo.Init(t.Context(), dir, repo.Credentials{}, repotest.Options())
	if err != nil {
		t.Fatal(err)
	}
	if err := os.Remove(kf); err != nil {
		t.Fatal(err)
	}
	code, stderr := runCLI(t, "--repo", dir, "snapshots")
	want := "cairn: no key: give a passphrase with --password-file or CAIRN_PASSWORD_FILE, or a key file with --key-file or CAIRN_KEY_FILE (" + kf + " does not exist)\n"
	if code != exitFailed || stderr != want {
		t.Fatalf("exit %d, stderr %q\nwant %q", code, stderr, want)
	}
}

func TestInitKeyFileExistsNamesTheFlag(t *testing.T) {
	dir := filepath.Join(t.TempDir(), "repo")
	if err := os.WriteFile(dir+".key", []byte("mine\n"), 0o600); err != nil {
		t.Fatal(err)
	}
	code, stderr := runCLI(t, "--repo", dir, "init")
	want := "cairn: init: key file " + dir + ".key exists already; move it away or name another with --key-file\n"
	if code != exitFailed || stderr != want {
		t.Fatalf("exit %d, stderr %q\nwant %q", code, stderr, want)
	}
}

// A cache directory of another location (a real one needs an object
// store: repo's TestObjectStoreCacheOfAnotherNamesNoFlag) is reworded
// wherever it is wrapped, and still matches.
func TestCacheDirNamesTheFlag(t *testing.T) {
	ce := &repo.CacheDirError{Dir: "/var/cache/cairn/x", Holds: "s3://a/b", Place: "s3://c/d"}
	err := flagWords(fmt.Errorf("open: %w", ce))
	want := "open: cache directory /var/cache/cairn/x holds the index of s3://a/b, not of s3://c/d (copies of a repository have the same ID): give this one a cache directory of its own with --cache-dir"
	if got, ok := errors.AsType[*repo.CacheDirError](err); !ok || got != ce || err.Error() != want {
		t.Fatalf("got %v\nwant %s", err, want)
	}
	plain := errors.New("something else")
	if flagWords(plain) != plain {
		t.Fatal("an error naming no setting was changed")
	}
}
