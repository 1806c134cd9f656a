package wire_test

import (
	"context"
	"errors"
	"net"
	"testing"
	"testing/synctest"
	"time"

	"github.com/cairnbackup/cairn/repo/blob"
	"github.com/cairnbackup/cairn/repo/pack"
	"github.com/cairnbackup/cairn/repo/wire"
)

// fakeServer is the server end of a net.Pipe, played by the test frame by
// frame. Everything runs in a synctest bubble, so the client's silence
// timer runs on the bubble's clock and a server that never answers costs
// no real time.
type fakeServer struct {
	t    *testing.T
	conn net.Conn
	r    *wire.Reader
	w    *wire.Writer
}

func newFakeServer(t *testing.T) (*fakeServer, net.Conn) {
	cli, srv := net.Pipe()
	t.Cleanup(func() { cli.Close(); srv.Close() })
	return &fakeServer{t: t, conn: srv, r: wire.NewReader(srv), w: wire.NewWriter(srv)}, cli
}

// next reads one frame of type want.
func (f *fakeServer) next(want wire.Type) []byte {
	t, body, err := f.r.Next(nil)
	if err != nil || t != want {
		f.t.Errorf("fake server: got %s (%v), want %s", t, err, want)
		return nil
	}
	return body
}

func (f *fakeServer) send(t wire.Type, body []byte) {
	if err := f.w.WriteFrame(t, body); err == nil {
		f.w.Flush()
	}
}

// welcome reads the Hello and answers it.
func (f *fakeServer) welcome() {
	f.next(wire.TypeHello)
	f.send(wire.TypeWelcome, (&wire.Welcome{Version: wire.Version, Node: "lyra", Perms: wire.PermPush,
		ChunkMin: 16 << 10, ChunkAvg: 64 << 10, ChunkMax: 256 << 10, MaxBatch: 64, MaxInflight: 8}).Append(nil))
}

func wantSilent(t *testing.T, err error) {
	t.Helper()
	if !errors.Is(err, wire.ErrSilent) || err.Error() != "wire: the server was silent for 1m0s" {
		t.Fatalf("got %v, want the server's silence of 1m0s", err)
	}
}

// A server that reads the Hello and never answers ends the handshake
// after the timeout.
func TestSilentServerHandshake(t *testing.T) {
	synctest.Test(t, func(t *testing.T) {
		f, cli := newFakeServer(t)
		go f.next(wire.TypeHello)
		start := time.Now()
		_, err := wire.DialTimeout(t.Context(), cli, "test", "lyra", time.Minute)
		wantSilent(t, err)
		if d := time.Since(start); d != time.Minute {
			t.Errorf("the handshake ended after %s, want 1m0s", d)
		}
	})
}

// A server that never reads the Hello: the client's write is not taken,
// and that is silence too.
func TestSilentServerNeverReads(t *testing.T) {
	synctest.Test(t, func(t *testing.T) {
		_, cli := newFakeServer(t)
		_, err := wire.DialTimeout(t.Context(), cli, "test", "lyra", time.Minute)
		wantSilent(t, err)
	})
}

// A server that welcomes the node and then never answers a request.
func TestSilentServerRequest(t *testing.T) {
	synctest.Test(t, func(t *testing.T) {
		f, cli := newFakeServer(t)
		go func() {
			f.welcome()
			f.next(wire.TypeListSnapshots)
		}()
		c, err := wire.DialTimeout(t.Context(), cli, "test", "lyra", time.Minute)
		if err != nil {
			t.Fatal(err)
		}
		// An idle client is never cut off: an hour of reading files
		// without a question to the server.
		time.Sleep(time.Hour)
		start := time.Now()
		_, err = c.ListSnapshots(t.Context(), "")
		wantSilent(t, err)
		if d := time.Since(start); d != time.Minute {
			t.Errorf("the request ended after %s, want 1m0s", d)
		}
		wantSilent(t, c.Err())
		if err := c.Close(); err != nil {
			t.Log(err)
		}
	})
}

