package fuse

import (
	"bytes"
	"context"
	"fmt"
	"log/slog"
	"math/rand/v2"
	"strings"
	"sync"
	"syscall"
	"testing"
	"testing/synctest"

	"github.com/cairnbackup/cairn/repo/blob"
	"github.com/cairnbackup/cairn/repo/snapfs"
	"github.com/cairnbackup/cairn/repo/snapshot"
	"github.com/cairnbackup/cairn/repo/tree"
)

// fakeSource serves blobs from memory, counts loads, fails the blobs
// marked bad the way the repository does, and holds loads of gated
// blobs until their gate is closed.
type fakeSource struct {
	mu        sync.Mutex
	blobs     map[blob.ID][]byte
	bad       map[blob.ID]bool
	gates     map[blob.ID]chan struct{}
	loads     map[blob.ID]int
	active    int
	maxActive int
}

func newFakeSource() *fakeSource {
	return &fakeSource{blobs: map[blob.ID][]byte{}, bad: map[blob.ID]bool{}, gates: map[blob.ID]chan struct{}{}, loads: map[blob.ID]int{}}
}

func (s *fakeSource) LoadBlob(ctx context.Context, h blob.Handle, buf []byte) ([]byte, error) {
	s.mu.Lock()
	s.loads[h.ID]++
	s.active++
	s.maxActive = max(s.maxActive, s.active)
	gate := s.gates[h.ID]
	s.mu.Unlock()
	defer func() {
		s.mu.Lock()
		s.active--
		s.mu.Unlock()
	}()
	if gate != nil {
		<-gate
	}
	s.mu.Lock()
	defer s.mu.Unlock()
	if s.bad[h.ID] {
		return buf[:0], fmt.Errorf("pack 1234abcd offset 77: blob %s: authentication failed: %w", h, blob.ErrCorrupt)
	}
	data, ok := s.blobs[h.ID]
	if !ok {
		return buf[:0], fmt.Errorf("blob %s: %w", h, blob.ErrNotFound)
	}
	return append(buf[:0], data...), nil
}

func (s *fakeSource) Snapshots(context.Context) ([]snapshot.Entry, error) { return nil, nil }

func (s *fakeSource) loadCount(id blob.ID) int {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.loads[id]
}

// file stores a file with chunks of the given sizes (negative: a hole
// of that size) and returns its node and contents.
func (s *fakeSource) file(seed uint64, sizes ...int) (*tree.Node, []byte) {
	rng := rand.New(rand.NewPCG(seed, seed))
	n := &tree.Node{Name: "f", Type: tree.File, Mode: 0o644}
	var all []byte
	for _, size := range sizes {
		if size < 0 {
			n.Content = append(n.Content, tree.Chunk{Size: uint64(-size)})
			all = append(all, make([]byte, -size)...)
			continue
		}
		data := make([]byte, size)
		for i := range data {
			data[i] = byte(rng.Uint32())
		}
		id := blob.Hash(data)
		s.blobs[id] = data
		n.Content = append(n.Content, tree.Chunk{ID: id, Size: uint64(size)})
		all = append(all, data...)
	}
	n.Size = uint64(len(all))
	return n, all
}

// testFS is a file system with no mount: enough for handles. The cache
// budget 0 keeps nothing, so every load not served by a handle's window
// reaches the source.
func testFS(src Source, ahead int, logs *bytes.Buffer) *filesys {
	ctx, cancel := context.WithCancel(context.Background())
	return &filesys{ctx: ctx, cancel: cancel, src: src, cache: snapfs.NewCache(src, 0), ahead: ahead,
		log: slog.New(slog.NewTextHandler(logs, nil))}
}

func openTest(t *testing.T, f *filesys, n *tree.Node) *handle {
	t.Helper()
	sf := &snapFile{entry: entry{fsys: f, snap: blob.Hash([]byte("snap")), path: "srv/data/f", node: n}}
	h, err := newHandle(f, &sf.entry, sf.offsets())
	if err != nil {
		t.Fatal(err)
	}
	return h
}

