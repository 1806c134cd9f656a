package main

import (
	"context"
	"errors"
	"fmt"
	"os"
	"runtime/debug"
	"sync/atomic"
	"time"

	"github.com/cairnbackup/cairn/chunker"
	"github.com/cairnbackup/cairn/repo"
	"github.com/cairnbackup/cairn/repo/backup"
	"github.com/cairnbackup/cairn/repo/blob"
	"github.com/cairnbackup/cairn/repo/filter"
	"github.com/cairnbackup/cairn/repo/plan"
	"github.com/cairnbackup/cairn/repo/snapfs"
	"github.com/cairnbackup/cairn/repo/snapshot"
	"github.com/spf13/cobra"
	"github.com/spf13/pflag"
)

type backupOptions struct {
	node          string
	plan          string
	host          string
	tags          []string
	parent        string
	forceRead     bool
	stdin         bool
	name          string
	tar           bool
	excludes      []string
	excludeFiles  []string
	excludeCaches bool
	oneFS         bool
}

func newBackupCommand(g *globalOptions) *cobra.Command {
	o := &backupOptions{}
	cmd := &cobra.Command{
		Use:   "backup PATH... | --stdin --name NAME | --tar",
		Short: "back up files and directories, a stream or a tar stream into a new snapshot",
		Long: `Back up PATHs into a new snapshot. Files whose size, mtime, ctime and inode
match the parent snapshot (the latest of the same node, plan and paths,
or --parent) are not read again.

--stdin --name NAME stores standard input as one file NAME (for example
pg_dumpall | cairn backup --stdin --name db.sql); --tar stores a tar
stream from standard input as a tree.

--plan FILE.yaml backs up every source of a plan file, one snapshot per
source, as push --plan does on a node (see push --help and docs/operating.md),
with each source's before and after commands; a source that fails is
reported and the others go on (exit code 1 at the end).

Exit code 0: saved, complete. 3: saved, but some files could not be read
(listed as warnings). 1: failed, nothing saved.`,
		RunE: func(cmd *cobra.Command, args []string) error { return runBackup(cmd, g, o, args) },
	}
	host, _ := os.Hostname()
	cmd.Flags().StringVar(&o.node, "node", host, "node (machine) the snapshot belongs to")
	o.register(cmd.Flags(), "back up")
	return cmd
}

// backupEvent is one JSON line of backup --json output.
type backupEvent struct {
	Type      string             `json:"type"` // "progress" or "summary"
	Files     uint64             `json:"files,omitempty"`
	Dirs      uint64             `json:"dirs,omitempty"`
	Bytes     uint64             `json:"bytes,omitempty"`
	BytesRead uint64             `json:"bytes_read,omitempty"`
	Total     uint64             `json:"total_bytes,omitempty"` // the parent's size, or the pre-scan's, when known
	Snapshot  *blob.ID           `json:"snapshot,omitempty"`
	Source    string             `json:"source,omitempty"` // push --plan FILE: the source (the snapshot's plan)
	Tree      *blob.ID           `json:"tree,omitempty"`
	Parent    *blob.ID           `json:"parent,omitempty"`
	Summary   *snapshot.Summary  `json:"summary,omitempty"`
	Excludes  []snapshot.Exclude `json:"excludes,omitempty"`
}

