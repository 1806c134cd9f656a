// Package dial reaches an appliance from a node: it parses the
// appliance's address (ssh://NODE@HOST[:PORT]), connects over SSH with
// the built-in client (x/crypto/ssh, AES-GCM, the node's key, the
// appliance's host key checked against known_hosts or pinned by its
// fingerprint) or through an ssh command, runs cairn-wire there and
// starts a wire session as the node. cairn push and restore --from (and
// snapshots --from) dial through it.
//
// # Bounds
//
// x/crypto/ssh bounds only the TCP dial. Every later phase of
// connecting (the SSH handshake; opening the session channel and the
// exec of cairn-wire; the wire handshake) runs under a timer and a
// context.AfterFunc that close the raw connection under the blocked
// call: a phase that outlasts Options.Timeout fails with an error
// matching wire.ErrSilent, one that ctx ends with ctx's error. The wire
// client watches the appliance's silence from then on.
package dial

import (
	"context"
	"errors"
	"fmt"
	"io"
	"net"
	"net/url"
	"os"
	"os/exec"
	"path/filepath"
	"slices"
	"strings"
	"time"

	"github.com/cairnbackup/cairn/repo/snapshot"
	"github.com/cairnbackup/cairn/repo/wire"
	"golang.org/x/crypto/ssh"
	"golang.org/x/crypto/ssh/knownhosts"
)

// The phases of connecting, as messages name them.
const (
	PhaseConnect = "while connecting"
	PhaseSSH     = "during the SSH handshake"
	PhaseStart   = "while starting cairn-wire"
	PhaseHello   = "during the wire handshake"
)

// Target is a parsed ssh://NODE@HOST:PORT.
type Target struct {
	Node, Host, Port string
}

// ParseTarget parses ssh://NODE@HOST[:PORT]; the port is 2222 unless
// given.
func ParseTarget(s string) (Target, error) {
	u, err := url.Parse(s)
	if err != nil || u.Scheme != "ssh" || u.User == nil || u.User.Username() == "" || u.Hostname() == "" || (u.Path != "" && u.Path != "/") {
		return Target{}, fmt.Errorf("%q is not ssh://NODE@HOST[:PORT]", s)
	}
	t := Target{Node: u.User.Username(), Host: u.Hostname(), Port: u.Port()}
	if t.Port == "" {
		t.Port = "2222"
	}
	return t, snapshot.CheckName("node", t.Node)
}

// Addr is the target's host:port.
func (t Target) Addr() string { return net.JoinHostPort(t.Host, t.Port) }

// Options say how to reach an appliance over SSH.
type Options struct {
	Identity   string // the node's private key file; "" is ~/.ssh/id_ed25519
	KnownHosts string // the known_hosts file; "" is ~/.ssh/known_hosts
	HostKey    string // the appliance's host key fingerprint (SHA256:...), pinned instead of known_hosts
	SSHCommand string // an ssh client command ("ssh -i KEY") to use instead of the built-in client
	// Timeout bounds each phase of connecting, and the wire session's
	// waits for the appliance.
	Timeout time.Duration
	// Stderr takes the appliance's standard error (and the ssh
	// command's).
	Stderr io.Writer
	// Phase, if set, is told each phase of connecting as it begins.
	Phase func(phase string)
}

// HostKeyError is an appliance whose host key is not the one expected:
// not the fingerprint pinned, or not in the known_hosts file.
type HostKeyError struct {
	Host        string // as dialled (host:port)
	Fingerprint string // of the key the appliance presented
	Pinned      string // the fingerprint pinned (Options.HostKey), or ""
	KnownHosts  string // otherwise the known_hosts file that lacks the key
}

func (e *HostKeyError) Error() string {
	if e.Pinned != "" {
		return fmt.Sprintf("the host key of %s is %s, not %s", e.Host, e.Fingerprint, e.Pinned)
	}
	return fmt.Sprintf("the host key of %s is not in %s: its fingerprint is %s", e.Host, e.KnownHosts, e.Fingerprint)
}

