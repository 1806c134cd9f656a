package stats_test

import (
	"context"
	"fmt"
	"path/filepath"
	"sync"
	"testing"

	"github.com/cairnbackup/cairn/repo/blob"
	"github.com/cairnbackup/cairn/repo/snapfs"
	"github.com/cairnbackup/cairn/repo/tree"

	"github.com/cairnbackup/cairn/repo/backup"
	"github.com/cairnbackup/cairn/repo/repotest"
	"github.com/cairnbackup/cairn/repo/snapshot"
	"github.com/cairnbackup/cairn/repo/stats"
)

// Usage sums a snapshot's files (its summary's figure when it has one)
// and counts each distinct chunk once, across snapshots and across
// subtrees with the same contents.
func TestUsage(t *testing.T) {
	r := repotest.New(t)
	src := filepath.Join(t.TempDir(), "src")
	repotest.WriteTree(t, src, map[string]string{"a/x.txt": "same", "b/x.txt": "same", "c.txt": "other!"})
	snap := func() snapshot.Entry {
		s := r.NewSession()
		res, err := backup.Run(t.Context(), s, []string{src}, backup.Options{Params: r.ChunkerParams(), Table: r.ChunkerTable(), Loader: r})
		if err != nil {
			t.Fatal(err)
		}
		if err := s.Flush(t.Context()); err != nil {
			t.Fatal(err)
		}
		return snapshot.Entry{Snapshot: &snapshot.Snapshot{Tree: res.Tree}}
	}
	first, second := snap(), snap()

	u := stats.NewUsage(r, true)
	for _, sn := range []snapshot.Entry{first, second} {
		size, err := u.Logical(t.Context(), sn, true)
		if err != nil || size != 14 {
			t.Fatalf("logical size %d, %v; want 14", size, err)
		}
	}
	if chunks, bytes := u.Unique(); chunks != 2 || bytes != 10 {
		t.Fatalf("unique: %d chunks, %d bytes; want 2, 10", chunks, bytes)
	}
	// A summary's figure is taken as it is, without reading the tree.
	first.Summary.Bytes = 99
	if size, err := stats.NewUsage(nil, false).Logical(t.Context(), first, false); err != nil || size != 99 {
		t.Fatalf("from the summary: %d, %v", size, err)
	}
}

// countingLoader counts the trees loaded through it.
type countingLoader struct {
	l     snapfs.BlobLoader
	mu    sync.Mutex
	loads map[blob.ID]int
}

func (c *countingLoader) LoadBlob(ctx context.Context, h blob.Handle, buf []byte) ([]byte, error) {
	c.mu.Lock()
	c.loads[h.ID]++
	c.mu.Unlock()
	return c.l.LoadBlob(ctx, h, buf)
}

// Usage reads each distinct tree once among all the snapshots it walks,
// and a tree that cannot be read is an error naming the snapshot and the
// directory.
func TestUsageReadsEachTreeOnce(t *testing.T) {
	r := repotest.New(t)
	s := r.NewSession()
	save := func(nodes ...tree.Node) blob.ID {
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
	file := func(name string, size uint64) tree.Node {
		return tree.Node{Name: name, Type: tree.File, Mode: 0o644, Size: size, FileHash: blob.Hash([]byte(name)),
			Content: []tree.Chunk{{ID: blob.Hash([]byte(name)), Size: size}}}
	}
	dir := func(name string, id blob.ID) tree.Node {
		return tree.Node{Name: name, Type: tree.Dir, Mode: 0o755, Subtree: id}
	}
	leaf := save(file("x", 5))
	mid := save(dir("l1", leaf), dir("l2", leaf), file("y", 7))
	one := save(dir("a", mid), dir("b", mid))
	two := save(dir("c", mid), file("z", 100))
	lost := blob.Hash([]byte("never stored"))
	bad := save(dir("ok", mid), dir("q", save(dir("gone", lost))))
	if err := s.Flush(t.Context()); err != nil {
		t.Fatal(err)
	}
	c := &countingLoader{l: r, loads: map[blob.ID]int{}}
	u := stats.NewUsage(c, true)
	for _, want := range []struct {
		root blob.ID
		size uint64
	}{{one, 34}, {two, 117}, {one, 34}} {
		size, err := u.Logical(t.Context(), snapshot.Entry{Snapshot: &snapshot.Snapshot{Tree: want.root}}, true)
		if err != nil || size != want.size {
			t.Fatalf("tree %s: logical size %d, %v; want %d", want.root.Short(), size, err, want.size)
		}
	}
	if len(c.loads) != 4 {
		t.Errorf("%d trees loaded, want 4", len(c.loads))
	}
	for id, n := range c.loads {
		if n != 1 {
			t.Errorf("tree %s loaded %d times", id.Short(), n)
		}
	}
	if chunks, bytes := u.Unique(); chunks != 3 || bytes != 112 {
		t.Errorf("unique: %d chunks, %d bytes; want 3, 112", chunks, bytes)
	}
	sn := snapshot.Entry{ID: blob.Hash([]byte("snap")), Snapshot: &snapshot.Snapshot{Tree: bad}}
	_, err := u.Logical(t.Context(), sn, true)
	want := fmt.Sprintf("snapshot %s: /q/gone: blob tree/%s: not found", sn.ID.Short(), lost.Short())
	if err == nil || err.Error() != want {
		t.Errorf("error %v, want %s", err, want)
	}
}