// register adds the flags backup and push share; verb says what the
// command does with a source ("back up", "push").
func (o *backupOptions) register(f *pflag.FlagSet, verb string) {
	host, _ := os.Hostname()
	f.StringVar(&o.plan, "plan", "", "plan name recorded in the snapshot, or a plan file (plan.yaml) naming the sources to "+verb)
	f.StringVar(&o.host, "host", host, "host name recorded in the snapshot")
	f.StringArrayVar(&o.tags, "tag", nil, "tag the snapshot (repeatable)")
	f.StringVar(&o.parent, "parent", "", "compare with this snapshot (latest, or an ID prefix) instead of the latest of the same node, plan and paths")
	f.BoolVar(&o.forceRead, "force-read", false, "read every file, even those the parent says are unchanged")
	f.BoolVar(&o.stdin, "stdin", false, verb+" standard input as one file (needs --name)")
	f.StringVar(&o.name, "name", "", "file name for --stdin; with --tar, the directory the archive's tree is stored under (default: the root)")
	f.BoolVar(&o.tar, "tar", false, verb+" a tar stream read from standard input")
	f.StringArrayVar(&o.excludes, "exclude", nil, "leave out paths matching PATTERN (repeatable; see docs/operating.md)")
	f.StringArrayVar(&o.excludeFiles, "exclude-file", nil, "read exclude patterns from FILE (repeatable)")
	f.BoolVar(&o.excludeCaches, "exclude-caches", false, "leave out the contents of directories with a CACHEDIR.TAG")
	f.BoolVarP(&o.oneFS, "one-file-system", "x", false, "do not cross into other file systems")
}

func (o *backupOptions) matcher() (*filter.Matcher, error) {
	rules := filter.FromFlags(o.excludes, "--exclude")
	for _, f := range o.excludeFiles {
		r, err := filter.ReadFile(f)
		if err != nil {
			return nil, err
		}
		rules = append(rules, r...)
	}
	return filter.New(rules)
}

// check validates the flags and returns the source they name (paths
// made absolute, or standard input).
func (o *backupOptions) check(g *globalOptions, paths []string) (backup.Source, error) {
	switch {
	case o.stdin && o.tar:
		return backup.Source{}, usageError{errors.New("--stdin and --tar read standard input both: give one")}
	case o.stdin && o.name == "":
		return backup.Source{}, usageError{errors.New("--stdin needs --name NAME")}
	case (o.stdin || o.tar) && len(paths) > 0:
		return backup.Source{}, usageError{errors.New("--stdin and --tar take no PATH arguments")}
	case !o.stdin && !o.tar && len(paths) == 0:
		return backup.Source{}, usageError{errors.New("give at least one PATH, or --stdin --name NAME, or --tar")}
	}
	if err := snapshot.CheckName("node", o.node); err != nil {
		return backup.Source{}, usageError{err}
	}
	if o.plan != "" {
		if err := snapshot.CheckName("plan", o.plan); err != nil {
			return backup.Source{}, usageError{err}
		}
	}
	for i, f := range o.excludeFiles {
		o.excludeFiles[i] = g.abs(f)
	}
	if o.stdin || o.tar {
		return backup.Source{Stream: g.stdin, Name: o.name, Tar: o.tar}, nil
	}
	return backup.Source{Paths: g.absPaths(paths)}, nil
}

// commandJob is the job the command line names (not a plan file).
func (o *backupOptions) commandJob(g *globalOptions, paths []string) (*pushJob, error) {
	src, err := o.check(g, paths)
	if err != nil {
		return nil, err
	}
	excl, err := o.matcher()
	if err != nil {
		return nil, usageError{err}
	}
	return &pushJob{plan: o.plan, src: src, exclude: excl, excludeCaches: o.excludeCaches, tags: o.tags}, nil
}

// backupMemoryLimit is the heap a standalone backup asks the Go runtime
// to stay near (GOMEMLIMIT overrides it): the session's data packs (the
// open one, those being written, one idle for reuse: 16.2 MiB each by
// default, repo.SessionPackMemory) and 60 MiB for the rest (chunk
// buffers, two zstd encoder states, the index's tables and caches, the
// trees being built): 109 MiB for default packs in a directory, 125 MiB
// in an object store, where two packs are written at once. The heap a
// first backup of the peers data set keeps live peaks at 98 MB; with
// only the collector's target (GOGC 50 here) it grew to 180 MiB before a
// collection and the process to 190-200 MiB of RSS. With this limit the
// process peaked at 125-133 MiB (the binary's pages and badger's mapped
// files come on top of the heap), against 145-152 MiB with 80 MiB for
// the rest, and the collector ran 52 times instead of 25, about 0.2 CPU
// s in all against 12-13 CPU s for the backup (its work is small: the
// heap is mostly byte buffers it need not scan). A limit that counts one
// pack too few keeps the live heap at the limit: into an object store
// the collector ran 447 times (7 % of the CPU) while it counted three.
func backupMemoryLimit(r *repo.Repository) int64 {
	return r.SessionPackMemory() + 60<<20
}

