package appliance

import (
	"context"
	"encoding/binary"
	"errors"
	"fmt"
	"io"
	"net"
	"os"
	"time"

	"golang.org/x/crypto/ssh"
)

// sshConfig builds the server configuration: public keys only, each
// mapped to its node, the user name must be the node's name; ciphers
// limited to AES-GCM (x/crypto's chacha20-poly1305 is several times
// slower, and OpenSSH clients prefer it when offered).
func (a *Appliance) sshConfig() *ssh.ServerConfig {
	c := &ssh.ServerConfig{
		PublicKeyCallback: func(meta ssh.ConnMetadata, key ssh.PublicKey) (*ssh.Permissions, error) {
			cfg := a.Config()
			name, n := cfg.NodeForKey(key)
			if n == nil {
				return nil, keyRefused{fmt.Errorf("unknown key %s", ssh.FingerprintSHA256(key))}
			}
			if meta.User() != name {
				return nil, keyRefused{fmt.Errorf("key of node %s used as user %q", name, meta.User())}
			}
			return &ssh.Permissions{Extensions: map[string]string{"node": name, "key": string(key.Marshal()), "fp": ssh.FingerprintSHA256(key)}}, nil
		},
		ServerVersion: "SSH-2.0-cairn",
		MaxAuthTries:  6,
	}
	c.Ciphers = []string{"aes128-gcm@openssh.com", "aes256-gcm@openssh.com"}
	c.AddHostKey(a.hostKey)
	return c
}

func (a *Appliance) acceptSSH(ctx context.Context, ln net.Listener) {
	cfg := a.sshConfig()
	a.acceptLoop(ln, "ssh", func(conn net.Conn) {
		a.admitSSH(conn, func(conn net.Conn, handshakeDone func()) { a.serveSSH(ctx, conn, cfg, handshakeDone) })
	})
}

// serveSSH authenticates one connection and runs its session channels;
// handshakeDone is called as soon as the handshake has ended, whether the
// node logged in or not (the connection then no longer counts as
// unauthenticated).
func (a *Appliance) serveSSH(ctx context.Context, conn net.Conn, cfg *ssh.ServerConfig, handshakeDone func()) {
	defer conn.Close()
	// The handshake must finish quickly; sessions then set their own
	// idle limits.
	timeout := a.Config().Limits.HandshakeTimeout
	conn.SetDeadline(time.Now().Add(timeout))
	sc, chans, reqs, err := ssh.NewServerConn(conn, cfg)
	handshakeDone()
	if err != nil {
		if errors.Is(err, os.ErrDeadlineExceeded) {
			err = fmt.Errorf("%w: no login within %s (limits.handshake_timeout)", err, timeout)
		}
		a.countLogin(err)
		a.log.Warn("ssh connection refused", "remote", conn.RemoteAddr().String(), "err", err)
		return
	}
	conn.SetDeadline(time.Time{})
	defer sc.Close()
	ext := sc.Permissions.Extensions
	c := &sshConn{g: grant{node: ext["node"], key: ext["key"], fp: ext["fp"]}, sc: sc}
	node := c.g.node
	go ssh.DiscardRequests(reqs)
	// A connection with no session channel open for idle_timeout is
	// closed: an authenticated node cannot hold connections for nothing.
	timeout = a.Config().Limits.IdleTimeout
	c.idle = time.AfterFunc(timeout, func() {
		a.log.Warn("ssh connection closed: no session", "node", node, "idle_timeout", timeout)
		sc.Close()
	})
	defer c.idle.Stop()
	c.idleTimeout = timeout
	// Registered for revocation; a reload between the login and here is
	// caught by the check of each channel.
	a.mu.Lock()
	a.conns[c] = true
	a.mu.Unlock()
	defer func() {
		a.mu.Lock()
		delete(a.conns, c)
		a.mu.Unlock()
	}()
	ctx = context.WithValue(ctx, connKey{}, c)
	for nc := range chans {
		if nc.ChannelType() != "session" {
			nc.Reject(ssh.UnknownChannelType, "only session channels")
			continue
		}
		if err := c.channel(a.Config()); err != nil {
			a.countRefused(refusedRevoked)
			a.log.Warn("session channel refused", "node", node, "key", c.g.fp, "why", err)
			nc.Reject(ssh.Prohibited, err.Error())
			continue
		}
		ch, chReqs, err := nc.Accept()
		if err != nil {
			c.ended()
			continue
		}
		go func() {
			a.sshSession(ctx, c, ch, chReqs)
			c.ended()
		}()
	}
}

// sessionInput relays a channel's data through a pipe, so that a session
// can stop reading (by closing what it returns: an Error sent, an idle
// timeout) while the channel stays open for the exit status. The relay
// ends when the channel is closed.
func sessionInput(ch ssh.Channel) io.ReadCloser {
	pr, pw := io.Pipe()
	go func() {
		_, err := io.Copy(pw, ch)
		pw.CloseWithError(err)
	}()
	return pr
}

// sshSession waits for the exec request and runs the node command. A
// channel that asks for no command within idle_timeout is closed.
func (a *Appliance) sshSession(ctx context.Context, c *sshConn, ch ssh.Channel, reqs <-chan *ssh.Request) {
	defer ch.Close()
	node := c.g.node
	timeout := a.Config().Limits.IdleTimeout
	idle := time.AfterFunc(timeout, func() {
		a.log.Warn("session closed: no command", "node", node, "idle_timeout", timeout)
		ch.Close()
	})
	defer idle.Stop()
	for req := range reqs {
		switch req.Type {
		case "exec":
			if !idle.Stop() {
				return // closed for idleness meanwhile
			}
			var cmd struct{ Command string }
			if err := ssh.Unmarshal(req.Payload, &cmd); err != nil {
				req.Reply(false, nil)
				idle.Reset(timeout)
				continue
			}
			req.Reply(true, nil)
			go ssh.DiscardRequests(reqs)
			cfg := a.Config()
			if err := c.g.checkKey(cfg); err != nil {
				a.countRefused(refusedRevoked)
				fmt.Fprintf(ch.Stderr(), "cairn: %v\n", err)
				exit(ch, 1)
				return
			}
			n := cfg.Nodes[node]
			in := sessionInput(ch)
			code := a.NodeSession(ctx, node, n.Perms(), n.Isolated, cmd.Command, in, ch, ch.Stderr())
			in.Close() // ends the relay even if the node sends more
			ch.CloseWrite()
			exit(ch, code)
			return
		case "env":
			req.Reply(true, nil) // ignored
		default:
			// No shells, no terminals, no forwarding.
			req.Reply(false, nil)
		}
	}
}

func exit(ch ssh.Channel, code int) {
	var b [4]byte
	binary.BigEndian.PutUint32(b[:], uint32(code))
	ch.SendRequest("exit-status", false, b[:])
}
