package drill

import (
	"context"
	"errors"
	"fmt"
	"io/fs"
	"os"
	"path/filepath"
	"runtime"
	"slices"
	"strconv"
	"strings"
	"time"

	"github.com/cairnbackup/cairn/repo/blob"
	"github.com/cairnbackup/cairn/repo/filter"
	"github.com/cairnbackup/cairn/repo/restore"
	"github.com/cairnbackup/cairn/repo/snapshot"
)

// Version is the report format version written by this build.
const Version = 1

// Results of a drill.
const (
	ResultOK     = "ok"
	ResultFailed = "failed"
)

// noGitRepo is the failure of a snapshot of class git without a git
// repository.
const noGitRepo = "the snapshot's class is git, but no git repository was found in it"

// DefaultTimeout is the time a probe gets when [Options.Timeout] is zero.
const DefaultTimeout = 10 * time.Minute

// MaxFailures bounds the failures a report lists; a last failure says how
// many more there were.
const MaxFailures = 1000

// Options configure a drill.
type Options struct {
	// Scratch is the directory to restore in: a fresh subdirectory is
	// made in it and removed afterwards, also when the drill fails. It
	// must exist; empty means os.TempDir().
	Scratch string
	// SampleFiles, if N > 0, restores only N regular files chosen at
	// random (seeded by the snapshot ID, so always the same ones), plus
	// every file a probe needs. 0 restores everything.
	SampleFiles int
	// Probes are extra probe commands by "node/plan" or by plan name (the
	// first that matches the snapshot, in that order). Each runs with
	// sh -c in the restored root, with CAIRN_DRILL_ROOT set to it; exit
	// code 0 passes.
	Probes map[string]string
	// Timeout bounds each probe; zero means DefaultTimeout.
	Timeout time.Duration
	// Now is the clock for Started and Finished; nil means time.Now.
	// Durations are measured with the monotonic clock.
	Now func() time.Time
	// Progress, if set, counts the files and bytes restored so far.
	Progress *restore.Progress
}

// Report is what a drill found. It is stored as JSON by [Save].
type Report struct {
	Version  int     `json:"version"`
	Snapshot blob.ID `json:"snapshot"`
	// Replica names the replica the drill restored from (reading only
	// from it); empty for a drill of the repository itself. A replica's
	// drills prove the replica, not the snapshot's copy on the primary:
	// they mark no snapshot ([Marks]).
	Replica  string    `json:"replica,omitempty"`
	Node     string    `json:"node"`
	Plan     string    `json:"plan,omitempty"`
	Class    string    `json:"class,omitempty"` // the snapshot's scope's class, if it has a scope
	Started  time.Time `json:"started"`
	Finished time.Time `json:"finished"`
	// RestoreSeconds is the measured recovery time: restore plus
	// verification, without the probes.
	RestoreSeconds float64 `json:"restore_seconds"`
	// Files and Bytes count the regular files restored and their size.
	Files       uint64  `json:"files"`
	Bytes       uint64  `json:"bytes"`
	MBPerSecond float64 `json:"mb_per_second"` // Bytes / 10⁶ / RestoreSeconds
	// Sampled says only a sample of the snapshot's files was restored;
	// SnapshotFiles is then the number of regular files in the snapshot.
	Sampled       bool   `json:"sampled"`
	SnapshotFiles uint64 `json:"snapshot_files,omitempty"`
	Result        string `json:"result"` // ResultOK or ResultFailed
	// Failures are restore errors, verification differences and failed
	// probes, each naming the path it concerns (in the snapshot, with a
	// leading "/").
	Failures []Failure `json:"failures"`
	// Probes are the probes that ran, built-in and configured.
	Probes []Probe `json:"probes"`
	// Configured are the probe commands the configuration gave for the
	// snapshot's node/plan ([Options.Probes]); each must be among
	// Probes, or the drill failed ("configured probes not run").
	// Reports written before this field have none.
	Configured []string `json:"configured,omitempty"`
	// Warnings are what the drill environment could not reproduce (device
	// nodes when not root, extended attributes the scratch file system
	// refuses) and a scratch directory that could not be removed. They do
	// not fail the drill.
	Warnings []string `json:"warnings,omitempty"`
}