// KnownHostsError is a known_hosts file that could not be read.
type KnownHostsError struct {
	Path string
	Err  error
}

func (e *KnownHostsError) Error() string { return "known hosts: " + e.Err.Error() }
func (e *KnownHostsError) Unwrap() error { return e.Err }

func (o *Options) phase(p string) {
	if o.Phase != nil {
		o.Phase(p)
	}
}

// Session connects to the appliance at t over SSH and starts a wire
// session as its node; client names this program in the handshake.
// Every phase (TCP connect, SSH handshake, starting cairn-wire, the wire
// handshake) ends when the appliance is silent for the timeout, and at
// once when ctx ends; so does the session itself.
func Session(ctx context.Context, t Target, o Options, client string) (*wire.Client, error) {
	conn, err := Connect(ctx, t, o)
	if err != nil {
		return nil, err
	}
	o.phase(PhaseHello)
	c, err := wire.DialTimeout(ctx, conn, client, t.Node, o.Timeout)
	if err != nil {
		conn.Close()
		return nil, err
	}
	return c, nil
}

// Stream is the byte stream to cairn-wire on the appliance.
type Stream interface {
	io.ReadWriteCloser
	wire.Aborter
}

// Connect opens the SSH stream to the appliance and runs cairn-wire on it.
func Connect(ctx context.Context, t Target, o Options) (Stream, error) {
	if o.SSHCommand != "" {
		argv := strings.Fields(o.SSHCommand)
		dest := t.Node + "@" + t.Host
		if slices.Contains(argv, "-l") {
			// The login is the command's (the appliance's account, for
			// an OpenSSH forced command that names the node itself).
			dest = t.Host
		}
		argv = append(argv, "-p", t.Port, dest, "cairn-wire")
		// No CommandContext: the wire client aborts (kills) ssh when
		// ctx ends or the appliance is silent, in the wire handshake
		// (which covers ssh's connecting) or later.
		cmd := exec.Command(argv[0], argv[1:]...)
		cmd.Stderr = o.Stderr
		in, err := cmd.StdinPipe()
		if err != nil {
			return nil, err
		}
		out, err := cmd.StdoutPipe()
		if err != nil {
			return nil, err
		}
		if err := cmd.Start(); err != nil {
			return nil, fmt.Errorf("ssh command: %w", err)
		}
		return &cmdStream{r: out, w: in, cmd: cmd, timeout: o.Timeout}, nil
	}
	home, _ := os.UserHomeDir()
	keyPath := o.Identity
	if keyPath == "" {
		keyPath = filepath.Join(home, ".ssh", "id_ed25519")
	}
	kb, err := os.ReadFile(keyPath)
	if err != nil {
		return nil, fmt.Errorf("identity: %w", err)
	}
	signer, err := ssh.ParsePrivateKey(kb)
	if err != nil {
		return nil, fmt.Errorf("identity %s: %w", keyPath, err)
	}
	check, err := o.hostKeyCallback(home)
	if err != nil {
		return nil, err
	}
	cfg := &ssh.ClientConfig{User: t.Node, Auth: []ssh.AuthMethod{ssh.PublicKeys(signer)}, HostKeyCallback: check}
	cfg.Ciphers = []string{"aes128-gcm@openssh.com", "aes256-gcm@openssh.com"}
	o.phase(PhaseConnect)
	d := net.Dialer{Timeout: o.Timeout}
	addr := t.Addr()
	conn, err := d.DialContext(ctx, "tcp", addr)
	if err != nil {
		return nil, err
	}
	// x/crypto/ssh bounds none of the phases below: the connection is
	// closed under them when the appliance is silent or ctx ends.
	var client *ssh.Client
	err = o.bounded(ctx, PhaseSSH, conn, func() error {
		sc, chans, reqs, err := ssh.NewClientConn(conn, addr, cfg)
		if err == nil {
			client = ssh.NewClient(sc, chans, reqs)
		}
		return err
	})
	if err != nil {
		conn.Close()
		return nil, err
	}
	s := &sshStream{client: client, conn: conn, timeout: o.Timeout}
	err = o.bounded(ctx, PhaseStart, conn, func() error {
		if s.sess, err = client.NewSession(); err != nil {
			return err
		}
		s.sess.Stderr = o.Stderr
		if s.w, err = s.sess.StdinPipe(); err != nil {
			return err
		}
		if s.r, err = s.sess.StdoutPipe(); err != nil {
			return err
		}
		return s.sess.Start("cairn-wire")
	})
	if err != nil {
		client.Close()
		return nil, err
	}
	return s, nil
}

