package repo_test

import (
	"context"
	"errors"
	"io"
	"math/rand/v2"
	"strconv"
	"sync"
	"testing"

	"golang.org/x/sync/errgroup"

	"github.com/cairnbackup/cairn/repo"
	"github.com/cairnbackup/cairn/repo/blob"
	"github.com/cairnbackup/cairn/repo/repotest"
	"github.com/cairnbackup/cairn/repo/storage"
)

// gatedPacks holds every pack Put until the test lets it go on, and
// fails it with fail if set.
type gatedPacks struct {
	storage.Backend
	started chan string   // a pack's name as its Put begins
	release chan struct{} // one receive lets one pack Put go on
	fail    error
}

func (g *gatedPacks) Put(ctx context.Context, h storage.Handle, r io.Reader) error {
	if h.Kind != storage.Packs {
		return g.Backend.Put(ctx, h, r)
	}
	g.started <- h.Name
	<-g.release
	if g.fail != nil {
		return g.fail
	}
	return g.Backend.Put(ctx, h, r)
}

func gate(t *testing.T, r *repo.Repository, fail error) *gatedPacks {
	g := &gatedPacks{started: make(chan string, 16), release: make(chan struct{}), fail: fail}
	repo.WrapBackend(r, func(be storage.Backend) storage.Backend {
		g.Backend = be
		return g
	})
	return g
}

func randomBlobs(n, size int, seed uint64) [][]byte {
	rng := rand.New(rand.NewPCG(seed, 7))
	out := make([][]byte, n)
	for i := range out {
		out[i] = make([]byte, size)
		for j := range out[i] {
			out[i][j] = byte(rng.Uint32())
		}
	}
	return out
}

// A full pack is written behind the worker that filled it: SaveBlob
// returns while the pack's Put is still held, its blobs are known to the
// session (not stored twice) but not indexed, and Flush waits for the
// write and indexes them.
func TestSessionWritesPacksBehind(t *testing.T) {
	r := repotest.Open(t, repotest.Init(t, repotest.Options())) // 1 MiB packs
	g := gate(t, r, nil)
	s := r.NewSession()
	blobs := randomBlobs(6, 200<<10, 1) // five fill a pack; the sixth begins the next
	var ids []blob.ID
	for _, b := range blobs {
		id, added, err := s.SaveBlob(t.Context(), blob.Data, b)
		if err != nil || !added {
			t.Fatalf("SaveBlob: added %v, %v", added, err)
		}
		ids = append(ids, id)
	}
	// Every SaveBlob returned, the first pack's Put has begun and is held.
	<-g.started
	for _, id := range ids[:5] {
		h := blob.Handle{ID: id, Type: blob.Data}
		if known, err := s.Known(h); !known || err != nil {
			t.Fatalf("blob %s in the pack being written: known %v, %v", id.Short(), known, err)
		}
		if _, ok, err := r.Lookup(h); ok || err != nil {
			t.Fatalf("blob %s indexed before its pack is stored (%v)", id.Short(), err)
		}
		if _, added, err := s.SaveBlob(t.Context(), blob.Data, blobs[0]); added || err != nil {
			t.Fatalf("a blob being written saved again: added %v, %v", added, err)
		}
	}
	flushed := make(chan error)
	go func() { flushed <- s.Flush(t.Context()) }()
	g.release <- struct{}{} // the first pack
	<-g.started             // the sixth blob's pack, written by Flush
	g.release <- struct{}{}
	if err := <-flushed; err != nil {
		t.Fatal(err)
	}
	for _, id := range ids {
		if _, ok, err := r.Lookup(blob.Handle{ID: id, Type: blob.Data}); !ok || err != nil {
			t.Fatalf("blob %s not indexed after Flush (%v)", id.Short(), err)
		}
	}
	if st := s.Stats(); st.Packs != 2 {
		t.Errorf("%d packs written, want 2", st.Packs)
	}
	s.Abort()
}

