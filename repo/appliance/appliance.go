// Package appliance is the running appliance: it owns the open
// repository, serves nodes over its embedded SSH server, relays node
// sessions that arrive through OpenSSH forced commands, and runs
// operator commands sent over a local unix socket, so that one process
// is the only writer and coordination between pushes is in-process.
//
// # Nodes
//
// A node authenticates with its key; the SSH user name must be the node's
// name. A session runs one command from the table in nodecmd.go:
// "cairn-wire" (the framed protocol spoken by cairn push, see
// repo/wire), "push --tar|--stdin --name NAME [--plan P] [--tag T]..."
// (the appliance reads the stream itself, for nodes without cairn),
// "snapshots" (the node's own snapshots as JSON), and for admin nodes
// "forget" and "prune". Each command parses only its own flags; anything
// else is refused. Session counts are limited per node and overall.
//
// # Operator socket
//
// The socket (mode 0600, so only the appliance's user and root reach it)
// carries one command per connection, multiplexed: the request, standard
// input, standard output and error, and the exit code (see mux.go). A
// request runs only if it names the repository directory this appliance
// serves (relay.go).
//
// # Lifecycle
//
// Run serves until its context ends, then stops accepting, gives sessions
// in flight a grace period to finish, cancels the rest (an interrupted
// push leaves no snapshot) and returns; the caller closes the repository.
// Reload rereads the configuration and swaps it in whole, or changes
// nothing (see [Appliance.Reload]); connections and sessions it no longer
// grants end (see revoke.go). Accept errors are retried, and connections
// still logging in are limited (see listen.go).
//
// # Files
//
// By responsibility: appliance.go (the type, Run, session limits),
// hostkey.go (the SSH host key), listen.go (accept loops, the limit on
// connections still logging in), ssh.go (the embedded SSH server: login,
// session channels), socket.go and mux.go (the operator socket: its
// listener, one request per connection, the frames; client.go is the
// caller's side), relay.go (forced commands relayed over the socket, the
// repository a request names), nodesession.go (a node's command routed
// to the table of nodecmd.go), push.go (a node's push --stdin/--tar,
// made into a snapshot by backup.Snapshot; a cairn push arrives as
// cairn-wire and is received by wire.Serve), idle.go (the idle timeout of
// streams), revoke.go and reload.go (configuration changes), and the
// operator's views: status page, metrics, alerts and notifications,
// jobs and the runbook.
package appliance

import (
	"context"
	"errors"
	"fmt"
	"io"
	"io/fs"
	"log/slog"
	"net"
	"os"
	"sync"
	"sync/atomic"
	"time"

	"github.com/cairnbackup/cairn/repo"
	"github.com/cairnbackup/cairn/repo/wire"
	"github.com/cairnbackup/cairn/scheduler"
	"golang.org/x/crypto/ssh"
)

// OperatorFunc runs an operator command line inside the appliance and
// returns its exit code. cmd/cairn provides it.
type OperatorFunc func(ctx context.Context, req *Request, stdin io.Reader, stdout, stderr io.Writer) int

// Options configure an Appliance.
type Options struct {
	Repo       *repo.Repository
	ConfigPath string
	// ConfigOptional lets a ConfigPath that does not exist stand for
	// DefaultConfig (no nodes, no jobs; status says so). cairn serve
	// leaves it unset: an appliance without a configuration file would
	// serve nobody.
	ConfigOptional bool
	HostKeyPath    string
	SocketPath     string // overrides the config's socket
	Operator       OperatorFunc
	Logger         *slog.Logger
	// Grace is how long Run waits for sessions after its context ends;
	// zero means 30 seconds.
	Grace time.Duration
	// Build is the running binary's version, for cairn_build_info.
	Build Build
}

// Appliance serves one repository.
type Appliance struct {
	o       Options
	r       *repo.Repository
	log     *slog.Logger
	cfg     atomic.Pointer[Config]
	hostKey ssh.Signer

	// schedMu serialises reloads and the scheduler's start and stop.
	schedMu   sync.Mutex
	sched     atomic.Pointer[scheduler.Scheduler]
	stopSched context.CancelFunc
	schedDone chan struct{}
	ready     chan struct{} // closed once Run serves
	readyOnce sync.Once

	blobs      *wire.BlobBudget // PutBlob bytes in flight, all node sessions together
	counters   *counters        // event counters for /metrics
	handshakes handshakes       // SSH connections not authenticated yet

	mu       sync.Mutex
	sessions int
	perNode  map[string]int
	cancels  map[int]context.CancelFunc
	nextID   int
	wg       sync.WaitGroup
	conns    map[*sshConn]bool // authenticated SSH connections, for revocation
	live     map[*session]bool // node sessions, for revocation

	notes *notifier                               // the built-in notification targets
	space func() (free, reserve int64, err error) // the repository's disk space (a test replaces it)
}

// BlobBytesInFlight bounds the memory that PutBlob frames of all node
// sessions together take while they are read, verified and stored: one
// of the largest blobs (64 MiB, which costs up to six times that while
// it is handled), or many ordinary ones at once. Hostile nodes, or simply
// many nodes, cannot make the appliance use more for blobs.
const BlobBytesInFlight = 6 * 64 << 20

