package main

import (
	"context"
	"errors"
	"fmt"
	"io"
	"net"
	"strings"
	"syscall"
	"time"

	"github.com/cairnbackup/cairn/repo/wire"
	"github.com/cairnbackup/cairn/repo/wire/dial"
)

// defaultTimeout bounds the appliance's silence in push and restore
// --from (--timeout). An answer the appliance computes before it sends a
// byte must come within it: the longest is a commit's, which flushes the
// session's packs and reads every tree of the snapshot to check that
// each blob it references is stored: about 9–13 s per million files
// measured (docs/operating.md, "A push never hangs").
const defaultTimeout = 2 * time.Minute

// The phases of a session with an appliance, as messages name them
// (those of connecting are dial's: dial.PhaseSSH, …).
const (
	phaseConnect = dial.PhaseConnect
	phaseList    = "while listing snapshots"
	phaseUpload  = "during the upload"
	phaseCommit  = "during the commit"
	phaseRestore = "during the restore"
	phaseVerify  = "during the comparison"
)

// link is a command's session with an appliance over SSH: where the
// appliance is, the phase the command is in, and what it got done, so
// that a session that ends early is explained (interrupted, silent, or
// closed by the appliance) with what of the work stands.
type link struct {
	verb    string // push, restore
	addr    string // host:port
	timeout time.Duration
	phase   string
	client  *wire.Client // once the wire handshake is done
	done    func() string
}

// linkError is a session with an appliance that ended early.
type linkError struct {
	verb, addr, phase string
	silent            time.Duration // the appliance was silent this long
	sig               *interrupted  // a signal stopped the command
	outcome           string        // what of the work stands
}

func (e *linkError) Error() string {
	switch {
	case e.sig != nil:
		return fmt.Sprintf("%s interrupted by %s %s (appliance %s): %s", e.verb, e.sig.name(), e.phase, e.addr, e.outcome)
	case e.silent > 0:
		return fmt.Sprintf("%s: the appliance %s was silent for %s %s (--timeout): %s", e.verb, e.addr, e.silent, e.phase, e.outcome)
	}
	return fmt.Sprintf("%s: the appliance %s closed the connection %s (it may have stopped or crashed): %s", e.verb, e.addr, e.phase, e.outcome)
}

// Unwrap gives the signal, so that the exit code tells which one came.
func (e *linkError) Unwrap() error {
	if e.sig != nil {
		return e.sig
	}
	return nil
}

// explain returns a *linkError when err ended the session early: a
// signal, the appliance's silence, or the appliance closing the
// connection. Otherwise (the appliance refused something and said why, a
// local file could not be read) it returns nil.
func (l *link) explain(ctx context.Context, err error) error {
	if err == nil {
		return nil
	}
	var le *linkError
	if errors.As(err, &le) {
		return le
	}
	e := &linkError{verb: l.verb, addr: l.addr, phase: l.phase}
	var sig *interrupted
	if errors.As(context.Cause(ctx), &sig) {
		e.sig = sig
		e.outcome = l.done()
		return e
	}
	if ctx.Err() != nil {
		return nil
	}
	cause := err
	if l.client != nil {
		// Why the session ended, whatever the call saw; a session
		// that goes on did not fail the call.
		if cause = l.client.Err(); cause == nil {
			return nil
		}
	}
	var ne net.Error
	switch {
	case errors.Is(cause, wire.ErrSilent) || (l.phase == phaseConnect && errors.As(cause, &ne) && ne.Timeout()):
		e.silent = l.timeout
	case closedByPeer(cause):
	default:
		return nil
	}
	e.outcome = l.done()
	return e
}

// closedByPeer reports whether err says the other end closed the
// connection.
func closedByPeer(err error) bool {
	return errors.Is(err, wire.ErrClosed) || errors.Is(err, io.EOF) || errors.Is(err, io.ErrUnexpectedEOF) ||
		errors.Is(err, syscall.ECONNRESET) || errors.Is(err, syscall.EPIPE)
}

// acked is what a push reports as acknowledged: none, or the snapshots
// saved before the session ended.
func acked(ids []string) string {
	switch len(ids) {
	case 0:
		return "nothing of this push was acknowledged"
	case 1:
		return "snapshot " + ids[0] + " was acknowledged, nothing after it"
	}
	return "snapshots " + strings.Join(ids, ", ") + " were acknowledged, nothing after them"
}
