package wire_test

import (
	"fmt"
	"math/rand/v2"
	"path"
	"path/filepath"
	"slices"
	"testing"

	"github.com/cairnbackup/cairn/repo"
	"github.com/cairnbackup/cairn/repo/blob"
	"github.com/cairnbackup/cairn/repo/repotest"
	"github.com/cairnbackup/cairn/repo/restore"
	"github.com/cairnbackup/cairn/repo/snapfs"
	"github.com/cairnbackup/cairn/repo/tree"
	"github.com/cairnbackup/cairn/repo/wire"
)

// dirTree encodes a tree holding one directory "d" whose listing is the
// tree sub.
func dirTree(t *testing.T, sub blob.ID) []byte {
	t.Helper()
	b, err := tree.Encode(nil, &tree.Tree{Nodes: []tree.Node{{Name: "d", Type: tree.Dir, Mode: 0o755, Subtree: sub}}})
	if err != nil {
		t.Fatal(err)
	}
	return b
}

func treeRefused(id blob.ID, node string) string {
	return fmt.Sprintf("tree %s is not part of node %s's snapshots and was not sent in this session", id.Short(), node)
}

func dataRefused(id blob.ID, node string) string {
	return fmt.Sprintf("data blob %s is not part of node %s's snapshots, was not sent in this session and was not reported present by have-blobs in this session", id.Short(), node)
}

func dataRefusedIsolated(id blob.ID, node string) string {
	return fmt.Sprintf("data blob %s is not part of node %s's snapshots and was not sent in this session", id.Short(), node)
}

// A tree ID is not a read capability: a node that commits another node's
// tree (as its root or as a subtree of a tree it sends), or a tree of its
// own listing chunks it neither sent nor was told are stored, is refused
// with Error 2 naming the blob, and the repository does not change. Were
// the commit accepted, the tree would be part of the node's snapshots,
// and a node with read could restore the other node's files.
func TestServeRefusesBorrowedBlobs(t *testing.T) {
	r := repotest.New(t)
	secret := "lyra's secret, which vega never saw"
	lyra := pushDirect(t, r, "lyra", map[string]string{"secret.txt": secret})
	lyraSrc := subtree(t, r, lyra.Tree, lyra.Paths[0])
	chunk := []byte(secret) // one chunk: its ID is what vega would have to know
	mine := []byte("a chunk of vega's own")
	borrowRoot := dirTree(t, lyraSrc)
	listsChunk := fileTree(t, mine, chunk)
	for _, tc := range []struct {
		name     string
		isolated bool
		send     func(c *rawClient) blob.ID // sends blobs, returns the root to commit
		msg      string
	}{
		{"another node's root tree", false, func(c *rawClient) blob.ID { return lyra.Tree }, treeRefused(lyra.Tree, "vega")},
		{"another node's subtree under a tree it sends", false, func(c *rawClient) blob.ID {
			c.putBlob(treeHandle(borrowRoot), borrowRoot)
			return blob.Hash(borrowRoot)
		}, treeRefused(lyraSrc, "vega")},
		{"another node's chunk it never asked about", false, func(c *rawClient) blob.ID {
			c.putBlob(dataHandle(mine), mine)
			c.putBlob(treeHandle(listsChunk), listsChunk)
			return blob.Hash(listsChunk)
		}, dataRefused(blob.Hash(chunk), "vega")},
		{"another node's chunk it asked about but never learnt of (isolated)", true, func(c *rawClient) blob.ID {
			if has := c.haveBlobs(1, dataHandle(chunk)); has[0] {
				c.t.Fatal("an isolated node was told another node's chunk exists")
			}
			c.putBlob(dataHandle(mine), mine)
			c.putBlob(treeHandle(listsChunk), listsChunk)
			return blob.Hash(listsChunk)
		}, dataRefusedIsolated(blob.Hash(chunk), "vega")},
		{"another node's root tree (isolated)", true, func(c *rawClient) blob.ID { return lyra.Tree }, treeRefused(lyra.Tree, "vega")},
	} {
		t.Run(tc.name, func(t *testing.T) {
			sc := config(wire.PermPush | wire.PermRead)
			sc.Node, sc.Isolated = "vega", tc.isolated
			s := serve(t, r, sc)
			c := newRawClient(t, s)
			c.hello("vega")
			root := tc.send(c)
			// The blobs vega sent are its own to store; nothing else
			// may change.
			c.send(wire.TypeCommit, (&wire.Commit{Req: 9, Record: record(t, "vega", root)}).Append(nil))
			c.expectError(wire.CodePermissionDenied, tc.msg)
			if _, err := s.wait(); err == nil || err.Error() != tc.msg {
				t.Fatalf("serve: %v, want %q", err, tc.msg)
			}
			got := repoState(t, r)
			if len(got.snapshots) != 1 || got.snapshots[0] != lyra.ID {
				t.Fatalf("snapshots %v, want lyra's only", got.snapshots)
			}
		})
	}

	t.Run("have-blobs does not vouch for another node's tree", func(t *testing.T) {
		sc := config(wire.PermPush)
		sc.Node = "vega"
		s := serve(t, r, sc)
		c := newRawClient(t, s)
		c.hello("vega")
		// The chunk is stored and vega asked: dedup across nodes is on
		// (knowing a chunk's SHA-256 is knowing its content). The trees
		// are stored too, but are not vega's.
		got := c.haveBlobs(1, dataHandle(chunk), blob.Handle{ID: lyra.Tree, Type: blob.Tree}, blob.Handle{ID: lyraSrc, Type: blob.Tree})
		if !slices.Equal(got, []bool{true, false, false}) {
			t.Fatalf("have %v, want [true false false]", got)
		}
		c.send(wire.TypeBye, nil)
		c.expectEOF()
		if _, err := s.wait(); err != nil {
			t.Fatal(err)
		}
	})

	t.Run("an admin node keeps its power", func(t *testing.T) {
		sc := config(wire.PermAdmin)
		sc.Node = "boss"
		s := serve(t, r, sc)
		c := newRawClient(t, s)
		c.hello("boss")
		if got := c.haveBlobs(1, blob.Handle{ID: lyra.Tree, Type: blob.Tree}); !got[0] {
			t.Fatal("an admin node is not told that lyra's tree exists")
		}
		c.commit(2, record(t, "boss", lyra.Tree))
		c.send(wire.TypeBye, nil)
		c.expectEOF()
		if _, err := s.wait(); err != nil {
			t.Fatal(err)
		}
	})
}

