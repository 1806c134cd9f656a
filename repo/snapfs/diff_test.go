package snapfs_test

import (
	"context"
	"errors"
	"fmt"
	"slices"
	"strings"
	"sync"
	"testing"

	"github.com/cairnbackup/cairn/repo"
	"github.com/cairnbackup/cairn/repo/blob"
	"github.com/cairnbackup/cairn/repo/repotest"
	"github.com/cairnbackup/cairn/repo/snapfs"
	"github.com/cairnbackup/cairn/repo/tree"
)

// countingLoader counts the blobs loaded through it, by ID.
type countingLoader struct {
	l snapfs.BlobLoader

	mu    sync.Mutex
	loads map[blob.ID]int
}

func newCountingLoader(l snapfs.BlobLoader) *countingLoader {
	return &countingLoader{l: l, loads: map[blob.ID]int{}}
}

func (c *countingLoader) LoadBlob(ctx context.Context, h blob.Handle, buf []byte) ([]byte, error) {
	c.mu.Lock()
	c.loads[h.ID]++
	c.mu.Unlock()
	return c.l.LoadBlob(ctx, h, buf)
}

func (c *countingLoader) total() int {
	c.mu.Lock()
	defer c.mu.Unlock()
	n := 0
	for _, k := range c.loads {
		n += k
	}
	return n
}

// trees stores hand-built trees in a real repository.
type trees struct {
	t   *testing.T
	s   *repo.Session
	ids []blob.ID
}

// dir stores a tree of nodes (sorted here) and returns its ID.
func (b *trees) dir(nodes ...tree.Node) blob.ID {
	b.t.Helper()
	return b.dirB(b.t, nodes...)
}

func (b *trees) dirB(t testing.TB, nodes ...tree.Node) blob.ID {
	t.Helper()
	slices.SortFunc(nodes, func(x, y tree.Node) int { return strings.Compare(x.Name, y.Name) })
	data, err := tree.Encode(nil, &tree.Tree{Nodes: nodes})
	if err != nil {
		t.Fatal(err)
	}
	id, _, err := b.s.SaveBlob(t.Context(), blob.Tree, data)
	if err != nil {
		t.Fatal(err)
	}
	return id
}

// file is a file node with the given contents (whose chunk need not be
// stored: Diff never reads file data).
func file(name, contents string) tree.Node {
	n := tree.Node{Name: name, Type: tree.File, Mode: 0o644, MTime: 1e18, Size: uint64(len(contents)), FileHash: blob.Hash([]byte(contents))}
	if contents != "" {
		n.Content = []tree.Chunk{{ID: blob.Hash([]byte(contents)), Size: uint64(len(contents))}}
	}
	return n
}

func dirNode(name string, id blob.ID) tree.Node {
	return tree.Node{Name: name, Type: tree.Dir, Mode: 0o755, MTime: 1e18, Subtree: id}
}

func symlink(name, target string) tree.Node {
	return tree.Node{Name: name, Type: tree.Symlink, Mode: 0o777, MTime: 1e18, LinkTarget: target, Size: uint64(len(target))}
}

func with(n tree.Node, f func(*tree.Node)) tree.Node {
	f(&n)
	return n
}

func collect(t *testing.T, seq func(func(snapfs.Change, error) bool)) []string {
	t.Helper()
	var out []string
	for c, err := range seq {
		if err != nil {
			out = append(out, "error "+err.Error())
			continue
		}
		if (c.Old == nil) != (c.Kind == snapfs.Added) || (c.New == nil) != (c.Kind == snapfs.Removed) {
			t.Errorf("%s %s: old %v, new %v", c.Kind, c.Path, c.Old, c.New)
		}
		out = append(out, c.Kind.String()+" "+c.Path)
	}
	return out
}

