// Package status gathers what an operator needs to know about the
// appliance: per node and plan the last snapshot and its age, whether a
// backup is missing, the last drill and the measured recovery time; how
// much of the data was verified recently; which jobs fail. cairn status,
// the Prometheus metrics and the recovery runbook all read it.
package status

import (
	"context"
	"fmt"
	"slices"
	"strings"
	"time"

	"github.com/cairnbackup/cairn/repo"
	"github.com/cairnbackup/cairn/repo/blob"
	"github.com/cairnbackup/cairn/repo/drill"
	"github.com/cairnbackup/cairn/repo/prune"
	"github.com/cairnbackup/cairn/repo/snapfs"
	"github.com/cairnbackup/cairn/repo/snapshot"
)

// Stored is what [Sample] reads of a repository: its snapshot list and
// its pack records, both from the index. *repo.Repository satisfies it.
type Stored interface {
	Snapshots(ctx context.Context, f snapshot.Filter) ([]snapshot.Entry, error)
	PackRecords(fn func(repo.PackRecord) error) error
}

// Source is what [Gather] reads of a repository, all from the index: the
// snapshot list and pack records ([Stored]), the packs' verification
// times, and the drill marks (drill.Notes). *repo.Repository satisfies
// it.
type Source interface {
	Stored
	drill.Notes
	VerifiedTimes(fn func(id blob.ID, t time.Time) error) error
}

// Trees is what [Inspect] reads of a repository: the snapshot list and
// the blobs of the snapshots' trees. *repo.Repository satisfies it.
type Trees interface {
	Snapshots(ctx context.Context, f snapshot.Filter) ([]snapshot.Entry, error)
	snapfs.BlobLoader
}

// Options say what "needs attention" means.
type Options struct {
	Now time.Time
	// Expect is the longest a node/plan may go without a backup, by
	// "node/plan", "node" or "default".
	Expect map[string]time.Duration
	// Cycle is the verification cycle: data verified longer ago (or
	// never, for packs older than a cycle) needs attention.
	Cycle time.Duration
	// Jobs are the scheduled jobs and their last runs.
	Jobs []Job
	// GroupBy groups snapshots as retention does; nil is
	// prune.DefaultGroupBy (node, plan and paths).
	GroupBy *prune.GroupBy
	// Nodes are the nodes configured to back up (nodes: in the
	// appliance configuration, those that may push): one with no
	// snapshot at all needs attention.
	Nodes []string
	// Replicas are the configured replicas, as their jobs' history
	// tells (Gather adds their lag and what needs attention).
	Replicas []Replica
}

// Job is a scheduled job's state.
type Job struct {
	Name      string    `json:"name"`
	Schedule  string    `json:"schedule,omitempty"`
	Next      time.Time `json:"next,omitzero"`
	LastStart time.Time `json:"last_start,omitzero"`
	LastEnd   time.Time `json:"last_end,omitzero"`
	Status    string    `json:"status,omitempty"` // of the last run: ok, attention, failed, skipped
	Summary   string    `json:"summary,omitempty"`
	Error     string    `json:"error,omitempty"`
	Failures  int       `json:"failures"` // failed runs among those recorded
}

// Snapshot is a snapshot in a status.
type Snapshot struct {
	ID       blob.ID         `json:"id"`
	Time     time.Time       `json:"time"`
	Bytes    uint64          `json:"bytes"`
	Files    uint64          `json:"files"`
	Duration time.Duration   `json:"duration_ns"`
	Paths    []string        `json:"paths"`
	Scope    *snapshot.Scope `json:"scope,omitempty"`
	// Excludes are the rules that left entries out of the snapshot,
	// with how many each left out.
	Excludes []snapshot.Exclude `json:"excludes,omitempty"`
}

// Drill is a drill in a status.
type Drill struct {
	Report         blob.ID   `json:"report"`
	Snapshot       blob.ID   `json:"snapshot"`
	Time           time.Time `json:"time"`
	Result         string    `json:"result"`
	RestoreSeconds float64   `json:"restore_seconds"`
	MBPerSecond    float64   `json:"mb_per_second"`
	Files          uint64    `json:"files"`
	Failures       []string  `json:"failures,omitempty"`
	Reason         string    `json:"reason,omitempty"` // why it failed: the first failure, and how many more (drill.Report.Reason)
}