// The honest client still pushes through the rules: a node's first push
// of data another node stored sends its trees but no chunk (the chunks
// are stored once); an unchanged re-push reuses the parent's chunk lists
// and trees; an isolated node sends everything and the repository still
// stores each chunk once. Each node restores what it pushed through the
// client.
func TestClientHonestPushesUnderTheTrustRules(t *testing.T) {
	r := repotest.New(t)
	src := filepath.Join(t.TempDir(), "src")
	big := make([]byte, 700<<10)
	rand.NewChaCha8([32]byte{7}).Read(big)
	repotest.WriteTree(t, src, map[string]string{"a.txt": "alpha", "d/big": string(big), "d/e/c.txt": "charlie"})

	pushAs := func(t *testing.T, node string, isolated bool, parent *pushed) (pushed, wire.PushStats) {
		t.Helper()
		sc := config(wire.PermPush | wire.PermRead)
		sc.Node, sc.Isolated = node, isolated
		s := serve(t, r, sc)
		c, err := wire.Dial(t.Context(), s.conn, "cairn test", node)
		if err != nil {
			t.Fatal(err)
		}
		if parent != nil {
			// As cairn push does: the parent is found among the node's
			// snapshots, which is how the session learns its trees.
			if _, err := c.ListSnapshots(t.Context(), "docs"); err != nil {
				t.Fatal(err)
			}
		}
		p := push(t, c, src, parent)
		dst := t.TempDir()
		if _, err := restore.Run(t.Context(), c, p.res.Tree, src, dst, restore.Options{}); err != nil {
			t.Fatalf("%s restores its push: %v", node, err)
		}
		repotest.AssertSameTree(t, src, filepath.Join(dst, "src"))
		if err := c.Close(); err != nil {
			t.Fatal(err)
		}
		st, err := s.wait()
		if err != nil {
			t.Fatal(err)
		}
		return p, st
	}
	data, trees := countByType(t, r)
	if data != 0 || trees != 0 {
		t.Fatal("the repository is not empty")
	}

	lyra, _ := pushAs(t, "lyra", false, nil)
	data, trees = countByType(t, r)
	chunks := uint64(data)
	if lyra.stats.Sent != uint64(data+trees) {
		t.Fatalf("lyra sent %d blobs, the repository holds %d", lyra.stats.Sent, data+trees)
	}

	// vega's first push of the same files: its trees are new to vega
	// and sent (they are small), every chunk is deduplicated.
	vega, st := pushAs(t, "vega", false, nil)
	snapTrees := uint64(len(treesOf(t, r, vega.res.Tree)))
	if vega.stats.Sent != snapTrees || st.BlobsSent != snapTrees {
		t.Fatalf("vega sent %d blobs (server: %d), want its %d trees and no chunk", vega.stats.Sent, st.BlobsSent, snapTrees)
	}
	if d, _ := countByType(t, r); uint64(d) != chunks {
		t.Fatalf("%d chunks stored after vega's push, want %d", d, chunks)
	}

	// vega again, unchanged, with its first push as parent: every tree
	// of src is vega's own now, and the chunk lists are reused; only the
	// trees above src that other processes changed meanwhile are sent.
	again, _ := pushAs(t, "vega", false, &vega)
	if again.res.Summary.FilesUnchanged != 3 || again.res.Summary.BytesRead != 0 {
		t.Fatalf("the unchanged re-push read files: %+v", again.res.Summary)
	}
	if subtree(t, r, again.res.Tree, src) != subtree(t, r, vega.res.Tree, src) {
		t.Fatal("the unchanged re-push made a different tree for src")
	}
	if want := changedAbove(t, r, src, vega.res.Tree, again.res.Tree); again.stats.Sent != want {
		t.Fatalf("the unchanged re-push sent %d blobs, want %d", again.stats.Sent, want)
	}

	// An isolated node is told nothing: it sends every blob, the
	// repository keeps one copy of each chunk. Its summary's figures,
	// which cairn push takes from these upload stats, count them all.
	iso, _ := pushAs(t, "iso", true, nil)
	isoTrees := uint64(len(treesOf(t, r, iso.res.Tree)))
	if iso.stats.Sent != chunks+isoTrees {
		t.Fatalf("iso sent %d blobs, want %d chunks and %d trees", iso.stats.Sent, chunks, isoTrees)
	}
	if d, _ := countByType(t, r); uint64(d) != chunks {
		t.Fatalf("%d chunks stored after iso's push, want %d", d, chunks)
	}
}

