package appliance

import (
	"bytes"
	"context"
	"fmt"
	"io"
	"slices"
	"sync"
	"sync/atomic"
	"time"

	"github.com/cairnbackup/cairn/repo/wire"
	"golang.org/x/crypto/ssh"
)

// A reload takes effect on what is running too. Every authenticated SSH
// connection and every node session is registered with the grant it was
// admitted under; after each reload, those the new configuration no
// longer grants are revoked:
//
//   - a connection whose key is no longer its node's (or whose node is
//     gone) gets no new channel, and is closed once its running sessions
//     have ended (at once when it has none);
//   - a session ends at its next request: a wire session at its next
//     frame (SessionConfig.Authorized), a tar or stdin stream at its next
//     read. What it had done stays; an unfinished push leaves no
//     snapshot. Sessions relayed from OpenSSH forced commands have no
//     key here: they end when their node is removed;
//   - a session whose node lost one of its permissions, or became
//     isolated, ends the same way; a new session gets what the node has
//     now.

// grant is what a connection or session was admitted as.
type grant struct {
	node string
	// key is the public key that logged in (marshalled) and its
	// fingerprint; empty for a session relayed from an OpenSSH forced
	// command, which OpenSSH authenticated.
	key, fp  string
	perms    wire.Perm
	isolated bool
}

// checkKey says why cfg no longer lets g's key log in as its node.
func (g *grant) checkKey(cfg *Config) error {
	n := cfg.Nodes[g.node]
	if n == nil {
		return fmt.Errorf("node %s was removed from the configuration", g.node)
	}
	if g.key != "" && !slices.ContainsFunc(n.keys, func(k []byte) bool { return bytes.Equal(k, []byte(g.key)) }) {
		return fmt.Errorf("the key %s of node %s was revoked", g.fp, g.node)
	}
	return nil
}

// check says why cfg no longer grants a session what g holds.
func (g *grant) check(cfg *Config) error {
	if err := g.checkKey(cfg); err != nil {
		return err
	}
	n := cfg.Nodes[g.node]
	if lost := g.perms &^ n.Perms(); lost != 0 {
		return fmt.Errorf("node %s lost the %s permission", g.node, lost)
	}
	if n.Isolated && !g.isolated {
		return fmt.Errorf("node %s is isolated now", g.node)
	}
	return nil
}

// connKey is the context key of the *sshConn a session runs on.
type connKey struct{}

// sshConn is an authenticated connection of the embedded SSH server.
type sshConn struct {
	g  grant
	sc *ssh.ServerConn

	mu          sync.Mutex
	open        int         // session channels open
	revoked     error       // why the connection was revoked, or nil
	idle        *time.Timer // closes the connection while no channel is open
	idleTimeout time.Duration
}

// channel admits a new session channel, or says why not.
func (c *sshConn) channel(cfg *Config) error {
	c.mu.Lock()
	defer c.mu.Unlock()
	if c.revoked != nil {
		return c.revoked
	}
	if err := c.g.checkKey(cfg); err != nil {
		return err
	}
	c.open++
	c.idle.Stop()
	return nil
}

// ended counts a session channel's end. When it was the last, a revoked
// connection is closed, another one gets idle_timeout to open the next.
func (c *sshConn) ended() {
	c.mu.Lock()
	defer c.mu.Unlock()
	if c.open--; c.open > 0 {
		return
	}
	if c.revoked != nil {
		c.sc.Close()
		return
	}
	c.idle.Reset(c.idleTimeout)
}

// revoke stops the connection's new channels and closes it now when it
// has no session, or else when its last one ends.
func (c *sshConn) revoke(why error) {
	c.mu.Lock()
	defer c.mu.Unlock()
	c.revoked = why
	if c.open == 0 {
		c.sc.Close()
	}
}

// session is a node session in progress.
type session struct {
	g       grant
	command string
	cancel  context.CancelCauseFunc
	untrack func()
	revoked atomic.Pointer[error]
}

// openSession counts a node session against the limits and registers it
// for revocation; ctx (which the session must use) is cancelled when it
// is closed. A session whose grant the configuration in force no longer
// holds (a reload came between its connection's check and now) is
// refused.
func (a *Appliance) openSession(ctx context.Context, node string, perms wire.Perm, isolated bool, command string) (context.Context, *session, error) {
	ctx, cancel := context.WithCancelCause(ctx)
	s := &session{g: grant{node: node, perms: perms, isolated: isolated}, command: command, cancel: cancel}
	if c, ok := ctx.Value(connKey{}).(*sshConn); ok {
		s.g.key, s.g.fp = c.g.key, c.g.fp
	}
	untrack, err := a.track(node, func() { cancel(nil) })
	if err != nil {
		cancel(nil)
		a.countRefused(refusedLimits)
		return nil, nil, err
	}
	s.untrack = func() {
		a.mu.Lock()
		delete(a.live, s)
		a.mu.Unlock()
		untrack()
	}
	a.mu.Lock()
	cfg := a.Config()
	// A relayed session of a node the configuration does not name is
	// not this check's to refuse (it is refused, or served with the
	// defaults, before it gets here); a reload ends it.
	if cfg.Nodes[node] != nil || s.g.key != "" {
		err = s.g.check(cfg)
	}
	if err == nil {
		a.live[s] = true
	}
	a.mu.Unlock()
	if err != nil {
		s.close()
		a.countRefused(refusedRevoked)
		return nil, nil, err
	}
	return ctx, s, nil
}

// close ends the session's registration and cancels its context.
func (s *session) close() {
	s.cancel(nil)
	s.untrack()
}

// authorized is the session's wire.SessionConfig.Authorized: the reason
// it was revoked, or nil.
func (s *session) authorized() error {
	if p := s.revoked.Load(); p != nil {
		return *p
	}
	return nil
}

// input ends a stream at its first read after the session was revoked,
// cancelling the session with the reason (which the push then reports).
func (s *session) input(r io.Reader) io.Reader { return revocableReader{r, s} }

type revocableReader struct {
	r io.Reader
	s *session
}

func (rr revocableReader) Read(p []byte) (int, error) {
	n, err := rr.r.Read(p)
	if why := rr.s.authorized(); why != nil {
		rr.s.cancel(why)
		return 0, why
	}
	return n, err
}

// Close closes the underlying stream (the idle timeout uses it to end a
// read blocked on a silent node).
func (rr revocableReader) Close() error {
	if c, ok := rr.r.(io.Closer); ok {
		return c.Close()
	}
	return nil
}

// revoke revokes, after a reload to cfg, every connection and session
// that cfg no longer grants, and logs each.
func (a *Appliance) revoke(cfg *Config) {
	a.mu.Lock()
	defer a.mu.Unlock()
	for c := range a.conns {
		c.mu.Lock()
		done := c.revoked != nil
		open := c.open
		c.mu.Unlock()
		if done {
			continue
		}
		if err := c.g.checkKey(cfg); err != nil {
			a.log.Warn("ssh connection revoked", "node", c.g.node, "key", c.g.fp, "remote", c.sc.RemoteAddr().String(), "sessions", open, "why", err)
			c.revoke(err)
		}
	}
	for s := range a.live {
		if s.revoked.Load() != nil {
			continue
		}
		if err := s.g.check(cfg); err != nil {
			attrs := []any{"node", s.g.node}
			if s.g.fp != "" {
				attrs = append(attrs, "key", s.g.fp)
			}
			a.log.Warn("session revoked: it ends at its next request", append(attrs, "command", s.command, "why", err)...)
			s.revoked.Store(&err)
		}
	}
}
