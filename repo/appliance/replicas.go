package appliance

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"os"
	"slices"
	"sync/atomic"
	"time"

	"github.com/cairnbackup/cairn/repo"
	"github.com/cairnbackup/cairn/repo/blob"
	"github.com/cairnbackup/cairn/repo/check"
	"github.com/cairnbackup/cairn/repo/drill"
	"github.com/cairnbackup/cairn/repo/prune"
	"github.com/cairnbackup/cairn/repo/replica"
	"github.com/cairnbackup/cairn/repo/restore"
	"github.com/cairnbackup/cairn/repo/snapshot"
	"github.com/cairnbackup/cairn/repo/status"
	"github.com/cairnbackup/cairn/repo/storage"
	"github.com/cairnbackup/cairn/scheduler"
)

// The replicas' jobs: replicate/NAME copies what the replica lacks,
// verify/NAME reads a share of its packs back from it, drill/NAME
// restores the newest snapshot of every group from it alone. The three
// are of one kind (replica/NAME), so they never overlap: each holds the
// replica's lock.

// ErrUnknownReplica is returned for a replica name the configuration
// does not have.
var ErrUnknownReplica = errors.New("no such replica")

// replicaOf returns replica name of cfg.
func replicaOf(cfg *Config, name string) (*Replica, error) {
	rc := cfg.Replicas[name]
	if rc == nil {
		names := cfg.ReplicaNames()
		if len(names) == 0 {
			return nil, fmt.Errorf("%w %q: the configuration %s has no replicas", ErrUnknownReplica, name, cfg.Path)
		}
		return nil, fmt.Errorf("%w %q (the configuration has %s)", ErrUnknownReplica, name, joinNames(names))
	}
	return rc, nil
}

func joinNames(names []string) string {
	out := ""
	for i, n := range names {
		if i > 0 {
			out += ", "
		}
		out += n
	}
	return out
}

// replicaAccess finds the S3 credentials of an object-store replica: its
// s3_credentials, else the configuration's, else the environment's
// AWS_ACCESS_KEY_ID and AWS_SECRET_ACCESS_KEY.
func replicaAccess(cfg *Config, name string, rc *Replica) (repo.S3Access, error) {
	if !repo.IsObjectStoreURL(rc.To) {
		return repo.S3Access{}, nil
	}
	path := rc.S3Credentials
	if path == "" {
		path = cfg.S3Credentials
	}
	if path != "" {
		c, err := storage.LoadS3Credentials(path)
		if err != nil {
			return repo.S3Access{}, fmt.Errorf("replica %s: %w", name, err)
		}
		return repo.S3Access{Credentials: c}, nil
	}
	c, found, err := storage.S3CredentialsFromEnv(os.Getenv)
	if err != nil {
		return repo.S3Access{}, fmt.Errorf("replica %s: %w", name, err)
	}
	if !found {
		return repo.S3Access{}, fmt.Errorf("no S3 credentials for replica %s: give replicas.%s.s3_credentials (or s3_credentials:) in %s, or set %s and %s",
			name, name, cfg.Path, storage.EnvAccessKeyID, storage.EnvSecretAccessKey)
	}
	return repo.S3Access{Credentials: c}, nil
}

// OpenReplica opens replica name of cfg: to copy into it (copy), or as a
// repository of its own to read (its index in its cache directory,
// rebuilt from the replica when missing).
func (a *Appliance) OpenReplica(ctx context.Context, cfg *Config, name string, copy bool) (*repo.Repository, repo.Seeded, error) {
	rc, err := replicaOf(cfg, name)
	if err != nil {
		return nil, repo.Seeded{}, err
	}
	access, err := replicaAccess(cfg, name, rc)
	if err != nil {
		return nil, repo.Seeded{}, err
	}
	o := repo.ReplicaOptions{S3: access, Logger: a.log.With("replica", name), Copy: copy}
	if repo.IsObjectStoreURL(rc.To) {
		o.CacheDir = rc.ReplicaCacheDir(a.r.Config().ID, name)
	}
	return a.r.OpenReplica(ctx, rc.To, o)
}

