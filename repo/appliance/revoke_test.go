package appliance

import (
	"bytes"
	"context"
	"errors"
	"io"
	"path/filepath"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/cairnbackup/cairn/repo/blob"
	"github.com/cairnbackup/cairn/repo/wire"
	"golang.org/x/crypto/ssh"
)

// remote is a command running on a session channel of a connection.
type remote struct {
	t      *testing.T
	s      *ssh.Session
	in     io.WriteCloser
	out    io.Reader
	mu     sync.Mutex
	stderr bytes.Buffer
	done   chan error
}

func (r *remote) Write(p []byte) (int, error) {
	r.mu.Lock()
	defer r.mu.Unlock()
	return r.stderr.Write(p)
}

func (r *remote) Stderr() string {
	r.mu.Lock()
	defer r.mu.Unlock()
	return r.stderr.String()
}

// start runs command on a new session channel of c.
func start(t *testing.T, c *ssh.Client, command string) *remote {
	t.Helper()
	s, err := c.NewSession()
	if err != nil {
		t.Fatal(err)
	}
	r := &remote{t: t, s: s, done: make(chan error, 1)}
	r.in, _ = s.StdinPipe()
	r.out, _ = s.StdoutPipe()
	s.Stderr = r
	if err := s.Start(command); err != nil {
		t.Fatal(err)
	}
	go func() { r.done <- s.Wait() }()
	t.Cleanup(func() { s.Close() })
	return r
}

// exit waits for the command's exit status.
func (r *remote) exit() int {
	r.t.Helper()
	select {
	case err := <-r.done:
		var ee *ssh.ExitError
		if errors.As(err, &ee) {
			return ee.ExitStatus()
		}
		if err != nil {
			r.t.Fatalf("no exit status: %v", err)
		}
		return 0
	case <-time.After(time.Minute):
		r.t.Fatal("the session did not end within a minute")
		return -1
	}
}

// wireSession starts cairn-wire on c and says hello.
func wireSession(t *testing.T, c *ssh.Client, node string) (*remote, *wire.Writer, *wire.Reader) {
	t.Helper()
	r := start(t, c, "cairn-wire")
	w, rd := wire.NewWriter(r.in), wire.NewReader(r.out)
	w.WriteFrame(wire.TypeHello, (&wire.Hello{MinVersion: 1, MaxVersion: 1, Client: "test", Node: node}).Append(nil))
	w.Flush()
	if typ, _, err := rd.Next(nil); err != nil || typ != wire.TypeWelcome {
		t.Fatalf("hello: %v %v", typ, err)
	}
	return r, w, rd
}

// refused sends a request and expects the session to end with an Error
// frame saying msg (permission denied) and exit status 1.
func refused(t *testing.T, r *remote, w *wire.Writer, rd *wire.Reader, msg string) {
	t.Helper()
	w.WriteFrame(wire.TypeListSnapshots, (&wire.ListSnapshots{Req: 7}).Append(nil))
	w.Flush()
	typ, body, err := rd.Next(nil)
	if err != nil || typ != wire.TypeError {
		t.Fatalf("after the revocation: %v %v, want an Error", typ, err)
	}
	e, err := wire.DecodeError(body)
	if err != nil || e.Code != wire.CodePermissionDenied || e.Message != msg {
		t.Fatalf("Error %v %v, want (permission denied) %q", e, err, msg)
	}
	if st := r.exit(); st != 1 {
		t.Fatalf("exit %d", st)
	}
}

func fingerprint(n *testNode) string { return ssh.FingerprintSHA256(n.signer.PublicKey()) }

