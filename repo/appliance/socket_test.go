package appliance

import (
	"bytes"
	"context"
	"encoding/binary"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"net"
	"os"
	"path/filepath"
	"strings"
	"testing"

	"github.com/cairnbackup/cairn/repo/repotest"
)

// frame is one frame of the operator socket as the test sends or reads it.
type frame struct {
	kind byte
	data string
}

func writeFrames(t *testing.T, conn net.Conn, frames ...frame) {
	t.Helper()
	for _, f := range frames {
		var hdr [5]byte
		hdr[0] = f.kind
		binary.BigEndian.PutUint32(hdr[1:], uint32(len(f.data)))
		if _, err := conn.Write(append(hdr[:], f.data...)); err != nil {
			t.Fatalf("write frame %q: %v", f.kind, err)
		}
	}
}

func requestFrame(t *testing.T, req *Request) frame {
	t.Helper()
	b, err := json.Marshal(req)
	if err != nil {
		t.Fatal(err)
	}
	return frame{frameRequest, string(b)}
}

// socketSession serves one connection with a's serveSocket and returns
// the client's end and a channel closed when serveSocket has returned.
func socketSession(t *testing.T, a *Appliance) (net.Conn, <-chan struct{}) {
	t.Helper()
	cli, srv := net.Pipe()
	done := make(chan struct{})
	go func() {
		defer close(done)
		a.serveSocket(t.Context(), srv)
	}()
	t.Cleanup(func() { cli.Close(); <-done })
	return cli, done
}

// answer reads the appliance's frames to the exit frame (or the end of
// the connection) and returns them, the exit code last (-1000 when none
// came).
func answer(t *testing.T, conn net.Conn) (frames []frame, code int) {
	t.Helper()
	for {
		kind, data, err := readFrame(conn, nil)
		if err != nil {
			return frames, -1000
		}
		if kind == frameExit {
			if len(data) != 4 {
				t.Fatalf("exit frame of %d bytes", len(data))
			}
			return frames, int(int32(binary.BigEndian.Uint32(data)))
		}
		frames = append(frames, frame{kind, string(data)})
	}
}

// socketAppliance is an appliance without nodes whose operator function
// is op.
func socketAppliance(t *testing.T, op OperatorFunc) *Appliance {
	t.Helper()
	r := repotest.New(t)
	cfg := filepath.Join(t.TempDir(), "a.yaml")
	if err := os.WriteFile(cfg, []byte("nodes: {}\n"), 0o600); err != nil {
		t.Fatal(err)
	}
	a, err := New(Options{Repo: r, ConfigPath: cfg, Operator: op})
	if err != nil {
		t.Fatal(err)
	}
	return a
}

// The operator socket's protocol, frame by frame: the request, standard
// input in frames and its end, then the command's standard output and
// error as frames of their kinds, each at most maxMuxFrame bytes, and
// last its exit code (a signed 32-bit number).
func TestSocketProtocol(t *testing.T) {
	type ran struct {
		req   Request
		stdin string
	}
	runs := make(chan ran, 1)
	big := strings.Repeat("x", maxMuxFrame+10)
	a := socketAppliance(t, func(_ context.Context, req *Request, stdin io.Reader, stdout, stderr io.Writer) int {
		in, _ := io.ReadAll(stdin)
		runs <- ran{*req, string(in)}
		switch req.Args[0] {
		case "echo":
			stdout.Write(in)
			fmt.Fprint(stderr, "to stderr")
			return 7
		case "big":
			stdout.Write([]byte(big))
			return -1
		}
		return 0
	})
	dir := a.r.Dir()

	conn, _ := socketSession(t, a)
	writeFrames(t, conn, requestFrame(t, &Request{Kind: "operator", Args: []string{"echo", "--x"}, Cwd: "/srv", Repo: dir}),
		frame{frameStdin, "one "}, frame{frameStdin, ""}, frame{frameStdin, "two"}, frame{frameStdinEOF, ""})
	frames, code := answer(t, conn)
	if code != 7 || fmt.Sprint(frames) != fmt.Sprint([]frame{{frameStdout, "one two"}, {frameStderr, "to stderr"}}) {
		t.Fatalf("echo: exit %d, frames %q", code, frames)
	}
	if r := <-runs; r.stdin != "one two" || strings.Join(r.req.Args, " ") != "echo --x" || r.req.Cwd != "/srv" || r.req.Kind != "operator" {
		t.Fatalf("the operator function got %+v", r)
	}

	conn, _ = socketSession(t, a)
	writeFrames(t, conn, requestFrame(t, &Request{Kind: "operator", Args: []string{"big"}, Repo: dir}), frame{frameStdinEOF, ""})
	frames, code = answer(t, conn)
	<-runs
	if code != -1 || len(frames) != 2 || frames[0] != (frame{frameStdout, big[:maxMuxFrame]}) || frames[1] != (frame{frameStdout, "xxxxxxxxxx"}) {
		t.Fatalf("big: exit %d, %d frames", code, len(frames))
	}
}

