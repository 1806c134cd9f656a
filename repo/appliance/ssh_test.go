package appliance

import (
	"bytes"
	"context"
	"crypto/ed25519"
	"crypto/rand"
	"errors"
	"fmt"
	"net"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/cairnbackup/cairn/repo/blob"
	"github.com/cairnbackup/cairn/repo/repotest"
	"github.com/cairnbackup/cairn/repo/wire"
	"golang.org/x/crypto/ssh"
)

// testIdle is the appliance's idle_timeout here: long enough that a loaded
// CI machine under -race starts a session well within it.
const testIdle = time.Second

// startAppliance runs an appliance with node lyra on a loopback port and
// returns lyra's SSH client configuration and the address.
func startAppliance(t *testing.T) (*ssh.ClientConfig, string) {
	t.Helper()
	r := repotest.New(t)
	dir := t.TempDir()
	_, priv, _ := ed25519.GenerateKey(rand.Reader)
	signer, err := ssh.NewSignerFromKey(priv)
	if err != nil {
		t.Fatal(err)
	}
	cfg := fmt.Sprintf("nodes:\n  lyra:\n    keys: [%q]\n    permissions: [push]\nlimits:\n  idle_timeout: %s\n",
		strings.TrimSpace(string(ssh.MarshalAuthorizedKey(signer.PublicKey()))), testIdle)
	if err := os.WriteFile(filepath.Join(dir, "a.yaml"), []byte(cfg), 0o600); err != nil {
		t.Fatal(err)
	}
	if _, err := GenerateHostKey(filepath.Join(dir, "host_key")); err != nil {
		t.Fatal(err)
	}
	a, err := New(Options{Repo: r, ConfigPath: filepath.Join(dir, "a.yaml"), HostKeyPath: filepath.Join(dir, "host_key"), SocketPath: filepath.Join(dir, "s.sock")})
	if err != nil {
		t.Fatal(err)
	}
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan struct{})
	go func() { a.Run(ctx, ln); close(done) }()
	t.Cleanup(func() { cancel(); <-done })
	return &ssh.ClientConfig{User: "lyra", Auth: []ssh.AuthMethod{ssh.PublicKeys(signer)}, HostKeyCallback: ssh.InsecureIgnoreHostKey()}, ln.Addr().String()
}

// waitExit waits for a session's end and returns its exit status.
func waitExit(t *testing.T, s *ssh.Session) int {
	t.Helper()
	done := make(chan error, 1)
	go func() { done <- s.Wait() }()
	select {
	case err := <-done:
		var ee *ssh.ExitError
		if errors.As(err, &ee) {
			return ee.ExitStatus()
		}
		if err != nil {
			t.Fatalf("session ended without an exit status: %v", err)
		}
		return 0
	case <-time.After(testIdle + 10*time.Second):
		t.Fatal("the session was not ended")
		return -1
	}
}

