package appliance

import (
	"errors"
	"fmt"
	"net"
	"sync"
	"time"
)

// Accept errors (EMFILE and ENFILE when file descriptors run out,
// ECONNABORTED, ...) are retried after a pause that starts at
// acceptRetryMin and doubles up to acceptRetryMax, as net/http's server
// does; a successful accept resets it. Only a closed listener ends the
// loop: one flood must not silence the appliance for good.
const (
	acceptRetryMin = 5 * time.Millisecond
	acceptRetryMax = time.Second
)

// logEvery is how often a repeated warning (an accept error, a refused
// connection) is logged; the repeats in between are counted and the
// next line reports them.
const logEvery = 10 * time.Second

// acceptLoop accepts connections on ln and hands each to handle (which
// must not block) until ln is closed. name says which listener it is in
// the log.
func (a *Appliance) acceptLoop(ln net.Listener, name string, handle func(net.Conn)) {
	var (
		delay    time.Duration
		failures int
		lim      limiter
	)
	for {
		conn, err := ln.Accept()
		if err != nil {
			if errors.Is(err, net.ErrClosed) {
				return
			}
			delay = min(max(2*delay, acceptRetryMin), acceptRetryMax)
			failures++
			if n, ok := lim.allow(); ok {
				a.log.Warn("accept failed: retrying", append(repeats(n), "listener", name, "err", err, "retry_in", delay)...)
			}
			time.Sleep(delay)
			continue
		}
		if failures > 0 {
			a.log.Info("accepting again", "listener", name, "failed_accepts", failures)
			delay, failures = 0, 0
		}
		handle(conn)
	}
}

// repeats is the log attribute for n suppressed repeats, if any.
func repeats(n int) []any {
	if n == 0 {
		return nil
	}
	return []any{"repeats_not_logged", n}
}

// limiter lets one log line through per logEvery and counts the rest.
// The zero value is ready.
type limiter struct {
	mu      sync.Mutex
	last    time.Time
	dropped int
}

// allow reports whether a line may be logged now, and how many were
// dropped since the last one.
func (l *limiter) allow() (int, bool) {
	l.mu.Lock()
	defer l.mu.Unlock()
	if now := time.Now(); l.last.IsZero() || now.Sub(l.last) >= logEvery {
		n := l.dropped
		l.last, l.dropped = now, 0
		return n, true
	}
	l.dropped++
	return 0, false
}

// handshakes counts the SSH connections that have not authenticated yet,
// overall and per source address, so that a flood of connections that
// never log in cannot take every file descriptor or goroutine of the
// appliance: over a limit, a new connection is closed at once.
type handshakes struct {
	mu      sync.Mutex
	total   int
	perAddr map[string]int
	// Refusals are logged at most once per logEvery for each limit.
	refusedTotal, refusedPerAddr limiter
}

// admit counts a connection from addr against the limits, or says which
// limit it is over (and the limiter of its log lines).
func (h *handshakes) admit(addr string, l Limits) (release func(), lim *limiter, err error) {
	h.mu.Lock()
	defer h.mu.Unlock()
	switch {
	case h.total >= l.Unauthenticated:
		return nil, &h.refusedTotal, fmt.Errorf("%d connections are authenticating already (limits.unauthenticated)", h.total)
	case h.perAddr[addr] >= l.UnauthenticatedPerAddress:
		return nil, &h.refusedPerAddr, fmt.Errorf("%d connections from %s are authenticating already (limits.unauthenticated_per_address)", h.perAddr[addr], addr)
	}
	if h.perAddr == nil {
		h.perAddr = map[string]int{}
	}
	h.total++
	h.perAddr[addr]++
	var once sync.Once
	return func() {
		once.Do(func() {
			h.mu.Lock()
			defer h.mu.Unlock()
			h.total--
			if h.perAddr[addr]--; h.perAddr[addr] == 0 {
				delete(h.perAddr, addr)
			}
		})
	}, nil, nil
}

// admitSSH runs in the SSH accept loop: a connection over the limits of
// unauthenticated connections is closed at once (and logged, at most one
// line per logEvery), any other is served in a goroutine of its own.
func (a *Appliance) admitSSH(conn net.Conn, serve func(conn net.Conn, handshakeDone func())) {
	addr := conn.RemoteAddr().String()
	if host, _, err := net.SplitHostPort(addr); err == nil {
		addr = host
	}
	release, lim, err := a.handshakes.admit(addr, a.Config().Limits)
	if err != nil {
		conn.Close()
		a.counters.connRefused.WithLabelValues(connLimits).Inc()
		if n, ok := lim.allow(); ok {
			a.log.Warn("ssh connection refused", append(repeats(n), "remote", conn.RemoteAddr().String(), "err", err)...)
		}
		return
	}
	go func() {
		defer release()
		serve(conn, release)
	}()
}