// ReplicateJob brings replica name up to date (replica.Run), then
// applies the replica's own retention, if it has one.
func (a *Appliance) ReplicateJob(ctx context.Context, cfg *Config, name string) (scheduler.Result, error) {
	res := scheduler.Result{Figures: map[string]float64{}}
	rc, err := replicaOf(cfg, name)
	if err != nil {
		return res, err
	}
	dst, seeded, err := a.OpenReplica(ctx, cfg, name, true)
	if err != nil {
		return res, err
	}
	prog := &replica.Progress{}
	progressOf(ctx).StepTotal("replicate to "+name, prog.Total.Load, prog.Bytes.Load)
	rep, err := replica.Run(ctx, a.r, dst, replica.Options{Name: name, Transfers: rc.Transfers, DeleteAfter: rc.Delete.Delay(),
		Progress: prog, Logger: a.log.With("replica", name), Seeded: seeded})
	if cerr := dst.Close(); err == nil && cerr != nil {
		err = fmt.Errorf("replica %s: %w", name, cerr)
	}
	res.Detail, _ = json.Marshal(rep)
	if err != nil {
		return res, err
	}
	res.Figures["objects_copied"] = float64(rep.Objects)
	res.Figures["bytes_copied"] = float64(rep.Bytes)
	res.Figures["mb_per_second"] = rep.MBPerSecond
	res.Figures["lag_bytes"] = float64(rep.LagBytes)
	res.Figures["deleted"] = float64(rep.Deleted)
	res.Figures["failed"] = float64(len(rep.Failed) + len(rep.Left))
	res.Summary = ReplicationSummary(rep)
	res.Attention = !rep.OK()
	if len(rc.Retention) > 0 && rep.OK() {
		forgot, freed, err := a.replicaRetention(ctx, cfg, name, rc)
		if err != nil {
			return res, fmt.Errorf("replica %s: retention: %w", name, err)
		}
		res.Figures["snapshots_forgotten"] = float64(forgot)
		res.Summary += fmt.Sprintf("; retention forgot %d snapshots, freed %s", forgot, status.HumanBytes(uint64(max(freed, 0))))
	}
	if res.Attention {
		a.notes.alert(cfg, Event{Kind: EventJobFailed, Job: ReplicaJob("replicate", name), Replica: name, Reason: res.Summary,
			Title:   "cairn: replication to replica " + name + " left objects behind",
			Message: fmt.Sprintf("Replica %s (%s): %s", name, rc.To, res.Summary)})
	}
	return res, nil
}

// ReplicationSummary is a run's summary line: what it copied, how fast,
// and what is left.
func ReplicationSummary(rep *replica.Report) string {
	s := fmt.Sprintf("copied %d objects (%s) in %s, %.1f MB/s: %d packs, %d snapshots, %d drill reports",
		rep.Objects, status.HumanBytes(uint64(rep.Bytes)), shortDur(rep.Duration), rep.MBPerSecond, rep.Packs, rep.Snapshots, rep.Drills)
	if rep.Repaired > 0 {
		s += fmt.Sprintf(", %d copied again over a damaged copy", rep.Repaired)
	}
	if rep.Deleted > 0 {
		s += fmt.Sprintf("; deleted %d objects (%s)", rep.Deleted, status.HumanBytes(uint64(rep.DeletedBytes)))
	}
	if rep.PendingDeletes > 0 {
		s += fmt.Sprintf("; %d objects the primary no longer has wait for their delay", rep.PendingDeletes)
	}
	s += "; lag " + status.HumanBytes(uint64(max(rep.LagBytes, 0)))
	if n := len(rep.Failed); n > 0 {
		s += fmt.Sprintf("; %d objects not copied (first: %s: %s)", n, rep.Failed[0].Object, rep.Failed[0].Error)
	}
	if n := len(rep.Left); n > 0 {
		s += fmt.Sprintf("; %d snapshots left for the next run (first: %s: %s)", n, rep.Left[0].ID.Short(), rep.Left[0].Reason)
	}
	return s
}

