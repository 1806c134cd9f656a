package appliance

import (
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"slices"
	"strings"
	"time"

	"github.com/cairnbackup/cairn/repo"
	"github.com/cairnbackup/cairn/repo/blob"
	"github.com/cairnbackup/cairn/repo/check"
	"github.com/cairnbackup/cairn/repo/drill"
	"github.com/cairnbackup/cairn/repo/internal/durable"
	"github.com/cairnbackup/cairn/repo/prune"
	"github.com/cairnbackup/cairn/repo/replica"
	"github.com/cairnbackup/cairn/repo/restore"
	"github.com/cairnbackup/cairn/repo/snapshot"
	"github.com/cairnbackup/cairn/repo/status"
	"github.com/cairnbackup/cairn/scheduler"
)

// History keeps the scheduler's runs in the repository's index
// (disposable: losing it only forgets when jobs last ran).
type History struct{ R *repo.Repository }

// Record implements scheduler.History.
func (h History) Record(r scheduler.Run) error {
	b, err := json.Marshal(r)
	if err != nil {
		return err
	}
	good := r.Status == scheduler.StatusOK || r.Status == scheduler.StatusAttention
	return h.R.PutJobRun(r.Job, r.Start, b, good)
}

// LastGood returns the job's newest run that got through (ok or
// attention), kept however many runs came after it.
func (h History) LastGood(job string) (scheduler.Run, bool, error) {
	v, ok, err := h.R.LastGoodJobRun(job)
	if err != nil || !ok {
		return scheduler.Run{}, false, err
	}
	var r scheduler.Run
	if err := json.Unmarshal(v, &r); err != nil {
		return scheduler.Run{}, false, fmt.Errorf("job history: %w", err)
	}
	return r, true, nil
}

// Last implements scheduler.History.
func (h History) Last(job string) (scheduler.Run, bool, error) {
	runs, err := h.List(job, 1)
	if err != nil || len(runs) == 0 {
		return scheduler.Run{}, false, err
	}
	return runs[0], true, nil
}

// List implements scheduler.History: newest first across jobs.
func (h History) List(job string, limit int) ([]scheduler.Run, error) {
	var out []scheduler.Run
	var derr error
	err := h.R.JobRuns(job, limit, func(_ string, v []byte) bool {
		var r scheduler.Run
		if err := json.Unmarshal(v, &r); err != nil {
			derr = err
			return false
		}
		out = append(out, r)
		return true
	})
	if err != nil {
		return nil, err
	}
	if derr != nil {
		return nil, fmt.Errorf("job history: %w", derr)
	}
	slices.SortStableFunc(out, func(a, b scheduler.Run) int { return b.Start.Compare(a.Start) })
	if limit > 0 && len(out) > limit {
		out = out[:limit]
	}
	return out, nil
}

// JobStates returns the last run of every job that ever ran (and, given
// a scheduler, every configured job with its next time), for status.
func JobStates(h scheduler.History, s *scheduler.Scheduler) ([]status.Job, error) {
	byName := map[string]*status.Job{}
	var order []string
	get := func(name string) *status.Job {
		if j := byName[name]; j != nil {
			return j
		}
		byName[name] = &status.Job{Name: name}
		order = append(order, name)
		return byName[name]
	}
	if s != nil {
		for _, js := range s.Jobs() {
			j := get(js.Name)
			j.Schedule, j.Next = js.Schedule, js.Next
		}
	}
	runs, err := h.List("", 0)
	if err != nil {
		return nil, err
	}
	for _, r := range runs { // newest first
		j := get(r.Job)
		if j.LastStart.IsZero() {
			j.LastStart, j.LastEnd, j.Status, j.Summary, j.Error = r.Start, r.End, r.Status, r.Result.Summary, r.Error
		}
		if r.Status == scheduler.StatusFailed {
			j.Failures++
		}
	}
	slices.Sort(order)
	out := make([]status.Job, 0, len(order))
	for _, n := range order {
		out = append(out, *byName[n])
	}
	return out, nil
}

