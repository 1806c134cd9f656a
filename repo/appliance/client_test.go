package appliance

import (
	"bytes"
	"context"
	"encoding/binary"
	"errors"
	"net"
	"testing"
	"testing/synctest"
	"time"
)

// fakeSocket plays the appliance's end of an operator connection in a
// synctest bubble: it reads the request and the client's frames, and
// answers as the test says.
func fakeSocket(t *testing.T, serve func(conn net.Conn, cancelled <-chan struct{})) net.Conn {
	cli, srv := net.Pipe()
	t.Cleanup(func() { cli.Close(); srv.Close() })
	cancelled := make(chan struct{})
	go func() {
		if kind, _, err := readFrame(srv, nil); err != nil || kind != frameRequest {
			t.Errorf("fake appliance: first frame %q (%v), want the request", kind, err)
			return
		}
		go func() {
			for {
				kind, _, err := readFrame(srv, nil)
				if err != nil {
					return
				}
				if kind == frameCancel {
					close(cancelled)
				}
			}
		}()
		serve(srv, cancelled)
	}()
	return cli
}

func exitFrame(conn net.Conn, code int) {
	var b [9]byte
	b[0] = frameExit
	binary.BigEndian.PutUint32(b[1:5], 4)
	binary.BigEndian.PutUint32(b[5:], uint32(code))
	conn.Write(b[:])
}

// An appliance that dies during a command: the operator is told the
// connection closed early and the outcome is unknown, not "EOF".
func TestCallApplianceGone(t *testing.T) {
	synctest.Test(t, func(t *testing.T) {
		conn := fakeSocket(t, func(srv net.Conn, _ <-chan struct{}) {
			mw := &muxWriter{w: srv}
			mw.frame(frameStdout, []byte("forgetting 1 snapshot\n"))
			srv.Close()
		})
		var out bytes.Buffer
		_, err := call(t.Context(), conn, &Request{Kind: "operator", Args: []string{"forget"}}, nil, &out, &out)
		if !errors.Is(err, ErrGone) || err.Error() != "the appliance closed the connection before the command finished (it may have stopped or crashed): the command's outcome is unknown; check `cairn snapshots` and the appliance's log" {
			t.Fatalf("got %v, want ErrGone", err)
		}
		if out.String() != "forgetting 1 snapshot\n" {
			t.Errorf("output %q", out.String())
		}
	})
}

// An interrupted command whose appliance stops it gives its exit code.
func TestCallCancelled(t *testing.T) {
	synctest.Test(t, func(t *testing.T) {
		conn := fakeSocket(t, func(srv net.Conn, cancelled <-chan struct{}) {
			<-cancelled
			exitFrame(srv, 1)
		})
		ctx, cancel := context.WithCancel(t.Context())
		time.AfterFunc(time.Hour, cancel)
		code, err := call(ctx, conn, &Request{Kind: "operator"}, nil, &bytes.Buffer{}, &bytes.Buffer{})
		if err != nil || code != 1 {
			t.Fatalf("got %d, %v; want exit 1", code, err)
		}
	})
}

// An interrupted command whose appliance never answers is given up on
// CancelWait after the interrupt (a long silent command before it is
// not: it may be a check reading every pack).
func TestCallCancelledSilent(t *testing.T) {
	synctest.Test(t, func(t *testing.T) {
		conn := fakeSocket(t, func(net.Conn, <-chan struct{}) {})
		ctx, cancel := context.WithCancel(t.Context())
		time.AfterFunc(time.Hour, cancel)
		start := time.Now()
		_, err := call(ctx, conn, &Request{Kind: "operator"}, nil, &bytes.Buffer{}, &bytes.Buffer{})
		if err == nil || err.Error() != "the appliance did not stop the command within 10s of being asked: its outcome is unknown; check the appliance's log" {
			t.Fatalf("got %v", err)
		}
		if d := time.Since(start); d != time.Hour+CancelWait {
			t.Errorf("gave up after %s, want 1h0m10s", d)
		}
	})
}
