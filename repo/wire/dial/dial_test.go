package dial_test

import (
	"context"
	"crypto/ed25519"
	"crypto/rand"
	"encoding/pem"
	"errors"
	"fmt"
	"io"
	"net"
	"os"
	"path/filepath"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/cairnbackup/cairn/repo/wire"
	"github.com/cairnbackup/cairn/repo/wire/dial"
	"golang.org/x/crypto/ssh"
	"golang.org/x/crypto/ssh/knownhosts"
)

func TestParseTarget(t *testing.T) {
	for _, c := range []struct {
		in   string
		want dial.Target
		err  string
	}{
		{"ssh://lyra@backup.example", dial.Target{Node: "lyra", Host: "backup.example", Port: "2222"}, ""},
		{"ssh://lyra@10.0.0.2:22/", dial.Target{Node: "lyra", Host: "10.0.0.2", Port: "22"}, ""},
		{"ssh://lyra@[::1]:2200", dial.Target{Node: "lyra", Host: "::1", Port: "2200"}, ""},
		{"lyra@backup.example", dial.Target{}, `"lyra@backup.example" is not ssh://NODE@HOST[:PORT]`},
		{"ssh://backup.example", dial.Target{}, `"ssh://backup.example" is not ssh://NODE@HOST[:PORT]`},
		{"ssh://lyra@backup.example/srv", dial.Target{}, `"ssh://lyra@backup.example/srv" is not ssh://NODE@HOST[:PORT]`},
	} {
		got, err := dial.ParseTarget(c.in)
		switch {
		case c.err != "" && (err == nil || err.Error() != c.err):
			t.Errorf("%s: %v, want error %q", c.in, err, c.err)
		case c.err == "" && (err != nil || got != c.want):
			t.Errorf("%s: %+v, %v; want %+v", c.in, got, err, c.want)
		}
	}
	if a := (dial.Target{Host: "::1", Port: "2200"}).Addr(); a != "[::1]:2200" {
		t.Errorf("Addr %q", a)
	}
}

func signer(t *testing.T) ssh.Signer {
	t.Helper()
	_, priv, err := ed25519.GenerateKey(rand.Reader)
	if err != nil {
		t.Fatal(err)
	}
	s, err := ssh.NewSignerFromKey(priv)
	if err != nil {
		t.Fatal(err)
	}
	return s
}

// identity writes a node key in OpenSSH format and returns its path and
// public key.
func identity(t *testing.T) (string, ssh.PublicKey) {
	t.Helper()
	_, priv, _ := ed25519.GenerateKey(rand.Reader)
	block, err := ssh.MarshalPrivateKey(priv, "lyra")
	if err != nil {
		t.Fatal(err)
	}
	path := filepath.Join(t.TempDir(), "id_ed25519")
	if err := os.WriteFile(path, pem.EncodeToMemory(block), 0o600); err != nil {
		t.Fatal(err)
	}
	s, err := ssh.NewSignerFromKey(priv)
	if err != nil {
		t.Fatal(err)
	}
	return path, s.PublicKey()
}

// server is an SSH server on a loopback port with host key hostKey that
// lets node lyra in with key node. Each exec request goes to exec with
// its channel; nil answers no request at all (a stalled appliance).
func server(t *testing.T, hostKey ssh.Signer, node ssh.PublicKey, exec func(cmd string, ch ssh.Channel)) string {
	t.Helper()
	cfg := &ssh.ServerConfig{PublicKeyCallback: func(c ssh.ConnMetadata, k ssh.PublicKey) (*ssh.Permissions, error) {
		if c.User() == "lyra" && string(k.Marshal()) == string(node.Marshal()) {
			return nil, nil
		}
		return nil, errors.New("no")
	}}
	cfg.AddHostKey(hostKey)
	ln := listen(t)
	go func() {
		for {
			conn, err := ln.Accept()
			if err != nil {
				return
			}
			go func() {
				_, chans, reqs, err := ssh.NewServerConn(conn, cfg)
				if err != nil {
					return
				}
				go ssh.DiscardRequests(reqs)
				for nc := range chans {
					ch, reqs, err := nc.Accept()
					if err != nil {
						return
					}
					go func() {
						for req := range reqs {
							if exec == nil {
								continue // never answered
							}
							var p struct{ Command string }
							ssh.Unmarshal(req.Payload, &p)
							req.Reply(req.Type == "exec", nil)
							if req.Type == "exec" {
								go exec(p.Command, ch)
							}
						}
					}()
				}
			}()
		}
	}()
	return ln.Addr().String()
}

