package snapfs_test

import (
	"context"
	"errors"
	"fmt"
	"slices"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/cairnbackup/cairn/repo/blob"
	"github.com/cairnbackup/cairn/repo/repotest"
	"github.com/cairnbackup/cairn/repo/snapfs"
	"github.com/cairnbackup/cairn/repo/tree"
)

// flush makes the stored trees readable.
func (b *trees) flush() {
	b.t.Helper()
	if err := b.s.Flush(b.t.Context()); err != nil {
		b.t.Fatal(err)
	}
}

// walkLines renders a walk: one line per entry, "path" for a node,
// "path seen" for a directory met before, "leave path" at the end of a
// directory and "error ..." for an error.
func walkLines(t *testing.T, l snapfs.BlobLoader, root blob.ID, o snapfs.WalkOptions) []string {
	t.Helper()
	var out []string
	for e, err := range snapfs.Walk(t.Context(), l, root, o) {
		switch {
		case err != nil:
			out = append(out, "error "+err.Error())
		case e.Leave:
			out = append(out, "leave "+e.Path)
		case e.Seen:
			out = append(out, e.Path+" seen")
		default:
			out = append(out, e.Path)
		}
	}
	return out
}

func TestWalk(t *testing.T) {
	r := repotest.New(t)
	b := &trees{t: t, s: r.NewSession()}
	shared := b.dir(file("s", "s"))
	inner := b.dir(file("f", "f"), dirNode("x", shared))
	root := b.dir(file("a", "a"), dirNode("d", inner), dirNode("e", shared), symlink("z", "a"))
	b.flush()

	want := []string{"a", "d", "d/f", "d/x", "d/x/s", "e", "e/s", "z"}
	for _, ra := range []int{-1, 0, 1, 3} {
		if got := walkLines(t, r, root, snapfs.WalkOptions{ReadAhead: ra}); !slices.Equal(got, want) {
			t.Errorf("read ahead %d: walk\n%q\nwant\n%q", ra, got, want)
		}
	}
	got := walkLines(t, r, root, snapfs.WalkOptions{Leave: true})
	want = []string{"a", "d", "d/f", "d/x", "d/x/s", "leave d/x", "leave d", "e", "e/s", "leave e", "z", "leave "}
	if !slices.Equal(got, want) {
		t.Errorf("walk with leave\n%q\nwant\n%q", got, want)
	}

	// Every entry names the tree that lists it; Leave names the
	// directory's own tree.
	for e, err := range snapfs.Walk(t.Context(), r, root, snapfs.WalkOptions{Leave: true}) {
		if err != nil {
			t.Fatal(err)
		}
		want := map[string]blob.ID{"a": root, "d": root, "d/f": inner, "d/x": inner, "d/x/s": shared, "e": root, "e/s": shared, "z": root}[e.Path]
		if e.Leave {
			want = root
			if e.Node != nil {
				want = e.Node.Subtree
			}
			if e.Dir == nil || len(e.Dir.Nodes) == 0 || e.Dir.Nodes[0].Name != map[blob.ID]string{root: "a", inner: "f", shared: "s"}[want] {
				t.Errorf("leave %s: listing %v", e.Path, e.Dir)
			}
		}
		if e.Tree != want {
			t.Errorf("%s (leave %v): tree %s, want %s", e.Path, e.Leave, e.Tree.Short(), want.Short())
		}
		if !e.Leave && (e.Dir == nil || !containsNode(e.Dir, e.Node)) {
			t.Errorf("%s: Dir does not hold the entry's node", e.Path)
		}
	}
}

func containsNode(t *tree.Tree, n *tree.Node) bool {
	for i := range t.Nodes {
		if &t.Nodes[i] == n {
			return true
		}
	}
	return false
}