// Group is one group of snapshots, as retention groups them (by
// default one node, plan and set of paths: one source).
type Group struct {
	Node      string        `json:"node"`
	Plan      string        `json:"plan"`
	Paths     []string      `json:"paths"` // sorted; nil when the grouping ignores paths
	Snapshots int           `json:"snapshots"`
	Last      Snapshot      `json:"last"` // the newest that is not future-dated (snapshot.Latest)
	Age       time.Duration `json:"age_ns"`
	Expected  time.Duration `json:"expected_ns,omitempty"`
	// Missing is set when the group's node/plan is late: none of the
	// node/plan's groups has a snapshot within Expected.
	Missing   bool      `json:"missing"`
	Future    int       `json:"future_dated,omitempty"` // snapshots dated after now
	Drill     *Drill    `json:"drill,omitempty"`        // the newest drill of any of its snapshots
	DrilledOK *Snapshot `json:"drilled_ok,omitempty"`   // the proven restore point (drill.Proven): what keep_drilled keeps
	OKDrill   *Drill    `json:"ok_drill,omitempty"`     // the drill that proved it
}

// Key is the group's key as retention knows it.
func (g Group) Key() prune.Group {
	return prune.Group{Node: g.Node, Plan: g.Plan, Paths: strings.Join(g.Paths, "\x00")}
}

// Name is the group's name: "node/plan [path path]" (prune.Group).
func (g Group) Name() string { return g.Key().String() }

// Late is a node/plan whose newest snapshot, in any of its groups, is
// older than expected.
type Late struct {
	Node     string        `json:"node"`
	Plan     string        `json:"plan"`
	Last     time.Time     `json:"last"`
	Age      time.Duration `json:"age_ns"`
	Expected time.Duration `json:"expected_ns"`
}

// Name is "node/plan", or "node" without a plan.
func (l Late) Name() string { return prune.Group{Node: l.Node, Plan: l.Plan}.String() }

// Never is a configured node, or a node/plan (or node) with an
// expectation, that has no snapshot at all.
type Never struct {
	Node     string        `json:"node"`
	Plan     string        `json:"plan,omitempty"`        // empty for a whole node
	Expected time.Duration `json:"expected_ns,omitempty"` // 0: no expectation, but a configured node
}

// Name is "node/plan", or "node".
func (n Never) Name() string { return prune.Group{Node: n.Node, Plan: n.Plan}.String() }

// Status is the whole picture.
type Status struct {
	Time             time.Time `json:"time"`
	Groups           []Group   `json:"groups"`
	Late             []Late    `json:"late"`  // node/plans that missed a backup
	Never            []Never   `json:"never"` // nodes and node/plans that never backed up
	Packs            int       `json:"packs"`
	StoredBytes      int64     `json:"stored_bytes"`
	VerifiedFraction float64   `json:"verified_fraction"` // of stored bytes verified within the cycle
	OldestVerified   time.Time `json:"oldest_verified,omitzero"`
	NeverVerified    int       `json:"never_verified_packs"`
	Overdue          int       `json:"overdue_packs"` // not verified within the cycle and older than it
	Jobs             []Job     `json:"jobs"`
	Replicas         []Replica `json:"replicas"`
	Attention        []string  `json:"attention"`
}

// ExpectFor returns the expected interval of a group, or 0.
func ExpectFor(expect map[string]time.Duration, node, plan string) time.Duration {
	for _, k := range []string{node + "/" + plan, node, "default"} {
		if d, ok := expect[k]; ok {
			return d
		}
	}
	return 0
}