// connListener is a loopback listener whose accepted connections are
// closed with it when the test ends.
type connListener struct {
	net.Listener
	mu    sync.Mutex
	conns []net.Conn
}

func (l *connListener) Accept() (net.Conn, error) {
	c, err := l.Listener.Accept()
	if err == nil {
		l.mu.Lock()
		l.conns = append(l.conns, c)
		l.mu.Unlock()
	}
	return c, err
}

func listen(t *testing.T) *connListener {
	t.Helper()
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	l := &connListener{Listener: ln}
	t.Cleanup(func() {
		ln.Close()
		l.mu.Lock()
		defer l.mu.Unlock()
		for _, c := range l.conns {
			c.Close()
		}
	})
	return l
}

func target(t *testing.T, addr string) dial.Target {
	t.Helper()
	host, port, err := net.SplitHostPort(addr)
	if err != nil {
		t.Fatal(err)
	}
	return dial.Target{Node: "lyra", Host: host, Port: port}
}

// The appliance's host key is checked against the pinned fingerprint or
// known_hosts; a key that is not the one expected is a *HostKeyError
// naming the key's fingerprint and what it was checked against, and no
// command runs.
func TestHostKeyChecks(t *testing.T) {
	hostKey := signer(t)
	key, pub := identity(t)
	ran := make(chan string, 8)
	addr := server(t, hostKey, pub, func(cmd string, ch ssh.Channel) {
		ran <- cmd
		ch.SendRequest("exit-status", false, ssh.Marshal(struct{ Status uint32 }{0}))
		ch.Close()
	})
	tg := target(t, addr)
	fp := ssh.FingerprintSHA256(hostKey.PublicKey())
	dir := t.TempDir()
	knownHosts := func(name string, k ssh.PublicKey) string {
		p := filepath.Join(dir, name)
		if err := os.WriteFile(p, []byte(knownhosts.Line([]string{addr}, k)+"\n"), 0o600); err != nil {
			t.Fatal(err)
		}
		return p
	}
	listed, other := knownHosts("listed", hostKey.PublicKey()), knownHosts("other", signer(t).PublicKey())
	empty := filepath.Join(dir, "empty")
	os.WriteFile(empty, nil, 0o600)

	for _, c := range []struct {
		name string
		o    dial.Options
		want string // the error; "" for a connection that runs cairn-wire
	}{
		{"pinned", dial.Options{HostKey: fp}, ""},
		{"known", dial.Options{KnownHosts: listed}, ""},
		{"pinned other", dial.Options{HostKey: "SHA256:other"}, fmt.Sprintf("ssh: handshake failed: the host key of %s is %s, not SHA256:other", addr, fp)},
		{"not known", dial.Options{KnownHosts: empty}, fmt.Sprintf("ssh: handshake failed: the host key of %s is not in %s: its fingerprint is %s", addr, empty, fp)},
		{"known as another", dial.Options{KnownHosts: other}, "ssh: handshake failed: knownhosts: key mismatch"},
		{"known_hosts missing", dial.Options{KnownHosts: filepath.Join(dir, "missing")}, "known hosts: open " + filepath.Join(dir, "missing") + ": no such file or directory"},
	} {
		t.Run(c.name, func(t *testing.T) {
			o := c.o
			o.Identity, o.Timeout, o.Stderr = key, time.Minute, io.Discard
			s, err := dial.Connect(t.Context(), tg, o)
			if c.want == "" {
				if err != nil {
					t.Fatal(err)
				}
				if cmd := <-ran; cmd != "cairn-wire" {
					t.Errorf("ran %q", cmd)
				}
				s.Close()
				return
			}
			if err == nil {
				s.Close()
				t.Fatalf("connected; want %q", c.want)
			}
			if err.Error() != c.want {
				t.Fatalf("error %q\nwant %q", err, c.want)
			}
			he, ok := errors.AsType[*dial.HostKeyError](err)
			switch c.name {
			case "pinned other":
				if !ok || he.Pinned != "SHA256:other" || he.Fingerprint != fp {
					t.Errorf("%#v", he)
				}
			case "not known":
				if !ok || he.KnownHosts != empty || he.Fingerprint != fp {
					t.Errorf("%#v", he)
				}
			case "known_hosts missing":
				if _, ok := errors.AsType[*dial.KnownHostsError](err); !ok || !errors.Is(err, os.ErrNotExist) {
					t.Errorf("%#v", err)
				}
			}
		})
	}
	select {
	case cmd := <-ran:
		t.Errorf("a refused appliance ran %q", cmd)
	default:
	}
}