// replicaRetention applies the replica's retention to the snapshots the
// primary no longer has (decided over all of the replica's snapshots, so
// keep_monthly counts the whole history), then prunes the replica,
// keeping every pack the primary still has.
func (a *Appliance) replicaRetention(ctx context.Context, cfg *Config, name string, rc *Replica) (int, int64, error) {
	rr, _, err := a.OpenReplica(ctx, cfg, name, false)
	if err != nil {
		return 0, 0, err
	}
	defer rr.Close()
	loc, err := cfg.Retention.Location()
	if err != nil {
		return 0, 0, err
	}
	policies := Retention{Policies: rc.Retention}
	ds, err := prune.Forget(ctx, rr, prune.ForgetOptions{GroupBy: cfg.Retention.Grouping(), PolicyFor: policies.PolicyFor, Loc: loc, Now: time.Now(), DryRun: true})
	if err != nil {
		return 0, 0, err
	}
	primary, err := a.r.Snapshots(ctx, snapshot.Filter{})
	if err != nil {
		return 0, 0, err
	}
	onPrimary := map[blob.ID]bool{}
	for _, e := range primary {
		onPrimary[e.ID] = true
	}
	forgot := 0
	for _, g := range ds {
		for _, d := range g {
			if !d.Keep && !onPrimary[d.ID] {
				if err := rr.DeleteSnapshot(ctx, d.ID); err != nil {
					return forgot, 0, err
				}
				forgot++
			}
		}
	}
	if forgot == 0 {
		return 0, 0, nil
	}
	packs, err := a.r.StoredPacks(ctx)
	if err != nil {
		return forgot, 0, err
	}
	rep, err := prune.Run(ctx, rr, prune.Options{Keep: func(id blob.ID) bool { _, ok := packs[id]; return ok }})
	if err != nil {
		return forgot, 0, err
	}
	return forgot, rep.BytesFreed, nil
}

// verifyRotation reads the least recently verified packs of r, so all
// of its data is read once per cycle of vj.
func verifyRotation(ctx context.Context, r *repo.Repository, vj VerifyJob, label string) (*check.Report, int, error) {
	verified := map[blob.ID]time.Time{}
	if err := r.VerifiedTimes(func(id blob.ID, t time.Time) error { verified[id] = t; return nil }); err != nil {
		return nil, 0, err
	}
	var packs []check.PackAge
	err := r.PackRecords(func(p repo.PackRecord) error {
		packs = append(packs, check.PackAge{ID: p.ID, Size: p.Size, Verified: verified[p.ID]})
		return nil
	})
	if err != nil {
		return nil, 0, err
	}
	cycle := vj.CycleDuration()
	schedule := vj.Schedule
	if schedule == "" {
		schedule = "@daily"
	}
	share := float64(interval(schedule, time.Now())) / float64(cycle)
	chosen := check.Rotation(packs, time.Now(), cycle, min(share, 1))
	if len(chosen) == 0 {
		return nil, 0, nil
	}
	size := make(map[blob.ID]int64, len(packs))
	for _, p := range packs {
		size[p.ID] = p.Size
	}
	var total uint64
	for _, id := range chosen {
		total += uint64(size[id])
	}
	var read atomic.Uint64
	progressOf(ctx).Step(fmt.Sprintf("%s %d packs", label, len(chosen)), total, read.Load)
	rep, err := check.Run(ctx, r, check.Options{ReadData: true, Packs: chosen, Progress: func(p check.ReadProgress) { read.Store(uint64(p.Bytes)) }})
	return rep, len(chosen), err
}

// VerifyReplicaJob reads a share of replica name's packs back from the
// replica (check --read-data of the packs least recently verified there,
// on the replica's own rotation) and marks what is damaged there, so the
// next replication copies it again from the primary.
func (a *Appliance) VerifyReplicaJob(ctx context.Context, cfg *Config, name string) (scheduler.Result, error) {
	return a.onReplica(ctx, cfg, name, a.verifyReplica)
}

// onReplica opens replica name of cfg to read (OpenReplica), runs job on
// it, and closes it.
func (a *Appliance) onReplica(ctx context.Context, cfg *Config, name string, job func(ctx context.Context, cfg *Config, name string, rr *repo.Repository) (scheduler.Result, error)) (scheduler.Result, error) {
	rr, _, err := a.OpenReplica(ctx, cfg, name, false)
	if err != nil {
		return scheduler.Result{Figures: map[string]float64{}}, err
	}
	defer rr.Close()
	return job(ctx, cfg, name, rr)
}