// TestWalkSeenLoadsEachTreeOnce walks two snapshots sharing subtrees
// with one Seen: every tree is loaded once, and a directory met again
// is yielded as seen without its contents.
func TestWalkSeenLoadsEachTreeOnce(t *testing.T) {
	r := repotest.New(t)
	b := &trees{t: t, s: r.NewSession()}
	empty := b.dir()
	shared := b.dir(file("s", "s"), dirNode("e1", empty), dirNode("e2", empty))
	one := b.dir(dirNode("a", shared), dirNode("b", b.dir(dirNode("c", shared))), dirNode("e", empty))
	two := b.dir(dirNode("a", shared), dirNode("n", b.dir(file("new", "n"))))
	b.flush()

	for _, ra := range []int{-1, 0, 2} {
		c := newCountingLoader(r)
		seen := map[blob.ID]struct{}{}
		o := snapfs.WalkOptions{Seen: seen, ReadAhead: ra}
		got := append(walkLines(t, c, one, o), walkLines(t, c, two, o)...)
		got = append(got, walkLines(t, c, one, o)...) // a root seen before: nothing
		want := []string{
			"a", "a/e1", "a/e2 seen", "a/s", "b", "b/c seen", "e seen",
			"a seen", "n", "n/new",
		}
		if !slices.Equal(got, want) {
			t.Errorf("read ahead %d: walks\n%q\nwant\n%q", ra, got, want)
		}
		for id, n := range c.loads {
			if n != 1 {
				t.Errorf("read ahead %d: tree %s loaded %d times", ra, id.Short(), n)
			}
		}
		if len(c.loads) != 6 || len(seen) != 6 {
			t.Errorf("read ahead %d: %d trees loaded, %d seen, want 6", ra, len(c.loads), len(seen))
		}
	}

	// Without Seen, a shared tree is walked (and loaded) wherever it is.
	c := newCountingLoader(r)
	walkLines(t, c, one, snapfs.WalkOptions{ReadAhead: -1})
	if c.loads[shared] != 2 || c.loads[empty] != 5 {
		t.Errorf("without seen: shared loaded %d times, empty %d, want 2 and 5", c.loads[shared], c.loads[empty])
	}
}

// TestWalkSkip: a skipped directory is yielded, but its tree is neither
// walked nor read ahead.
func TestWalkSkip(t *testing.T) {
	r := repotest.New(t)
	b := &trees{t: t, s: r.NewSession()}
	big := b.dir(dirNode("deep", b.dir(file("x", "x"))))
	root := b.dir(dirNode("big", big), dirNode("keep", b.dir(file("k", "k"))))
	b.flush()
	c := newCountingLoader(r)
	var asked []string
	got := walkLines(t, c, root, snapfs.WalkOptions{Skip: func(e snapfs.Entry) bool {
		asked = append(asked, e.Path)
		return e.Path == "big"
	}})
	want := []string{"big", "keep", "keep/k"}
	if !slices.Equal(got, want) {
		t.Errorf("walk\n%q\nwant\n%q", got, want)
	}
	if !slices.Equal(asked, []string{"big", "keep"}) {
		t.Errorf("skip asked about %q", asked)
	}
	if c.loads[big] != 0 || c.total() != 2 {
		t.Errorf("skipped tree loaded %d times; %d loads in all, want 2", c.loads[big], c.total())
	}

	// SkipDir decides when the entry comes: the tree may have been read
	// ahead, nothing below it is.
	deep := b.dir(file("x", "x"))
	for _, ra := range []int{-1, 0} {
		c = newCountingLoader(r)
		var got []string
		for e, err := range snapfs.Walk(t.Context(), c, root, snapfs.WalkOptions{ReadAhead: ra, Leave: true}) {
			if err != nil {
				t.Fatal(err)
			}
			if e.Path == "big" && !e.Leave {
				e.SkipDir()
			}
			got = append(got, e.Path)
		}
		if want := []string{"big", "keep", "keep/k", "keep", ""}; !slices.Equal(got, want) {
			t.Errorf("read ahead %d: walk with SkipDir\n%q\nwant\n%q", ra, got, want)
		}
		if c.loads[deep] != 0 || c.loads[big] > 1 || ra < 0 && c.loads[big] != 0 {
			t.Errorf("read ahead %d: below the skipped directory %d loads, the directory %d", ra, c.loads[deep], c.loads[big])
		}
	}
}

