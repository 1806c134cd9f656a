package restore_test

import (
	"io"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"testing"

	"github.com/cairnbackup/cairn/repo/blob"
	"github.com/cairnbackup/cairn/repo/repotest"
	"github.com/cairnbackup/cairn/repo/restore"
	"github.com/cairnbackup/cairn/repo/tree"
)

// The tree format takes names of up to 1024 bytes, and older versions
// stored tar members with names no file system holds (over NAME_MAX, 255
// bytes). Restoring such a snapshot names the entry and says why it
// cannot be restored; the other entries are restored.
func TestRestoreNameTooLong(t *testing.T) {
	r := repotest.New(t)
	s := r.NewSession()
	data := []byte("data")
	id, _, err := s.SaveBlob(t.Context(), blob.Data, data)
	if err != nil {
		t.Fatal(err)
	}
	file := func(name string) tree.Node {
		return tree.Node{Name: name, Type: tree.File, Mode: 0o644, Size: 4, FileHash: blob.Hash(data), Content: []tree.Chunk{{ID: id, Size: 4}}}
	}
	long := strings.Repeat("n", 256)
	save := func(nodes ...tree.Node) blob.ID {
		enc, err := tree.Encode(nil, &tree.Tree{Nodes: nodes})
		if err != nil {
			t.Fatal(err)
		}
		id, _, err := s.SaveBlob(t.Context(), blob.Tree, enc)
		if err != nil {
			t.Fatal(err)
		}
		return id
	}
	sub := save(file("f"))
	deep := sub
	for range 20 { // 20 directories of 250 bytes: a path past PATH_MAX restores
		deep = save(tree.Node{Name: strings.Repeat("d", 250), Type: tree.Dir, Mode: 0o755, Subtree: deep})
	}
	dirNode := tree.Node{Name: long + "d", Type: tree.Dir, Mode: 0o755, Subtree: sub}
	deepNode := tree.Node{Name: "deep", Type: tree.Dir, Mode: 0o755, Subtree: deep}
	root := save(file("a"), deepNode, file(long), dirNode)
	if err := s.Flush(t.Context()); err != nil {
		t.Fatal(err)
	}
	target := t.TempDir()
	_, err = restore.Run(t.Context(), r, root, "", target, restore.Options{})
	want := "restore: 2 entries could not be restored:" +
		"\n  " + long + ": not restored: the name is 256 bytes, longer than a file system allows (255)" +
		"\n  " + long + "d: not restored: the name is 257 bytes, longer than a file system allows (255)"
	if err == nil || err.Error() != want {
		t.Fatalf("restore: %v\nwant %s", err, want)
	}
	if b, err := os.ReadFile(filepath.Join(target, "a")); err != nil || string(b) != "data" {
		t.Fatalf("a: %q %v", b, err)
	}
	deepFile := filepath.Join(append([]string{target, "deep"}, slices.Repeat([]string{strings.Repeat("d", 250)}, 20)...)...)
	if len(deepFile) <= 4096 {
		t.Fatalf("the deep path is only %d bytes", len(deepFile))
	}
	rel, _ := filepath.Rel(target, filepath.Join(deepFile, "f"))
	if b, err := readAt(target, rel); err != nil || string(b) != "data" {
		t.Fatalf("deep file: %q %v", b, err)
	}
}

// readAt reads the file at rel below dir through an os.Root, which opens
// one component at a time: rel may be longer than PATH_MAX.
func readAt(dir, rel string) ([]byte, error) {
	root, err := os.OpenRoot(dir)
	if err != nil {
		return nil, err
	}
	defer root.Close()
	f, err := root.Open(rel)
	if err != nil {
		return nil, err
	}
	defer f.Close()
	return io.ReadAll(f)
}
