package drill

import (
	"fmt"
	"slices"
	"strings"
	"testing"

	"github.com/cairnbackup/cairn/repo/blob"
	"github.com/cairnbackup/cairn/repo/repotest"
	"github.com/cairnbackup/cairn/repo/tree"
)

// choose draws the same sample from the same snapshot, restores git
// directories and bare repositories whole (counting their files), keeps
// the files probes may need, and reports trees it cannot read.
func TestChooseSelection(t *testing.T) {
	r := repotest.New(t)
	s := r.NewSession()
	save := func(nodes ...tree.Node) blob.ID {
		slices.SortFunc(nodes, func(x, y tree.Node) int { return strings.Compare(x.Name, y.Name) })
		data, err := tree.Encode(nil, &tree.Tree{Nodes: nodes})
		if err != nil {
			t.Fatal(err)
		}
		id, _, err := s.SaveBlob(t.Context(), blob.Tree, data)
		if err != nil {
			t.Fatal(err)
		}
		return id
	}
	file := func(name string) tree.Node {
		return tree.Node{Name: name, Type: tree.File, Mode: 0o644, FileHash: blob.Hash([]byte(name))}
	}
	dir := func(name string, id blob.ID) tree.Node {
		return tree.Node{Name: name, Type: tree.Dir, Mode: 0o755, Subtree: id}
	}
	var many []tree.Node
	for i := range 12 {
		many = append(many, file(fmt.Sprintf("f%02d.txt", i)))
	}
	objects := save(dir("ab", save(file("cdef"), file("0123"))), file("pack"))
	refs := save(dir("heads", save(file("main"))))
	bare := save(file("HEAD"), file("config"), dir("objects", objects), dir("refs", refs))
	lost := blob.Hash([]byte("a tree never stored"))
	root := save(
		dir("a", save(many...)),
		dir("proj", save(dir(".git", save(file("HEAD"), dir("objects", objects), dir("refs", refs))), file("main.go"), dir("sub", save(file("x.db"))))),
		dir("srv.git", bare),
		dir("gone", lost),
		dir("z", save(dir("deeper", save(file("y.txt"), file("z.txt"))))),
	)
	if err := s.Flush(t.Context()); err != nil {
		t.Fatal(err)
	}
	seed := blob.Hash([]byte("seed"))
	got, err := choose(t.Context(), r, root, 5, seed, "files")
	if err != nil {
		t.Fatal(err)
	}
	show := func(s *selection) string {
		var fs []string
		for _, f := range s.failures {
			fs = append(fs, f.Path+": "+f.Reason)
		}
		return fmt.Sprintf("files %d sampled %v\nsample %q\nwhole %q\nextra %q\nfailures %q", s.files, s.sampled, s.sample, s.whole, s.extra, fs)
	}
	want := fmt.Sprintf(`files 27 sampled true
sample ["/a/f08.txt" "/z/deeper/y.txt" "/a/f05.txt" "/a/f10.txt" "/a/f11.txt"]
whole ["/proj/.git" "/srv.git"]
extra ["/proj/sub/x.db"]
failures ["/gone: blob tree/%s: not found"]`, lost.Short())
	if show(got) != want {
		t.Errorf("selection\n%s\nwant\n%s", show(got), want)
	}
	// A bare repository at the root is restored whole.
	got, err = choose(t.Context(), r, bare, 5, seed, "git")
	if err != nil {
		t.Fatal(err)
	}
	if want := `files 6 sampled false
sample []
whole [""]
extra []
failures []`; show(got) != want {
		t.Errorf("bare root: selection\n%s\nwant\n%s", show(got), want)
	}
}
