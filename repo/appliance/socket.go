package appliance

import (
	"context"
	"encoding/binary"
	"encoding/json"
	"fmt"
	"io"
	"net"
	"os"
	"syscall"
)

// listenSocket listens on a unix socket readable only by this user. A
// socket file left by an appliance that died is removed; one that
// answers belongs to a running appliance.
func listenSocket(path string) (net.Listener, error) {
	if c, err := net.Dial("unix", path); err == nil {
		c.Close()
		return nil, fmt.Errorf("an appliance already listens on %s", path)
	}
	os.Remove(path)
	old := umask(0o177)
	ln, err := net.Listen("unix", path)
	umask(old)
	if err != nil {
		return nil, fmt.Errorf("operator socket: %w", err)
	}
	if err := os.Chmod(path, 0o600); err != nil {
		ln.Close()
		return nil, err
	}
	return ln, nil
}

func (a *Appliance) acceptSocket(ctx context.Context, ln net.Listener) {
	a.acceptLoop(ln, "socket", func(conn net.Conn) { go a.serveSocket(ctx, conn) })
}

// serveSocket runs one operator command or relayed node session.
func (a *Appliance) serveSocket(ctx context.Context, conn net.Conn) {
	defer conn.Close()
	kind, data, passed, err := readRequestFrame(conn)
	if passed != nil {
		defer passed.Close()
	}
	if err != nil || kind != frameRequest {
		return
	}
	var req Request
	if err := json.Unmarshal(data, &req); err != nil {
		return
	}
	if req.FUSE && req.Kind == "operator" && passed != nil {
		ctx = context.WithValue(ctx, fileKey{}, passed)
	}
	mw := &muxWriter{w: conn}
	ctx, cancelCause := context.WithCancelCause(ctx)
	cancel := func() { cancelCause(nil) }
	defer cancel()
	stdinR, stdinW := io.Pipe()
	fed := make(chan struct{})
	go func() {
		// Read the client's frames: stdin and cancellation.
		defer close(fed)
		var buf []byte
		for {
			kind, data, err := readFrame(conn, buf)
			if err != nil {
				stdinW.CloseWithError(io.ErrUnexpectedEOF)
				cancel()
				return
			}
			buf = data
			switch kind {
			case frameStdin:
				if _, err := stdinW.Write(data); err != nil {
					// The command stopped reading; drop input.
					continue
				}
			case frameStdinEOF:
				stdinW.Close()
			case frameCancel:
				if len(data) == 1 && (data[0] == byte(syscall.SIGINT) || data[0] == byte(syscall.SIGTERM)) {
					cancelCause(&Interrupted{Signal: syscall.Signal(data[0])})
				} else {
					cancel()
				}
			}
		}
	}()
	// When the command is over, so is the goroutine above: closing the
	// pipe ends a write to a command that never read its input, closing
	// the connection ends the wait for the client's next frame.
	defer func() {
		stdinR.Close()
		conn.Close()
		<-fed
	}()
	stdout, stderr := stream{m: mw, kind: frameStdout}, stream{m: mw, kind: frameStderr}
	var code int
	switch err := a.checkRepo(req.Repo); {
	case err != nil:
		a.log.Warn("request refused", "kind", req.Kind, "node", req.Node, "why", err)
		if req.Kind == "node" {
			// The node learns no paths of the appliance.
			fmt.Fprintln(stderr, "cairn: the forced command names a repository this appliance does not serve (its log says which)")
		} else {
			fmt.Fprintln(stderr, "cairn:", err)
		}
		code = 2
	case req.FUSE && (passed == nil || req.Kind != "operator"):
		fmt.Fprintln(stderr, "cairn: the request says a mount's /dev/fuse descriptor comes with it, and none came")
		code = 2
	case req.FUSE && !isFUSEDevice(passed):
		fmt.Fprintln(stderr, "cairn: the descriptor that came with the request is not /dev/fuse")
		code = 2
	case req.Kind == "operator":
		untrack, err := a.track("", cancel)
		if err != nil {
			fmt.Fprintln(stderr, "cairn:", err)
			code = 1
			break
		}
		if a.o.Operator == nil {
			fmt.Fprintln(stderr, "cairn: this appliance runs no operator commands")
			code = 1
		} else {
			code = a.o.Operator(ctx, &req, stdinR, stdout, stderr)
		}
		untrack()
	case req.Kind == "node":
		code = a.RelayedSession(ctx, req.Node, req.Command, stdinR, stdout, stderr)
	default:
		fmt.Fprintf(stderr, "cairn: unknown request kind %q\n", req.Kind)
		code = 2
	}
	var b [4]byte
	binary.BigEndian.PutUint32(b[:], uint32(int32(code)))
	mw.frame(frameExit, b[:])
}
