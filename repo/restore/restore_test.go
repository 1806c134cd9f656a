package restore_test

import (
	"bytes"
	"errors"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/cairnbackup/cairn/repo/backup"
	"github.com/cairnbackup/cairn/repo/blob"
	"github.com/cairnbackup/cairn/repo/repotest"
	"github.com/cairnbackup/cairn/repo/restore"
	"github.com/cairnbackup/cairn/repo/snapshot"
	"github.com/cairnbackup/cairn/repo/tree"
)

// A symlink already in the target cannot lead a restore outside it: it is
// replaced, never written through, and nothing is written outside.
func TestRestoreStaysInsideTarget(t *testing.T) {
	r := repotest.New(t)
	src := filepath.Join(t.TempDir(), "src")
	repotest.WriteTree(t, src, map[string]string{"etc/passwd": "evil"})
	s := r.NewSession()
	res, err := backup.Run(t.Context(), s, []string{src}, backup.Options{Params: r.ChunkerParams(), Table: r.ChunkerTable()})
	if err != nil {
		t.Fatal(err)
	}
	if _, err := s.Commit(t.Context(), &snapshot.Snapshot{Version: 1, Time: time.Now(), Node: "n", Paths: []string{src}, Tree: res.Tree}); err != nil {
		t.Fatal(err)
	}
	outside := t.TempDir()
	target := t.TempDir()
	if err := os.Symlink(outside, filepath.Join(target, "src")); err != nil {
		t.Fatal(err)
	}
	if _, err = restore.Run(t.Context(), r, res.Tree, src, target, restore.Options{}); err != nil {
		t.Fatal(err)
	}
	if entries, _ := os.ReadDir(outside); len(entries) != 0 {
		t.Fatalf("written outside the target: %v", entries)
	}
	fi, err := os.Lstat(filepath.Join(target, "src"))
	if err != nil || !fi.IsDir() {
		t.Fatalf("src in the target: %v %v", fi, err)
	}
	if b, _ := os.ReadFile(filepath.Join(target, "src", "etc", "passwd")); string(b) != "evil" {
		t.Fatalf("restored %q", b)
	}
}

func TestFileMode(t *testing.T) {
	for m, want := range map[uint32]os.FileMode{
		0o644:  0o644,
		0o4755: 0o755 | os.ModeSetuid,
		0o2750: 0o750 | os.ModeSetgid,
		0o1777: 0o777 | os.ModeSticky,
	} {
		if got := restore.FileMode(m); got != want {
			t.Errorf("FileMode(%o) = %v, want %v", m, got, want)
		}
	}
}

// Trees crafted with hostile names are refused when they are decoded: the
// restore fails with the decoder's reason and writes nothing, inside or
// outside the target.
func TestHostileTrees(t *testing.T) {
	r := repotest.New(t)
	for _, c := range []struct{ benign, hostile, reason string }{
		{"xx", "..", `name ".." is not allowed`},
		{"x", ".", `name "." is not allowed`},
		{"xetc", "/etc", `name "/etc" contains '/'`},
		{"axb", "a/b", `name "a/b" contains '/'`},
		{"axb", "a\x00b", `name "a\x00b" contains a NUL byte`},
	} {
		file := tree.Node{Name: c.benign, Type: tree.File, Mode: 0o644, Size: 4, FileHash: blob.Hash([]byte("evil")),
			Content: []tree.Chunk{{ID: blob.Hash([]byte("evil")), Size: 4}}}
		enc, err := tree.Encode(nil, &tree.Tree{Nodes: []tree.Node{file}})
		if err != nil {
			t.Fatal(err)
		}
		raw := bytes.Replace(enc, []byte(c.benign), []byte(c.hostile), 1)
		s := r.NewSession()
		s.SaveBlob(t.Context(), blob.Data, []byte("evil"))
		root, _, err := s.SaveBlob(t.Context(), blob.Tree, raw)
		if err != nil {
			t.Fatal(err)
		}
		if err := s.Flush(t.Context()); err != nil {
			t.Fatal(err)
		}
		parent := t.TempDir()
		target := filepath.Join(parent, "target")
		_, err = restore.Run(t.Context(), r, root, "", target, restore.Options{})
		if err == nil || !strings.Contains(err.Error(), c.reason) || !errors.Is(err, blob.ErrCorrupt) {
			t.Errorf("%q: err = %v, want %q", c.hostile, err, c.reason)
		}
		entries, _ := os.ReadDir(target)
		others, _ := os.ReadDir(parent)
		if len(entries) != 0 || len(others) != 1 {
			t.Errorf("%q: written: %v %v", c.hostile, entries, others)
		}
	}
}