// Every phase of connecting ends when the appliance is silent for the
// timeout (an error matching wire.ErrSilent, the phase reported), and at
// once when the context ends.
func TestPhasesBounded(t *testing.T) {
	key, pub := identity(t)
	hostKey := signer(t)
	fp := ssh.FingerprintSHA256(hostKey.PublicKey())

	// Accepts and never speaks: the SSH handshake is silent.
	mute := listen(t)
	go func() {
		for {
			if _, err := mute.Accept(); err != nil {
				return
			}
		}
	}()
	// Logs the node in and never answers its exec request.
	stalled := server(t, hostKey, pub, nil)
	// Runs cairn-wire and never answers the Hello.
	silent := server(t, hostKey, pub, func(string, ssh.Channel) {})

	for _, c := range []struct {
		name, addr, phase string
		session           bool
	}{
		{"ssh handshake", mute.Addr().String(), dial.PhaseSSH, false},
		{"starting cairn-wire", stalled, dial.PhaseStart, false},
		{"wire handshake", silent, dial.PhaseHello, true},
	} {
		t.Run(c.name, func(t *testing.T) {
			t.Parallel() // each waits out the 200ms on the real clock
			var phases []string
			o := dial.Options{Identity: key, HostKey: fp, Timeout: 200 * time.Millisecond, Stderr: io.Discard,
				Phase: func(p string) { phases = append(phases, p) }}
			var err error
			if c.session {
				_, err = dial.Session(t.Context(), target(t, c.addr), o, "test")
			} else {
				_, err = dial.Connect(t.Context(), target(t, c.addr), o)
			}
			if !errors.Is(err, wire.ErrSilent) {
				t.Fatalf("%v, want wire.ErrSilent", err)
			}
			if len(phases) == 0 || phases[len(phases)-1] != c.phase {
				t.Fatalf("phases %q, want the last %q", phases, c.phase)
			}
			if phases[0] != dial.PhaseConnect {
				t.Fatalf("phases %q start elsewhere", phases)
			}
		})
	}

	t.Run("cancelled", func(t *testing.T) {
		ctx, cancel := context.WithCancel(t.Context())
		o := dial.Options{Identity: key, HostKey: fp, Timeout: time.Hour, Stderr: io.Discard,
			Phase: func(p string) {
				if p == dial.PhaseStart {
					cancel()
				}
			}}
		_, err := dial.Connect(ctx, target(t, stalled), o)
		if !errors.Is(err, context.Canceled) {
			t.Fatalf("%v, want context.Canceled", err)
		}
	})
}

// The ssh command runs as NODE@HOST -p PORT cairn-wire, or HOST alone
// when the command names the login itself (-l).
func TestSSHCommand(t *testing.T) {
	dir := t.TempDir()
	fake := filepath.Join(dir, "ssh")
	// Prints its arguments and exits: the stream ends there.
	if err := os.WriteFile(fake, []byte("#!/bin/sh\necho \"$@\"\n"), 0o755); err != nil {
		t.Fatal(err)
	}
	tg := dial.Target{Node: "lyra", Host: "backup.example", Port: "22"}
	for _, c := range []struct{ cmd, want string }{
		{fake + " -i key", "-i key -p 22 lyra@backup.example cairn-wire\n"},
		{fake + " -l cairn", "-l cairn -p 22 backup.example cairn-wire\n"},
	} {
		s, err := dial.Connect(t.Context(), tg, dial.Options{SSHCommand: c.cmd, Timeout: time.Minute})
		if err != nil {
			t.Fatal(err)
		}
		out, err := io.ReadAll(s)
		s.Close()
		if err != nil || string(out) != c.want {
			t.Errorf("%s: %q, %v; want %q", c.cmd, out, err, c.want)
		}
	}
	_, err := dial.Connect(t.Context(), tg, dial.Options{SSHCommand: filepath.Join(dir, "none"), Timeout: time.Minute})
	if err == nil || !strings.HasPrefix(err.Error(), "ssh command: ") {
		t.Errorf("a missing ssh command: %v", err)
	}
}