// OK reports whether the drill passed.
func (r *Report) OK() bool { return r.Result == ResultOK }

// Failure is one thing that went wrong, and where.
type Failure struct {
	Path   string `json:"path"`
	Reason string `json:"reason"`
}

func (f Failure) String() string {
	if f.Path == "" {
		return f.Reason
	}
	return f.Path + ": " + f.Reason
}

// Probe is one check of the restored data by the data's own tools.
type Probe struct {
	// Name is "git fsck", "sqlite integrity_check", "pg_restore --list"
	// or "command".
	Name string `json:"name"`
	// Target is the path checked (in the snapshot, with a leading "/");
	// for a command probe, the command.
	Target string `json:"target"`
	// Command is the command line that ran, its words quoted for a POSIX
	// shell (empty in reports written before it was recorded).
	Command string `json:"command,omitempty"`
	OK      bool   `json:"ok"`
	// Exit is the command's exit code; nil when it did not exit by
	// itself (killed at its timeout, not installed) or in reports
	// written before it was recorded.
	Exit    *int    `json:"exit,omitempty"`
	Error   string  `json:"error,omitempty"` // why it failed: exit status, wrong output, timeout, program missing
	Output  string  `json:"output"`          // standard output and error together, at most MaxOutput bytes
	Seconds float64 `json:"seconds"`
}

// Run drills snapshot snap of r: restore, verify, probe, time. It returns
// an error only when the drill could not run at all (the snapshot cannot
// be read, the scratch directory cannot be made, the context ends); a
// drill that finds damage returns a Report whose Result is
// [ResultFailed].
func Run(ctx context.Context, r Source, snap blob.ID, o Options) (*Report, error) {
	if o.Now == nil {
		o.Now = time.Now
	}
	if o.Timeout <= 0 {
		o.Timeout = DefaultTimeout
	}
	if o.Scratch == "" {
		o.Scratch = os.TempDir()
	}
	if o.SampleFiles < 0 {
		return nil, fmt.Errorf("drill: sample of %d files", o.SampleFiles)
	}
	sn, err := r.LoadSnapshot(ctx, snap)
	if err != nil {
		return nil, fmt.Errorf("drill: %w", err)
	}
	rep := &Report{Version: Version, Snapshot: snap, Node: sn.Node, Plan: sn.Plan, Started: o.Now().UTC(), Configured: o.configured(sn)}
	if sn.Scope != nil {
		rep.Class = sn.Scope.Class
	}
	// Scratch directories of drills that were killed are removed first,
	// so they cannot accumulate.
	swept, errs := sweepScratch(o.Scratch)
	for _, p := range swept {
		rep.Warnings = append(rep.Warnings, fmt.Sprintf("removed the scratch directory %s left by an interrupted drill", p))
	}
	for _, err := range errs {
		rep.Warnings = append(rep.Warnings, fmt.Sprintf("a scratch directory left by an interrupted drill could not be removed: %v", err))
	}
	sc, err := newScratch(o.Scratch, snap.Short())
	if err != nil {
		return nil, fmt.Errorf("drill: scratch directory: %w", err)
	}
	dir := sc.dir
	d := &drill{r: r, o: o, sn: sn, id: snap, dir: dir, rep: rep}
	err = d.run(ctx)
	if rerr := removeAll(dir); rerr != nil {
		rep.Warnings = append(rep.Warnings, fmt.Sprintf("the scratch directory %s could not be removed: %v", dir, rerr))
	}
	sc.release()
	if err != nil {
		return nil, fmt.Errorf("drill of snapshot %s: %w", snap.Short(), err)
	}
	rep.Finished = o.Now().UTC()
	d.finish()
	return rep, nil
}

// drill is one run of Run.
type drill struct {
	r    Source
	o    Options
	sn   *snapshot.Snapshot
	id   blob.ID
	dir  string   // the scratch directory the snapshot is restored into
	root *os.Root // dir, once restored
	rep  *Report

	failures   []Failure // restore and verification, sorted before probes
	probeFails []Failure
}

