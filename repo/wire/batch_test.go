package wire_test

import (
	"fmt"
	"net"
	"path/filepath"
	"sync"
	"testing"

	"github.com/cairnbackup/cairn/repo/blob"
	"github.com/cairnbackup/cairn/repo/repotest"
	"github.com/cairnbackup/cairn/repo/restore"
	"github.com/cairnbackup/cairn/repo/wire"
)

// inFlight watches the client's end of the stream: the LoadBlob frames
// it writes, the Blob and StoredBlob frames it reads, and the most requests written
// whose reply had not been read yet.
type inFlight struct {
	net.Conn
	mu   sync.Mutex
	out  countingConn // scans what the client writes
	in   countingConn // scans what it reads
	most int
}

func (f *inFlight) Write(p []byte) (int, error) {
	f.mu.Lock()
	f.out.scan(p)
	f.most = max(f.most, f.out.counts[wire.TypeLoadBlob]-f.in.counts[wire.TypeBlob]-f.in.counts[wire.TypeStoredBlob])
	f.mu.Unlock()
	return f.Conn.Write(p)
}

func (f *inFlight) Read(p []byte) (int, error) {
	n, err := f.Conn.Read(p)
	f.mu.Lock()
	f.in.scan(p[:n])
	f.mu.Unlock()
	return n, err
}

// A restore through the client (restore --from) reads ahead across
// files: the client is a BatchLoader, so the restore's planner hands it
// batches, and LoadBlobs writes a batch's requests at once instead of
// one request per round trip (a restore of one-chunk files once kept one
// or two requests in flight while the appliance waited for the next).
func TestClientLoadBlobsPipelined(t *testing.T) {
	r := repotest.New(t)
	src := filepath.Join(t.TempDir(), "src")
	const files = 300
	tree := map[string]string{}
	var hs []blob.Handle
	for i := range files {
		data := fmt.Sprintf("file %d\n", i)
		tree[fmt.Sprintf("d%d/f%03d", i%3, i)] = data
		hs = append(hs, blob.Handle{ID: blob.Hash([]byte(data)), Type: blob.Data})
	}
	repotest.WriteTree(t, src, tree)
	pushed := push(t, dial(t, serve(t, r, config(wire.PermPush))), src, nil)

	s := serve(t, r, config(wire.PermRead))
	conn := &inFlight{Conn: s.conn}
	c, err := wire.Dial(t.Context(), conn, "cairn test", "lyra")
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { c.Close() })
	if !c.BatchReads() {
		t.Fatal("the client does not ask for batches")
	}
	if _, err := c.ListSnapshots(t.Context(), ""); err != nil {
		t.Fatal(err)
	}
	dst := t.TempDir()
	res, err := restore.Run(t.Context(), c, pushed.res.Tree, src, dst, restore.Options{})
	if err != nil {
		t.Fatal(err)
	}
	repotest.AssertSameTree(t, src, filepath.Join(dst, "src"))
	if res.Files != files {
		t.Fatalf("restored %d files, want %d", res.Files, files)
	}

	// Every request of a batch is written before the first reply is read.
	conn.mu.Lock()
	conn.most = 0
	sent := conn.out.counts[wire.TypeLoadBlob]
	conn.mu.Unlock()
	got := make([]string, files)
	err = c.LoadBlobs(t.Context(), hs, func(i int, data []byte, err error) {
		if err != nil {
			t.Errorf("blob %d: %v", i, err)
		}
		got[i] = string(data)
	})
	if err != nil {
		t.Fatal(err)
	}
	for i := range files {
		if want := fmt.Sprintf("file %d\n", i); got[i] != want {
			t.Fatalf("blob %d: %q, want %q", i, got[i], want)
		}
	}
	conn.mu.Lock()
	defer conn.mu.Unlock()
	if n := conn.out.counts[wire.TypeLoadBlob] - sent; n != files || conn.most != files {
		t.Fatalf("LoadBlobs of %d blobs: %d requests, at most %d in flight; want %d and %d", files, n, conn.most, files, files)
	}
}
