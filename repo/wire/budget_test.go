package wire_test

import (
	"bytes"
	"context"
	"math/rand/v2"
	"net"
	"sync"
	"testing"
	"time"

	"github.com/cairnbackup/cairn/repo"
	"github.com/cairnbackup/cairn/repo/blob"
	"github.com/cairnbackup/cairn/repo/pack"
	"github.com/cairnbackup/cairn/repo/repotest"
	"github.com/cairnbackup/cairn/repo/wire"
)

// gatedBackend hands out stores whose SavePrepared reports that it
// started and then waits for the gate.
type gatedBackend struct {
	backend
	started chan blob.Handle
	gate    chan struct{}
}

func (b gatedBackend) Begin() wire.Store {
	return gatedStore{Session: b.R.NewSession(), b: b}
}

type gatedStore struct {
	*repo.Session
	b gatedBackend
}

func (s gatedStore) SavePrepared(ctx context.Context, h blob.Handle, c pack.Compression, payload []byte, rawLen int, scratch []byte) (bool, []byte, error) {
	s.b.started <- h
	<-s.b.gate
	return s.Session.SavePrepared(ctx, h, c, payload, rawLen, scratch)
}

func bigBlob(seed uint64, n int) []byte {
	b := make([]byte, n)
	r := rand.New(rand.NewPCG(seed, seed))
	for i := range b {
		b[i] = byte(r.Uint32())
	}
	return b
}

// Sessions that share a BlobBudget hold at most its bytes of blobs in
// flight between them: each session could hold three of the largest
// blobs, and every node several sessions, and a hostile node sending the
// largest blobs made the appliance's memory grow by gigabytes (found by
// the torture suite). A second large blob is not even read while the
// first is being stored.
func TestServeBlobBudgetIsShared(t *testing.T) {
	t.Parallel() // it watches the second blob not start for 300ms of the real clock
	r := repotest.New(t)
	budget := wire.NewBlobBudget(0) // the minimum: one of the largest frames
	b := gatedBackend{backend: backend{R: r}, started: make(chan blob.Handle, 4), gate: make(chan struct{})}
	sc := config(wire.PermPush)
	sc.Blobs = budget
	// A raw blob costs four times its size: two 60 MiB blobs do not
	// fit in the budget at once.
	blobs := [][]byte{bigBlob(1, 60<<20), bigBlob(2, 60<<20)}
	var wg sync.WaitGroup
	for _, data := range blobs {
		s := serveBackend(t, b, sc)
		c := newRawClient(t, s)
		c.hello("lyra")
		body := (&wire.PutBlob{Handle: dataHandle(data), Compression: wire.CompressionRaw, RawLength: uint32(len(data)), Payload: data}).Append(nil)
		wg.Add(1)
		go func() {
			defer wg.Done()
			// A pipe write blocks until the server reads it all: the
			// second may never be read before the gate opens.
			s.conn.Write(append(header(wire.TypePutBlob, len(body)), body...))
		}()
	}
	first := <-b.started
	select {
	case h := <-b.started:
		t.Fatalf("blob %s started while %s held the budget", h, first)
	case <-time.After(300 * time.Millisecond):
	}
	close(b.gate) // the first is stored and releases its budget
	select {
	case <-b.started:
	case <-time.After(30 * time.Second):
		t.Fatal("the second blob never started")
	}
	wg.Wait()
}

// With a budget, a node that sends the header of a large blob and then
// nothing is still cut off at the idle timeout.
func TestServeIdleTimeoutMidBlob(t *testing.T) {
	t.Parallel() // it waits out the idle timeout on the real clock
	r := repotest.New(t)
	sc := config(wire.PermPush)
	sc.IdleTimeout = 500 * time.Millisecond
	sc.Blobs = wire.NewBlobBudget(0)
	// The blob is made before the session starts: under the race
	// detector making it can take longer than the timeout.
	data := bigBlob(3, 1<<20)
	body := (&wire.PutBlob{Handle: dataHandle(data), Compression: wire.CompressionRaw, RawLength: uint32(len(data)), Payload: data}).Append(nil)
	s := serve(t, r, sc)
	c := newRawClient(t, s)
	c.hello("lyra")
	frame := append(header(wire.TypePutBlob, len(body)), body[:1000]...)
	c.sendBytes(frame)
	done := make(chan error, 1)
	go func() { _, err := s.wait(); done <- err }()
	select {
	case err := <-done:
		if err == nil || err.Error() != "no frame for 500ms: idle timeout" {
			t.Fatalf("serve: %v", err)
		}
	case <-time.After(10 * time.Second):
		t.Fatal("a node stalled inside a blob was not cut off")
	}
}

// serveBackend is serve with another backend.
func serveBackend(t *testing.T, b wire.Backend, sc wire.SessionConfig) *session {
	t.Helper()
	cli, srv := net.Pipe()
	s := &session{conn: cli, srv: &countingConn{Conn: srv}, done: make(chan struct{})}
	go func() {
		defer close(s.done)
		s.stats, s.err = wire.Serve(t.Context(), s.srv, b, sc)
		srv.Close()
	}()
	t.Cleanup(func() {
		cli.Close()
		<-s.done
	})
	return s
}

func header(t wire.Type, n int) []byte {
	return []byte{byte((n + 1) >> 24), byte((n + 1) >> 16), byte((n + 1) >> 8), byte(n + 1), byte(t)}
}

// The idle timeout is on silence: a blob whose bytes arrive steadily but
// take longer than the timeout in all (a slow link) is received whole.
func TestServeSlowBlobIsNotIdle(t *testing.T) {
	t.Parallel() // its blob arrives over two idle timeouts of the real clock
	r := repotest.New(t)
	sc := config(wire.PermPush)
	sc.IdleTimeout = time.Second
	sc.Blobs = wire.NewBlobBudget(0)
	data := bigBlob(4, 1<<20)
	body := (&wire.PutBlob{Handle: dataHandle(data), Compression: wire.CompressionRaw, RawLength: uint32(len(data)), Payload: data}).Append(nil)
	frame := append(header(wire.TypePutBlob, len(body)), body...)
	s := serve(t, r, sc)
	c := newRawClient(t, s)
	c.hello("lyra")
	// Eight pieces a quarter of the timeout apart: two timeouts in all,
	// never silent for one. net.Pipe returns when the server has read.
	piece := len(frame)/8 + 1
	for off := 0; off < len(frame); off += piece {
		if off > 0 {
			time.Sleep(sc.IdleTimeout / 4) // the slowness under test, not synchronisation
		}
		c.sendBytes(frame[off:min(off+piece, len(frame))])
	}
	c.send(wire.TypeBye, nil)
	st, err := s.wait()
	if err != nil || st.BlobsSent != 1 || st.BlobsStored != 1 {
		t.Fatalf("serve: %+v %v", st, err)
	}
	if got, err := r.LoadBlob(t.Context(), dataHandle(data), nil); err != nil || !bytes.Equal(got, data) {
		t.Fatalf("the slow blob was not stored: %v", err)
	}
}
