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
	"sort"
	"strings"
	"time"

	"github.com/cairnbackup/cairn/repo"
	"github.com/cairnbackup/cairn/repo/blob"
	"github.com/cairnbackup/cairn/repo/drill"
	"github.com/cairnbackup/cairn/repo/snapshot"
)

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
}

// Group is one node and plan.
type Group struct {
	Node      string        `json:"node"`
	Plan      string        `json:"plan"`
	Snapshots int           `json:"snapshots"`
	Last      Snapshot      `json:"last"`
	Age       time.Duration `json:"age_ns"`
	Expected  time.Duration `json:"expected_ns,omitempty"`
	Missing   bool          `json:"missing"`              // older than expected
	Drill     *Drill        `json:"drill,omitempty"`      // the newest drill of any of its snapshots
	DrilledOK *Snapshot     `json:"drilled_ok,omitempty"` // the newest snapshot with a passing drill
	OKDrill   *Drill        `json:"ok_drill,omitempty"`   // that passing drill
}

// Name is "node/plan", or "node" without a plan.
func (g Group) Name() string {
	if g.Plan == "" {
		return g.Node
	}
	return g.Node + "/" + g.Plan
}

// Status is the whole picture.
type Status struct {
	Time             time.Time `json:"time"`
	Groups           []Group   `json:"groups"`
	Packs            int       `json:"packs"`
	StoredBytes      int64     `json:"stored_bytes"`
	VerifiedFraction float64   `json:"verified_fraction"` // of stored bytes verified within the cycle
	OldestVerified   time.Time `json:"oldest_verified,omitzero"`
	NeverVerified    int       `json:"never_verified_packs"`
	Overdue          int       `json:"overdue_packs"` // not verified within the cycle and older than it
	Jobs             []Job     `json:"jobs"`
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

// Gather reads the repository's state. It reads snapshot records (from
// the index), drill reports, pack records and verification times; it
// reads no data.
func Gather(ctx context.Context, r *repo.Repository, o Options) (*Status, error) {
	if o.Now.IsZero() {
		o.Now = time.Now()
	}
	st := &Status{Time: o.Now, Jobs: o.Jobs, Attention: []string{}, Groups: []Group{}}
	list, err := r.Snapshots(ctx, snapshot.Filter{})
	if err != nil {
		return nil, err
	}
	drills, err := drill.List(ctx, r)
	if err != nil {
		return nil, err
	}
	bySnap := map[blob.ID][]drill.Saved{}
	for _, d := range drills { // newest first
		bySnap[d.Snapshot] = append(bySnap[d.Snapshot], d)
	}
	groups := map[[2]string]*Group{}
	var order [][2]string
	for i := len(list) - 1; i >= 0; i-- { // newest first
		e := list[i]
		k := [2]string{e.Node, e.Plan}
		g := groups[k]
		if g == nil {
			g = &Group{Node: e.Node, Plan: e.Plan, Last: snap(e), Age: o.Now.Sub(e.Time)}
			g.Expected = ExpectFor(o.Expect, e.Node, e.Plan)
			g.Missing = g.Expected > 0 && g.Age > g.Expected
			groups[k] = g
			order = append(order, k)
		}
		g.Snapshots++
		for _, d := range bySnap[e.ID] {
			dr := drillOf(d)
			if g.Drill == nil || dr.Time.After(g.Drill.Time) {
				g.Drill = dr
			}
			if d.Result == drill.ResultOK && g.DrilledOK == nil {
				s := snap(e)
				g.DrilledOK, g.OKDrill = &s, dr
			}
		}
	}
	sort.Slice(order, func(i, j int) bool {
		if order[i][0] != order[j][0] {
			return order[i][0] < order[j][0]
		}
		return order[i][1] < order[j][1]
	})
	for _, k := range order {
		g := groups[k]
		st.Groups = append(st.Groups, *g)
		if g.Missing {
			st.Attention = append(st.Attention, fmt.Sprintf("%s: last backup %s ago, expected every %s", g.Name(), round(g.Age), round(g.Expected)))
		}
		if g.Drill != nil && g.Drill.Result != drill.ResultOK {
			st.Attention = append(st.Attention, fmt.Sprintf("%s: the last drill (report %s, snapshot %s) failed", g.Name(), g.Drill.Report.Short(), g.Drill.Snapshot.Short()))
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
	return st, nil
}

func snap(e snapshot.Entry) Snapshot {
	return Snapshot{ID: e.ID, Time: e.Time, Bytes: e.Summary.Bytes, Files: e.Summary.Files, Duration: e.Summary.Duration, Paths: slices.Clone(e.Paths), Scope: e.Scope,
		Excludes: slices.Clone(e.Excludes)}
}

func drillOf(d drill.Saved) *Drill {
	out := &Drill{Report: d.ID, Snapshot: d.Snapshot, Time: d.Finished, Result: d.Result, RestoreSeconds: d.RestoreSeconds, MBPerSecond: d.MBPerSecond, Files: d.Files}
	for _, f := range d.Failures {
		out.Failures = append(out.Failures, f.String())
	}
	return out
}

func verification(r *repo.Repository, st *Status, o Options) error {
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