func read(t *testing.T, ctx context.Context, h *handle, off int64, n int) ([]byte, syscall.Errno) {
	t.Helper()
	res, errno := h.Read(ctx, make([]byte, n), off)
	if errno != 0 {
		return nil, errno
	}
	b, _ := res.Bytes(nil)
	return b, 0
}

// A sequential reader gets every chunk loaded exactly once although it
// reads in pieces smaller than a chunk, with up to ReadAhead chunks
// loading ahead of it in parallel.
func TestFuseSequentialReadAhead(t *testing.T) {
	synctest.Test(t, func(t *testing.T) {
		src := newFakeSource()
		var logs bytes.Buffer
		f := testFS(src, 4, &logs)
		node, want := src.file(1, 64<<10, 64<<10, 64<<10, 64<<10, 64<<10, 64<<10, 64<<10, 64<<10, 64<<10, 1000)
		gate := make(chan struct{})
		for _, c := range node.Content[1:5] {
			src.gates[c.ID] = gate
		}
		h := openTest(t, f, node)
		ctx := context.Background()

		got, errno := read(t, ctx, h, 0, 16<<10)
		if errno != 0 || !bytes.Equal(got, want[:16<<10]) {
			t.Fatalf("first read: %v", errno)
		}
		synctest.Wait()
		src.mu.Lock()
		active := src.active
		src.mu.Unlock()
		if active != 4 {
			t.Errorf("%d chunks loading ahead in parallel, want 4", active)
		}
		close(gate)
		synctest.Wait()
		for i, c := range node.Content {
			want := 0
			if i <= 4 {
				want = 1
			}
			if n := src.loadCount(c.ID); n != want {
				t.Errorf("after the first read, chunk %d loaded %d times, want %d", i, n, want)
			}
		}
		var all []byte
		all = append(all, got...)
		for off := int64(len(got)); off < int64(len(want)); off += 16 << 10 {
			got, errno := read(t, ctx, h, off, 16<<10)
			if errno != 0 {
				t.Fatalf("read at %d: %v", off, errno)
			}
			all = append(all, got...)
		}
		if !bytes.Equal(all, want) {
			t.Fatal("sequential read returned different bytes")
		}
		synctest.Wait()
		for i, c := range node.Content {
			if n := src.loadCount(c.ID); n != 1 {
				t.Errorf("chunk %d loaded %d times", i, n)
			}
		}
		if src.maxActive > 5 {
			t.Errorf("%d loads at once; read-ahead 4 plus the reader allow 5", src.maxActive)
		}
		// Past the end: nothing.
		if got, errno := read(t, ctx, h, int64(len(want)), 10); errno != 0 || len(got) != 0 {
			t.Errorf("read past the end: %d bytes, %v", len(got), errno)
		}
		h.Release(ctx)
		if logs.Len() != 0 {
			t.Errorf("logged: %s", logs.String())
		}
	})
}

// A read anywhere loads only the chunks it touches and fetches nothing
// ahead; reading on sequentially from there does.
func TestFuseRandomAccess(t *testing.T) {
	synctest.Test(t, func(t *testing.T) {
		src := newFakeSource()
		var logs bytes.Buffer
		f := testFS(src, 4, &logs)
		node, want := src.file(2, 100, 100, 100, 100, 100, 100, 100, 100, 100, 100)
		h := openTest(t, f, node)
		ctx := context.Background()
		got, errno := read(t, ctx, h, 750, 100) // chunks 7 and 8
		if errno != 0 || !bytes.Equal(got, want[750:850]) {
			t.Fatalf("pread: %v", errno)
		}
		synctest.Wait()
		for i, c := range node.Content {
			want := 0
			if i == 7 || i == 8 {
				want = 1
			}
			if n := src.loadCount(c.ID); n != want {
				t.Errorf("chunk %d loaded %d times, want %d", i, n, want)
			}
		}
		// The next read continues where that one ended: read-ahead of
		// chunk 9 (8 is in the window already).
		if got, errno := read(t, ctx, h, 850, 50); errno != 0 || !bytes.Equal(got, want[850:900]) {
			t.Fatalf("sequential read: %v", errno)
		}
		synctest.Wait()
		if n := src.loadCount(node.Content[9].ID); n != 1 {
			t.Errorf("chunk 9 loaded %d times after a sequential read", n)
		}
		if n := src.loadCount(node.Content[8].ID); n != 1 {
			t.Errorf("chunk 8 loaded %d times", n)
		}
		// Backwards: not sequential, loads only chunk 0.
		if got, errno := read(t, ctx, h, 0, 10); errno != 0 || !bytes.Equal(got, want[:10]) {
			t.Fatalf("read at 0: %v", errno)
		}
		synctest.Wait()
		if n := src.loadCount(node.Content[1].ID); n != 0 {
			t.Errorf("chunk 1 loaded %d times after a backward read", n)
		}
		h.Release(ctx)
	})
}