// A server that answers a have-blobs question and then stops reading:
// the client's PutBlob write is not taken, and the upload fails after
// the timeout.
func TestSilentServerStopsReading(t *testing.T) {
	synctest.Test(t, func(t *testing.T) {
		f, cli := newFakeServer(t)
		go func() {
			f.welcome()
			m, err := wire.DecodeHaveBlobs(f.next(wire.TypeHaveBlobs))
			if err != nil {
				t.Error(err)
				return
			}
			f.send(wire.TypeHave, (&wire.Have{Req: m.Req, Has: make([]bool, len(m.Handles))}).Append(nil))
		}()
		c, err := wire.DialTimeout(t.Context(), cli, "test", "lyra", time.Minute)
		if err != nil {
			t.Fatal(err)
		}
		up := c.NewUploader(pack.LevelFastest)
		if _, _, err := up.SaveBlob(t.Context(), blob.Data, []byte("a blob the server will never read")); err != nil {
			t.Fatal(err)
		}
		wantSilent(t, up.Flush(t.Context()))
		up.Close()
	})
}

// A server that answers slowly but steadily (a large reply trickling in,
// a slow commit whose reply comes in time) is not cut off.
func TestSlowServerNotSilent(t *testing.T) {
	synctest.Test(t, func(t *testing.T) {
		f, cli := newFakeServer(t)
		record := make([]byte, 1000)
		go func() {
			f.welcome()
			m, err := wire.DecodeListSnapshots(f.next(wire.TypeListSnapshots))
			if err != nil {
				t.Error(err)
				return
			}
			// 59 s to think, then one byte every 50 s: ten minutes
			// for one reply, never a minute without a byte.
			time.Sleep(59 * time.Second)
			body := (&wire.Snapshots{Req: m.Req, Items: []wire.SnapshotItem{{ID: blob.Hash(record), Record: record}}}).Append(nil)
			frame := append([]byte{0, 0, 0, 0, byte(wire.TypeSnapshots)}, body...)
			n := uint32(len(body) + 1)
			frame[0], frame[1], frame[2], frame[3] = byte(n>>24), byte(n>>16), byte(n>>8), byte(n)
			for i := range 12 {
				f.conn.Write(frame[i : i+1])
				time.Sleep(50 * time.Second)
			}
			f.conn.Write(frame[12:])
		}()
		c, err := wire.DialTimeout(t.Context(), cli, "test", "lyra", time.Minute)
		if err != nil {
			t.Fatal(err)
		}
		items, err := c.ListSnapshots(t.Context(), "")
		if err != nil || len(items) != 1 {
			t.Fatalf("ListSnapshots: %v, %d items", err, len(items))
		}
	})
}

// Cancelling the context ends a handshake the server never answers, at
// once.
func TestDialCancelled(t *testing.T) {
	synctest.Test(t, func(t *testing.T) {
		f, cli := newFakeServer(t)
		go f.next(wire.TypeHello)
		ctx, cancel := context.WithCancel(t.Context())
		time.AfterFunc(time.Second, cancel)
		start := time.Now()
		_, err := wire.DialTimeout(ctx, cli, "test", "lyra", time.Minute)
		if !errors.Is(err, context.Canceled) || time.Since(start) != time.Second {
			t.Fatalf("got %v after %s, want context canceled after 1s", err, time.Since(start))
		}
	})
}

// A server that closes the stream is reported as such, also when it
// closes inside a frame.
func TestServerClosesInsideFrame(t *testing.T) {
	synctest.Test(t, func(t *testing.T) {
		f, cli := newFakeServer(t)
		go func() {
			f.welcome()
			f.next(wire.TypeListSnapshots)
			f.conn.Write([]byte{0, 0, 1, 0, byte(wire.TypeSnapshots), 1, 2})
			f.conn.Close()
		}()
		c, err := wire.DialTimeout(t.Context(), cli, "test", "lyra", time.Minute)
		if err != nil {
			t.Fatal(err)
		}
		if _, err := c.ListSnapshots(t.Context(), ""); !errors.Is(err, wire.ErrClosed) {
			t.Fatalf("got %v, want %v", err, wire.ErrClosed)
		}
	})
}
