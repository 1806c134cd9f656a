package status

import (
	"cmp"
	"context"
	"maps"
	"slices"
	"time"

	"github.com/cairnbackup/cairn/repo"
	"github.com/cairnbackup/cairn/repo/blob"
	"github.com/cairnbackup/cairn/repo/drill"
	"github.com/cairnbackup/cairn/repo/prune"
	"github.com/cairnbackup/cairn/repo/snapshot"
)

// HistoryOptions say what History covers.
type HistoryOptions struct {
	Now time.Time
	// GroupBy groups a plan's snapshots into lines as retention groups
	// them; nil is prune.DefaultGroupBy.
	GroupBy *prune.GroupBy
	// Loc is the zone whose days the timeline shows; nil is time.Local.
	Loc *time.Location
	// Days is how many days the timeline shows, today included; zero
	// is 35.
	Days int
	// Expect is how often each node must back up (as Options.Expect):
	// a day without a snapshot is missed only when the backup before
	// it is older than that by the day's end. Without one, every day
	// without a snapshot after the node's first is missed.
	Expect map[string]time.Duration
	// Cycle is the verification cycle (the coverage's horizon).
	Cycle time.Duration
}

// History is what the status page plots, all derived from what the
// repository keeps: snapshot records (time, size, duration), drill
// reports (recovery time), verification times, and the daily size
// samples (repo.SizeSample).
type History struct {
	// Sizes are the daily size samples, oldest first, and then the
	// size now.
	Sizes []repo.SizeSample `json:"sizes"`
	// Plans are per node/plan (by name), each with its groups' pushes
	// and its drills.
	Plans []PlanHistory `json:"plans"`
	// Days are the timeline's days (midnight in Loc), oldest first;
	// Nodes has a row for each node with snapshots.
	Days  []time.Time  `json:"days"`
	Nodes []NodeDays   `json:"nodes"`
	Cover []CoverPoint `json:"coverage"`
}

// PlanHistory is one node/plan's history.
type PlanHistory struct {
	Node   string        `json:"node"`
	Plan   string        `json:"plan"`
	Groups []GroupPushes `json:"groups"`
	Drills []DrillPoint  `json:"drills"` // oldest first, of the plan's snapshots, forgotten ones too: the newest repo.DrillsKept of the plan and of each replica
}

// Name is "node/plan".
func (p PlanHistory) Name() string { return prune.Group{Node: p.Node, Plan: p.Plan}.String() }

// GroupPushes are the snapshots of one group, oldest first.
type GroupPushes struct {
	Paths  []string `json:"paths"`
	Pushes []Push   `json:"pushes"`
}

// Push is one snapshot's figures.
type Push struct {
	Time     time.Time     `json:"time"`
	Bytes    uint64        `json:"bytes"`
	Added    uint64        `json:"stored_added"`
	Duration time.Duration `json:"duration_ns"`
}

// DrillPoint is one drill's measured recovery time.
type DrillPoint struct {
	Report  blob.ID   `json:"report"`
	Time    time.Time `json:"time"`
	Seconds float64   `json:"restore_seconds"`
	OK      bool      `json:"ok"`
}

// NodeDays is a node's row of the timeline: snapshots per day.
type NodeDays struct {
	Node  string    `json:"node"`
	Days  []Day     `json:"days"`  // one per History.Days
	First time.Time `json:"first"` // the node's first snapshot
}

// Day is one day of a node's timeline.
type Day struct {
	Snapshots int  `json:"snapshots"`
	Missed    bool `json:"missed,omitempty"` // none that day, and none expected to be missing
	Before    bool `json:"before,omitempty"` // before the node's first snapshot
}

// CoverPoint says what share of the stored bytes was verified within
// Age.
type CoverPoint struct {
	Age      time.Duration `json:"age_ns"`
	Fraction float64       `json:"fraction"`
}

// maxCoverDays bounds the coverage curve.
const maxCoverDays = 400

// Sample measures the repository now: what a size sample holds.
func Sample(ctx context.Context, r Stored, now time.Time) (repo.SizeSample, error) {
	s := repo.SizeSample{Time: now}
	list, err := r.Snapshots(ctx, snapshot.Filter{})
	if err != nil {
		return s, err
	}
	for _, e := range list {
		s.Bytes += e.Summary.Bytes
	}
	s.Snapshots = uint64(len(list))
	err = r.PackRecords(func(p repo.PackRecord) error {
		s.Packs++
		s.StoredBytes += uint64(p.Size)
		return nil
	})
	return s, err
}