// jobs builds the scheduled jobs of the configuration.
func (a *Appliance) jobs(cfg *Config) []scheduler.Job {
	var out []scheduler.Job
	add := func(name string, j Job, run func(context.Context) (scheduler.Result, error)) {
		if j.Schedule != "" {
			out = append(out, scheduler.Job{Name: name, Kind: name, Schedule: j.Schedule, Jitter: j.Jitter, Run: run})
		}
	}
	add("verify", cfg.Jobs.Verify.Job, func(ctx context.Context) (scheduler.Result, error) { return a.VerifyJob(ctx, cfg) })
	add("drill", cfg.Jobs.Drill.Job, func(ctx context.Context) (scheduler.Result, error) { return a.DrillJob(ctx, cfg) })
	add("prune", cfg.Jobs.Prune, func(ctx context.Context) (scheduler.Result, error) { return a.PruneJob(ctx, cfg) })
	add("staleness", cfg.Jobs.Staleness, func(ctx context.Context) (scheduler.Result, error) { return a.StalenessJob(ctx, cfg) })
	return append(out, a.replicaJobs(cfg)...)
}

// interval is the time between two runs of a schedule (a day for
// @daily), used to size each verify run's share of the cycle.
func interval(schedule string, now time.Time) time.Duration {
	d, err := scheduler.Interval(schedule, now)
	if err != nil {
		return 24 * time.Hour // the configuration check refused it already
	}
	return d
}

// verifyResult puts what a verification read and found into res; of
// names what was verified after "verified N packs (B bytes)", if not the
// repository.
func verifyResult(res *scheduler.Result, rep *check.Report, of string) {
	res.Figures["packs_verified"] = float64(rep.PacksRead)
	res.Figures["bytes_verified"] = float64(rep.BytesRead)
	res.Figures["problems"] = float64(len(rep.Findings))
	res.Detail, _ = json.Marshal(rep)
	res.Summary = fmt.Sprintf("verified %d packs (%d bytes)%s: %d problems", rep.PacksRead, rep.BytesRead, of, len(rep.Findings))
	res.Attention = !rep.Clean()
}

// VerifyJob reads the least recently verified packs, so all data is read
// once per cycle, and reports damage with the nodes, snapshots and
// paths it affects.
func (a *Appliance) VerifyJob(ctx context.Context, cfg *Config) (scheduler.Result, error) {
	rep, chosen, err := verifyRotation(ctx, a.r, cfg.Jobs.Verify, "verify")
	res := scheduler.Result{Figures: map[string]float64{"packs_chosen": float64(chosen)}}
	if err != nil {
		return res, err
	}
	if rep == nil {
		res.Summary = "nothing to verify"
		return res, nil
	}
	verifyResult(&res, rep, "")
	if res.Attention {
		a.verifyFailed(cfg, rep)
	}
	if objects := handles(DamagedObjects(rep)); cfg.Jobs.Verify.Heal && len(objects) > 0 {
		healed, err := a.Heal(ctx, cfg, objects, "")
		if err != nil {
			return res, fmt.Errorf("heal: %w", err)
		}
		res.Detail, _ = json.Marshal(struct {
			*check.Report
			Healed []replica.Healed `json:"healed"`
		}{rep, healed})
		repaired := 0
		for _, h := range healed {
			if h.OK() {
				repaired++
			}
		}
		res.Figures["repaired"] = float64(repaired)
		res.Summary += fmt.Sprintf("; repaired %d of %d damaged objects from replicas", repaired, len(healed))
		for _, h := range healed {
			res.Summary += "; " + h.String()
		}
		a.log.Info("verification repaired damage from replicas", "repaired", repaired, "damaged", len(healed))
		res.Attention = repaired < len(healed)
	}
	return res, nil
}