// Files beside a repository (repo.Place.Beside): DIR.yaml, DIR.host_key
// and DIR.sock next to a repository directory DIR, or STATE/cairn.yaml,
// STATE/cairn.host_key and STATE/cairn.sock in the state directory of an
// object-store repository.
func ConfigPath(p repo.Place) string  { return p.Beside(".yaml") }
func HostKeyPath(p repo.Place) string { return p.Beside(".host_key") }
func SocketPath(p repo.Place) string  { return p.Beside(".sock") }

// New loads the configuration and host key.
func New(o Options) (*Appliance, error) {
	if o.Logger == nil {
		o.Logger = slog.New(slog.DiscardHandler)
	}
	if o.Grace <= 0 {
		o.Grace = 30 * time.Second
	}
	a := &Appliance{o: o, r: o.Repo, log: o.Logger, perNode: map[string]int{}, cancels: map[int]context.CancelFunc{},
		blobs: wire.NewBlobBudget(BlobBytesInFlight), ready: make(chan struct{}),
		conns: map[*sshConn]bool{}, live: map[*session]bool{}, counters: newCounters(), notes: newNotifier(o.Logger)}
	a.space = func() (int64, int64, error) { return a.r.Space() }
	cfg, err := LoadConfig(o.ConfigPath)
	if o.ConfigOptional && errors.Is(err, fs.ErrNotExist) {
		cfg, err = DefaultConfig(o.ConfigPath), nil
	}
	if err != nil {
		return nil, err
	}
	a.cfg.Store(cfg)
	a.touchCounters(cfg)
	if o.HostKeyPath != "" {
		k, err := LoadHostKey(o.HostKeyPath)
		if err != nil {
			return nil, err
		}
		a.hostKey = k
	}
	return a, nil
}

// Config returns the configuration in force.
func (a *Appliance) Config() *Config { return a.cfg.Load() }

// ConfigPath returns the configuration file the appliance reads (at
// start and on Reload).
func (a *Appliance) ConfigPath() string { return a.o.ConfigPath }

// Run serves the SSH listener ln (may be nil) and the operator socket
// until ctx ends.
func (a *Appliance) Run(ctx context.Context, ln net.Listener) error {
	sock := a.o.SocketPath
	if sock == "" {
		sock = a.Config().Socket
	}
	if sock == "" {
		sock = SocketPath(a.r.Place())
	}
	sl, err := listenSocket(sock)
	if err != nil {
		return err
	}
	defer os.Remove(sock)
	// Last: notifications of the sessions' ends still go out.
	defer a.notes.close(10 * time.Second)
	if err := a.startScheduler(a.Config()); err != nil {
		sl.Close()
		return err
	}
	defer a.stopScheduler()
	if addr := a.Config().Metrics; addr != "" {
		stop, err := a.serveMetrics(addr)
		if err != nil {
			sl.Close()
			return err
		}
		defer stop()
	}
	stopBackground := a.background()
	defer stopBackground()
	serveCtx, stopServing := context.WithCancel(context.Background())
	defer stopServing()
	var acceptors sync.WaitGroup
	acceptors.Add(1)
	go func() {
		defer acceptors.Done()
		a.acceptSocket(serveCtx, sl)
	}()
	if ln != nil {
		acceptors.Add(1)
		go func() {
			defer acceptors.Done()
			a.acceptSSH(serveCtx, ln)
		}()
	}
	a.readyOnce.Do(func() { close(a.ready) })
	<-ctx.Done()
	a.log.Info("shutting down: no new sessions", "in_flight", a.active())
	sl.Close()
	if ln != nil {
		ln.Close()
	}
	acceptors.Wait()
	done := make(chan struct{})
	go func() { a.wg.Wait(); close(done) }()
	select {
	case <-done:
	case <-time.After(a.o.Grace):
		a.log.Warn("grace period over: cancelling sessions in flight", "sessions", a.active())
		stopServing()
		a.mu.Lock()
		for _, c := range a.cancels {
			c()
		}
		a.mu.Unlock()
		<-done
	}
	return nil
}

func (a *Appliance) active() int {
	a.mu.Lock()
	defer a.mu.Unlock()
	return a.sessions
}

// track registers a session for the limits and for cancellation at
// shutdown; node "" is an operator command (not limited).
func (a *Appliance) track(node string, cancel context.CancelFunc) (func(), error) {
	a.mu.Lock()
	defer a.mu.Unlock()
	cfg := a.Config()
	if node != "" {
		limit := cfg.Limits.SessionsPerNode
		if n := cfg.Nodes[node]; n != nil && n.MaxSessions > 0 {
			limit = n.MaxSessions
		}
		if a.sessions >= cfg.Limits.Sessions {
			return nil, fmt.Errorf("the appliance serves %d sessions already (limits.sessions)", a.sessions)
		}
		if a.perNode[node] >= limit {
			return nil, fmt.Errorf("node %s has %d sessions open already (the limit is %d)", node, a.perNode[node], limit)
		}
		a.perNode[node]++
	}
	a.sessions++
	a.nextID++
	id := a.nextID
	a.cancels[id] = cancel
	a.wg.Add(1)
	return func() {
		a.mu.Lock()
		defer a.mu.Unlock()
		if node != "" {
			a.perNode[node]--
		}
		a.sessions--
		delete(a.cancels, id)
		a.wg.Done()
	}, nil
}