// GetHistory derives the history from the repository. It reads snapshot
// records, the newest drill reports (drill.Recent), verification times
// and size samples, all from the index; no data.
func GetHistory(ctx context.Context, r *repo.Repository, o HistoryOptions) (*History, error) {
	if o.Now.IsZero() {
		o.Now = time.Now()
	}
	if o.Loc == nil {
		o.Loc = time.Local
	}
	if o.Days <= 0 {
		o.Days = 35
	}
	by := prune.DefaultGroupBy
	if o.GroupBy != nil {
		by = *o.GroupBy
	}
	h := &History{Sizes: []repo.SizeSample{}, Plans: []PlanHistory{}, Nodes: []NodeDays{}}
	if err := r.SizeSamples(func(s repo.SizeSample) error { h.Sizes = append(h.Sizes, s); return nil }); err != nil {
		return nil, err
	}
	now, err := Sample(ctx, r, o.Now)
	if err != nil {
		return nil, err
	}
	h.Sizes = append(h.Sizes, now)

	list, err := r.Snapshots(ctx, snapshot.Filter{})
	if err != nil {
		return nil, err
	}
	drills, err := drill.Recent(ctx, r)
	if err != nil {
		return nil, err
	}
	plans := map[prune.Group]*PlanHistory{}
	plan := func(node, name string) *PlanHistory {
		k := prune.Group{Node: node, Plan: name}
		if plans[k] == nil {
			plans[k] = &PlanHistory{Node: node, Plan: name, Groups: []GroupPushes{}, Drills: []DrillPoint{}}
		}
		return plans[k]
	}
	keys, groups := by.Split(list)
	for _, k := range keys {
		g := GroupPushes{Paths: k.PathList(), Pushes: []Push{}}
		for _, e := range groups[k] { // oldest first
			if snapshot.FutureDated(e.Time, o.Now) {
				continue
			}
			g.Pushes = append(g.Pushes, Push{Time: e.Time, Bytes: e.Summary.Bytes, Added: e.Summary.StoredAdded, Duration: e.Summary.Duration})
		}
		p := plan(k.Node, k.Plan)
		p.Groups = append(p.Groups, g)
	}
	for _, d := range drills { // newest first
		p := plan(d.Node, d.Plan)
		p.Drills = append(p.Drills, DrillPoint{Report: d.ID, Time: d.Finished, Seconds: d.RestoreSeconds, OK: d.OK()})
	}
	for _, k := range slices.SortedFunc(maps.Keys(plans), func(a, b prune.Group) int { return cmp.Compare(a.String(), b.String()) }) {
		p := plans[k]
		slices.Reverse(p.Drills)
		h.Plans = append(h.Plans, *p)
	}
	h.timeline(list, o)
	if err := h.coverage(r, o); err != nil {
		return nil, err
	}
	return h, nil
}

// day is midnight of t's day in loc.
func day(t time.Time, loc *time.Location) time.Time {
	y, m, d := t.In(loc).Date()
	return time.Date(y, m, d, 0, 0, 0, 0, loc)
}

// timeline counts each node's snapshots per day over the last o.Days
// days and marks the days missed.
func (h *History) timeline(list []snapshot.Entry, o HistoryOptions) {
	today := day(o.Now, o.Loc)
	first := today.AddDate(0, 0, -(o.Days - 1))
	for i := range o.Days {
		h.Days = append(h.Days, first.AddDate(0, 0, i))
	}
	byNode := map[string][]time.Time{} // oldest first (list is sorted)
	for _, e := range list {
		if !snapshot.FutureDated(e.Time, o.Now) {
			byNode[e.Node] = append(byNode[e.Node], e.Time)
		}
	}
	for _, node := range slices.Sorted(maps.Keys(byNode)) {
		times := byNode[node]
		row := NodeDays{Node: node, First: times[0], Days: make([]Day, len(h.Days))}
		expect := ExpectFor(o.Expect, node, "")
		i := 0
		var last time.Time // the newest snapshot before the day's end
		for j, d := range h.Days {
			end := d.AddDate(0, 0, 1)
			for i < len(times) && times[i].Before(end) {
				if !times[i].Before(d) {
					row.Days[j].Snapshots++
				}
				last = times[i]
				i++
			}
			switch {
			case row.Days[j].Snapshots > 0:
			case last.IsZero():
				row.Days[j].Before = true
			case d.Equal(today):
				// today is not over
			case expect > 0:
				row.Days[j].Missed = end.Sub(last) > expect
			default:
				row.Days[j].Missed = true
			}
		}
		h.Nodes = append(h.Nodes, row)
	}
}

// coverage is the share of stored bytes verified within each whole
// number of days, from 0 to the cycle (or the oldest verification, if
// older), at most maxCoverDays.
func (h *History) coverage(r *repo.Repository, o HistoryOptions) error {
	verified := map[blob.ID]time.Time{}
	if err := r.VerifiedTimes(func(id blob.ID, t time.Time) error { verified[id] = t; return nil }); err != nil {
		return err
	}
	type aged struct {
		age  time.Duration
		size int64
	}
	var packs []aged
	var total int64
	oldest := time.Duration(0)
	err := r.PackRecords(func(p repo.PackRecord) error {
		total += p.Size
		if v, ok := verified[p.ID]; ok {
			a := max(o.Now.Sub(v), 0)
			packs = append(packs, aged{a, p.Size})
			oldest = max(oldest, a)
		}
		return nil
	})
	if err != nil || total == 0 {
		return err
	}
	slices.SortFunc(packs, func(a, b aged) int { return cmp.Compare(a.age, b.age) })
	days := int(max(o.Cycle, oldest)/(24*time.Hour)) + 1
	days = min(days, maxCoverDays)
	var sum int64
	i := 0
	for d := range days + 1 {
		age := time.Duration(d) * 24 * time.Hour
		for i < len(packs) && packs[i].age <= age {
			sum += packs[i].size
			i++
		}
		h.Cover = append(h.Cover, CoverPoint{Age: age, Fraction: float64(sum) / float64(total)})
	}
	return nil
}
