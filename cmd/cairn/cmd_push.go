package main

import (
	"context"
	"errors"
	"fmt"
	"slices"
	"strings"
	"time"

	"github.com/cairnbackup/cairn/chunker"
	"github.com/cairnbackup/cairn/repo/blob"
	"github.com/cairnbackup/cairn/repo/pack"
	"github.com/cairnbackup/cairn/repo/plan"
	"github.com/cairnbackup/cairn/repo/snapshot"
	"github.com/cairnbackup/cairn/repo/wire"
	"github.com/cairnbackup/cairn/repo/wire/dial"
	"github.com/spf13/cobra"
	"github.com/spf13/pflag"
)

type pushOptions struct {
	backupOptions
	sshOptions
}

// sshOptions say how to reach an appliance over SSH (push, and restore
// --from).
type sshOptions struct {
	identity   string
	knownHosts string
	hostKey    string
	sshCommand string
	timeout    time.Duration
}

func (o *sshOptions) register(f *pflag.FlagSet) {
	f.StringVarP(&o.identity, "identity", "i", "", "SSH private key (default ~/.ssh/id_ed25519)")
	f.StringVar(&o.knownHosts, "known-hosts", "", "known_hosts file for the appliance's host key (default ~/.ssh/known_hosts)")
	f.StringVar(&o.hostKey, "host-key", "", "the appliance's host key fingerprint (SHA256:...), instead of known_hosts")
	f.StringVar(&o.sshCommand, "ssh-command", "", "use this ssh client command (e.g. \"ssh -i key\") instead of the built-in one")
	f.DurationVar(&o.timeout, "timeout", defaultTimeout, "give up when the appliance is silent this long: in each phase of connecting, and while waiting for its answers")
}

func newPushCommand(g *globalOptions) *cobra.Command {
	o := &pushOptions{}
	cmd := &cobra.Command{
		Use:   "push ssh://NODE@HOST[:PORT] PATH... | --stdin --name NAME | --tar [--name NAME]",
		Short: "back up to an appliance over SSH",
		Long: `Back up PATHs (or standard input with --stdin --name NAME, or a tar
stream with --tar) to the appliance at HOST as NODE. This machine chunks,
hashes and compresses; the appliance is asked in large batches which
blobs it lacks and only those are sent, pipelined. The appliance
re-hashes every blob, and acknowledges the snapshot only once it is
durable and complete. Unchanged files (compared with the node's latest
snapshot of the same plan and paths, whose trees come from the
appliance) are not read or sent.

By default cairn speaks SSH itself: key --identity (default
~/.ssh/id_ed25519), host key checked against --known-hosts (default
~/.ssh/known_hosts) or pinned with --host-key SHA256:.... With
--ssh-command "ssh -i KEY" the system ssh client is used instead; it
logs in as NODE unless the command gives -l USER (an OpenSSH forced
command on the appliance's account names the node itself, so there use
--ssh-command "ssh -l cairn ..." and the port of that sshd). The default
port is 2222.

--plan FILE.yaml pushes every source of a plan file instead, one
snapshot per source, recording each source's class and reason (see
docs/operating.md): a source without a reason is refused, CACHEDIR.TAG caches are
left out, build output and temporary files only from git sources and
sources with exclude_disposable, and a command source whose command
fails is not saved. Each snapshot records how many entries each exclude
rule left out. A source's before commands run first (sh -c, in the plan
file's directory, with CAIRN_SOURCE, CAIRN_NODE and CAIRN_PHASE set, each
bounded by the source's timeout, default 10m): the first that fails
skips the source (it counts as failed). Its after commands run once the
source's data is read, or it was skipped or failed, whatever happened;
one that fails is a warning (exit code 3). The snapshot records each
command with its exit status and output.

--timeout (default 2m) bounds each phase: connecting, the SSH and wire
handshakes, and every wait for the appliance's answer (a commit's
answer comes after the appliance checked the whole snapshot: raise it
for snapshots of tens of millions of files).

Exit code 0: saved. 3: saved, with warnings. 1: failed, nothing saved
(a push that is interrupted leaves no snapshot; the next push reuses the
blobs that reached the appliance). 130, 143: interrupted by SIGINT,
SIGTERM. When the session ends early the message names the phase and
the snapshots (of a plan) acknowledged before.`,
		Args: cobra.MinimumNArgs(1),
		RunE: func(cmd *cobra.Command, args []string) error { return runPush(cmd.Context(), g, o, args[0], args[1:]) },
	}
	f := cmd.Flags()
	o.backupOptions.register(f, "push")
	o.sshOptions.register(f)
	return cmd
}

// session connects to the appliance at t over SSH and starts a wire
// session as its node (dial.Session), keeping l's phase current.
func (o *sshOptions) session(ctx context.Context, g *globalOptions, l *link, t dial.Target) (*wire.Client, error) {
	if o.timeout <= 0 {
		return nil, usageError{fmt.Errorf("%s: --timeout %s: give a positive duration", l.verb, o.timeout)}
	}
	identity, knownHosts := o.identity, o.knownHosts
	if identity != "" {
		identity = g.abs(identity)
	}
	if knownHosts != "" {
		knownHosts = g.abs(knownHosts)
	}
	c, err := dial.Session(ctx, t, dial.Options{Identity: identity, KnownHosts: knownHosts, HostKey: o.hostKey, SSHCommand: o.sshCommand,
		Timeout: o.timeout, Stderr: g.stderr, Phase: func(p string) { l.phase = p }}, "cairn "+version)
	if err != nil {
		return nil, hostKeyHint(err)
	}
	l.client = c
	return c, nil
}