// DrillJob drills the newest snapshot of every group (node, plan and
// paths by default: retention's groups), saves the reports and
// refreshes the runbook. A future-dated snapshot is not the newest
// (snapshot.Latest).
func (a *Appliance) DrillJob(ctx context.Context, cfg *Config) (scheduler.Result, error) {
	r := a.r
	list, err := r.Snapshots(ctx, snapshot.Filter{})
	if err != nil {
		return scheduler.Result{}, err
	}
	keys, groups := cfg.Retention.Grouping().Split(list)
	now := time.Now()
	scratch := cfg.Jobs.Drill.Scratch
	if scratch == "" {
		scratch = os.TempDir()
	}
	res := scheduler.Result{Figures: map[string]float64{}}
	type item struct {
		Group    string  `json:"group"`
		Snapshot blob.ID `json:"snapshot"`
		Report   blob.ID `json:"report"`
		Result   string  `json:"result"`
		Reason   string  `json:"reason,omitempty"` // why it failed: drill.Report.Reason
		Secs     float64 `json:"restore_seconds"`
	}
	var items []item
	failed := 0
	var total float64
	progress := progressOf(ctx)
	for i, k := range keys {
		g := groups[k]
		e := g[snapshot.Latest(g, now)]
		restored := &restore.Progress{}
		size := e.Summary.Bytes
		if cfg.Jobs.Drill.SampleFiles > 0 {
			size = 0 // a sample: how much is not known beforehand
		}
		progress.Step(fmt.Sprintf("drill %d of %d: %s", i+1, len(keys), k), size, restored.Bytes.Load)
		rep, err := drill.Run(ctx, r, e.ID, drill.Options{Scratch: scratch, SampleFiles: cfg.Jobs.Drill.SampleFiles, Probes: cfg.Jobs.Drill.Probes, Progress: restored})
		if err != nil {
			return res, fmt.Errorf("drill of %s: %w", k, err)
		}
		id, err := drill.Save(ctx, r, rep)
		if err != nil {
			return res, err
		}
		if rep.Result != drill.ResultOK {
			failed++
			a.drillFailed(cfg, k, e.ID, id, rep.Reason())
		}
		total += rep.RestoreSeconds
		items = append(items, item{Group: k.String(), Snapshot: e.ID, Report: id, Result: rep.Result, Reason: rep.Reason(), Secs: rep.RestoreSeconds})
	}
	res.Figures["drills"] = float64(len(items))
	res.Figures["failed"] = float64(failed)
	res.Figures["restore_seconds"] = total
	res.Detail, _ = json.Marshal(items)
	res.Summary = fmt.Sprintf("%d drills, %d failed, %.1f s of restores", len(items), failed, total)
	res.Attention = failed > 0
	if err := a.WriteRunbook(ctx, cfg); err != nil {
		return res, fmt.Errorf("runbook: %w", err)
	}
	return res, nil
}

// RunbookPath is where the drill job keeps the runbook, readable without
// cairn: in the repository directory, or in an object-store repository's
// state directory.
func RunbookPath(p repo.Place) string { return p.Within("runbook.md") }

// WriteRunbook regenerates the repository's runbook.md from the current
// state (Runbook, for all nodes).
func (a *Appliance) WriteRunbook(ctx context.Context, cfg *Config) error {
	b, err := a.Runbook(ctx, cfg, "")
	if err != nil {
		return err
	}
	// The runbook is what an operator reads when the box is in trouble:
	// written the one durable way, so a crash leaves the old one or the
	// new one, never a torn or empty file.
	path := RunbookPath(a.r.Place())
	tmp, err := durable.WriteTemp(filepath.Dir(path), filepath.Base(path)+".tmp-", func(f *os.File) error {
		if err := f.Chmod(0o644); err != nil {
			return err
		}
		_, err := f.Write(b)
		return err
	})
	if err != nil {
		return fmt.Errorf("runbook: %w", err)
	}
	if err := durable.Rename(tmp, path); err != nil {
		os.Remove(tmp)
		return fmt.Errorf("runbook: %w", err)
	}
	return nil
}

// Status gathers the appliance's state with the configured expectations;
// a configuration whose file does not exist needs attention.
func (a *Appliance) Status(ctx context.Context, cfg *Config) (*status.Status, error) {
	jobs, err := JobStates(History{R: a.r}, a.Scheduler())
	if err != nil {
		return nil, err
	}
	o := statusOptions(cfg, jobs)
	if o.Replicas, err = a.ReplicaStates(ctx, cfg); err != nil {
		return nil, err
	}
	st, err := status.Gather(ctx, a.r, o)
	if err != nil {
		return nil, err
	}
	if cfg.Missing {
		st.Attention = append(st.Attention, NoConfigAttention(cfg.Path))
	}
	if free, reserve, err := a.space(); err == nil && free < reserve {
		st.Attention = append(st.Attention, fmt.Sprintf("repository disk: %d MiB free, below the %d MiB kept for the index: pushes are refused until space is freed (cairn forget --prune)", free>>20, reserve>>20))
	}
	return st, nil
}