// changedAbove counts the directories above src whose listing differs
// between the snapshots with roots a and b: they hold the metadata of the
// temporary directory's parents (such as /tmp), which other processes
// may change between two pushes.
func changedAbove(t *testing.T, r *repo.Repository, src string, a, b blob.ID) uint64 {
	t.Helper()
	n := uint64(0)
	for dir := path.Dir(filepath.ToSlash(src)); ; dir = path.Dir(dir) {
		if subtree(t, r, a, dir) != subtree(t, r, b, dir) {
			t.Logf("the listing of %s changed between the pushes (another process touched an entry in it)", dir)
			n++
		}
		if dir == "/" {
			return n
		}
	}
}

// countByType counts the data and tree blobs in the index.
func countByType(t *testing.T, r *repo.Repository) (data, trees int) {
	t.Helper()
	if err := r.IndexedBlobs(func(h blob.Handle, _ repo.Location) error {
		if h.Type == blob.Data {
			data++
		} else {
			trees++
		}
		return nil
	}); err != nil {
		t.Fatal(err)
	}
	return data, trees
}

// treesOf returns the distinct trees reachable from root.
func treesOf(t *testing.T, r *repo.Repository, root blob.ID) []blob.ID {
	t.Helper()
	seen := map[blob.ID]bool{}
	var walk func(id blob.ID)
	walk = func(id blob.ID) {
		if seen[id] {
			return
		}
		seen[id] = true
		tr, err := snapfs.LoadTree(t.Context(), r, id)
		if err != nil {
			t.Fatal(err)
		}
		for _, n := range tr.Nodes {
			if n.Type == tree.Dir {
				walk(n.Subtree)
			}
		}
	}
	walk(root)
	out := make([]blob.ID, 0, len(seen))
	for id := range seen {
		out = append(out, id)
	}
	return out
}

// A tree of the node's own snapshots stays its own whichever path the
// commit's walk takes first: here the walk reaches lyra's subtree first
// through a tree lyra sends (lyra neither sent it nor walked it), and only
// then as a subtree of lyra's own root; the snapshot is accepted. The
// same holds for the chunks of an own tree that lyra sends again.
func TestServeOwnTreeWhicheverPathComesFirst(t *testing.T) {
	r := repotest.New(t)
	lyra := pushDirect(t, r, "lyra", map[string]string{"f.txt": "lyra's file"})
	src := subtree(t, r, lyra.Tree, lyra.Paths[0])
	srcBytes, err := r.LoadBlob(t.Context(), blob.Handle{ID: src, Type: blob.Tree}, nil)
	if err != nil {
		t.Fatal(err)
	}
	encode := func(nodes ...tree.Node) []byte {
		b, err := tree.Encode(nil, &tree.Tree{Nodes: nodes})
		if err != nil {
			t.Fatal(err)
		}
		return b
	}
	dir := func(name string, id blob.ID) tree.Node {
		return tree.Node{Name: name, Type: tree.Dir, Mode: 0o755, Subtree: id}
	}
	via := encode(dir("d", src))
	for _, tc := range []struct {
		name string
		send [][]byte // trees sent, the last is the root
	}{
		// The walk takes "b" first (it is a stack).
		{"subtree reached first through a sent tree", [][]byte{via, encode(dir("a", lyra.Tree), dir("b", blob.Hash(via)))}},
		{"own tree sent again, its chunks never walked", [][]byte{srcBytes, encode(dir("a", lyra.Tree), dir("b", src))}},
	} {
		t.Run(tc.name, func(t *testing.T) {
			s := serve(t, r, config(wire.PermPush))
			c := newRawClient(t, s)
			c.hello("lyra")
			c.send(wire.TypeListSnapshots, (&wire.ListSnapshots{Req: 1}).Append(nil))
			if m, err := wire.DecodeSnapshots(c.expect(wire.TypeSnapshots)); err != nil || len(m.Items) == 0 || m.Items[0].ID != lyra.ID {
				t.Fatalf("list: %v %v", m, err)
			}
			for _, b := range tc.send {
				c.putBlob(treeHandle(b), b)
			}
			c.commit(2, record(t, "lyra", blob.Hash(tc.send[len(tc.send)-1])))
			c.send(wire.TypeBye, nil)
			c.expectEOF()
			if _, err := s.wait(); err != nil {
				t.Fatal(err)
			}
		})
	}
}
