package restore_test

import (
	"archive/tar"
	"bytes"
	"errors"
	"io"
	"slices"
	"testing"

	"github.com/cairnbackup/cairn/repo/blob"
	"github.com/cairnbackup/cairn/repo/repotest"
	"github.com/cairnbackup/cairn/repo/restore"
	"github.com/cairnbackup/cairn/repo/tree"
)

// A tree WriteTar cannot load ends the stream there with an error naming
// the directory: what came before it is written, the archive is not
// finished.
func TestDumpMissingTree(t *testing.T) {
	r := repotest.New(t)
	b := &builder{t: t, s: r.NewSession()}
	a, _ := b.file("a", piece{data: "alpha"})
	z, _ := b.file("z", piece{data: "zulu"})
	lost := blob.Hash([]byte("a tree never stored"))
	root := b.dir(a, tree.Node{Name: "gone", Type: tree.Dir, Mode: 0o755, Subtree: lost}, z)
	b.flush()
	var out bytes.Buffer
	err := restore.WriteTar(t.Context(), r, tree.Node{Type: tree.Dir, Subtree: root}, &out)
	if want := "gone: blob tree/" + lost.Short() + ": not found"; err == nil || err.Error() != want || !errors.Is(err, blob.ErrNotFound) {
		t.Fatalf("error %v, want %s", err, want)
	}
	if bytes.HasSuffix(out.Bytes(), make([]byte, 1024)) {
		t.Error("the archive was finished")
	}
	tr := tar.NewReader(bytes.NewReader(out.Bytes()))
	var names []string
	for {
		h, err := tr.Next()
		if err != nil {
			break
		}
		names = append(names, h.Name)
	}
	if !slices.Equal(names, []string{"a", "gone/"}) {
		t.Errorf("written %q", names)
	}
	// A root that cannot be loaded is the loader's error as it is.
	err = restore.WriteTar(t.Context(), r, tree.Node{Type: tree.Dir, Subtree: lost}, io.Discard)
	if want := "blob tree/" + lost.Short() + ": not found"; err == nil || err.Error() != want {
		t.Errorf("root: error %v, want %s", err, want)
	}
}
