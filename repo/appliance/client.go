package appliance

import (
	"context"
	"encoding/binary"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"net"
)

// ErrNotRunning is returned by Call when no appliance listens on the socket.
var ErrNotRunning = errors.New("no appliance is running")

// Call sends req over the operator socket at path, copies stdin to the
// appliance and its output to stdout and stderr, and returns the
// command's exit code. Cancelling ctx asks the appliance to stop the
// command. A socket with no appliance behind it gives ErrNotRunning.
func Call(ctx context.Context, path string, req *Request, stdin io.Reader, stdout, stderr io.Writer) (int, error) {
	conn, err := net.Dial("unix", path)
	if err != nil {
		return 0, fmt.Errorf("%w (%v)", ErrNotRunning, err)
	}
	defer conn.Close()
	return call(ctx, conn, req, stdin, stdout, stderr)
}

func call(ctx context.Context, conn net.Conn, req *Request, stdin io.Reader, stdout, stderr io.Writer) (int, error) {
	mw := &muxWriter{w: conn}
	b, err := json.Marshal(req)
	if err != nil {
		return 0, err
	}
	if err := mw.frame(frameRequest, b); err != nil {
		return 0, err
	}
	stop := context.AfterFunc(ctx, func() { mw.frame(frameCancel, nil) })
	defer stop()
	if stdin != nil {
		go func() {
			io.Copy(stream{m: mw, kind: frameStdin}, stdin)
			mw.frame(frameStdinEOF, nil)
		}()
	} else {
		mw.frame(frameStdinEOF, nil)
	}
	var buf []byte
	for {
		kind, data, err := readFrame(conn, buf)
		if err != nil {
			return 0, fmt.Errorf("appliance: %w", err)
		}
		buf = data
		switch kind {
		case frameStdout:
			if _, err := stdout.Write(data); err != nil {
				return 0, err
			}
		case frameStderr:
			stderr.Write(data)
		case frameExit:
			if len(data) != 4 {
				return 0, errors.New("appliance: bad exit frame")
			}
			return int(int32(binary.BigEndian.Uint32(data))), nil
		default:
			return 0, fmt.Errorf("appliance: unexpected frame %q", kind)
		}
	}
}