func (a *Appliance) verifyReplica(ctx context.Context, cfg *Config, name string, rr *repo.Repository) (scheduler.Result, error) {
	res := scheduler.Result{Figures: map[string]float64{}}
	rep, chosen, err := verifyRotation(ctx, rr, cfg.VerifyOf(name), "verify replica "+name+":")
	if err != nil {
		return res, fmt.Errorf("replica %s: %w", name, err)
	}
	res.Figures["packs_chosen"] = float64(chosen)
	if rep == nil {
		res.Summary = "nothing to verify"
		return res, nil
	}
	verifyResult(&res, rep, " of replica "+name)
	if marks := DamagedObjects(rep); len(marks) > 0 {
		now := time.Now()
		for i := range marks {
			marks[i].Time = now
		}
		if err := a.r.SetReplicaMarks(name, repo.ReplicaDamaged, marks, true); err != nil {
			return res, err
		}
		res.Summary += fmt.Sprintf("; %d objects marked to be copied again from the primary at the next replication", len(marks))
	}
	if res.Attention {
		reason := findingsReason(rep)
		a.notes.alert(cfg, Event{Kind: EventVerifyFailed, Job: ReplicaJob("verify", name), Replica: name, Reason: reason,
			Title: fmt.Sprintf("cairn: verification of replica %s found %d problems", name, len(rep.Findings)),
			Message: fmt.Sprintf("Verification of replica %s (%s) found %d problems (copied again from the repository at the next replication):\n%s",
				name, cfg.Replicas[name].To, len(rep.Findings), reason)})
	}
	return res, nil
}

// DamagedObjects returns the objects a check found damaged or missing:
// packs (also those of damaged blobs) and snapshot files.
func DamagedObjects(rep *check.Report) []repo.ReplicaMark {
	seen := map[storage.Handle]bool{}
	var out []repo.ReplicaMark
	add := func(k storage.Kind, id *blob.ID) {
		if id == nil {
			return
		}
		h := storage.Handle{Kind: k, Name: id.String()}
		if !seen[h] {
			seen[h] = true
			out = append(out, repo.ReplicaMark{Handle: h})
		}
	}
	for _, f := range rep.Findings {
		switch f.Kind {
		case check.PackMissing, check.PackSize, check.PackHeader, check.PackHash, check.BlobDamaged, check.BlobMissing, check.BlobUnreadable:
			add(storage.Packs, f.Pack)
		case check.SnapshotDamaged, check.SnapshotMissing:
			add(storage.Snapshot, f.Snapshot)
		}
	}
	return out
}

// DrillReplicaJob drills the newest snapshot of every group of replica
// name, reading only from the replica, and saves the reports in the
// primary (marked with the replica's name).
func (a *Appliance) DrillReplicaJob(ctx context.Context, cfg *Config, name string) (scheduler.Result, error) {
	return a.onReplica(ctx, cfg, name, a.drillReplica)
}