// A node that stalls, found by the torture suite's hostile nodes, used to
// hold its session forever in three places: a tar or stdin stream gone
// silent, a session channel that never asks for a command, a connection
// that never opens a channel. All are now closed after idle_timeout. And
// a session the server ends (an Error, an idle timeout) used to close the
// channel under the node before its exit status: the node now gets both.
//
// Each case waits out the idle timeout on the real clock (the SSH
// server's deadlines are the kernel's), so the cases run in parallel,
// each against an appliance of its own.
func TestStalledNodesAreCutOff(t *testing.T) {
	t.Parallel()
	dial := func(t *testing.T) *ssh.Client {
		cc, addr := startAppliance(t)
		c, err := ssh.Dial("tcp", addr, cc)
		if err != nil {
			t.Fatal(err)
		}
		t.Cleanup(func() { c.Close() })
		return c
	}

	t.Run("tar stream goes silent", func(t *testing.T) {
		t.Parallel()
		s, err := dial(t).NewSession()
		if err != nil {
			t.Fatal(err)
		}
		in, _ := s.StdinPipe()
		var stderr bytes.Buffer
		s.Stderr = &stderr
		if err := s.Start("push --tar --name x"); err != nil {
			t.Fatal(err)
		}
		in.Write(make([]byte, 700)) // a tar header and a bit, then nothing
		if st := waitExit(t, s); st != 1 || !strings.Contains(stderr.String(), "idle timeout") {
			t.Fatalf("exit %d, stderr %q", st, stderr.String())
		}
	})

	t.Run("tar sparse bomb", func(t *testing.T) {
		t.Parallel()
		// 3 KiB announcing a sparse file of 1 EiB: processing never
		// reads another byte, so only the idle timeout can end it.
		s, err := dial(t).NewSession()
		if err != nil {
			t.Fatal(err)
		}
		in, _ := s.StdinPipe()
		var stderr bytes.Buffer
		s.Stderr = &stderr
		if err := s.Start("push --tar --name bomb"); err != nil {
			t.Fatal(err)
		}
		in.Write(sparseBomb())
		in.Close()
		if st := waitExit(t, s); st != 1 || !strings.Contains(stderr.String(), "idle timeout") {
			t.Fatalf("exit %d, stderr %q", st, stderr.String())
		}
	})

	t.Run("wire session refused", func(t *testing.T) {
		t.Parallel()
		s, err := dial(t).NewSession()
		if err != nil {
			t.Fatal(err)
		}
		in, _ := s.StdinPipe()
		out, _ := s.StdoutPipe()
		if err := s.Start("cairn-wire"); err != nil {
			t.Fatal(err)
		}
		w := wire.NewWriter(in)
		w.WriteFrame(wire.TypeHello, (&wire.Hello{MinVersion: 1, MaxVersion: 1, Client: "test"}).Append(nil))
		// A blob that does not match its ID: refused while it is
		// verified, after the frame was read.
		w.WriteFrame(wire.TypePutBlob, (&wire.PutBlob{Handle: blob.Handle{ID: blob.Hash([]byte("a")), Type: blob.Data}, RawLength: 1, Payload: []byte("b")}).Append(nil))
		w.Flush()
		r := wire.NewReader(out)
		var refused *wire.ErrorMsg
		for {
			typ, body, err := r.Next(nil)
			if err != nil {
				break
			}
			if typ == wire.TypeError {
				refused, _ = wire.DecodeError(body)
			}
		}
		if st := waitExit(t, s); st != 1 || refused == nil || refused.Code != wire.CodeBadBlob {
			t.Fatalf("exit %d, error %v", st, refused)
		}
	})

	t.Run("no command", func(t *testing.T) {
		t.Parallel()
		ch, reqs, err := dial(t).OpenChannel("session", nil)
		if err != nil {
			t.Fatal(err)
		}
		go ssh.DiscardRequests(reqs)
		done := make(chan struct{})
		go func() {
			b := make([]byte, 1)
			for {
				if _, err := ch.Read(b); err != nil {
					close(done)
					return
				}
			}
		}()
		select {
		case <-done:
		case <-time.After(testIdle + 10*time.Second):
			t.Fatal("a channel that runs no command stays open")
		}
	})

	t.Run("no channel", func(t *testing.T) {
		t.Parallel()
		c := dial(t)
		done := make(chan struct{})
		go func() { c.Wait(); close(done) }()
		select {
		case <-done:
		case <-time.After(testIdle + 10*time.Second):
			t.Fatal("a connection without a session stays open")
		}
	})
}

// sparseBomb is a tar stream of one PAX sparse (1.0) member whose real
// size is 1 EiB, all of it a hole.
func sparseBomb() []byte {
	rec := func(k, v string) string {
		n := len(k) + len(v) + 3
		for {
			s := fmt.Sprintf("%d %s=%s\n", n, k, v)
			if len(s) == n {
				return s
			}
			n = len(s)
		}
	}
	hdr := func(name string, typ byte, size int) []byte {
		h := make([]byte, 512)
		copy(h, name)
		copy(h[100:], "0000644\x00")
		copy(h[108:], "0000000\x00")
		copy(h[116:], "0000000\x00")
		copy(h[124:], fmt.Sprintf("%011o\x00", size))
		copy(h[136:], fmt.Sprintf("%011o\x00", 1700000000))
		h[156] = typ
		copy(h[257:], "ustar\x0000")
		copy(h[148:], "        ")
		sum := 0
		for _, c := range h {
			sum += int(c)
		}
		copy(h[148:], fmt.Sprintf("%06o\x00 ", sum))
		return h
	}
	recs := rec("GNU.sparse.major", "1") + rec("GNU.sparse.minor", "0") + rec("GNU.sparse.name", "bomb") + rec("GNU.sparse.realsize", "1152921504606846976")
	var b bytes.Buffer
	b.Write(hdr("PaxHeaders/bomb", 'x', len(recs)))
	b.WriteString(recs)
	b.Write(make([]byte, (512-len(recs)%512)%512))
	b.Write(hdr("GNUSparseFile.0/bomb", '0', 512))
	b.WriteString("1\n0\n0\n")
	b.Write(make([]byte, 512-6+1024))
	return b.Bytes()
}
