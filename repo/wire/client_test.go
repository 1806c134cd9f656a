package wire_test

import (
	"errors"
	"fmt"
	"math/rand/v2"
	"path"
	"path/filepath"
	"slices"
	"testing"
	"time"

	"github.com/cairnbackup/cairn/chunker"
	"github.com/cairnbackup/cairn/repo"
	"github.com/cairnbackup/cairn/repo/backup"
	"github.com/cairnbackup/cairn/repo/blob"
	"github.com/cairnbackup/cairn/repo/pack"
	"github.com/cairnbackup/cairn/repo/repotest"
	"github.com/cairnbackup/cairn/repo/restore"
	"github.com/cairnbackup/cairn/repo/snapfs"
	"github.com/cairnbackup/cairn/repo/snapshot"
	"github.com/cairnbackup/cairn/repo/wire"
)

// dial connects the real client to s as node lyra; the client is closed
// at cleanup if the test did not close it.
func dial(t *testing.T, s *session) *wire.Client {
	t.Helper()
	c, err := wire.Dial(t.Context(), s.conn, "cairn test", "lyra")
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { c.Close() })
	return c
}

// remoteError checks that err is the server's Error with this code and
// message.
func remoteError(t *testing.T, err error, code wire.ErrorCode, msg string) {
	t.Helper()
	var m *wire.ErrorMsg
	if !errors.As(err, &m) {
		t.Fatalf("got %v, want a remote error (%s) %q", err, code, msg)
	}
	if m.Code != code || m.Message != msg {
		t.Fatalf("remote error (%s) %q, want (%s) %q", m.Code, m.Message, code, msg)
	}
}

type pushed struct {
	id    blob.ID
	rec   []byte
	res   *backup.Result
	stats wire.UploadStats
}

// push backs up src through the client and commits the snapshot, the way
// cairn push does.
func push(t *testing.T, c *wire.Client, src string, parent *pushed) pushed {
	t.Helper()
	w := c.Welcome()
	o := backup.Options{
		Params: chunker.Params{Min: int(w.ChunkMin), Avg: int(w.ChunkAvg), Max: int(w.ChunkMax)},
		Table:  chunker.NewTable(w.ChunkerSeed),
		Loader: c,
	}
	sn := &snapshot.Snapshot{Version: snapshot.Version, Time: time.Now(), Node: w.Node, Plan: "docs", Paths: []string{src}}
	if parent != nil {
		o.Parent = parent.res.Tree
		sn.Parent = &parent.id
	}
	up := c.NewUploader(pack.LevelFastest)
	res, err := backup.Run(t.Context(), up, []string{src}, o)
	if err != nil {
		up.Close()
		t.Fatal(err)
	}
	if err := up.Flush(t.Context()); err != nil {
		up.Close()
		t.Fatal(err)
	}
	up.Close()
	sn.Tree, sn.Summary = res.Tree, res.Summary
	rec, want, err := snapshot.Encode(sn)
	if err != nil {
		t.Fatal(err)
	}
	id, err := c.Commit(t.Context(), rec)
	if err != nil {
		t.Fatal(err)
	}
	if id != want {
		t.Fatalf("committed %s, the record's id is %s", id, want)
	}
	return pushed{id: id, rec: rec, res: res, stats: up.Stats()}
}

func countBlobs(t *testing.T, r *repo.Repository) int {
	t.Helper()
	n := 0
	if err := r.IndexedBlobs(func(blob.Handle, repo.Location) error { n++; return nil }); err != nil {
		t.Fatal(err)
	}
	return n
}

// subtree returns the ID of the tree listing directory p in the snapshot
// with root tree root.
func subtree(t *testing.T, r *repo.Repository, root blob.ID, p string) blob.ID {
	t.Helper()
	if p == "/" {
		return root
	}
	n, err := snapfs.Lookup(t.Context(), r, root, p)
	if err != nil {
		t.Fatal(err)
	}
	return n.Subtree
}

