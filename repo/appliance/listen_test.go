package appliance

import (
	"bufio"
	"errors"
	"fmt"
	"io"
	"net"
	"strings"
	"testing"
	"time"
)

// rawConn is a TCP connection to the SSH port that never logs in.
type rawConn struct {
	net.Conn
	r *bufio.Reader
}

// connect opens a raw connection and reads the server's first line: the
// SSH banner of an admitted connection, or "" when the appliance closed
// it at once.
func (rn *running) connect() (*rawConn, string) {
	rn.t.Helper()
	c, err := net.Dial("tcp", rn.addr)
	if err != nil {
		rn.t.Fatal(err)
	}
	rn.t.Cleanup(func() { c.Close() })
	c.SetReadDeadline(time.Now().Add(time.Minute))
	rc := &rawConn{Conn: c, r: bufio.NewReader(c)}
	line, err := rc.r.ReadString('\n')
	if err != nil && !errors.Is(err, io.EOF) {
		rn.t.Fatalf("reading the banner: %v", err)
	}
	return rc, line
}

const banner = "SSH-2.0-cairn\r\n"

// A flood of connections that never log in used to take every file
// descriptor of the appliance. Connections still authenticating are now
// limited in total and per source address; one over a limit is closed at
// once, with a log line, and a node gets in once the flood ends.
func TestUnauthenticatedConnectionsLimited(t *testing.T) {
	lyra := newTestNode(t, "lyra", "push")
	limits := func(total, perAddr int) string {
		return fmt.Sprintf("limits:\n  unauthenticated: %d\n  unauthenticated_per_address: %d\n  handshake_timeout: 10m\n", total, perAddr)
	}
	rn := serveTest(t, configText(limits(3, 10), lyra))

	var held []*rawConn
	for range 3 {
		c, line := rn.connect()
		if line != banner {
			t.Fatalf("connection %d: %q, want the banner", len(held)+1, line)
		}
		held = append(held, c)
	}
	if _, line := rn.connect(); line != "" {
		t.Fatalf("the connection over limits.unauthenticated got %q", line)
	}
	rn.waitFor(`msg="ssh connection refused"`, `err="3 connections are authenticating already (limits.unauthenticated)"`)
	if _, err := rn.dial(lyra); err == nil {
		t.Fatal("lyra logged in past the limit")
	}
	// The flood ends: each connection frees its place once the appliance
	// has seen it go (its handshake fails, which it logs).
	for _, c := range held {
		c.Close()
		rn.waitFor(`msg="ssh connection refused"`, "remote="+c.LocalAddr().String(), "EOF")
	}
	held = nil
	if code, _, err := rn.run(lyra, "snapshots"); err != nil || code != 0 {
		t.Fatalf("lyra after the flood: exit %d, %v", code, err)
	}

	// Per source address.
	rn.reload(configText(limits(64, 2), lyra))
	for range 2 {
		if _, line := rn.connect(); line != banner {
			t.Fatalf("connection under the per-address limit: %q", line)
		}
	}
	if _, line := rn.connect(); line != "" {
		t.Fatalf("the connection over limits.unauthenticated_per_address got %q", line)
	}
	rn.waitFor(`msg="ssh connection refused"`, `err="2 connections from 127.0.0.1 are authenticating already (limits.unauthenticated_per_address)"`)
}

// A connection that does not log in within limits.handshake_timeout is
// closed, and the log says which limit closed it.
func TestHandshakeTimeout(t *testing.T) {
	t.Parallel() // it waits out the handshake timeout on the real clock
	rn := serveTest(t, configText("limits:\n  handshake_timeout: 300ms\n"))
	c, line := rn.connect()
	if line != banner {
		t.Fatalf("banner %q", line)
	}
	if b, err := io.ReadAll(c.r); err != nil || len(b) != 0 {
		t.Fatalf("after the banner: %q, %v; want the connection closed", b, err)
	}
	l := rn.waitFor(`msg="ssh connection refused"`, "remote="+c.LocalAddr().String())
	if !strings.HasSuffix(l, `i/o timeout: no login within 300ms (limits.handshake_timeout)"`) {
		t.Fatalf("log line %s", l)
	}
}