// TestWalkDamagedTree: a tree that cannot be read is an error naming its
// directory and tree; the walk goes on with the rest.
func TestWalkDamagedTree(t *testing.T) {
	r := repotest.New(t)
	b := &trees{t: t, s: r.NewSession()}
	lost := blob.Hash([]byte("a tree never stored"))
	root := b.dir(dirNode("gone", lost), file("z", "z"))
	b.flush()
	for _, ra := range []int{-1, 0} {
		var te *snapfs.TreeError
		var lines []string
		for e, err := range snapfs.Walk(t.Context(), r, root, snapfs.WalkOptions{Leave: true, ReadAhead: ra}) {
			switch {
			case err != nil:
				if !errors.As(err, &te) || te.Path != "gone" || te.Tree != lost || e.Path != "gone" || e.Tree != lost {
					t.Errorf("error %v (%T) at %q tree %s", err, err, e.Path, e.Tree.Short())
				}
				if !errors.Is(err, blob.ErrNotFound) {
					t.Errorf("error %v is not ErrNotFound", err)
				}
				lines = append(lines, "error")
			case e.Leave:
				lines = append(lines, "leave "+e.Path)
			default:
				lines = append(lines, e.Path)
			}
		}
		if want := []string{"gone", "error", "leave gone", "z", "leave "}; !slices.Equal(lines, want) {
			t.Errorf("read ahead %d: %q, want %q", ra, lines, want)
		}
		if want := "/gone: "; te == nil || !strings.HasPrefix(te.Error(), want) || !strings.Contains(te.Error(), lost.Short()) {
			t.Errorf("error text %v, want %q and the tree's ID", te, want+"…")
		}
	}

	// A root that cannot be read is one error for "/".
	got := walkLines(t, r, lost, snapfs.WalkOptions{})
	if len(got) != 1 || !strings.HasPrefix(got[0], "error /: ") {
		t.Errorf("walk of a lost root: %q", got)
	}
}

// gateLoader holds every load of a tree in gated until n of them wait at
// once, and records the most loads in progress at any time.
type gateLoader struct {
	l     snapfs.BlobLoader
	gated map[blob.ID]bool
	n     int

	mu       sync.Mutex
	waiting  int
	active   int
	maxAct   int
	released chan struct{}
}

func (g *gateLoader) LoadBlob(ctx context.Context, h blob.Handle, buf []byte) ([]byte, error) {
	g.mu.Lock()
	g.active++
	g.maxAct = max(g.maxAct, g.active)
	gated := g.gated[h.ID]
	if gated {
		g.waiting++
		if g.waiting == g.n {
			close(g.released)
		}
	}
	g.mu.Unlock()
	defer func() {
		g.mu.Lock()
		g.active--
		g.mu.Unlock()
	}()
	if gated {
		select {
		case <-g.released:
		case <-ctx.Done():
			return nil, ctx.Err()
		}
	}
	return g.l.LoadBlob(ctx, h, buf)
}

// TestWalkReadsAheadInParallel: the subtrees of a directory are read at
// the same time, never more than ReadAhead of them. Each gated load
// waits until ReadAhead of them wait together, so a walk that read one
// tree at a time would never finish (the test's deadline ends it).
func TestWalkReadsAheadInParallel(t *testing.T) {
	r := repotest.New(t)
	b := &trees{t: t, s: r.NewSession()}
	g := &gateLoader{l: r, gated: map[blob.ID]bool{}, n: 3, released: make(chan struct{})}
	var nodes []tree.Node
	for i := range 6 {
		id := b.dir(file(fmt.Sprintf("f%d", i), fmt.Sprint(i)))
		g.gated[id] = true
		nodes = append(nodes, dirNode(fmt.Sprintf("d%d", i), id))
	}
	root := b.dir(nodes...)
	b.flush()
	ctx, cancel := context.WithTimeout(t.Context(), time.Minute)
	defer cancel()
	n := 0
	for _, err := range snapfs.Walk(ctx, g, root, snapfs.WalkOptions{ReadAhead: 3}) {
		if err != nil {
			t.Fatalf("walk: %v (the subtrees were not read in parallel)", err)
		}
		n++
	}
	if n != 12 {
		t.Errorf("%d entries, want 12", n)
	}
	if g.maxAct > 3 {
		t.Errorf("%d loads at once, want at most 3", g.maxAct)
	}
}