func (a *Appliance) drillReplica(ctx context.Context, cfg *Config, name string, rr *repo.Repository) (scheduler.Result, error) {
	res := scheduler.Result{Figures: map[string]float64{}}
	list, err := rr.Snapshots(ctx, snapshot.Filter{})
	if err != nil {
		return res, fmt.Errorf("replica %s: %w", name, err)
	}
	keys, groups := cfg.Retention.Grouping().Split(list)
	dj := cfg.DrillOf(name)
	type item struct {
		Group    string  `json:"group"`
		Snapshot blob.ID `json:"snapshot"`
		Report   blob.ID `json:"report"`
		Result   string  `json:"result"`
		Reason   string  `json:"reason,omitempty"`
		Secs     float64 `json:"restore_seconds"`
	}
	var items []item
	failed := 0
	now := time.Now()
	for i, k := range keys {
		g := groups[k]
		e := g[snapshot.Latest(g, now)]
		restored := &restore.Progress{}
		progressOf(ctx).Step(fmt.Sprintf("drill replica %s, %d of %d: %s", name, i+1, len(keys), k), e.Summary.Bytes, restored.Bytes.Load)
		rep, err := DrillReplica(ctx, rr, name, e.ID, drill.Options{Scratch: dj.Scratch, SampleFiles: dj.SampleFiles, Probes: dj.Probes, Progress: restored})
		if err != nil {
			return res, fmt.Errorf("drill of %s on replica %s: %w", k, name, err)
		}
		id, err := drill.Save(ctx, a.r, rep)
		if err != nil {
			return res, err
		}
		if !rep.OK() {
			failed++
			a.notes.alert(cfg, Event{Kind: EventDrillFailed, Job: ReplicaJob("drill", name), Replica: name, Node: k.Node, Plan: k.Plan, Paths: k.PathList(),
				Snapshot: e.ID.String(), Report: id.String(), Reason: rep.Reason(),
				Title: "cairn: drill of " + planName(k.Node, k.Plan) + " on replica " + name + " failed",
				Message: fmt.Sprintf("The drill of %s (snapshot %s) on replica %s (%s) failed: %s (cairn drills %s)",
					k, e.ID.Short(), name, cfg.Replicas[name].To, rep.Reason(), id.Short())})
		}
		items = append(items, item{Group: k.String(), Snapshot: e.ID, Report: id, Result: rep.Result, Reason: rep.Reason(), Secs: rep.RestoreSeconds})
	}
	res.Figures["drills"] = float64(len(items))
	res.Figures["failed"] = float64(failed)
	res.Detail, _ = json.Marshal(items)
	res.Summary = fmt.Sprintf("%d drills on replica %s, %d failed", len(items), name, failed)
	if failed > 0 {
		for _, it := range items {
			if it.Result != drill.ResultOK {
				res.Summary += fmt.Sprintf(" (first: %s, snapshot %s: %s; cairn drills %s)", it.Group, it.Snapshot.Short(), it.Reason, it.Report.Short())
				break
			}
		}
	}
	res.Attention = failed > 0
	return res, nil
}

// DrillReplica drills snapshot id of the replica rr (opened with
// OpenReplica), reading only from it; the report names the replica.
func DrillReplica(ctx context.Context, rr *repo.Repository, name string, id blob.ID, o drill.Options) (*drill.Report, error) {
	if o.Scratch == "" {
		o.Scratch = os.TempDir()
	}
	rep, err := drill.Run(ctx, rr, id, o)
	if err != nil {
		return nil, err
	}
	rep.Replica = name
	return rep, nil
}

// HealSources opens the storage of the replicas to heal from: all of
// cfg's, in name order, or only the one named.
func (a *Appliance) HealSources(ctx context.Context, cfg *Config, only string) ([]replica.Source, error) {
	names := cfg.ReplicaNames()
	if only != "" {
		if _, err := replicaOf(cfg, only); err != nil {
			return nil, err
		}
		names = []string{only}
	}
	var out []replica.Source
	for _, name := range names {
		rc := cfg.Replicas[name]
		access, err := replicaAccess(cfg, name, rc)
		if err != nil {
			return nil, err
		}
		be, err := repo.Storage(ctx, rc.To, access)
		if err != nil {
			a.log.Warn("a replica to heal from cannot be reached", "replica", name, "err", err)
			continue
		}
		out = append(out, replica.Source{Name: name, Location: rc.To, Backend: be})
	}
	return out, nil
}

// Heal puts back the damaged or missing objects from the replicas (all,
// or only the one named).
func (a *Appliance) Heal(ctx context.Context, cfg *Config, objects []storage.Handle, only string) ([]replica.Healed, error) {
	sources, err := a.HealSources(ctx, cfg, only)
	if err != nil {
		return nil, err
	}
	return replica.Heal(ctx, a.r, objects, sources)
}

// DamagedObjectHandles returns the objects a check found damaged or
// missing (see DamagedObjects).
func DamagedObjectHandles(rep *check.Report) []storage.Handle { return handles(DamagedObjects(rep)) }

// handles returns the objects of marks.
func handles(marks []repo.ReplicaMark) []storage.Handle {
	out := make([]storage.Handle, len(marks))
	for i, m := range marks {
		out[i] = m.Handle
	}
	return out
}