// A pack write that fails fails the session: the next SaveBlob and
// Flush return its error, and nothing of the pack is indexed.
func TestSessionPackWriteFails(t *testing.T) {
	r := repotest.Open(t, repotest.Init(t, repotest.Options()))
	injected := errors.New("injected: no space left on device")
	g := gate(t, r, injected)
	s := r.NewSession()
	blobs := randomBlobs(7, 200<<10, 2)
	for _, b := range blobs[:6] {
		if _, _, err := s.SaveBlob(t.Context(), blob.Data, b); err != nil {
			t.Fatal(err)
		}
	}
	name := <-g.started
	g.release <- struct{}{}
	want := "pack " + name[:8] + ": " + injected.Error()
	if err := s.Flush(t.Context()); !errors.Is(err, injected) || err.Error() != want {
		t.Errorf("Flush after the failed write: %v, want %s", err, want)
	}
	if _, _, err := s.SaveBlob(t.Context(), blob.Data, blobs[6]); !errors.Is(err, injected) || err.Error() != want {
		t.Errorf("SaveBlob after the failed write: %v, want %s", err, want)
	}
	if n, err := countPacks(r); n != 0 || err != nil {
		t.Errorf("%d packs indexed (%v), want none", n, err)
	}
	s.Abort()
}

// Abort waits for the pack writes in flight: once it returns nothing of
// the session touches the repository, which may then be closed.
func TestSessionAbortWaitsForWrites(t *testing.T) {
	r := repotest.Open(t, repotest.Init(t, repotest.Options()))
	g := gate(t, r, nil)
	s := r.NewSession()
	for _, b := range randomBlobs(6, 200<<10, 3) {
		if _, _, err := s.SaveBlob(t.Context(), blob.Data, b); err != nil {
			t.Fatal(err)
		}
	}
	name := <-g.started
	aborted := make(chan struct{})
	go func() {
		s.Abort()
		close(aborted)
	}()
	select {
	case <-aborted:
		t.Fatal("Abort returned while a pack write was held")
	case g.release <- struct{}{}:
	}
	<-aborted
	if n, err := countPacks(r); n != 1 || err != nil {
		t.Errorf("%d packs indexed (%v), want pack %s", n, err, name[:8])
	}
}

// typeOf alternates data and tree blobs, so that a session has an open
// pack of each type.
func typeOf(i int) blob.Type {
	if i%2 == 0 {
		return blob.Data
	}
	return blob.Tree
}

func countPacks(r *repo.Repository) (int, error) {
	n := 0
	err := r.PackRecords(func(repo.PackRecord) error { n++; return nil })
	return n, err
}

// Workers adding at once while pack writes hold them back, and Flushes
// meanwhile, lose nothing: every blob SaveBlob took is indexed after
// Flush (a worker that waited for a write once opened a second pack over
// one another worker had filled meanwhile, whose blobs were then never
// written; a Flush that waited could drop a pack opened meanwhile).
func TestSessionConcurrentAddsAllStored(t *testing.T) {
	r := repotest.Open(t, repotest.Init(t, repotest.Options())) // 1 MiB packs
	s := r.NewSession()
	const workers, each = 4, 40
	var ids [workers][]blob.ID
	var g errgroup.Group
	// Flushes meanwhile, as a push's commit may: each takes the open
	// packs while the workers go on opening new ones.
	stop := make(chan struct{})
	flushed := make(chan error)
	go func() {
		for {
			select {
			case <-stop:
				flushed <- nil
				return
			default:
			}
			if err := s.Flush(t.Context()); err != nil {
				flushed <- err
				return
			}
		}
	}()
	for w := range workers {
		g.Go(func() error {
			for i, b := range randomBlobs(each, 100<<10, uint64(10+w)) {
				id, _, err := s.SaveBlob(t.Context(), typeOf(i), b)
				if err != nil {
					return err
				}
				ids[w] = append(ids[w], id)
			}
			return nil
		})
	}
	if err := g.Wait(); err != nil {
		t.Fatal(err)
	}
	close(stop)
	if err := <-flushed; err != nil {
		t.Fatal(err)
	}
	if err := s.Flush(t.Context()); err != nil {
		t.Fatal(err)
	}
	defer s.Abort()
	for w := range workers {
		for i, id := range ids[w] {
			if _, ok, err := r.Lookup(blob.Handle{ID: id, Type: typeOf(i)}); !ok || err != nil {
				t.Fatalf("blob %s saved by worker %d is not indexed (%v)", id.Short(), w, err)
			}
		}
	}
	if st := s.Stats(); st.BlobsAdded != workers*each {
		t.Errorf("%d blobs added, want %d", st.BlobsAdded, workers*each)
	}
}