// Gather reads the repository's state. It reads snapshot records, each
// snapshot's newest drill (drill.Marks), pack records and verification
// times, all from the index; it reads no data and no drill report, so
// its cost does not grow with the drills run.
//
// Staleness: expectations are set per node/plan (expect: in the
// configuration), and a node/plan may have several groups (a plan-less
// node pushes /etc and a dump; a plan's paths change). The expectation
// is met by the newest snapshot of any of its groups, so a one-off push
// does not raise an alarm for ever after; every group's row is marked
// when its node/plan is late, and Late lists each late node/plan once.
func Gather(ctx context.Context, r Source, o Options) (*Status, error) {
	if o.Now.IsZero() {
		o.Now = time.Now()
	}
	by := prune.DefaultGroupBy
	if o.GroupBy != nil {
		by = *o.GroupBy
	}
	st := &Status{Time: o.Now, Jobs: o.Jobs, Attention: []string{}, Groups: []Group{}, Late: []Late{}, Never: []Never{}, Replicas: []Replica{}}
	list, err := r.Snapshots(ctx, snapshot.Filter{})
	if err != nil {
		return nil, err
	}
	marks, err := drill.Marks(ctx, r)
	if err != nil {
		return nil, err
	}

	// Staleness per node/plan, over all of its groups.
	npKeys, byNP := prune.GroupBy{Node: true, Plan: true}.Split(list)
	late := map[prune.Group]bool{}
	for _, k := range npKeys {
		g := byNP[k]
		last := g[snapshot.Latest(g, o.Now)]
		l := Late{Node: k.Node, Plan: k.Plan, Last: last.Time, Age: o.Now.Sub(last.Time), Expected: ExpectFor(o.Expect, k.Node, k.Plan)}
		if l.Expected > 0 && l.Age > l.Expected {
			late[k] = true
			st.Late = append(st.Late, l)
			st.Attention = append(st.Attention, fmt.Sprintf("%s: last backup %s ago, expected every %s", l.Name(), round(l.Age), round(l.Expected)))
		}
	}
	st.Never = never(list, o)
	for _, n := range st.Never {
		why := fmt.Sprintf("expected every %s", round(n.Expected))
		if n.Plan == "" && slices.Contains(o.Nodes, n.Node) {
			why = "a node in the configuration"
			if n.Expected > 0 {
				why += fmt.Sprintf("; expected every %s", round(n.Expected))
			}
		}
		st.Attention = append(st.Attention, fmt.Sprintf("%s: never backed up (%s)", n.Name(), why))
	}

	keys, groups := by.Split(list)
	for _, k := range keys {
		snaps := groups[k] // oldest first
		last := snaps[snapshot.Latest(snaps, o.Now)]
		g := Group{Node: k.Node, Plan: k.Plan, Paths: k.PathList(), Snapshots: len(snaps), Last: snap(last), Age: o.Now.Sub(last.Time)}
		g.Expected = ExpectFor(o.Expect, last.Node, last.Plan)
		g.Missing = late[prune.Group{Node: last.Node, Plan: last.Plan}]
		// Every snapshot has one answer, its mark (its newest drill):
		// the group's drill is the newest drilled snapshot's, and the
		// proven restore point is the newest whose newest drill passed.
		// Future-dated snapshots count for neither (snapshot.Latest).
		for i := len(snaps) - 1; i >= 0; i-- {
			e := snaps[i]
			if snapshot.FutureDated(e.Time, o.Now) {
				g.Future++
				continue
			}
			m, ok := marks[e.ID]
			if !ok {
				continue
			}
			if g.Drill == nil {
				g.Drill = drillOf(m.Newest)
			}
			if m.OK() {
				s := snap(e)
				g.DrilledOK, g.OKDrill = &s, drillOf(m.Newest)
				break
			}
		}
		st.Groups = append(st.Groups, g)
		if d := g.Drill; d != nil && d.Result != drill.ResultOK {
			why := ""
			if d.Reason != "" {
				why = ": " + d.Reason
			}
			st.Attention = append(st.Attention, fmt.Sprintf("%s: the last drill (report %s, snapshot %s) failed%s (cairn drills %s)",
				g.Name(), d.Report.Short(), d.Snapshot.Short(), why, d.Report.Short()))
		}
		if g.Future > 0 {
			st.Attention = append(st.Attention, fmt.Sprintf("%s: %d snapshots are dated after now (the newest %s); retention keeps them and counts them for nothing until then",
				g.Name(), g.Future, snaps[len(snaps)-1].Time.UTC().Format(time.RFC3339)))
		}
	}
	if err := verification(r, st, o); err != nil {
		return nil, err
	}
	for _, j := range o.Jobs {
		if j.Status == "failed" {
			st.Attention = append(st.Attention, fmt.Sprintf("job %s failed at %s: %s", j.Name, j.LastStart.Format(time.RFC3339), j.Error))
		}
	}
	if err := replicas(r, st, o); err != nil {
		return nil, err
	}
	return st, nil
}

