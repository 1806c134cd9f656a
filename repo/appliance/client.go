package appliance

import (
	"context"
	"encoding/binary"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"net"
	"os"
	"syscall"
	"time"
)

// ErrNotRunning is returned by Call when no appliance listens on the socket.
var ErrNotRunning = errors.New("no appliance is running")

// ErrGone is matched by the error of Call when the appliance closed the
// connection before the command finished.
var ErrGone = errors.New("the appliance closed the connection before the command finished (it may have stopped or crashed): " +
	"the command's outcome is unknown; check `cairn snapshots` and the appliance's log")

// CancelWait bounds how long Call waits, once ctx is cancelled, for the
// appliance to stop the command and send its exit code.
const CancelWait = 10 * time.Second

// Interrupted is the cause with which the appliance cancels an
// operator's command when the operator's cairn was stopped by a signal
// (^C): the command can then say so and exit 128 + the signal.
type Interrupted struct{ Signal syscall.Signal }

func (i *Interrupted) Error() string {
	switch i.Signal {
	case syscall.SIGINT:
		return "interrupted by SIGINT"
	case syscall.SIGTERM:
		return "interrupted by SIGTERM"
	}
	return "interrupted by " + i.Signal.String()
}

// signaller is a context cause that names the signal that stopped the
// caller; Call relays the signal in its cancel frame.
type signaller interface {
	error
	Signal() syscall.Signal
}

// Call sends req over the operator socket at path, copies stdin to the
// appliance and its output to stdout and stderr, and returns the
// command's exit code. Cancelling ctx asks the appliance to stop the
// command, with ctx's cause's signal when the cause has a method
// Signal() syscall.Signal (SIGINT or SIGTERM: the command's context then
// ends with an [*Interrupted] cause); one that does not within
// CancelWait is given up on. A socket
// with no appliance behind it gives ErrNotRunning, an appliance that
// closes the connection before it sends the exit code ErrGone.
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
		return 0, gone(err)
	}
	stop := context.AfterFunc(ctx, func() {
		// Whatever the command was doing, the appliance now has
		// CancelWait to stop it and say so.
		conn.SetReadDeadline(time.Now().Add(CancelWait))
		var why []byte
		if s, ok := errors.AsType[signaller](context.Cause(ctx)); ok {
			why = []byte{byte(s.Signal())}
		}
		mw.frame(frameCancel, why)
	})
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
		if errors.Is(err, os.ErrDeadlineExceeded) && ctx.Err() != nil {
			return 0, fmt.Errorf("the appliance did not stop the command within %s of being asked: its outcome is unknown; check the appliance's log", CancelWait)
		}
		if err != nil {
			return 0, gone(err)
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

// gone turns the end of the connection into ErrGone.
func gone(err error) error {
	if errors.Is(err, io.EOF) || errors.Is(err, io.ErrUnexpectedEOF) || errors.Is(err, syscall.ECONNRESET) || errors.Is(err, syscall.EPIPE) {
		return ErrGone
	}
	return fmt.Errorf("appliance: %w", err)
}