// A push through the real client stores a snapshot that restores to the
// source, both from the repository and back through the client; a second
// push with the first as parent sends no blob (but for trees above src
// that other processes changed meanwhile).
func TestClientPushAndRestore(t *testing.T) {
	r := repotest.New(t)
	// Every directory is made before the first push: the root tree holds
	// the metadata of src's parents, which must not change between pushes.
	src := filepath.Join(t.TempDir(), "src")
	fromRepo, fromClient := t.TempDir(), t.TempDir()
	big := make([]byte, 700<<10) // several chunks of 16 to 256 KiB
	rng := rand.NewChaCha8([32]byte{1})
	rng.Read(big)
	repotest.WriteTree(t, src, map[string]string{
		"a.txt": "alpha", "empty": "", "d/b.txt": "bravo", "d/e/": "", "d/big": string(big), "d/big-again": string(big),
	})

	s := serve(t, r, config(wire.PermPush|wire.PermRead))
	c := dial(t, s)
	w := c.Welcome()
	p := r.ChunkerParams()
	want := wire.Welcome{Version: wire.Version, Node: "lyra", Perms: wire.PermPush | wire.PermRead, Repo: r.Config().ID,
		ChunkMin: uint32(p.Min), ChunkAvg: uint32(p.Avg), ChunkMax: uint32(p.Max), ChunkerSeed: r.ChunkerSeed(),
		MaxBatch: 64, MaxInflight: 8}
	if w != want {
		t.Fatalf("welcome\n %+v\nwant %+v", w, want)
	}
	if *chunker.NewTable(w.ChunkerSeed) != *r.ChunkerTable() {
		t.Fatal("the welcome's chunker seed does not give the repository's gear table")
	}

	first := push(t, c, src, nil)
	list, err := r.Snapshots(t.Context(), snapshot.Filter{})
	if err != nil {
		t.Fatal(err)
	}
	if len(list) != 1 || list[0].ID != first.id || list[0].Node != "lyra" || list[0].Tree != first.res.Tree {
		t.Fatalf("snapshots %+v, want %s", list, first.id)
	}
	if rec, _, _ := snapshot.Encode(list[0].Snapshot); string(rec) != string(first.rec) {
		t.Fatalf("stored record %s, want %s", rec, first.rec)
	}
	// The repository was empty: it now holds exactly the blobs sent, and
	// the duplicate file was sent once.
	if n := countBlobs(t, r); first.stats.Sent == 0 || uint64(n) != first.stats.Sent || first.stats.Blobs <= first.stats.Sent {
		t.Fatalf("%d blobs in the repository, upload stats %+v", n, first.stats)
	}

	items, err := c.ListSnapshots(t.Context(), "docs")
	if err != nil {
		t.Fatal(err)
	}
	if len(items) != 1 || items[0].ID != first.id || string(items[0].Record) != string(first.rec) {
		t.Fatalf("list-snapshots %+v", items)
	}
	second := push(t, c, src, &first)
	if second.res.Summary.FilesUnchanged != 5 || second.res.Summary.BytesRead != 0 {
		t.Fatalf("second push read files: %+v", second.res.Summary)
	}
	// src's subtree is the parent's. The trees above it hold the metadata
	// of the temporary directory's parents (such as /tmp), which other
	// processes may change between the pushes: each tree that changed
	// this way is new and must be sent; nothing else may be.
	if subtree(t, r, second.res.Tree, src) != subtree(t, r, first.res.Tree, src) {
		t.Fatal("the second push made a different tree for src")
	}
	wantSent := uint64(0)
	for dir := path.Dir(filepath.ToSlash(src)); ; dir = path.Dir(dir) {
		if subtree(t, r, second.res.Tree, dir) != subtree(t, r, first.res.Tree, dir) {
			t.Logf("the listing of %s changed between the pushes (another process touched an entry in it)", dir)
			wantSent++
		}
		if dir == "/" {
			break
		}
	}
	if second.stats.Sent != wantSent || second.stats.Blobs == 0 {
		t.Fatalf("second push: upload stats %+v, want %d sent", second.stats, wantSent)
	}

	if _, err := restore.Run(t.Context(), r, first.res.Tree, src, fromRepo, restore.Options{}); err != nil {
		t.Fatal(err)
	}
	// Through the client: it may load the trees of the snapshots it
	// committed and, with read permission, their data.
	if _, err := restore.Run(t.Context(), c, second.res.Tree, src, fromClient, restore.Options{}); err != nil {
		t.Fatal(err)
	}
	repotest.AssertSameTree(t, src, filepath.Join(fromRepo, "src"))
	repotest.AssertSameTree(t, src, filepath.Join(fromClient, "src"))

	if err := c.Close(); err != nil {
		t.Fatal(err)
	}
	st, err := s.wait()
	if err != nil {
		t.Fatal(err)
	}
	sent := first.stats.Sent + second.stats.Sent
	if !slices.Equal(st.Snapshots, []blob.ID{first.id, second.id}) || st.BlobsSent != sent || st.BlobsStored != sent ||
		st.BytesSent != first.stats.BytesSent+second.stats.BytesSent {
		t.Fatalf("push stats %+v, upload stats %+v and %+v", st, first.stats, second.stats)
	}
}