// limitBackupMemory sets backupMemoryLimit for a backup in a process of
// its own (the appliance keeps its own limit), unless GOMEMLIMIT is set.
func limitBackupMemory(g *globalOptions, r *repo.Repository) {
	if g.shared == nil && os.Getenv("GOMEMLIMIT") == "" {
		debug.SetMemoryLimit(backupMemoryLimit(r))
	}
}

// runBackup checks what the command line asks for (the paths, stream or
// tar it names, or the plan file --plan names), then opens the
// repository and backs it up.
func runBackup(cmd *cobra.Command, g *globalOptions, o *backupOptions, paths []string) error {
	ctx := cmd.Context()
	var run func(r *repo.Repository) error
	if g.isPlanFile(o.plan) {
		pl, err := o.loadPlan(g, paths)
		if err != nil {
			return err
		}
		run = func(r *repo.Repository) error { return o.runPlan(ctx, g, r, pl) }
	} else {
		job, err := o.commandJob(g, paths)
		if err != nil {
			return err
		}
		run = func(r *repo.Repository) error {
			_, rep, err := o.backupJob(ctx, g, r, job)
			if err != nil {
				return err
			}
			return rep
		}
	}
	r, release, err := g.open(ctx, repo.Options{})
	if err != nil {
		return err
	}
	defer release()
	limitBackupMemory(g, r)
	return run(r)
}

// loadPlan loads the plan file --plan names; the command line names no
// source besides it.
func (o *backupOptions) loadPlan(g *globalOptions, paths []string) (*plan.Plan, error) {
	if len(paths) > 0 || o.stdin || o.tar {
		return nil, usageError{errors.New("backup: a plan file names its sources: give no PATH, --stdin or --tar")}
	}
	if err := snapshot.CheckName("node", o.node); err != nil {
		return nil, usageError{err}
	}
	return plan.Load(g.abs(o.plan))
}

// runPlan backs up every source of plan pl into r, one snapshot per
// source, as push --plan does on a node: a source that fails (its
// before command, its command, its backup) is reported and the others
// go on.
func (o *backupOptions) runPlan(ctx context.Context, g *globalOptions, r *repo.Repository, pl *plan.Plan) error {
	var failed []error
	warned := false
	for _, src := range pl.Sources {
		job, err := o.sourceJob(ctx, g, pl, src, o.node)
		var rep error
		if err == nil {
			_, rep, err = o.backupJob(ctx, g, r, job)
		}
		if job != nil {
			job.warnAfter(ctx, g)
		}
		if signalled(ctx) != nil && err != nil {
			return err // a signal stops the plan; the error says what stands
		}
		if err != nil {
			fmt.Fprintf(g.stderr, "cairn: %v\n", err)
			failed = append(failed, err)
			continue
		}
		if ee, ok := errors.AsType[*exitError](rep); ok && ee.code == exitWarnings {
			warned = true
		}
	}
	if len(failed) > 0 {
		return &exitError{code: exitFailed, err: fmt.Errorf("backup: %d of %d sources failed", len(failed), len(pl.Sources))}
	}
	if warned {
		return &exitError{code: exitWarnings, err: errors.New("some files could not be read")}
	}
	return nil
}

// backupJob backs up one job into a new snapshot of r and prints its
// report; rep is the report's exit status (warnings), err a failure
// (nothing saved). A plan source's after commands run once its data is
// read, and the snapshot records its commands.
func (o *backupOptions) backupJob(ctx context.Context, g *globalOptions, r *repo.Repository, job *pushJob) (id blob.ID, rep, err error) {
	parent, err := o.findParent(ctx, r, job)
	if err != nil {
		return id, nil, err
	}
	start := time.Now()
	bo := o.options(job, r.ChunkerParams(), r.ChunkerTable(), r)
	s := r.NewSession()
	id, sn, err := o.snapshot(ctx, g, s, job, parent, bo, start)
	if err != nil {
		// What a signal leaves: no snapshot; the packs already
		// written stay and the next backup reuses them.
		s.Abort()
		return id, nil, stoppedBy(ctx, err, "backup", func() string {
			return fmt.Sprintf("no snapshot was saved (%d files, %s read in %s; the data already stored is reused by the next backup)",
				bo.Progress.Files.Load(), humanBytes(bo.Progress.BytesRead.Load()), time.Since(start).Round(time.Millisecond))
		})
	}
	return id, g.report(id, job.source(), sn, parent), nil
}