// NoConfigAttention is status's attention item for an appliance without
// its configuration file.
func NoConfigAttention(path string) string {
	return "no configuration file " + path + ": no node may connect and no job runs (cairn init writes one; cairn config check checks one)"
}

// statusOptions are the options of status.Gather for cfg: what status,
// metrics, the runbook and the staleness job expect.
func statusOptions(cfg *Config, jobs []status.Job) status.Options {
	return status.Options{Expect: cfg.ExpectDurations(), Cycle: cfg.Jobs.Verify.CycleDuration(), Jobs: jobs, GroupBy: cfg.Retention.GroupBy, Nodes: cfg.BackupNodes()}
}

// PruneJob applies the retention policies, then prunes.
func (a *Appliance) PruneJob(ctx context.Context, cfg *Config) (scheduler.Result, error) {
	res := scheduler.Result{Figures: map[string]float64{}}
	forgotten := 0
	if len(cfg.Retention.Policies) > 0 {
		loc, err := cfg.Retention.Location()
		if err != nil {
			return res, err
		}
		ds, err := prune.Forget(ctx, a.r, prune.ForgetOptions{GroupBy: cfg.Retention.Grouping(), PolicyFor: cfg.Retention.PolicyFor, Loc: loc, Now: time.Now()})
		if err != nil {
			return res, err
		}
		for _, g := range ds {
			for _, d := range g {
				if !d.Keep {
					forgotten++
				}
			}
		}
	}
	rep, err := prune.Run(ctx, a.r, prune.Options{})
	if err != nil {
		return res, err
	}
	res.Figures["snapshots_forgotten"] = float64(forgotten)
	res.Figures["packs_deleted"] = float64(rep.PacksDeleted)
	res.Figures["packs_repacked"] = float64(rep.PacksRepacked)
	res.Figures["bytes_freed"] = float64(rep.BytesFreed)
	res.Detail, _ = json.Marshal(rep)
	res.Summary = fmt.Sprintf("forgot %d snapshots; %d packs deleted, %d repacked, %d bytes freed", forgotten, rep.PacksDeleted, rep.PacksRepacked, rep.BytesFreed)
	return res, nil
}

// StalenessJob reports node/plans whose newest snapshot is older than
// expected, configured nodes and expected node/plans that never backed
// up, and replicas that lag past their schedule.
func (a *Appliance) StalenessJob(ctx context.Context, cfg *Config) (scheduler.Result, error) {
	o := statusOptions(cfg, nil)
	var err error
	if o.Replicas, err = a.ReplicaStates(ctx, cfg); err != nil {
		return scheduler.Result{}, err
	}
	st, err := status.Gather(ctx, a.r, o)
	if err != nil {
		return scheduler.Result{}, err
	}
	var missing []string
	for _, l := range st.Late {
		missing = append(missing, fmt.Sprintf("%s (last %s)", l.Name(), l.Last.UTC().Format(time.RFC3339)))
	}
	for _, n := range st.Never {
		missing = append(missing, n.Name()+" (never backed up)")
	}
	plans := map[[2]string]bool{}
	for _, g := range st.Groups {
		plans[[2]string{g.Node, g.Plan}] = true
	}
	a.stale(cfg, st)
	late := a.replicasLate(cfg, st)
	res := scheduler.Result{Figures: map[string]float64{"missing": float64(len(missing)), "replicas_late": float64(len(late))}, Attention: len(missing)+len(late) > 0}
	res.Detail, _ = json.Marshal(missing)
	if len(missing) == 0 {
		res.Summary = fmt.Sprintf("all %d node/plans backed up on time", len(plans))
	} else {
		res.Summary = "missed backups: " + strings.Join(missing, ", ")
	}
	if len(late) > 0 {
		res.Summary += "; replicas late: " + strings.Join(late, ", ")
	}
	return res, nil
}

