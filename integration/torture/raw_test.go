package torture

import (
	"bytes"
	"encoding/binary"
	"errors"
	"fmt"
	"io"
	"strings"
	"sync"
	"time"

	"github.com/cairnbackup/cairn/repo/wire"
	"golang.org/x/crypto/ssh"
)

// raw is a hostile node's session with the appliance's embedded SSH
// server: a Go SSH client that writes whatever frames (or bytes) a test
// crafts to the command's standard input and reads the frames it gets
// back.
type raw struct {
	client *ssh.Client
	sess   *ssh.Session
	in     io.WriteCloser
	r      *wire.Reader
	mu     sync.Mutex
	stderr bytes.Buffer
	done   chan error
}

// lockedWriter collects a session's standard error.
type lockedWriter struct{ r *raw }

func (w lockedWriter) Write(p []byte) (int, error) {
	w.r.mu.Lock()
	defer w.r.mu.Unlock()
	return w.r.stderr.Write(p)
}

// open starts command (cairn-wire, push --tar …) as node n on a new
// connection.
func (a *appliance) open(n *node, command string) (*raw, error) {
	c, err := a.Dial(n)
	if err != nil {
		return nil, err
	}
	r, err := openOn(c, command)
	if err != nil {
		c.Close()
		return nil, err
	}
	return r, nil
}

// openOn starts command on a new session channel of an open connection.
func openOn(c *ssh.Client, command string) (*raw, error) {
	s, err := c.NewSession()
	if err != nil {
		return nil, err
	}
	r := &raw{client: c, sess: s, done: make(chan error, 1)}
	if r.in, err = s.StdinPipe(); err != nil {
		return nil, err
	}
	out, err := s.StdoutPipe()
	if err != nil {
		return nil, err
	}
	r.r = wire.NewReader(out)
	s.Stderr = lockedWriter{r}
	if err := s.Start(command); err != nil {
		return nil, err
	}
	go func() { r.done <- s.Wait() }()
	return r, nil
}

// Stderr is what the appliance wrote to the session's standard error.
func (r *raw) Stderr() string {
	r.mu.Lock()
	defer r.mu.Unlock()
	return r.stderr.String()
}

// close ends the session and its connection.
func (r *raw) close() {
	r.in.Close()
	r.sess.Close()
	r.client.Close()
}

// send writes a frame with any length field: header says length, then
// body. A correct frame has length len(body)+1.
func (r *raw) send(length uint32, t wire.Type, body []byte) error {
	var h [5]byte
	binary.BigEndian.PutUint32(h[:4], length)
	h[4] = byte(t)
	if _, err := r.in.Write(h[:]); err != nil {
		return err
	}
	_, err := r.in.Write(body)
	return err
}

// frame writes a well-formed frame.
func (r *raw) frame(t wire.Type, body []byte) error {
	return r.send(uint32(len(body)+1), t, body)
}

// hello sends Hello and reads the Welcome.
func (r *raw) hello(node string) (*wire.Welcome, error) {
	if err := r.frame(wire.TypeHello, (&wire.Hello{MinVersion: 1, MaxVersion: 1, Client: "torture", Node: node}).Append(nil)); err != nil {
		return nil, err
	}
	t, body, err := r.next(30 * time.Second)
	if err != nil {
		return nil, err
	}
	if t == wire.TypeError {
		e, _ := wire.DecodeError(body)
		return nil, fmt.Errorf("error %d: %s", e.Code, e.Message)
	}
	if t != wire.TypeWelcome {
		return nil, fmt.Errorf("got %s, want welcome", t)
	}
	return wire.DecodeWelcome(body)
}

// next reads one frame, or fails after timeout.
func (r *raw) next(timeout time.Duration) (wire.Type, []byte, error) {
	type res struct {
		t    wire.Type
		body []byte
		err  error
	}
	ch := make(chan res, 1)
	go func() {
		t, body, err := r.r.Next(nil)
		ch <- res{t, body, err}
	}()
	select {
	case x := <-ch:
		return x.t, x.body, x.err
	case <-time.After(timeout):
		return 0, nil, fmt.Errorf("no frame within %s", timeout)
	}
}

// refusal reads frames until an Error frame (returned) or the end of the
// stream; it fails if neither comes within timeout.
func (r *raw) refusal(timeout time.Duration) (*wire.ErrorMsg, error) {
	deadline := time.Now().Add(timeout)
	for {
		t, body, err := r.next(time.Until(deadline))
		if err != nil {
			if errors.Is(err, io.EOF) || errors.Is(err, io.ErrUnexpectedEOF) {
				return nil, nil // the stream ended without an Error frame
			}
			return nil, err
		}
		if t == wire.TypeError {
			return wire.DecodeError(body)
		}
	}
}

// exit waits for the session's exit status.
func (r *raw) exit(timeout time.Duration) (int, error) {
	select {
	case err := <-r.done:
		var ee *ssh.ExitError
		switch {
		case err == nil:
			return 0, nil
		case errors.As(err, &ee):
			return ee.ExitStatus(), nil
		default:
			return -1, err
		}
	case <-time.After(timeout):
		return -1, fmt.Errorf("the session did not end within %s", timeout)
	}
}

// logCount counts log lines of the appliance containing every one of subs.
func (a *appliance) logCount(subs ...string) int {
	n := 0
	for _, l := range strings.Split(a.Log(), "\n") {
		all := true
		for _, s := range subs {
			all = all && strings.Contains(l, s)
		}
		if all {
			n++
		}
	}
	return n
}