// options are the backup options of job, with the chunker's params and
// table and loader for the parent's trees.
func (o *backupOptions) options(job *pushJob, params chunker.Params, table *chunker.Table, loader snapfs.BlobLoader) backup.Options {
	return backup.Options{Params: params, Table: table, Loader: loader, ForceRead: o.forceRead,
		Exclude: job.exclude, ExcludeCaches: job.excludeCaches, OneFileSystem: o.oneFS, Progress: &backup.Progress{}}
}

// snapshot makes job's snapshot in t (backup.Snapshot) with progress
// shown from start: a command source's command is waited for once its
// output is read (a dump that failed is not saved as if it were whole),
// and the source's after commands run then (the data is read: the
// service may start again); how any failed is a warning of the snapshot.
func (o *backupOptions) snapshot(ctx context.Context, g *globalOptions, t backup.Target, job *pushJob, parent *snapshot.Entry, bo backup.Options, start time.Time) (blob.ID, *snapshot.Snapshot, error) {
	var scan []string // paths to pre-scan for a total; none for a stream
	if job.src.Stream == nil {
		scan = job.src.Paths
	}
	stop := g.showBackupProgress(ctx, bo, parent, scan, start)
	m := backup.Meta{Node: o.node, Host: o.host, Plan: job.plan, Tags: job.tags, Scope: job.scope, Parent: parent, Start: start,
		Finish: func(ctx context.Context, err error) (backup.Finished, error) {
			stop(err)
			if job.command != nil {
				if werr := job.command.Wait(); werr != nil {
					return backup.Finished{}, fmt.Errorf("source %s: command %q failed: %w; nothing saved", job.plan, job.command.Args[2], werr)
				}
			}
			if err != nil {
				return backup.Finished{}, nil
			}
			return backup.Finished{Warnings: job.afterWarnings(ctx), Hooks: job.hooks.Ran()}, nil
		}}
	return backup.Snapshot(ctx, t, job.src, m, bo)
}

// showBackupProgress draws progress while a backup or push with options
// bo runs; stop ends it with the backup's error. The total, for the
// percentage and the ETA, is the parent snapshot's size, or without a
// parent, on a terminal, what backup.Scan of paths (nil for a stream)
// counts beside the backup, once it has counted all; after a backup
// that succeeded, what it did.
func (g *globalOptions) showBackupProgress(ctx context.Context, bo backup.Options, parent *snapshot.Entry, paths []string, start time.Time) (stop func(error)) {
	prog := bo.Progress
	var known uint64
	if parent != nil {
		known = parent.Summary.Bytes
	}
	var scanned *backup.Totals
	endScan := func() {}
	if parent == nil && len(paths) > 0 && g.stderrTTY {
		scanned = &backup.Totals{}
		sctx, cancel := context.WithCancel(ctx)
		done := make(chan struct{})
		go func() {
			defer close(done)
			backup.Scan(sctx, paths, bo, scanned) // an estimate: what it cannot read, the backup reports
		}()
		endScan = func() { cancel(); <-done }
	}
	var ok atomic.Bool // the backup succeeded: what it did is the total
	stopShowing := g.startProgress(func(final bool) {
		ev := backupEvent{Type: "progress", Files: prog.Files.Load(), Dirs: prog.Dirs.Load(), Bytes: prog.Bytes.Load(), BytesRead: prog.BytesRead.Load(), Total: known}
		switch {
		case final && ok.Load():
			ev.Total = ev.Bytes
		case scanned != nil && scanned.Done.Load():
			ev.Total = scanned.Bytes.Load()
		}
		if g.json {
			g.printJSONLine(ev)
			return
		}
		g.progressLine(backupProgressText(ev.Files, ev.Bytes, ev.BytesRead, ev.Total), ev.Bytes, ev.Total, start, final)
	})
	return func(err error) {
		ok.Store(err == nil)
		endScan()
		stopShowing()
	}
}