func (d *drill) run(ctx context.Context) error {
	ro := restore.Options{Workers: runtime.GOMAXPROCS(0), Progress: d.o.Progress}
	if d.o.SampleFiles > 0 {
		sel, err := choose(ctx, d.r, d.sn.Tree, d.o.SampleFiles, d.id, d.rep.Class)
		if err != nil {
			return err
		}
		d.failures = append(d.failures, sel.failures...)
		if sel.sampled {
			d.rep.Sampled = true
			d.rep.SnapshotFiles = sel.files
			if ro.Include, err = sel.matcher(); err != nil {
				return err
			}
		}
	}

	start := time.Now()
	res, rerr := restore.Run(ctx, d.r, d.sn.Tree, "", d.dir, ro)
	var restoreErrs []error
	if rerr != nil {
		var re *restore.Error
		if !errors.As(rerr, &re) || ctx.Err() != nil {
			return rerr
		}
		restoreErrs = re.Errs
	}
	root, err := os.OpenRoot(d.dir)
	if err != nil {
		return err
	}
	defer root.Close()
	d.root = root
	// A directory whose tree could not be read failed the restore once;
	// the verification leaves it out, or it would stop there.
	vo := ro
	if vo.Exclude, err = d.unreadableDirs(restoreErrs); err != nil {
		return err
	}
	diffs, verr := restore.Verify(ctx, d.r, d.sn.Tree, "", d.dir, vo)
	elapsed := time.Since(start)
	if verr != nil {
		if ctx.Err() != nil {
			return verr
		}
		d.failures = append(d.failures, Failure{Path: "/", Reason: "verification could not finish: " + oneLine(verr.Error())})
	}
	d.rep.RestoreSeconds = elapsed.Seconds()
	if res != nil {
		d.rep.Files, d.rep.Bytes = res.Files, res.Bytes
	}
	if d.rep.RestoreSeconds > 0 {
		d.rep.MBPerSecond = float64(d.rep.Bytes) / 1e6 / d.rep.RestoreSeconds
	}
	d.account(res, restoreErrs, diffs)

	targets, err := d.findTargets(ctx)
	if err != nil {
		return err
	}
	if err := d.probe(ctx, targets); err != nil {
		return err
	}
	if d.rep.Class == "git" && !slices.ContainsFunc(targets, func(t target) bool { return t.kind == gitRepo }) {
		d.probeFails = append(d.probeFails, Failure{Path: "/", Reason: noGitRepo})
	}
	return nil
}

// unreadableDirs returns an exclude matcher for the directories the
// restore could not list (their tree blob is damaged or missing), or nil.
func (d *drill) unreadableDirs(errs []error) (*filter.Matcher, error) {
	var rules []filter.Rule
	for _, e := range errs {
		if !errors.Is(e, blob.ErrCorrupt) && !errors.Is(e, blob.ErrNotFound) {
			continue
		}
		p, _ := splitPath(oneLine(e.Error()), d.exists)
		if p == "" || p == "." {
			continue
		}
		if fi, err := d.root.Lstat(p); err == nil && fi.IsDir() {
			rules = append(rules, filter.Rule{Pattern: escape(snapPath(p)), Source: "drill: unreadable directory"})
		}
	}
	if len(rules) == 0 {
		return nil, nil
	}
	return filter.New(rules)
}

// exists says whether p (relative) exists in the scratch directory.
func (d *drill) exists(p string) bool {
	if p == "." {
		return true
	}
	if p == "" || strings.HasPrefix(p, "/") {
		return false
	}
	_, err := d.root.Lstat(p)
	return err == nil
}