// never returns the configured nodes and the expectations (by
// "node/plan" or "node") that no snapshot of list meets at all, by name.
func never(list []snapshot.Entry, o Options) []Never {
	nodes, plans := map[string]bool{}, map[prune.Group]bool{}
	for _, e := range list {
		nodes[e.Node] = true
		plans[prune.Group{Node: e.Node, Plan: e.Plan}] = true
	}
	out := []Never{}
	listed := map[string]bool{} // nodes with an entry
	for k, d := range o.Expect {
		node, plan, hasPlan := strings.Cut(k, "/")
		switch {
		case k == "default":
			continue
		case hasPlan && !plans[prune.Group{Node: node, Plan: plan}], !hasPlan && !nodes[node]:
			out = append(out, Never{Node: node, Plan: plan, Expected: d})
			listed[node] = true
		}
	}
	for _, node := range o.Nodes {
		if !nodes[node] && !listed[node] {
			out = append(out, Never{Node: node, Expected: ExpectFor(o.Expect, node, "")})
			listed[node] = true
		}
	}
	slices.SortFunc(out, func(a, b Never) int { return strings.Compare(a.Name(), b.Name()) })
	return out
}

func snap(e snapshot.Entry) Snapshot {
	return Snapshot{ID: e.ID, Time: e.Time, Bytes: e.Summary.Bytes, Files: e.Summary.Files, Duration: e.Summary.Duration, Paths: slices.Clone(e.Paths), Scope: e.Scope,
		Excludes: slices.Clone(e.Excludes)}
}

func drillOf(d drill.Saved) *Drill {
	out := &Drill{Report: d.ID, Snapshot: d.Snapshot, Time: d.Finished, Result: d.Result, RestoreSeconds: d.RestoreSeconds, MBPerSecond: d.MBPerSecond, Files: d.Files, Reason: d.Reason()}
	for _, f := range d.Failures {
		out.Failures = append(out.Failures, f.String())
	}
	return out
}

func verification(r Source, st *Status, o Options) error {
	verified := map[blob.ID]time.Time{}
	if err := r.VerifiedTimes(func(id blob.ID, t time.Time) error { verified[id] = t; return nil }); err != nil {
		return err
	}
	var recent int64
	err := r.PackRecords(func(p repo.PackRecord) error {
		st.Packs++
		st.StoredBytes += p.Size
		v, ok := verified[p.ID]
		if !ok {
			st.NeverVerified++
		} else if st.OldestVerified.IsZero() || v.Before(st.OldestVerified) {
			st.OldestVerified = v
		}
		if o.Cycle > 0 {
			cut := o.Now.Add(-o.Cycle)
			if ok && !v.Before(cut) {
				recent += p.Size
			} else if p.Created.Before(cut) {
				st.Overdue++
			}
		}
		return nil
	})
	if err != nil {
		return err
	}
	if st.StoredBytes > 0 {
		st.VerifiedFraction = float64(recent) / float64(st.StoredBytes)
	}
	if st.Overdue > 0 {
		st.Attention = append(st.Attention, fmt.Sprintf("%d packs were not verified within the %s cycle", st.Overdue, round(o.Cycle)))
	}
	return nil
}

// round shortens durations for messages: 26h0m0s → 26h, 49h30m → 2d1h30m.
func round(d time.Duration) string {
	d = d.Round(time.Minute)
	days := d / (24 * time.Hour)
	d -= days * 24 * time.Hour
	s := strings.TrimSuffix(strings.TrimSuffix(d.String(), "0s"), "0m")
	if d == 0 {
		s = ""
	}
	if days > 0 {
		return fmt.Sprintf("%dd%s", days, s)
	}
	if s == "" {
		return "0m"
	}
	return s
}