// backupProgressText is the progress line of a backup or push (rate and
// ETA follow): with a total, how much of it is done.
func backupProgressText(files, bytes, read, total uint64) string {
	if total == 0 {
		return fmt.Sprintf("%d files, %s, %s read", files, humanBytes(bytes), humanBytes(read))
	}
	pct := min(bytes*100/total, 100) // the total is an estimate
	return fmt.Sprintf("%d files, %s of %s (%d%%), %s read", files, humanBytes(bytes), humanBytes(total), pct, humanBytes(read))
}

// report prints a saved snapshot's summary and returns the exit status:
// nil, or exit code 3 when there were warnings. source is the plan
// file's source the snapshot is of, named when a push has several ("").
func (g *globalOptions) report(id blob.ID, source string, sn *snapshot.Snapshot, parent *snapshot.Entry) error {
	sum := sn.Summary
	if g.json {
		ev := backupEvent{Type: "summary", Snapshot: &id, Source: source, Tree: &sn.Tree, Summary: &sum, Excludes: sn.Excludes}
		if parent != nil {
			ev.Parent = &parent.ID
		}
		g.printJSONLine(ev)
	} else {
		for _, w := range sum.Warnings {
			fmt.Fprintln(g.stderr, "warning:", w)
		}
		g.printf("snapshot %s saved", savedName(id, source))
		if parent != nil {
			g.printf(" (parent %s)", parent.ID.Short())
		}
		g.printf("\nfiles: %d new, %d changed, %d unchanged; dirs: %d; others: %d\n", sum.FilesNew, sum.FilesChanged, sum.FilesUnchanged, sum.Dirs, sum.Others)
		g.printf("read %s of %s; added %s after dedup, %s stored after compression; %s\n",
			humanBytes(sum.BytesRead), humanBytes(sum.Bytes), humanBytes(sum.BytesAdded), humanBytes(sum.StoredAdded), sum.Duration.Round(time.Millisecond))
		for _, e := range sn.Excludes {
			g.printf("excluded %d by %s\n", e.Count, e.Rule)
		}
	}
	if len(sum.Warnings) > 0 {
		return &exitError{code: exitWarnings, err: errors.New("some files could not be read")}
	}
	return nil
}

// findParent picks the snapshot to compare with (backup.FindParent):
// --parent among all the repository's snapshots, or the latest of the
// same node, plan and paths.
func (o *backupOptions) findParent(ctx context.Context, r *repo.Repository, job *pushJob) (*snapshot.Entry, error) {
	q := o.parentQuery(job)
	if !q.Wanted() {
		return nil, nil
	}
	f := snapshot.Filter{Node: o.node}
	if q.Ref != "" {
		f = snapshot.Filter{}
	}
	list, err := r.Snapshots(ctx, f)
	if err != nil {
		return nil, err
	}
	return o.pickParent(list, q)
}

// parentQuery is what job's parent must be.
func (o *backupOptions) parentQuery(job *pushJob) backup.ParentQuery {
	return backup.ParentQuery{Node: o.node, Plan: job.plan, Paths: job.src.Recorded(), Ref: o.parent, ForceRead: o.forceRead}
}

// pickParent picks q's parent among list (sorted).
func (o *backupOptions) pickParent(list []snapshot.Entry, q backup.ParentQuery) (*snapshot.Entry, error) {
	p, err := backup.FindParent(list, q, time.Now())
	if err != nil {
		return nil, fmt.Errorf("--parent: %w", err)
	}
	return p, nil
}

func (g *globalOptions) absPaths(paths []string) []string {
	out := make([]string, len(paths))
	for i, p := range paths {
		out[i] = g.abs(p)
	}
	return out
}