// A node lists and loads only what belongs to its own snapshots; data
// only with read permission; and it commits only snapshots of its own.
func TestClientPermissions(t *testing.T) {
	r := repotest.New(t)
	lyra := pushDirect(t, r, "lyra", map[string]string{"f": "lyra's file"})
	vega := pushDirect(t, r, "vega", map[string]string{"f": "vega's file"})
	lyraRec, _, err := snapshot.Encode(lyra.Snapshot)
	if err != nil {
		t.Fatal(err)
	}
	vegaRoot := blob.Handle{ID: vega.Tree, Type: blob.Tree}
	lyraFile := path.Join(filepath.ToSlash(lyra.Paths[0]), "f")

	// fileChunk walks from the node's only snapshot down to its file,
	// through the client, and returns the file's one chunk.
	fileChunk := func(t *testing.T, c *wire.Client) blob.Handle {
		t.Helper()
		items, err := c.ListSnapshots(t.Context(), "")
		if err != nil {
			t.Fatal(err)
		}
		if len(items) != 1 || items[0].ID != lyra.ID || string(items[0].Record) != string(lyraRec) {
			t.Fatalf("list-snapshots %+v, want lyra's only", items)
		}
		n, err := snapfs.Lookup(t.Context(), c, lyra.Tree, lyraFile)
		if err != nil {
			t.Fatal(err)
		}
		if len(n.Content) != 1 {
			t.Fatalf("file node %+v", n)
		}
		return blob.Handle{ID: n.Content[0].ID, Type: blob.Data}
	}

	t.Run("others' trees", func(t *testing.T) {
		s := serve(t, r, config(wire.PermPush))
		c := dial(t, s)
		fileChunk(t, c)
		_, err := c.LoadBlob(t.Context(), vegaRoot, nil)
		msg := fmt.Sprintf("blob %s is not part of node lyra's snapshots", vegaRoot)
		remoteError(t, err, wire.CodePermissionDenied, msg)
		if _, err := s.wait(); err == nil || err.Error() != msg {
			t.Fatalf("serve: %v", err)
		}
		// The session is over: later calls get the same error.
		_, err = c.ListSnapshots(t.Context(), "")
		remoteError(t, err, wire.CodePermissionDenied, msg)
	})

	t.Run("data without read", func(t *testing.T) {
		s := serve(t, r, config(wire.PermPush))
		c := dial(t, s)
		h := fileChunk(t, c)
		_, err := c.LoadBlob(t.Context(), h, nil)
		remoteError(t, err, wire.CodePermissionDenied, "node lyra may not load data blobs: it needs the read permission")
	})

	t.Run("data with read", func(t *testing.T) {
		s := serve(t, r, config(wire.PermRead))
		c := dial(t, s)
		h := fileChunk(t, c)
		b, err := c.LoadBlob(t.Context(), h, nil)
		if err != nil || string(b) != "lyra's file" {
			t.Fatalf("load %s: %q, %v", h, b, err)
		}
		// Still not vega's tree.
		_, err = c.LoadBlob(t.Context(), vegaRoot, nil)
		remoteError(t, err, wire.CodePermissionDenied, fmt.Sprintf("blob %s is not part of node lyra's snapshots", vegaRoot))
	})

	t.Run("admin", func(t *testing.T) {
		s := serve(t, r, config(wire.PermAdmin))
		c := dial(t, s)
		items, err := c.ListSnapshots(t.Context(), "")
		if err != nil {
			t.Fatal(err)
		}
		if len(items) != 2 || items[0].ID != lyra.ID || items[1].ID != vega.ID {
			t.Fatalf("admin lists %+v", items)
		}
		if _, err := c.LoadBlob(t.Context(), vegaRoot, nil); err != nil {
			t.Fatal(err)
		}
	})

	t.Run("commit for another node", func(t *testing.T) {
		before := repoState(t, r)
		s := serve(t, r, config(wire.PermPush|wire.PermRead))
		c := dial(t, s)
		_, err := c.Commit(t.Context(), record(t, "vega", lyra.Tree))
		remoteError(t, err, wire.CodePermissionDenied, "node lyra may not commit a snapshot of node vega")
		if _, err := s.wait(); err == nil {
			t.Fatal("serve: no error")
		}
		assertState(t, r, before)
	})
}