// bounded runs one phase of connecting under the timeout: when it
// fires, or ctx ends, closing conn unblocks step.
func (o *Options) bounded(ctx context.Context, phase string, conn net.Conn, step func() error) error {
	o.phase(phase)
	timer := time.AfterFunc(o.Timeout, func() { conn.Close() })
	stop := context.AfterFunc(ctx, func() { conn.Close() })
	err := step()
	fired, cancelled := !timer.Stop(), !stop()
	switch {
	case cancelled:
		return ctx.Err()
	case fired:
		return wire.ErrSilent
	}
	return err
}

// hostKeyCallback checks the appliance's host key against the pinned
// fingerprint, or else the known_hosts file; a key that is not there is
// a *HostKeyError (known_hosts's own error for a key that differs from
// the one it lists).
func (o *Options) hostKeyCallback(home string) (ssh.HostKeyCallback, error) {
	if o.HostKey != "" {
		want := o.HostKey
		return func(host string, _ net.Addr, key ssh.PublicKey) error {
			if got := ssh.FingerprintSHA256(key); got != want {
				return &HostKeyError{Host: host, Fingerprint: got, Pinned: want}
			}
			return nil
		}, nil
	}
	path := o.KnownHosts
	if path == "" {
		path = filepath.Join(home, ".ssh", "known_hosts")
	}
	cb, err := knownhosts.New(path)
	if err != nil {
		return nil, &KnownHostsError{Path: path, Err: err}
	}
	return func(host string, remote net.Addr, key ssh.PublicKey) error {
		err := cb(host, remote, key)
		var ke *knownhosts.KeyError
		if errors.As(err, &ke) && len(ke.Want) == 0 {
			return &HostKeyError{Host: host, Fingerprint: ssh.FingerprintSHA256(key), KnownHosts: path}
		}
		return err
	}, nil
}

type sshStream struct {
	r       io.Reader
	w       io.WriteCloser
	sess    *ssh.Session
	client  *ssh.Client
	conn    net.Conn
	timeout time.Duration
}

func (s *sshStream) Read(p []byte) (int, error)  { return s.r.Read(p) }
func (s *sshStream) Write(p []byte) (int, error) { return s.w.Write(p) }

// Close ends the session in order (the appliance's last words on
// standard error and its exit status arrive); an appliance that does not
// end it within the timeout gets the connection closed.
func (s *sshStream) Close() error {
	t := time.AfterFunc(s.timeout, func() { s.conn.Close() })
	defer t.Stop()
	s.w.Close()
	s.sess.Wait()
	return s.client.Close()
}

// Abort closes the connection at once.
func (s *sshStream) Abort() error { return s.conn.Close() }

type cmdStream struct {
	r       io.Reader
	w       io.WriteCloser
	cmd     *exec.Cmd
	timeout time.Duration
}

func (s *cmdStream) Read(p []byte) (int, error)  { return s.r.Read(p) }
func (s *cmdStream) Write(p []byte) (int, error) { return s.w.Write(p) }

// Close ends ssh's standard input and waits for it to exit, at most the
// timeout.
func (s *cmdStream) Close() error {
	t := time.AfterFunc(s.timeout, func() { s.cmd.Process.Kill() })
	defer t.Stop()
	s.w.Close()
	return s.cmd.Wait()
}

// Abort kills ssh.
func (s *cmdStream) Abort() error { return s.cmd.Process.Kill() }