// account turns restore errors, restore warnings and verification
// differences into failures and warnings, one failure per cause.
func (d *drill) account(res *restore.Result, errs []error, diffs []restore.Difference) {
	inDiffs := map[string]bool{}
	for _, df := range diffs {
		inDiffs[df.Path] = true
	}
	// known says whether p is a path of the restore: a restore message
	// starts with one, but paths may hold ": " themselves, so the
	// prefixes are tried from the shortest.
	known := func(p string) bool { return inDiffs[p] || d.exists(p) }
	failed := map[string]bool{}
	for _, e := range errs {
		var me *restore.MismatchError
		if errors.As(e, &me) {
			failed[me.Path] = true
			d.failures = append(d.failures, Failure{Path: snapPath(me.Path),
				Reason: fmt.Sprintf("hash mismatch: the contents restored hash to %s, but the backup recorded %s", me.Got, me.Want)})
			continue
		}
		p, reason := splitPath(oneLine(e.Error()), known)
		if p != "" {
			failed[p] = true
			d.failures = append(d.failures, Failure{Path: snapPath(p), Reason: reason})
		} else {
			d.failures = append(d.failures, Failure{Reason: reason})
		}
	}
	warned := map[string]bool{}
	if res != nil {
		for _, w := range res.Warnings {
			w = oneLine(w)
			d.rep.Warnings = append(d.rep.Warnings, w)
			if p, _ := splitPath(w, known); p != "" {
				warned[p] = true
			}
		}
	}
	for _, df := range diffs {
		switch {
		case failed[df.Path]:
			// The restore failure is the cause; the file is incomplete.
		case warned[df.Path]:
			d.rep.Warnings = append(d.rep.Warnings, fmt.Sprintf("%s: %s", snapPath(df.Path), df.What))
		default:
			d.failures = append(d.failures, Failure{Path: snapPath(df.Path), Reason: df.What})
		}
	}
	slices.SortStableFunc(d.failures, func(a, b Failure) int { return strings.Compare(a.Path, b.Path) })
}

// splitPath splits a message "PATH: REASON" at the first ": " before
// which known holds.
func splitPath(msg string, known func(string) bool) (p, rest string) {
	for i := 0; ; {
		j := strings.Index(msg[i:], ": ")
		if j < 0 {
			return "", msg
		}
		if known(msg[:i+j]) {
			return msg[:i+j], msg[i+j+2:]
		}
		i += j + 2
	}
}

// oneLine joins the lines of an error message (errors.Join puts each
// error on its own line).
func oneLine(msg string) string {
	return strings.ReplaceAll(msg, "\n", ": ")
}

// snapPath turns a path relative to the scratch directory into the path
// in the snapshot.
func snapPath(rel string) string {
	if rel == "." || rel == "" {
		return "/"
	}
	return "/" + filepath.ToSlash(rel)
}

// configured returns the probe commands configured for sn: the one for
// "node/plan", else the one for its plan.
func (o Options) configured(sn *snapshot.Snapshot) []string {
	for _, key := range []string{sn.Node + "/" + sn.Plan, sn.Plan} {
		if c, ok := o.Probes[key]; ok && key != "" {
			return []string{c}
		}
	}
	return nil
}

// notRun returns the configured probe commands that are not among the
// probes that ran.
func notRun(rep *Report) []string {
	var missing []string
	for _, c := range rep.Configured {
		if !slices.ContainsFunc(rep.Probes, func(p Probe) bool { return p.Name == "command" && p.Target == c }) {
			missing = append(missing, strconv.Quote(c))
		}
	}
	return missing
}

// finish sets the result and bounds the failures.
func (d *drill) finish() {
	if missing := notRun(d.rep); len(missing) > 0 {
		// Every path that leads here runs them; should one ever not, the
		// drill proved less than the plan asks and must not pass.
		d.probeFails = append(d.probeFails, Failure{Path: "/", Reason: "configured probes not run: " + strings.Join(missing, ", ")})
	}
	all := append(d.failures, d.probeFails...)
	all = slices.CompactFunc(all, func(a, b Failure) bool { return a == b })
	if len(all) > MaxFailures {
		more := len(all) - MaxFailures + 1
		all = append(all[:MaxFailures-1:MaxFailures-1], Failure{Reason: fmt.Sprintf("… and %d more failures", more)})
	}
	if all == nil {
		all = []Failure{}
	}
	d.rep.Failures = all
	if d.rep.Probes == nil {
		d.rep.Probes = []Probe{}
	}
	d.rep.Result = ResultOK
	if len(all) > 0 {
		d.rep.Result = ResultFailed
	}
}

// removeAll removes dir and everything in it, making directories
// writable first where a restored read-only directory is in the way.
func removeAll(dir string) error {
	if err := os.RemoveAll(dir); err == nil {
		return nil
	}
	filepath.WalkDir(dir, func(p string, e fs.DirEntry, err error) error {
		if err == nil && e.IsDir() {
			os.Chmod(p, 0o700)
		}
		return nil
	})
	return os.RemoveAll(dir)
}