// hostKeyHint says which flag helps with a host key that is not the one
// expected, or a known_hosts file that cannot be read.
func hostKeyHint(err error) error {
	if he, ok := errors.AsType[*dial.HostKeyError](err); ok {
		if he.Pinned != "" {
			return fmt.Errorf("%w as --host-key says", err)
		}
		return fmt.Errorf("%w; if cairn serve printed the same, add it or pass --host-key %s", err, he.Fingerprint)
	}
	if _, ok := errors.AsType[*dial.KnownHostsError](err); ok {
		return fmt.Errorf("%w (or pin the appliance's key with --host-key SHA256:...)", err)
	}
	return err
}

func runPush(ctx context.Context, g *globalOptions, o *pushOptions, dest string, paths []string) error {
	t, err := dial.ParseTarget(dest)
	if err != nil {
		return usageError{fmt.Errorf("push: %w", err)}
	}
	o.node = t.Node
	var jobs []jobMaker
	if g.isPlanFile(o.plan) {
		if len(paths) > 0 || o.stdin || o.tar {
			return usageError{errors.New("push: a plan file names its sources: give no PATH, --stdin or --tar")}
		}
		pl, err := plan.Load(g.abs(o.plan))
		if err != nil {
			return eachLine(err) // a problem per line
		}
		for _, src := range pl.Sources {
			jobs = append(jobs, jobMaker{source: src.Name, before: len(src.Before) > 0,
				mk: func() (*pushJob, error) { return o.sourceJob(ctx, g, pl, src, t.Node) }})
		}
	} else {
		job, err := o.commandJob(g, paths)
		if err != nil {
			return err
		}
		jobs = append(jobs, jobMaker{mk: func() (*pushJob, error) { return job, nil }})
	}
	var saved []string // the snapshots acknowledged, for the message if the session ends early
	l := &link{verb: "push", addr: t.Addr(), timeout: o.timeout, phase: phaseConnect, done: func() string { return acked(saved) }}
	var c *wire.Client // the session, while one is open
	var params chunker.Params
	var table *chunker.Table
	connect := func() error {
		var err error
		if c, err = o.session(ctx, g, l, t); err != nil {
			c = nil
			return err
		}
		w := c.Welcome()
		params = chunker.Params{Min: int(w.ChunkMin), Avg: int(w.ChunkAvg), Max: int(w.ChunkMax)}
		if err := params.Validate(); err != nil {
			return fmt.Errorf("the appliance's chunker sizes: %w", err)
		}
		table = chunker.NewTable(w.ChunkerSeed)
		return nil
	}
	defer func() {
		if c != nil {
			c.Close()
		}
	}()
	// Sources that failed on this side are told to the appliance at the
	// end, so that its alerts carry this node's error (tellFailed).
	var local []error
	var localPlans []string
	defer func() {
		if len(local) > 0 && ctx.Err() == nil {
			if c != nil {
				c.Close()
			}
			c = nil
			tellFailed(ctx, func() (*wire.Client, error) { return o.session(ctx, g, l, t) }, local, localPlans)
		}
	}()
	// Connected first: an appliance that cannot be reached is found
	// before any source's before commands stop a service.
	err = connect()
	if e := l.explain(ctx, err); e != nil {
		return e
	}
	if err != nil {
		return fmt.Errorf("push: %w", err)
	}
	var failed []error
	warned := false
	for _, j := range jobs {
		if j.before && c != nil {
			// The appliance ends a session that is silent for its
			// idle timeout: none is held open while before commands
			// run, however long they take.
			c.Close()
			c, l.client = nil, nil
		}
		if j.before {
			l.phase = "while running the before commands of source " + j.source
		}
		job, err := j.mk()
		if err == nil && c == nil {
			err = connect()
		}
		if err == nil {
			var rep error
			var id blob.ID
			id, rep, err = o.push(ctx, g, l, c, params, table, job)
			if err == nil {
				saved = append(saved, savedName(id, job.plan))
			}
			var ee *exitError
			if errors.As(rep, &ee) && ee.code == exitWarnings {
				warned = true
			}
		}
		if job != nil {
			job.warnAfter(ctx, g)
		}
		if e := l.explain(ctx, err); e != nil {
			return e // the session is over: say what of the push stands
		}
		var we *wire.ErrorMsg
		if err != nil && !errors.As(err, &we) && !errors.Is(err, wire.ErrClosed) {
			local = append(local, err)
			if job != nil {
				localPlans = append(localPlans, job.plan)
			} else {
				localPlans = append(localPlans, j.source)
			}
		}
		if err != nil {
			if len(jobs) == 1 {
				return fmt.Errorf("push: %w", err)
			}
			fmt.Fprintf(g.stderr, "cairn: %v\n", err)
			failed = append(failed, err)
			if errors.As(err, &we) || errors.Is(err, wire.ErrClosed) {
				break // the session is over
			}
		}
	}
	if len(failed) > 0 {
		return &exitError{code: exitFailed, err: fmt.Errorf("push: %d of %d sources failed", len(failed), len(jobs))}
	}
	if warned {
		return &exitError{code: exitWarnings, err: errors.New("some files could not be read")}
	}
	return nil
}