// ReplicaStates returns what status shows of every configured replica,
// from the jobs' history.
func (a *Appliance) ReplicaStates(ctx context.Context, cfg *Config) ([]status.Replica, error) {
	h := History{R: a.r}
	var out []status.Replica
	if len(cfg.Replicas) == 0 {
		return out, nil
	}
	drills, err := drill.Recent(ctx, a.r)
	if drills == nil && err != nil {
		return nil, err
	}
	for _, name := range cfg.ReplicaNames() {
		rc := cfg.Replicas[name]
		st := status.Replica{Name: name, Location: rc.To, Schedule: rc.Schedule, Delete: rc.Delete.String()}
		if rc.Schedule != "" {
			st.Interval = interval(rc.Schedule, time.Now())
		}
		job := ReplicaJob("replicate", name)
		runs, err := h.List(job, 0)
		if err != nil {
			return nil, err
		}
		// The history keeps the newest runs; the newest good one
		// is kept past them (a long outage of the target).
		if good, ok, err := h.LastGood(job); err != nil {
			return nil, err
		} else if ok {
			runs = append(runs, good)
		}
		for _, run := range runs { // newest first
			if run.Status == scheduler.StatusSkipped {
				continue
			}
			var rep replica.Report
			ok := json.Unmarshal(run.Result.Detail, &rep) == nil && !rep.Listed.IsZero()
			if st.LastRun.IsZero() {
				st.LastRun, st.LastStatus, st.LastError, st.LastSummary = run.Start, run.Status, run.Error, run.Result.Summary
				if ok {
					st.StoredBytes = rep.StoredBytes
				}
			}
			if run.Status == scheduler.StatusFailed || !ok {
				continue
			}
			// The newest run that got through: the replica holds
			// what the primary had at its listing, but what it
			// left behind (its lag).
			st.Replicated, st.Ended, st.LagAtEnd = rep.Listed, rep.Ended, rep.LagBytes
			break
		}
		runs, err = h.List(ReplicaJob("verify", name), 0)
		if err != nil {
			return nil, err
		}
		for _, run := range runs {
			if run.Status != scheduler.StatusSkipped {
				st.LastVerified, st.VerifyStatus, st.VerifySummary = run.Start, run.Status, firstNonEmptyString(run.Error, run.Result.Summary)
				break
			}
		}
		// The newest drill of the replica, by hand or by its job: the
		// reports name the replica (newest first).
		for _, d := range drills {
			if d.Replica == name {
				st.LastDrilled, st.DrillStatus = d.Finished, d.Result
				st.DrillSummary = fmt.Sprintf("snapshot %s (%s/%s), report %s", d.Snapshot.Short(), d.Node, snapshot.PlanName(d.Plan), d.ID.Short())
				if !d.OK() {
					st.DrillSummary += ": " + d.Reason() + " (cairn drills " + d.ID.Short() + ")"
				}
				break
			}
		}
		out = append(out, st)
	}
	return out, nil
}

func firstNonEmptyString(s ...string) string {
	if i := slices.IndexFunc(s, func(v string) bool { return v != "" }); i >= 0 {
		return s[i]
	}
	return ""
}

// replicaJobs are the scheduled jobs of the replicas.
func (a *Appliance) replicaJobs(cfg *Config) []scheduler.Job {
	var out []scheduler.Job
	for _, name := range cfg.ReplicaNames() {
		rc := cfg.Replicas[name]
		kind := ReplicaJob("replica", name)
		add := func(job string, j Job, run func(context.Context) (scheduler.Result, error)) {
			if j.Schedule != "" {
				out = append(out, scheduler.Job{Name: ReplicaJob(job, name), Kind: kind, Schedule: j.Schedule, Jitter: j.Jitter, Run: run})
			}
		}
		add("replicate", Job{Schedule: rc.Schedule, Jitter: rc.Jitter}, func(ctx context.Context) (scheduler.Result, error) { return a.ReplicateJob(ctx, cfg, name) })
		add("verify", cfg.VerifyOf(name).Job, func(ctx context.Context) (scheduler.Result, error) { return a.VerifyReplicaJob(ctx, cfg, name) })
		add("drill", cfg.DrillOf(name).Job, func(ctx context.Context) (scheduler.Result, error) { return a.DrillReplicaJob(ctx, cfg, name) })
	}
	return out
}