// A snapshot whose trees refer to a blob the repository does not have is
// refused with Error 3 naming the blob, and not stored. The node here is
// an admin, which may reference any blob: for other nodes a blob they
// neither sent nor own nor were told of is refused before its existence
// is looked at (trust_test.go).
func TestClientCommitIncomplete(t *testing.T) {
	sent := []byte("a chunk that is sent")
	missing := []byte("a chunk that is never sent")
	dir := fileTree(t, sent, missing)
	for _, tc := range []struct {
		name    string
		blobs   map[blob.Type][]byte
		missing blob.Handle
	}{
		{"data", map[blob.Type][]byte{blob.Data: sent, blob.Tree: dir}, dataHandle(missing)},
		{"tree", map[blob.Type][]byte{blob.Data: sent}, treeHandle(dir)},
	} {
		t.Run(tc.name, func(t *testing.T) {
			r := repotest.New(t)
			s := serve(t, r, config(wire.PermPush|wire.PermAdmin))
			c := dial(t, s)
			up := c.NewUploader(pack.LevelFastest)
			for typ, b := range tc.blobs {
				if _, _, err := up.SaveBlob(t.Context(), typ, b); err != nil {
					t.Fatal(err)
				}
			}
			if err := up.Flush(t.Context()); err != nil {
				t.Fatal(err)
			}
			up.Close()
			if st := up.Stats(); st.Sent != uint64(len(tc.blobs)) {
				t.Fatalf("upload stats %+v", st)
			}
			_, err := c.Commit(t.Context(), record(t, "lyra", blob.Hash(dir)))
			msg := fmt.Sprintf("the snapshot refers to blob %s, which the repository does not have; push again with --force-read", tc.missing)
			remoteError(t, err, wire.CodeNotFound, msg)
			if _, err := s.wait(); err == nil || err.Error() != msg {
				t.Fatalf("serve: %v", err)
			}
			// The blobs sent were flushed to make the check, but there is
			// no snapshot.
			if got := repoState(t, r); len(got.snapshots) != 0 || len(got.blobs) != len(tc.blobs) {
				t.Fatalf("snapshots %v, %d blobs", got.snapshots, len(got.blobs))
			}
		})
	}
}

// The uploader asks about as many queued blobs per have-blobs question as
// MaxBatch allows, not one question per blob. The test holds the batcher
// until every blob is queued (the uploader's queue holds 1024), so the
// questions it finds to ask are exactly full ones and the rest.
func TestClientUploaderBatches(t *testing.T) {
	r := repotest.New(t)
	const n, maxBatch = 1000, 256
	sc := config(wire.PermPush)
	sc.MaxBatch = maxBatch
	s := serve(t, r, sc)
	c := dial(t, s)
	release := make(chan struct{})
	wire.SetTestHookBatcherStart(func() { <-release })
	t.Cleanup(func() { wire.SetTestHookBatcherStart(nil) })
	up := c.NewUploader(pack.LevelFastest)
	chunks := make([][]byte, n)
	for i := range chunks {
		chunks[i] = fmt.Appendf(nil, "chunk %d of the batching test", i)
		if _, added, err := up.SaveBlob(t.Context(), blob.Data, chunks[i]); err != nil || !added {
			t.Fatalf("save %d: %v %v", i, added, err)
		}
	}
	dir := fileTree(t, chunks...)
	if _, _, err := up.SaveBlob(t.Context(), blob.Tree, dir); err != nil {
		t.Fatal(err)
	}
	close(release)
	if err := up.Flush(t.Context()); err != nil {
		t.Fatal(err)
	}
	up.Close()
	if _, err := c.Commit(t.Context(), record(t, "lyra", blob.Hash(dir))); err != nil {
		t.Fatal(err)
	}
	if err := c.Close(); err != nil {
		t.Fatal(err)
	}
	st, err := s.wait()
	if err != nil {
		t.Fatal(err)
	}
	if us := up.Stats(); us.Blobs != n+1 || us.Sent != n+1 || st.BlobsStored != n+1 {
		t.Fatalf("upload stats %+v, push stats %+v", us, st)
	}
	// Questions go out concurrently (MaxInflight of them), so the server
	// may see them in any order.
	batches := s.srv.haveBatches()
	slices.Sort(batches)
	if want := []int{233, 256, 256, 256}; !slices.Equal(batches, want) || s.srv.count(wire.TypeHaveBlobs) != len(want) {
		t.Errorf("have-blobs questions of %v handles in %d frames, want %v", batches, s.srv.count(wire.TypeHaveBlobs), want)
	}
	if put := s.srv.count(wire.TypePutBlob); put != n+1 {
		t.Fatalf("%d put-blob frames, want %d", put, n+1)
	}
	hs := make([]blob.Handle, n)
	for i, b := range chunks {
		hs[i] = dataHandle(b)
	}
	has, err := r.HasBlobs(hs)
	if err != nil {
		t.Fatal(err)
	}
	if i := slices.Index(has, false); i >= 0 {
		t.Fatalf("chunk %d is not in the repository", i)
	}
}