func TestFuseHolesReadAsZeros(t *testing.T) {
	synctest.Test(t, func(t *testing.T) {
		src := newFakeSource()
		var logs bytes.Buffer
		f := testFS(src, 4, &logs)
		node, want := src.file(3, -1000, 10, -5000, 10, -300)
		h := openTest(t, f, node)
		ctx := context.Background()
		got, errno := read(t, ctx, h, 0, len(want)+100)
		if errno != 0 || !bytes.Equal(got, want) {
			t.Fatalf("read: %v, %d bytes", errno, len(got))
		}
		if !bytes.Equal(got[:1000], make([]byte, 1000)) || !bytes.Equal(got[1010:6010], make([]byte, 5000)) {
			t.Fatal("holes are not zeros")
		}
		synctest.Wait()
		if n := src.loadCount(blob.ID{}); n != 0 {
			t.Fatalf("a hole was loaded %d times", n)
		}
		h.Release(ctx)
	})
}

// A damaged chunk fails the reads that touch it with EIO and is logged
// once with the error naming pack and blob; the rest of the file reads.
func TestFuseDamagedChunk(t *testing.T) {
	synctest.Test(t, func(t *testing.T) {
		src := newFakeSource()
		var logs bytes.Buffer
		f := testFS(src, 2, &logs)
		node, want := src.file(4, 100, 100, 100, 100)
		bad := node.Content[2].ID
		src.bad[bad] = true
		h := openTest(t, f, node)
		ctx := context.Background()
		for off := int64(0); off < 400; off += 50 {
			got, errno := read(t, ctx, h, off, 50)
			inBad := off >= 200 && off < 300
			switch {
			case inBad && errno != syscall.EIO:
				t.Errorf("read at %d in the damaged chunk: %v", off, errno)
			case !inBad && (errno != 0 || !bytes.Equal(got, want[off:off+50])):
				t.Errorf("read at %d: %v", off, errno)
			}
		}
		h.Release(ctx)
		log := logs.String()
		if strings.Count(log, "read failed") != 1 || !strings.Contains(log, "pack 1234abcd") || !strings.Contains(log, "blob data/"+bad.Short()) ||
			!strings.Contains(log, "path=/srv/data/f") || !strings.Contains(log, "count=1") {
			t.Fatalf("log:\n%s", log)
		}
		// A missing blob is an EIO as well.
		delete(src.blobs, node.Content[0].ID)
		h2 := openTest(t, f, node)
		if _, errno := read(t, ctx, h2, 0, 10); errno != syscall.EIO {
			t.Fatalf("missing chunk: %v", errno)
		}
		h2.Release(ctx)
		if !strings.Contains(logs.String(), "not found") {
			t.Fatalf("log:\n%s", logs.String())
		}
	})
}

