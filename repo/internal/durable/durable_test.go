package durable_test

import (
	"errors"
	"io/fs"
	"os"
	"path/filepath"
	"regexp"
	"slices"
	"testing"

	"github.com/cairnbackup/cairn/repo/internal/durable"
)

func names(t *testing.T, dir string) []string {
	t.Helper()
	entries, err := os.ReadDir(dir)
	if err != nil {
		t.Fatal(err)
	}
	var out []string
	for _, e := range entries {
		out = append(out, e.Name())
	}
	return out
}

func write(s string) func(f *os.File) error {
	return func(f *os.File) error {
		_, err := f.WriteString(s)
		return err
	}
}

func TestWriteTempThenLink(t *testing.T) {
	dir := t.TempDir()
	tmp, err := durable.WriteTemp(dir, "obj.tmp-", write("new"))
	if err != nil {
		t.Fatal(err)
	}
	if !regexp.MustCompile(`^obj\.tmp-[0-9a-f]{16}$`).MatchString(filepath.Base(tmp)) || filepath.Dir(tmp) != dir {
		t.Fatalf("temporary file %s", tmp)
	}
	if fi, err := os.Stat(tmp); err != nil || fi.Mode().Perm() != 0o600 {
		t.Fatalf("temporary file: %v %v", fi, err)
	}
	final := filepath.Join(dir, "obj")
	if err := durable.Link(tmp, final); err != nil {
		t.Fatal(err)
	}
	if got := names(t, dir); !slices.Equal(got, []string{"obj"}) {
		t.Fatalf("directory holds %q", got)
	}
	if b, err := os.ReadFile(final); err != nil || string(b) != "new" {
		t.Fatalf("final file: %q %v", b, err)
	}
}

// Link never replaces a file: the link fails, matches fs.ErrExist and
// leaves the temporary file for the caller.
func TestLinkNeverReplaces(t *testing.T) {
	dir := t.TempDir()
	final := filepath.Join(dir, "obj")
	if err := os.WriteFile(final, []byte("old"), 0o600); err != nil {
		t.Fatal(err)
	}
	tmp, err := durable.WriteTemp(dir, ".tmp-", write("new"))
	if err != nil {
		t.Fatal(err)
	}
	err = durable.Link(tmp, final)
	if !errors.Is(err, fs.ErrExist) || !durable.IsLinkError(err) {
		t.Fatalf("link over a file: %v", err)
	}
	if b, _ := os.ReadFile(final); string(b) != "old" {
		t.Fatalf("final file replaced: %q", b)
	}
	if _, err := os.Stat(tmp); err != nil {
		t.Fatalf("temporary file gone after a failed link: %v", err)
	}
}

func TestRenameReplaces(t *testing.T) {
	dir := t.TempDir()
	final := filepath.Join(dir, "obj")
	if err := os.WriteFile(final, []byte("old"), 0o600); err != nil {
		t.Fatal(err)
	}
	tmp, err := durable.WriteTemp(dir, ".tmp-", write("new"))
	if err != nil {
		t.Fatal(err)
	}
	if err := durable.Rename(tmp, final); err != nil {
		t.Fatal(err)
	}
	if got := names(t, dir); !slices.Equal(got, []string{"obj"}) {
		t.Fatalf("directory holds %q", got)
	}
	if b, _ := os.ReadFile(final); string(b) != "new" {
		t.Fatalf("final file: %q", b)
	}
	err = durable.Rename(filepath.Join(dir, "gone"), final)
	if !errors.Is(err, fs.ErrNotExist) || !durable.IsLinkError(err) {
		t.Fatalf("rename of a missing file: %v", err)
	}
}

// A failed write leaves nothing behind and returns the writer's error.
func TestWriteTempFails(t *testing.T) {
	dir := t.TempDir()
	boom := errors.New("boom")
	_, err := durable.WriteTemp(dir, ".tmp-", func(f *os.File) error {
		f.WriteString("half")
		return boom
	})
	if err != boom {
		t.Fatalf("got %v, want the writer's error", err)
	}
	if got := names(t, dir); len(got) != 0 {
		t.Fatalf("left %q", got)
	}
}

func TestSyncDir(t *testing.T) {
	if err := durable.SyncDir(t.TempDir()); err != nil {
		t.Fatal(err)
	}
	missing := filepath.Join(t.TempDir(), "missing")
	err := durable.SyncDir(missing)
	if !errors.Is(err, fs.ErrNotExist) || err.Error() != "sync directory: open "+missing+": no such file or directory" {
		t.Fatalf("sync of a missing directory: %v", err)
	}
}