// tellFailed tells the appliance that sources failed on this node: in a
// session of its own (so that the sessions that saved snapshots ended
// cleanly), it lists the failed sources' plan when they share one (the
// appliance attributes the failure to the plan a session worked on)
// and ends with an Error carrying the errors instead of Bye. Best
// effort: the push's outcome and exit code are already decided.
func tellFailed(ctx context.Context, dial func() (*wire.Client, error), errs []error, plans []string) {
	c, err := dial()
	if err != nil {
		return
	}
	if distinct := slices.Compact(slices.Sorted(slices.Values(plans))); len(distinct) == 1 && distinct[0] != "" {
		c.ListSnapshots(ctx, distinct[0])
	}
	msgs := make([]string, len(errs))
	for i, e := range errs {
		msgs[i] = e.Error()
	}
	c.Fail(strings.Join(msgs, "; "))
}

// jobMaker prepares one job of a push: a plan's source (whose before
// commands run then) or the command line's paths.
type jobMaker struct {
	source string // the plan's source
	before bool   // it has before commands
	mk     func() (*pushJob, error)
}

// push sends one job as one snapshot and prints its report; id is the
// snapshot, rep the report's exit status (warnings), err a failure. It
// keeps l's phase current.
func (o *pushOptions) push(ctx context.Context, g *globalOptions, l *link, c *wire.Client, params chunker.Params, table *chunker.Table, job *pushJob) (id blob.ID, rep, err error) {
	l.phase = phaseList
	parent, err := o.remoteParent(ctx, c, job)
	if err != nil {
		return id, nil, err
	}
	l.phase = phaseUpload
	start := time.Now()
	up := c.NewUploader(pack.LevelDefault)
	defer up.Close()
	id, sn, err := o.snapshot(ctx, g, pushTarget{up, l}, job, parent, o.options(job, params, table, c), start)
	if err != nil {
		return id, nil, err
	}
	if _, sent, err := snapshot.Encode(sn); err == nil && id != sent {
		warnRedated(ctx, g, c, job.plan, id, start)
	}
	return id, g.report(id, job.source(), sn, parent), nil
}

// pushTarget is a push's uploader as the snapshot's target; the link's
// phase is the commit once the record is sent.
type pushTarget struct {
	*wire.Uploader
	l *link
}

func (t pushTarget) Commit(ctx context.Context, sn *snapshot.Snapshot) (blob.ID, error) {
	t.l.phase = phaseCommit
	return t.Uploader.Commit(ctx, sn)
}

// warnRedated tells the node that the appliance stored snapshot id with
// another time than this node's clock gave (start): the appliance dates a
// snapshot itself when the node's clock is off by more than its
// clock_skew. The snapshot is saved either way.
func warnRedated(ctx context.Context, g *globalOptions, c *wire.Client, plan string, id blob.ID, start time.Time) {
	items, err := c.ListSnapshots(ctx, plan)
	if err == nil {
		for _, it := range items {
			if it.ID != id || blob.Hash(it.Record) != id {
				continue
			}
			if sn, err := snapshot.Decode(it.Record); err == nil {
				fmt.Fprintf(g.stderr, "cairn: warning: this node's clock is %s of the appliance's: the appliance dated snapshot %s %s instead of %s; set the node's clock right (NTP)\n",
					wire.DescribeOffset(start.Sub(sn.Time)), id.Short(), sn.Time.UTC().Format(time.RFC3339), start.UTC().Format(time.RFC3339))
				return
			}
		}
	}
	fmt.Fprintf(g.stderr, "cairn: warning: the appliance stored snapshot %s with another time than this node's clock gave: the node's clock is probably off\n", id.Short())
}

// remoteParent finds the parent snapshot among the node's snapshots of
// the job's plan on the appliance (backup.FindParent). A record that
// does not hash to its ID or does not decode is passed over: it can
// only cost reading files again.
func (o *pushOptions) remoteParent(ctx context.Context, c *wire.Client, job *pushJob) (*snapshot.Entry, error) {
	q := o.parentQuery(job)
	if !q.Wanted() {
		return nil, nil
	}
	items, err := c.ListSnapshots(ctx, job.plan)
	if err != nil {
		return nil, fmt.Errorf("list snapshots: %w", err)
	}
	list := make([]snapshot.Entry, 0, len(items))
	for _, it := range items {
		if sn, err := snapshot.Decode(it.Record); err == nil && blob.Hash(it.Record) == it.ID {
			list = append(list, snapshot.Entry{ID: it.ID, Snapshot: sn})
		}
	}
	snapshot.Sort(list)
	return o.pickParent(list, q)
}