// notify runs the configured notify command with the run as JSON on its
// standard input.
func (a *Appliance) notify(ctx context.Context, run scheduler.Run) {
	if run.Status == scheduler.StatusFailed {
		a.jobFailed(a.Config(), run)
	}
	cmdline := a.Config().Notify
	if cmdline == "" {
		return
	}
	b, _ := json.Marshal(run)
	ctx, cancel := context.WithTimeout(context.WithoutCancel(ctx), time.Minute)
	defer cancel()
	cmd := exec.CommandContext(ctx, "/bin/sh", "-c", cmdline)
	cmd.Stdin = bytes.NewReader(b)
	if out, err := cmd.CombinedOutput(); err != nil {
		a.log.Error("notify command failed", "job", run.Job, "err", err, "output", strings.TrimSpace(string(out)))
		return
	}
	a.log.Info("notified", "job", run.Job, "status", run.Status)
}

// RunJob runs a job now: through the running scheduler (which keeps jobs
// of a kind from overlapping), or, when the appliance is not serving,
// through a scheduler made for this one run. Either way it is recorded.
func (a *Appliance) RunJob(ctx context.Context, name string) (scheduler.Run, error) {
	if s := a.Scheduler(); s != nil {
		run, err := s.Trigger(ctx, name)
		if !errors.Is(err, scheduler.ErrUnknownJob) || !isReplicaJob(a.Config(), name) {
			return run, err
		}
		// A replica's job without a schedule (cairn replicate NAME,
		// cairn jobs run verify/NAME): run by hand in a scheduler of
		// its own, recorded in the same history. The replica's lock
		// keeps it from overlapping the replica's other jobs.
		for _, j := range a.jobs(withAllSchedules(a.Config())) {
			if j.Name == name {
				s, err := scheduler.New([]scheduler.Job{j}, History{R: a.r}, scheduler.Options{Logger: a.log, Notify: a.notify})
				if err != nil {
					return scheduler.Run{}, err
				}
				return s.Trigger(ctx, name)
			}
		}
		return run, err
	}
	select {
	case <-a.ready:
	default:
		// Not serving: this process ends after the job; what it
		// notifies is sent first (bounded).
		defer a.notes.close(30 * time.Second)
	}
	cfg := a.Config()
	jobs := a.jobs(cfg)
	// A job without a schedule can still be run by hand.
	have := map[string]bool{}
	for _, j := range jobs {
		have[j.Name] = true
	}
	for _, j := range a.jobs(withAllSchedules(cfg)) {
		if !have[j.Name] {
			jobs = append(jobs, j)
		}
	}
	s, err := scheduler.New(jobs, History{R: a.r}, scheduler.Options{Logger: a.log, Notify: a.notify})
	if err != nil {
		return scheduler.Run{}, err
	}
	return s.Trigger(ctx, name)
}

// isReplicaJob reports whether name is a job of one of cfg's replicas.
func isReplicaJob(cfg *Config, name string) bool {
	job, replica, ok := strings.Cut(name, "/")
	return ok && cfg.Replicas[replica] != nil && (job == "replicate" || job == "verify" || job == "drill")
}

// withAllSchedules returns a copy of cfg in which every job has a
// schedule (for running unscheduled jobs by hand).
func withAllSchedules(cfg *Config) *Config {
	c := *cfg
	if c.Jobs.Verify.Schedule == "" {
		c.Jobs.Verify.Schedule = "@daily"
	}
	if c.Jobs.Drill.Schedule == "" {
		c.Jobs.Drill.Schedule = "@daily"
	}
	if c.Jobs.Prune.Schedule == "" {
		c.Jobs.Prune.Schedule = "@weekly"
	}
	if c.Jobs.Staleness.Schedule == "" {
		c.Jobs.Staleness.Schedule = "@hourly"
	}
	c.Replicas = map[string]*Replica{}
	for name, rc := range cfg.Replicas {
		r := *rc
		if r.Schedule == "" {
			r.Schedule = "@daily"
		}
		v, d := cfg.VerifyOf(name), cfg.DrillOf(name)
		if v.Schedule == "" {
			v.Schedule = "@daily"
		}
		if d.Schedule == "" {
			d.Schedule = "@daily"
		}
		r.Verify, r.Drill = &v, &d
		c.Replicas[name] = &r
	}
	return &c
}