// Abort waits for a full pack still waiting for its turn to be written,
// not only for the writes under way: once Abort has returned, both full
// packs are stored and indexed and nothing of the session writes any
// more (Abort returned as soon as the first write ended, and the second
// went on behind it).
func TestSessionAbortWaitsForWaitingPacks(t *testing.T) {
	r := repotest.Open(t, repotest.Init(t, repotest.Options())) // 1 MiB packs, one write at a time to a directory
	g := gate(t, r, nil)
	waiting := make(chan struct{})
	var once sync.Once
	repo.OnPackWriteWait(t, func() { once.Do(func() { close(waiting) }) })
	s := r.NewSession()
	blobs := randomBlobs(11, 200<<10, 4) // the sixth and the eleventh each close a full pack
	worker := make(chan error)
	go func() {
		for _, b := range blobs {
			if _, _, err := s.SaveBlob(t.Context(), blob.Data, b); err != nil {
				worker <- err
				return
			}
		}
		worker <- nil
	}()
	first := <-g.started // the first pack's write, held
	<-waiting            // the second full pack waits for its turn
	aborted := make(chan struct{})
	go func() {
		s.Abort()
		close(aborted)
	}()
	g.release <- struct{}{}
	second := <-g.started
	select {
	case <-aborted:
		t.Fatal("Abort returned while the second pack was being written")
	case g.release <- struct{}{}:
	}
	<-aborted
	// The eleventh blob, which waited for the second pack's write to
	// begin the next, comes after Abort.
	if err := <-worker; err == nil || err.Error() != "session: add after commit or abort" {
		t.Fatalf("the worker's last SaveBlob: %v, want the session's end", err)
	}
	if n := repo.PackWrites(s); n != 0 {
		t.Fatalf("%d pack writes left after Abort returned", n)
	}
	if n, err := countPacks(r); n != 2 || err != nil {
		t.Errorf("%d packs indexed (%v), want %s and %s", n, err, first[:8], second[:8])
	}
}

// A data pack is written before its header would not fit in the buffer
// it is built in: packs of many small blobs need more header than the
// buffer's reserve (4096 entries), and growing the buffer copied the
// whole pack and dropped the buffer instead of reusing it (0.4 s of
// copies and as much of fresh allocations in a push of the peers tree).
func TestDataPacksFitTheirBuffer(t *testing.T) {
	r := repotest.New(t)
	s := r.NewSession()
	for i := range 30000 {
		if _, _, err := s.SaveBlob(t.Context(), blob.Data, []byte("tiny "+strconv.Itoa(i))); err != nil {
			t.Fatal(err)
		}
	}
	packs := flushedPacks(t, r, s)
	if len(packs) < 2 {
		t.Fatalf("%d packs: the test wants packs with more entries than the reserve", len(packs))
	}
	for id, size := range packs {
		if size > int64(r.PackBufferSize()) {
			t.Errorf("pack %s is %d bytes, more than its buffer's %d", id.Short(), size, r.PackBufferSize())
		}
	}
}

// flushedPacks flushes s and returns the packs r stores, by ID, with
// their sizes.
func flushedPacks(tb testing.TB, r *repo.Repository, s *repo.Session) map[blob.ID]int64 {
	tb.Helper()
	if err := s.Flush(tb.Context()); err != nil {
		tb.Fatal(err)
	}
	packs, err := r.StoredPacks(tb.Context())
	if err != nil {
		tb.Fatal(err)
	}
	return packs
}