// Release returns only once the handle's read-ahead loads have ended,
// and the mount's stop waits for those of handles never released.
func TestFuseReleaseWaitsForReadAhead(t *testing.T) {
	synctest.Test(t, func(t *testing.T) {
		src := newFakeSource()
		var logs bytes.Buffer
		f := testFS(src, 3, &logs)
		node, _ := src.file(5, 10, 10, 10, 10, 10)
		gate := make(chan struct{})
		for _, c := range node.Content[1:] {
			src.gates[c.ID] = gate
		}
		h := openTest(t, f, node)
		ctx := context.Background()
		if _, errno := read(t, ctx, h, 0, 10); errno != 0 {
			t.Fatal(errno)
		}
		released := make(chan struct{})
		go func() {
			h.Release(ctx)
			close(released)
		}()
		synctest.Wait()
		select {
		case <-released:
			t.Fatal("Release returned while read-ahead loads were running")
		default:
		}
		close(gate)
		synctest.Wait()
		select {
		case <-released:
		default:
			t.Fatal("Release did not return after the loads ended")
		}

		// A handle never released: stop waits for its loads.
		gate2 := make(chan struct{})
		for _, c := range node.Content[1:] {
			src.gates[c.ID] = gate2
		}
		h2 := openTest(t, f, node)
		if _, errno := read(t, ctx, h2, 0, 10); errno != 0 {
			t.Fatal(errno)
		}
		stopped := make(chan struct{})
		go func() {
			f.stop()
			close(stopped)
		}()
		synctest.Wait()
		select {
		case <-stopped:
			t.Fatal("stop returned while loads were running")
		default:
		}
		close(gate2)
		<-stopped
		// After stop, no read-ahead starts.
		if f.goBackground(func() { t.Error("ran after stop") }) {
			t.Fatal("goBackground after stop")
		}
	})
}

// An interrupted read waiting for a chunk fetched ahead returns EINTR;
// the load goes on, and the next read takes its result.
func TestFuseInterruptedRead(t *testing.T) {
	synctest.Test(t, func(t *testing.T) {
		src := newFakeSource()
		var logs bytes.Buffer
		f := testFS(src, 2, &logs)
		node, want := src.file(6, 10, 10, 10)
		gate := make(chan struct{})
		src.gates[node.Content[1].ID] = gate
		h := openTest(t, f, node)
		if _, errno := read(t, context.Background(), h, 0, 10); errno != 0 {
			t.Fatal(errno)
		}
		ctx, cancel := context.WithCancel(context.Background())
		done := make(chan syscall.Errno)
		go func() {
			_, errno := read(t, ctx, h, 10, 10)
			done <- errno
		}()
		synctest.Wait()
		cancel()
		if errno := <-done; errno != syscall.EINTR {
			t.Fatalf("interrupted read: %v", errno)
		}
		close(gate)
		got, errno := read(t, context.Background(), h, 10, 10)
		if errno != 0 || !bytes.Equal(got, want[10:20]) {
			t.Fatalf("read after the interruption: %v", errno)
		}
		if n := src.loadCount(node.Content[1].ID); n != 1 {
			t.Fatalf("chunk 1 loaded %d times", n)
		}
		h.Release(context.Background())
		if logs.Len() != 0 {
			t.Errorf("an interruption was logged: %s", logs.String())
		}
	})
}

// The window never holds more than ReadAhead+2 chunks, whatever the
// access pattern.
func TestFuseWindowBounded(t *testing.T) {
	synctest.Test(t, func(t *testing.T) {
		src := newFakeSource()
		var logs bytes.Buffer
		f := testFS(src, 2, &logs)
		sizes := make([]int, 50)
		for i := range sizes {
			sizes[i] = 64
		}
		node, want := src.file(7, sizes...)
		h := openTest(t, f, node)
		ctx := context.Background()
		rng := rand.New(rand.NewPCG(1, 2))
		for range 500 {
			off := rng.Int64N(int64(len(want)))
			n := 1 + rng.IntN(200)
			if rng.IntN(2) == 0 {
				h.mu.Lock()
				off = h.next % int64(len(want))
				h.mu.Unlock()
			}
			got, errno := read(t, ctx, h, off, n)
			if errno != 0 || !bytes.Equal(got, want[off:min(off+int64(n), int64(len(want)))]) {
				t.Fatalf("read %d at %d: %v", n, off, errno)
			}
			h.mu.Lock()
			if len(h.slots) > h.window() {
				t.Fatalf("%d slots", len(h.slots))
			}
			h.mu.Unlock()
		}
		h.Release(ctx)
	})
}

func TestFuseReadEOFAndErrors(t *testing.T) {
	src := newFakeSource()
	var logs bytes.Buffer
	f := testFS(src, 1, &logs)
	node, _ := src.file(8, 10)
	h := openTest(t, f, node)
	if _, errno := h.Read(context.Background(), make([]byte, 1), -1); errno != syscall.EINVAL {
		t.Fatalf("negative offset: %v", errno)
	}
	h.Release(context.Background())
}