// What the appliance refuses before anything runs: a first frame that
// is not a request, a request that is not JSON, a frame longer than
// maxMuxFrame (the connection is closed without an exit code), an
// unknown kind of request, a request saying a file comes with it when
// none came (exit 2, the reason on standard error), and an operator
// command on an appliance that runs none (exit 1).
func TestSocketRefusals(t *testing.T) {
	ran := make(chan *Request, 8)
	a := socketAppliance(t, func(_ context.Context, req *Request, _ io.Reader, _, _ io.Writer) int {
		ran <- req
		return 0
	})
	dir := a.r.Dir()
	tooLong := make([]byte, 5)
	tooLong[0] = frameRequest
	binary.BigEndian.PutUint32(tooLong[1:], maxMuxFrame+1)

	for _, c := range []struct {
		name   string
		send   func(conn net.Conn)
		code   int
		stderr string
	}{
		{"stdin first", func(conn net.Conn) { writeFrames(t, conn, frame{frameStdin, `{"kind":"operator"}`}) }, -1000, ""},
		{"not json", func(conn net.Conn) { writeFrames(t, conn, frame{frameRequest, `{"kind":"operator",`}) }, -1000, ""},
		{"frame too long", func(conn net.Conn) { conn.Write(tooLong) }, -1000, ""},
		{"half a frame", func(conn net.Conn) { conn.Write([]byte{frameRequest, 0, 0, 0, 9, '{'}); conn.Close() }, -1000, ""},
		{"unknown kind", func(conn net.Conn) { writeFrames(t, conn, requestFrame(t, &Request{Kind: "root", Repo: dir})) }, 2, "cairn: unknown request kind \"root\"\n"},
		{"no file came", func(conn net.Conn) {
			writeFrames(t, conn, requestFrame(t, &Request{Kind: "operator", Args: []string{"mount"}, FUSE: true, Repo: dir}))
		}, 2, "cairn: the request says a mount's /dev/fuse descriptor comes with it, and none came\n"},
	} {
		t.Run(c.name, func(t *testing.T) {
			conn, done := socketSession(t, a)
			go c.send(conn)
			frames, code := answer(t, conn)
			var stderr string
			for _, f := range frames {
				if f.kind != frameStderr {
					t.Errorf("frame %q %q", f.kind, f.data)
				}
				stderr += f.data
			}
			if code != c.code || stderr != c.stderr {
				t.Errorf("exit %d, stderr %q; want %d, %q", code, stderr, c.code, c.stderr)
			}
			conn.Close()
			<-done
		})
	}
	select {
	case req := <-ran:
		t.Fatalf("the operator function ran %+v", req)
	default:
	}

	none := socketAppliance(t, nil)
	conn, _ := socketSession(t, none)
	writeFrames(t, conn, requestFrame(t, &Request{Kind: "operator", Args: []string{"snapshots"}, Repo: none.r.Dir()}))
	if frames, code := answer(t, conn); code != 1 || fmt.Sprint(frames) != fmt.Sprint([]frame{{frameStderr, "cairn: this appliance runs no operator commands\n"}}) {
		t.Fatalf("no operator function: exit %d, %q", code, frames)
	}
}

// A client that goes away ends its command: the command's standard
// input fails and its context is cancelled, and the server side returns.
func TestSocketClientGone(t *testing.T) {
	started := make(chan struct{})
	got := make(chan error, 2)
	a := socketAppliance(t, func(ctx context.Context, _ *Request, stdin io.Reader, _, _ io.Writer) int {
		close(started)
		_, err := io.ReadAll(stdin)
		got <- err
		<-ctx.Done()
		got <- ctx.Err()
		return 0
	})
	conn, done := socketSession(t, a)
	writeFrames(t, conn, requestFrame(t, &Request{Kind: "operator", Args: []string{"backup", "--stdin"}, Repo: a.r.Dir()}), frame{frameStdin, "partial"})
	<-started
	conn.Close()
	if err := <-got; !errors.Is(err, io.ErrUnexpectedEOF) {
		t.Errorf("standard input ended with %v, want io.ErrUnexpectedEOF", err)
	}
	if err := <-got; !errors.Is(err, context.Canceled) {
		t.Errorf("the command's context ended with %v", err)
	}
	<-done
}

// readFrame refuses a frame longer than maxMuxFrame before reading it,
// and a frame cut short is io.ErrUnexpectedEOF.
func TestReadFrameBounds(t *testing.T) {
	var hdr [5]byte
	hdr[0] = frameStdin
	binary.BigEndian.PutUint32(hdr[1:], maxMuxFrame+1)
	if _, _, err := readFrame(bytes.NewReader(hdr[:]), nil); err == nil || err.Error() != fmt.Sprintf("socket frame of %d bytes exceeds %d", maxMuxFrame+1, maxMuxFrame) {
		t.Errorf("too long: %v", err)
	}
	binary.BigEndian.PutUint32(hdr[1:], 3)
	if _, _, err := readFrame(bytes.NewReader(append(hdr[:], 'a')), nil); !errors.Is(err, io.ErrUnexpectedEOF) {
		t.Errorf("cut short: %v", err)
	}
	if _, _, err := readFrame(bytes.NewReader(hdr[:2]), nil); !errors.Is(err, io.ErrUnexpectedEOF) {
		t.Errorf("header cut short: %v", err)
	}
	if kind, data, err := readFrame(bytes.NewReader(append(hdr[:], "abc"...)), make([]byte, 0, 1)); err != nil || kind != frameStdin || string(data) != "abc" {
		t.Errorf("whole: %q %q %v", kind, data, err)
	}
}
