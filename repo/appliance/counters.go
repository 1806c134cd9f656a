package appliance

import (
	"context"
	"errors"
	"io"

	"github.com/cairnbackup/cairn/scheduler"
	"github.com/prometheus/client_golang/prometheus"
	"golang.org/x/crypto/ssh"
)

// Build describes the running binary, for cairn_build_info.
type Build struct {
	Version, Commit, GoVersion string
}

// Reasons a node session is refused (cairn_sessions_refused_total).
const (
	refusedLimits      = "limits"       // limits.sessions or sessions_per_node reached
	refusedCommand     = "command"      // a command the node may not run, or malformed
	refusedRevoked     = "revoked"      // its key, node or permission was removed
	refusedUnknownNode = "unknown_node" // a forced command names a node not configured
)

var refusedReasons = []string{refusedLimits, refusedCommand, refusedRevoked, refusedUnknownNode}

// Reasons an SSH connection is closed before it logs in
// (cairn_ssh_connections_refused_total); failed logins are counted apart.
const (
	connLimits    = "limits"    // limits.unauthenticated or unauthenticated_per_address
	connHandshake = "handshake" // no login within handshake_timeout, or a broken handshake
)

// counters are the appliance's event counters, kept since it started.
// Every series a configuration implies (each node's pushes by result and
// bytes, each refusal reason, each scheduled job's failures) exists from
// the start at zero, so that rate() and absent() work before the first
// event; New and Reload add the series of new nodes and jobs.
type counters struct {
	pushes       *prometheus.CounterVec // node, result
	received     *prometheus.CounterVec // node
	refused      *prometheus.CounterVec // reason
	connRefused  *prometheus.CounterVec // reason
	authFailures prometheus.Counter
	jobFailures  *prometheus.CounterVec // job
}

func newCounters() *counters {
	c := &counters{
		pushes: prometheus.NewCounterVec(prometheus.CounterOpts{Name: "cairn_pushes_total",
			Help: "Pushes (cairn push, push --tar, push --stdin) by node and result: ok (snapshots acknowledged) or failed."}, []string{"node", "result"}),
		received: prometheus.NewCounterVec(prometheus.CounterOpts{Name: "cairn_received_bytes_total",
			Help: "Bytes nodes sent in their sessions (wire frames, tar or --stdin streams), after SSH decryption."}, []string{"node"}),
		refused: prometheus.NewCounterVec(prometheus.CounterOpts{Name: "cairn_sessions_refused_total",
			Help: "Node sessions refused, by reason: limits, command, revoked, unknown_node."}, []string{"reason"}),
		connRefused: prometheus.NewCounterVec(prometheus.CounterOpts{Name: "cairn_ssh_connections_refused_total",
			Help: "SSH connections closed before they logged in, by reason: limits (too many logging in), handshake (timed out or broken)."}, []string{"reason"}),
		authFailures: prometheus.NewCounter(prometheus.CounterOpts{Name: "cairn_ssh_auth_failures_total",
			Help: "SSH connections that offered only unknown keys, or a node's key as another user."}),
		jobFailures: prometheus.NewCounterVec(prometheus.CounterOpts{Name: "cairn_job_failures_total",
			Help: "Runs of the job that failed (returned an error)."}, []string{"job"}),
	}
	for _, r := range refusedReasons {
		c.refused.WithLabelValues(r)
	}
	for _, r := range []string{connLimits, connHandshake} {
		c.connRefused.WithLabelValues(r)
	}
	return c
}

func (c *counters) collectors() []prometheus.Collector {
	return []prometheus.Collector{c.pushes, c.received, c.refused, c.connRefused, c.authFailures, c.jobFailures}
}

// touch creates the zero series of cfg's nodes and scheduled jobs.
func (a *Appliance) touchCounters(cfg *Config) {
	for name := range cfg.Nodes {
		a.counters.pushes.WithLabelValues(name, "ok")
		a.counters.pushes.WithLabelValues(name, "failed")
		a.counters.received.WithLabelValues(name)
	}
	for _, j := range a.jobs(cfg) {
		a.counters.jobFailures.WithLabelValues(j.Name)
	}
}

// countPush counts a push that ended: ok when it committed snapshots
// without error.
func (a *Appliance) countPush(node string, err error) {
	result := "ok"
	if err != nil {
		result = "failed"
	}
	a.counters.pushes.WithLabelValues(node, result).Inc()
}

func (a *Appliance) countRefused(reason string) { a.counters.refused.WithLabelValues(reason).Inc() }

// countLogin counts a failed SSH handshake: a login refused (every key
// it offered was unknown, or belonged to another node) or another
// failure before the login.
func (a *Appliance) countLogin(err error) {
	var ae *ssh.ServerAuthError
	if errors.As(err, &ae) {
		for _, e := range ae.Errors {
			if errors.Is(e, errKeyRefused) {
				a.counters.authFailures.Inc()
				return
			}
		}
	}
	a.counters.connRefused.WithLabelValues(connHandshake).Inc()
}

// errKeyRefused marks the errors of the public key callback, which tell
// a failed login from a client that left before offering a key.
var errKeyRefused = errors.New("key refused")

// afterRun is the scheduler's Notify: it counts a failed run, then
// notifies.
func (a *Appliance) afterRun(ctx context.Context, run scheduler.Run) {
	if run.Status == scheduler.StatusFailed {
		a.counters.jobFailures.WithLabelValues(run.Job).Inc()
	}
	a.notify(ctx, run)
}

// receiving counts what a node sends in a session. The result can be
// closed when r can (a session closes its input to end a blocked read).
func (a *Appliance) receiving(node string, r io.Reader) io.Reader {
	cr := countingReader{r: r, c: a.counters.received.WithLabelValues(node)}
	if c, ok := r.(io.Closer); ok {
		return countingReadCloser{cr, c}
	}
	return cr
}

type countingReader struct {
	r io.Reader
	c prometheus.Counter
}

func (cr countingReader) Read(p []byte) (int, error) {
	n, err := cr.r.Read(p)
	if n > 0 {
		cr.c.Add(float64(n))
	}
	return n, err
}

type countingReadCloser struct {
	countingReader
	io.Closer
}

// InFlight is the number of node sessions and operator commands running.
func (a *Appliance) InFlight() int { return a.active() }

// keyRefused is an error of the public key callback; it matches
// errKeyRefused.
type keyRefused struct{ error }

func (keyRefused) Is(target error) bool { return target == errKeyRefused }