// TestWalkStops: a walk ended by its caller, or by its context, waits
// for its reads ahead and yields the context's error.
func TestWalkStops(t *testing.T) {
	r := repotest.New(t)
	b := &trees{t: t, s: r.NewSession()}
	var nodes []tree.Node
	for i := range 20 {
		nodes = append(nodes, dirNode(fmt.Sprintf("d%02d", i), b.dir(file("f", fmt.Sprint(i)))))
	}
	root := b.dir(nodes...)
	b.flush()
	for range snapfs.Walk(t.Context(), r, root, snapfs.WalkOptions{}) {
		break
	}
	ctx, cancel := context.WithCancel(t.Context())
	defer cancel()
	var last error
	n := 0
	for _, err := range snapfs.Walk(ctx, r, root, snapfs.WalkOptions{}) {
		n++
		cancel()
		last = err
	}
	if !errors.Is(last, context.Canceled) || n != 2 {
		t.Errorf("after cancel: %d entries, last error %v", n, last)
	}
}

// remote is a loader whose every load first waits 200µs, as a round
// trip to an object store would (for BenchmarkWalk only).
type remote struct{ l snapfs.BlobLoader }

func (r remote) LoadBlob(ctx context.Context, h blob.Handle, buf []byte) ([]byte, error) {
	time.Sleep(200 * time.Microsecond)
	return r.l.LoadBlob(ctx, h, buf)
}

// BenchmarkWalk walks a real repository of 1 111 trees (ten levels of
// ten directories, three deep, 20 files in each), each tree read once
// (as prune's mark and check do), one tree at a time and with the
// default read-ahead, from the repository's directory and with a
// simulated round trip per load.
func BenchmarkWalk(b *testing.B) {
	r := repotest.New(b)
	tb := &trees{s: r.NewSession()}
	var build func(depth int) blob.ID
	build = func(depth int) blob.ID {
		var nodes []tree.Node
		for i := range 20 {
			nodes = append(nodes, file(fmt.Sprintf("f%02d", i), fmt.Sprintf("%d/%d", depth, i)))
		}
		if depth < 3 {
			for i := range 10 {
				nodes = append(nodes, dirNode(fmt.Sprintf("d%d", i), build(depth+1)))
			}
		}
		// Distinct trees: a node naming the depth and a counter.
		nodes = append(nodes, file(fmt.Sprintf("id%d", len(tb.ids)), "x"))
		id := tb.dirB(b, nodes...)
		tb.ids = append(tb.ids, id)
		return id
	}
	root := build(0)
	if err := tb.s.Flush(b.Context()); err != nil {
		b.Fatal(err)
	}
	for _, c := range []struct {
		name string
		ra   int
		l    snapfs.BlobLoader
	}{
		{"sequential", -1, r}, {"readahead", 0, r},
		// Each load waits 200µs first, as for a round trip to an object store.
		{"sequential-remote", -1, remote{r}}, {"readahead-remote", 0, remote{r}},
	} {
		b.Run(c.name, func(b *testing.B) {
			for b.Loop() {
				n := 0
				for _, err := range snapfs.Walk(b.Context(), c.l, root, snapfs.WalkOptions{Seen: map[blob.ID]struct{}{}, ReadAhead: c.ra}) {
					if err != nil {
						b.Fatal(err)
					}
					n++
				}
				if n != 1110+1111*21 {
					b.Fatalf("%d entries", n)
				}
			}
		})
	}
}