func TestDiff(t *testing.T) {
	r := repotest.New(t)
	b := &trees{t: t, s: r.NewSession()}

	same := b.dir(file("x.txt", "unchanged"), dirNode("deeper", b.dir(file("y", "y"))))
	oldRoot := b.dir(
		file("a.txt", "alpha"),
		file("b.txt", "removed"),
		file("both.txt", "one"),
		dirNode("dir", same),
		dirNode("dirmeta", same),
		symlink("link", "a.txt"),
		file("meta.txt", "m"),
		dirNode("mod", b.dir(file("c.txt", "old"), file("keep", "k"))),
		dirNode("old", b.dir(file("z", "z"), dirNode("zz", b.dir(file("zzz", "3"))))),
		file("tchange", "a file"),
		file("touched.txt", "t"),
		dirNode("wasdir", b.dir(file("w", "w"))),
	)
	newRoot := b.dir(
		file("a.txt", "alpha"),
		with(file("both.txt", "two"), func(n *tree.Node) { n.Mode = 0o600 }),
		dirNode("dir", same),
		with(dirNode("dirmeta", same), func(n *tree.Node) { n.MTime++ }),
		symlink("link", "b.txt"),
		with(file("meta.txt", "m"), func(n *tree.Node) {
			n.Mode = 0o600
			n.Xattrs = []tree.Xattr{{Name: "user.k", Value: []byte("v")}}
		}),
		dirNode("mod", b.dir(file("c.txt", "new"), file("keep", "k"))),
		dirNode("new", b.dir(dirNode("deep", b.dir(file("f", "f"))), file("g", "g"))),
		dirNode("tchange", b.dir(file("inner", "i"))),
		// Access and change times, inode and link count do not count.
		with(file("touched.txt", "t"), func(n *tree.Node) { n.ATime, n.CTime, n.Inode, n.Links = 5, 6, 7, 2 }),
		file("wasdir", "now a file"),
	)
	if err := b.s.Flush(t.Context()); err != nil {
		t.Fatal(err)
	}

	cl := newCountingLoader(r)
	got := collect(t, snapfs.Diff(t.Context(), cl, oldRoot, newRoot))
	want := []string{
		"removed b.txt",
		"modified both.txt",
		"metadata dirmeta",
		"metadata link",
		"metadata meta.txt",
		"modified mod/c.txt",
		"added new",
		"added new/deep",
		"added new/deep/f",
		"added new/g",
		"removed old",
		"removed old/z",
		"removed old/zz",
		"removed old/zz/zzz",
		"modified tchange",
		"added tchange/inner",
		"modified wasdir",
		"removed wasdir/w",
	}
	if !slices.Equal(got, want) {
		t.Fatalf("diff:\n%s\nwant:\n%s", strings.Join(got, "\n"), strings.Join(want, "\n"))
	}
	// The shared subtree is never loaded, whether or not the directory
	// naming it changed; the others once each.
	if n := cl.loads[same]; n != 0 {
		t.Errorf("identical subtree loaded %d times", n)
	}
	// Both roots, both sides of mod, new and new/deep, old and old/zz,
	// tchange's new tree and wasdir's old tree.
	if n := cl.total(); n != 10 {
		t.Errorf("%d tree loads, want 10: %v", n, cl.loads)
	}

	// The reverse direction swaps added and removed.
	got = collect(t, snapfs.Diff(t.Context(), r, newRoot, oldRoot))
	if got[0] != "added b.txt" || got[6] != "removed new" || got[10] != "added old" {
		t.Errorf("reverse diff: %q", got)
	}

	// Identical trees: nothing loaded, nothing yielded.
	cl = newCountingLoader(r)
	if got := collect(t, snapfs.Diff(t.Context(), cl, oldRoot, oldRoot)); len(got) != 0 || cl.total() != 0 {
		t.Errorf("identical roots: %q, %d loads", got, cl.total())
	}

	// Stopping early stops the walk.
	n := 0
	for range snapfs.Diff(t.Context(), r, oldRoot, newRoot) {
		n++
		if n == 2 {
			break
		}
	}
	if n != 2 {
		t.Errorf("stopped after %d", n)
	}
}

// A subtree that cannot be loaded is reported with its path, and the
// comparison goes on with the rest.
func TestDiffMissingSubtree(t *testing.T) {
	r := repotest.New(t)
	b := &trees{t: t, s: r.NewSession()}
	missing := blob.Hash([]byte("no such tree"))
	oldRoot := b.dir(file("a", "1"), file("z", "1"))
	newRoot := b.dir(file("a", "2"), dirNode("lost", missing), file("z", "2"))
	if err := b.s.Flush(t.Context()); err != nil {
		t.Fatal(err)
	}
	var got []string
	for c, err := range snapfs.Diff(t.Context(), r, oldRoot, newRoot) {
		if err != nil {
			if !errors.Is(err, blob.ErrNotFound) {
				t.Errorf("error %v does not wrap ErrNotFound", err)
			}
			got = append(got, fmt.Sprintf("error at %q: %v", c.Path, strings.HasPrefix(err.Error(), "/lost: ")))
			continue
		}
		got = append(got, c.Kind.String()+" "+c.Path)
	}
	want := []string{"modified a", "added lost", `error at "lost": true`, "modified z"}
	if !slices.Equal(got, want) {
		t.Fatalf("got %q, want %q", got, want)
	}
}

func TestCompare(t *testing.T) {
	f := file("f", "data")
	for _, c := range []struct {
		name    string
		change  func(*tree.Node)
		kind    snapfs.ChangeKind
		changed bool
	}{
		{"nothing", func(*tree.Node) {}, 0, false},
		{"atime", func(n *tree.Node) { n.ATime = 9 }, 0, false},
		{"size", func(n *tree.Node) { n.Size++ }, snapfs.Modified, true},
		{"hash", func(n *tree.Node) { n.FileHash[0] ^= 1 }, snapfs.Modified, true},
		{"unknown hash, same chunks", func(n *tree.Node) { n.FileHash = blob.ID{} }, 0, false},
		{"unknown hash, other chunks", func(n *tree.Node) { n.FileHash = blob.ID{}; n.Content = []tree.Chunk{{Size: 4}} }, snapfs.Modified, true},
		{"type", func(n *tree.Node) { n.Type = tree.FIFO }, snapfs.Modified, true},
		{"uid", func(n *tree.Node) { n.UID = 1 }, snapfs.Metadata, true},
		{"gid", func(n *tree.Node) { n.GID = 1 }, snapfs.Metadata, true},
		{"user", func(n *tree.Node) { n.User = "ann" }, snapfs.Metadata, true},
		{"group", func(n *tree.Node) { n.Group = "staff" }, snapfs.Metadata, true},
		{"mtime", func(n *tree.Node) { n.MTime = 1 }, snapfs.Metadata, true},
		{"xattr value", func(n *tree.Node) { n.Xattrs = []tree.Xattr{{Name: "user.a"}} }, snapfs.Metadata, true},
		{"rdev", func(n *tree.Node) { n.Rdev = 3 }, snapfs.Metadata, true},
	} {
		n := f
		n.Content = slices.Clone(f.Content)
		c.change(&n)
		kind, changed := snapfs.Compare(&f, &n)
		if kind != c.kind || changed != c.changed {
			t.Errorf("%s: %v %v, want %v %v", c.name, kind, changed, c.kind, c.changed)
		}
	}
}
