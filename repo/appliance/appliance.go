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
package appliance

import (
	"context"
	"crypto/ed25519"
	"crypto/rand"
	"encoding/binary"
	"encoding/json"
	"encoding/pem"
	"errors"
	"fmt"
	"io"
	"io/fs"
	"log/slog"
	"net"
	"os"
	"strings"
	"sync"
	"sync/atomic"
	"syscall"
	"time"

	"github.com/cairnbackup/cairn/repo"
	"github.com/cairnbackup/cairn/repo/backup"
	"github.com/cairnbackup/cairn/repo/blob"
	"github.com/cairnbackup/cairn/repo/snapshot"
	"github.com/cairnbackup/cairn/repo/status"
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

// GenerateHostKey writes a new ed25519 host key (OpenSSH format, mode
// 0600) to path, which must not exist, and returns its fingerprint.
func GenerateHostKey(path string) (string, error) {
	pub, priv, err := ed25519.GenerateKey(rand.Reader)
	if err != nil {
		return "", err
	}
	block, err := ssh.MarshalPrivateKey(priv, "cairn appliance host key")
	if err != nil {
		return "", err
	}
	f, err := os.OpenFile(path, os.O_WRONLY|os.O_CREATE|os.O_EXCL, 0o600)
	if err != nil {
		return "", fmt.Errorf("host key: %w", err)
	}
	if _, err := f.Write(pem.EncodeToMemory(block)); err != nil {
		f.Close()
		return "", err
	}
	if err := f.Sync(); err != nil {
		f.Close()
		return "", err
	}
	if err := f.Close(); err != nil {
		return "", err
	}
	sp, err := ssh.NewPublicKey(pub)
	if err != nil {
		return "", err
	}
	return ssh.FingerprintSHA256(sp), nil
}

// LoadHostKey reads a host key written by GenerateHostKey.
func LoadHostKey(path string) (ssh.Signer, error) {
	b, err := os.ReadFile(path)
	if err != nil {
		return nil, fmt.Errorf("host key: %w (cairn init creates it)", err)
	}
	k, err := ssh.ParsePrivateKey(b)
	if err != nil {
		return nil, fmt.Errorf("host key %s: %w", path, err)
	}
	return k, nil
}

// HostKey returns the SSH host key.
func (a *Appliance) HostKey() ssh.Signer { return a.hostKey }

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

// listenSocket listens on a unix socket readable only by this user. A
// socket file left by an appliance that died is removed; one that
// answers belongs to a running appliance.
func listenSocket(path string) (net.Listener, error) {
	if c, err := net.Dial("unix", path); err == nil {
		c.Close()
		return nil, fmt.Errorf("an appliance already listens on %s", path)
	}
	os.Remove(path)
	old := umask(0o177)
	ln, err := net.Listen("unix", path)
	umask(old)
	if err != nil {
		return nil, fmt.Errorf("operator socket: %w", err)
	}
	if err := os.Chmod(path, 0o600); err != nil {
		ln.Close()
		return nil, err
	}
	return ln, nil
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

func (a *Appliance) acceptSocket(ctx context.Context, ln net.Listener) {
	a.acceptLoop(ln, "socket", func(conn net.Conn) { go a.serveSocket(ctx, conn) })
}

// serveSocket runs one operator command or relayed node session.
func (a *Appliance) serveSocket(ctx context.Context, conn net.Conn) {
	defer conn.Close()
	kind, data, passed, err := readRequestFrame(conn)
	if passed != nil {
		defer passed.Close()
	}
	if err != nil || kind != frameRequest {
		return
	}
	var req Request
	if err := json.Unmarshal(data, &req); err != nil {
		return
	}
	if req.FUSE && req.Kind == "operator" && passed != nil {
		ctx = context.WithValue(ctx, fileKey{}, passed)
	}
	mw := &muxWriter{w: conn}
	ctx, cancelCause := context.WithCancelCause(ctx)
	cancel := func() { cancelCause(nil) }
	defer cancel()
	stdinR, stdinW := io.Pipe()
	fed := make(chan struct{})
	go func() {
		// Read the client's frames: stdin and cancellation.
		defer close(fed)
		var buf []byte
		for {
			kind, data, err := readFrame(conn, buf)
			if err != nil {
				stdinW.CloseWithError(io.ErrUnexpectedEOF)
				cancel()
				return
			}
			buf = data
			switch kind {
			case frameStdin:
				if _, err := stdinW.Write(data); err != nil {
					// The command stopped reading; drop input.
					continue
				}
			case frameStdinEOF:
				stdinW.Close()
			case frameCancel:
				if len(data) == 1 && (data[0] == byte(syscall.SIGINT) || data[0] == byte(syscall.SIGTERM)) {
					cancelCause(&Interrupted{Signal: syscall.Signal(data[0])})
				} else {
					cancel()
				}
			}
		}
	}()
	// When the command is over, so is the goroutine above: closing the
	// pipe ends a write to a command that never read its input, closing
	// the connection ends the wait for the client's next frame.
	defer func() {
		stdinR.Close()
		conn.Close()
		<-fed
	}()
	stdout, stderr := stream{m: mw, kind: frameStdout}, stream{m: mw, kind: frameStderr}
	var code int
	switch err := a.checkRepo(req.Repo); {
	case err != nil:
		a.log.Warn("request refused", "kind", req.Kind, "node", req.Node, "why", err)
		if req.Kind == "node" {
			// The node learns no paths of the appliance.
			fmt.Fprintln(stderr, "cairn: the forced command names a repository this appliance does not serve (its log says which)")
		} else {
			fmt.Fprintln(stderr, "cairn:", err)
		}
		code = 2
	case req.FUSE && (passed == nil || req.Kind != "operator"):
		fmt.Fprintln(stderr, "cairn: the request says a mount's /dev/fuse descriptor comes with it, and none came")
		code = 2
	case req.FUSE && !isFUSEDevice(passed):
		fmt.Fprintln(stderr, "cairn: the descriptor that came with the request is not /dev/fuse")
		code = 2
	case req.Kind == "operator":
		untrack, err := a.track("", cancel)
		if err != nil {
			fmt.Fprintln(stderr, "cairn:", err)
			code = 1
			break
		}
		if a.o.Operator == nil {
			fmt.Fprintln(stderr, "cairn: this appliance runs no operator commands")
			code = 1
		} else {
			code = a.o.Operator(ctx, &req, stdinR, stdout, stderr)
		}
		untrack()
	case req.Kind == "node":
		code = a.RelayedSession(ctx, req.Node, req.Command, stdinR, stdout, stderr)
	default:
		fmt.Fprintf(stderr, "cairn: unknown request kind %q\n", req.Kind)
		code = 2
	}
	var b [4]byte
	binary.BigEndian.PutUint32(b[:], uint32(int32(code)))
	mw.frame(frameExit, b[:])
}

// readWriter joins a session's input and output for wire.Serve; Close
// closes the input (ending a read blocked on it).
type readWriter struct {
	io.Reader
	io.Writer
	close func() error
}

func (rw readWriter) Close() error {
	if rw.close != nil {
		return rw.close()
	}
	return nil
}

// NodeSession runs one node command (see the package documentation and
// nodecmd.go) and returns its exit code. Messages for the node go to
// stderr. Every refusal is exit 2 with a log line.
func (a *Appliance) NodeSession(ctx context.Context, node string, perms wire.Perm, isolated bool, command string, stdin io.Reader, stdout, stderr io.Writer) int {
	stdin = a.receiving(node, stdin)
	ctx, sess, err := a.openSession(ctx, node, perms, isolated, command)
	if err != nil {
		a.log.Warn("session refused", "node", node, "err", err)
		fmt.Fprintln(stderr, "cairn:", err)
		return 1
	}
	defer sess.close()
	logged := command
	if len(logged) > maxNodeCommand {
		logged = logged[:maxNodeCommand] + "…"
	}
	a.log.Info("node session started", "node", node, "command", logged)
	s := &nodeSession{sess: sess, node: node, perms: perms, isolated: isolated, line: command, stdin: stdin, stdout: stdout, stderr: stderr, start: time.Now()}
	refuse := func(name, why, message string) int {
		a.countRefused(refusedCommand)
		a.log.Warn("command refused", "node", node, "command", name, "why", why)
		fmt.Fprint(stderr, "cairn: ", message, "\n")
		return 2
	}
	if len(command) > maxNodeCommand {
		return refuse("", "command too long", fmt.Sprintf("the command is %d bytes long; a node's command is at most %d", len(command), maxNodeCommand))
	}
	words := strings.Fields(command)
	if len(words) == 0 {
		return refuse("", "no command", "no command given; "+nodeCommandList())
	}
	c := lookupNodeCommand(words[0])
	if c == nil {
		return refuse(words[0], "unknown command", fmt.Sprintf("node %s may not run %q; %s", node, words[0], nodeCommandList()))
	}
	if c.perm != 0 && !perms.Has(c.perm) && !perms.Has(wire.PermAdmin) {
		p := c.perm.String()
		message := fmt.Sprintf("node %s may not run %q: it needs the %s permission", node, c.name, p)
		if c.perm == wire.PermAdmin {
			message += " (push and read are append-only)"
		}
		return refuse(c.name, "needs the "+p+" permission", message)
	}
	s.cmd = c
	if s.args, err = parseNodeFlags(c, words[1:]); err != nil {
		return refuse(c.name, err.Error(), fmt.Sprintf("%s: %v\nusage: %s", c.name, err, c.usage()))
	}
	return c.run(a, ctx, s)
}

// idleReader ends a stream that stays silent for d, as the wire
// protocol's idle timeout ends a silent session: it cancels the push
// (with the idle timeout as the cause) and closes the stream (when it can
// be closed, which ends a read blocked on it); reads then fail with the
// idle-timeout error.
type idleReader struct {
	r     io.Reader
	d     time.Duration
	timer *time.Timer
	fired atomic.Bool
}

func newIdleReader(r io.Reader, d time.Duration, cancel context.CancelCauseFunc) *idleReader {
	ir := &idleReader{r: r, d: d}
	ir.timer = time.AfterFunc(d, func() {
		ir.fired.Store(true)
		cancel(ir.err())
		if c, ok := r.(io.Closer); ok {
			c.Close()
		}
	})
	return ir
}

func (ir *idleReader) err() error { return fmt.Errorf("no data for %s: idle timeout", ir.d) }

func (ir *idleReader) Read(p []byte) (int, error) {
	n, err := ir.r.Read(p)
	if ir.fired.Load() {
		return n, ir.err()
	}
	ir.timer.Reset(ir.d)
	return n, err
}

func (ir *idleReader) stop() { ir.timer.Stop() }

func (a *Appliance) logPush(node, kind string, snaps []blob.ID, blobs, bytes, stored uint64, start time.Time, err error) {
	attrs := []any{"node", node, "kind", kind, "blobs_sent", blobs, "bytes_sent", bytes, "blobs_stored", stored, "duration", time.Since(start).Round(time.Millisecond)}
	for _, s := range snaps {
		attrs = append(attrs, "snapshot", s.String())
	}
	if err != nil {
		a.log.Warn("push failed", append(attrs, "err", err)...)
		return
	}
	if len(snaps) == 0 {
		a.log.Info("session ended without a snapshot", attrs...)
		return
	}
	a.log.Info("push", attrs...)
}

// pushStream stores a stream the node sends on stdin: a tar stream
// (p.Tar, placed under p.Name if given) or one file (p.Stdin, named
// p.Name). The push command's flags are parsed and checked in nodecmd.go.
// The summary of an isolated node's push counts what it sent.
func (a *Appliance) pushStream(ctx context.Context, node string, isolated bool, p pushArgs, stdin io.Reader, stdout, stderr io.Writer, start time.Time) int {
	o := backup.Options{Params: a.r.ChunkerParams(), Table: a.r.ChunkerTable(), Loader: a.r}
	s := a.r.NewSession()
	up := newStreamUploader(s, isolated)
	src := backup.Source{Stream: stdin, Name: p.Name, Tar: p.Tar}
	plan := p.Plan
	list, err := a.r.Snapshots(ctx, snapshot.Filter{Node: node})
	var parent *snapshot.Entry
	if err == nil {
		parent, err = backup.FindParent(list, backup.ParentQuery{Node: node, Plan: plan, Paths: src.Recorded()}, time.Now())
	}
	var id blob.ID
	var sn *snapshot.Snapshot
	if err == nil {
		id, sn, err = backup.Snapshot(ctx, up, src, backup.Meta{Node: node, Plan: plan, Tags: p.Tags, Parent: parent, Start: start}, o)
	}
	if err != nil {
		s.Abort()
		if cause := context.Cause(ctx); cause != nil {
			err = cause // the idle timeout
		}
	}
	a.countPush(node, err)
	st := up.Stats()
	if err != nil {
		a.logPush(node, "push", nil, st.BlobsAdded, st.StoredAdded, s.Stats().BlobsAdded, start, err)
		a.pushEnded(node, nil, []string{plan}, err)
		fmt.Fprintln(stderr, "cairn:", err)
		return 1
	}
	a.logPush(node, "push", []blob.ID{id}, st.BlobsAdded, st.StoredAdded, s.Stats().BlobsAdded, start, nil)
	a.pushEnded(node, []blob.ID{id}, []string{plan}, nil)
	sum := sn.Summary
	for _, w := range sum.Warnings {
		fmt.Fprintln(stderr, "warning:", w)
	}
	files := fmt.Sprintf("%d files", sum.Files)
	if sum.Files == 1 {
		files = "1 file"
	}
	fmt.Fprintf(stdout, "snapshot %s saved: %s, %s, %s added\n", id.Short(), files, status.HumanBytes(sum.Bytes), status.HumanBytes(sum.BytesAdded))
	if len(sum.Warnings) > 0 {
		return 3
	}
	return 0
}