// Replacing a node's key in the configuration used to stop only new
// connections: one already open (an OpenSSH ControlMaster) kept pushing.
// Now, once the configuration is reloaded, that connection gets no new
// channel, its running wire session ends at its next request, its tar or
// stdin stream at its next read, and the connection closes once they
// have ended; each is logged.
func TestRevokedKeyEndsSessions(t *testing.T) {
	lyra := newTestNode(t, "lyra", "push, read")
	rn := serveTest(t, configText("", lyra))
	c, err := rn.dial(lyra)
	if err != nil {
		t.Fatal(err)
	}
	defer c.Close()
	ws, w, rd := wireSession(t, c, "lyra")
	stream := start(t, c, "push --stdin --name dump.sql")
	io.WriteString(stream.in, "the first half\n")
	rn.waitFor(`msg="node session started" node=lyra command="push --stdin --name dump.sql"`)

	newKey := newTestNode(t, "lyra", "push, read")
	rn.reload(configText("", newKey))
	why := "the key " + fingerprint(lyra) + " of node lyra was revoked"
	rn.waitLines(
		[]string{`msg="ssh connection revoked"`, "node=lyra", "key=" + fingerprint(lyra), "sessions=2", `why="` + why + `"`},
		[]string{`msg="session revoked: it ends at its next request"`, "node=lyra", `command=cairn-wire`, `why="` + why + `"`},
		[]string{`msg="session revoked: it ends at its next request"`, "node=lyra", `command="push --stdin --name dump.sql"`, `why="` + why + `"`})

	if _, err := c.NewSession(); err == nil || err.Error() != `ssh: rejected: administratively prohibited ("`+why+`")` {
		t.Errorf("a new channel on the revoked connection: %v", err)
	}
	refused(t, ws, w, rd, why)
	io.WriteString(stream.in, "the second half\n")
	stream.in.Close()
	if st := stream.exit(); st != 1 || stream.Stderr() != "cairn: "+why+"\n" {
		t.Errorf("the stream: exit %d, stderr %q", st, stream.Stderr())
	}
	// With no session left, the connection is closed.
	closed := make(chan error, 1)
	go func() { closed <- c.Wait() }()
	select {
	case <-closed:
	case <-time.After(time.Minute):
		t.Fatal("the revoked connection is still open")
	}
	rn.waitLines(
		[]string{`msg="session channel refused"`, "node=lyra", `why="` + why + `"`},
		[]string{`msg="push failed"`, "node=lyra", "kind=cairn-wire", `err="` + why + `"`},
		[]string{`msg="push failed"`, "node=lyra", "kind=push", `err="` + why + `"`})
	if code, out, err := rn.run(newKey, "snapshots"); err != nil || code != 0 || out != "[]\n" {
		t.Errorf("snapshots with the new key: %d %q %v", code, out, err)
	}
}

// A node whose permissions shrink loses its running sessions (at their
// next request); a new session gets what it has now.
func TestShrunkPermissionsEndSessions(t *testing.T) {
	vega := newTestNode(t, "vega", "push, read")
	rn := serveTest(t, configText("", vega))
	c, err := rn.dial(vega)
	if err != nil {
		t.Fatal(err)
	}
	defer c.Close()
	ws, w, rd := wireSession(t, c, "vega")
	vega.perms = "read"
	rn.reload(configText("", vega))
	refused(t, ws, w, rd, "node vega lost the push permission")
	ws, w, rd = wireSession(t, c, "vega")
	w.WriteFrame(wire.TypeHaveBlobs, (&wire.HaveBlobs{Req: 1, Handles: []blob.Handle{{ID: blob.Hash([]byte("x")), Type: blob.Data}}}).Append(nil))
	w.Flush()
	typ, body, _ := rd.Next(nil)
	if e, err := wire.DecodeError(body); typ != wire.TypeError || err != nil || e.Message != "node vega may not push" {
		t.Fatalf("a new session: %v %v %v", typ, e, err)
	}
	ws.exit()
}

// A session relayed from an OpenSSH forced command (serve --stdio
// --node vega) ends too when its node is removed from the
// configuration.
func TestRemovedNodeEndsRelayedSessions(t *testing.T) {
	lyra, vega := newTestNode(t, "lyra", "push"), newTestNode(t, "vega", "push")
	rn := serveTest(t, configText("", lyra, vega))
	in, inW := io.Pipe()
	var stdout, stderr bytes.Buffer
	type result struct {
		code int
		err  error
	}
	done := make(chan result, 1)
	go func() {
		code, err := Call(context.Background(), filepath.Join(rn.dir, "s.sock"), &Request{Kind: "node", Node: "vega", Command: "push --stdin --name db.sql", Repo: rn.a.r.Dir()}, in, &stdout, &stderr)
		done <- result{code, err}
	}()
	io.WriteString(inW, "the first half\n")
	rn.waitFor(`msg="node session started" node=vega command="push --stdin --name db.sql"`)
	rn.reload(configText("", lyra))
	io.WriteString(inW, "the second half\n")
	inW.Close()
	select {
	case r := <-done:
		if r.err != nil || r.code != 1 || stderr.String() != "cairn: node vega was removed from the configuration\n" {
			t.Fatalf("relayed session: exit %d, %v, stderr %q", r.code, r.err, stderr.String())
		}
	case <-time.After(time.Minute):
		t.Fatal("the relayed session did not end")
	}
	rn.waitFor(`msg="session revoked: it ends at its next request"`, "node=vega", `why="node vega was removed from the configuration"`)
	if strings.Contains(rn.log.String(), "snapshot=") {
		t.Fatalf("something was saved:\n%s", rn.log)
	}
}
