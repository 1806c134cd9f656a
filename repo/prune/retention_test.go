package prune

import (
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/cairnbackup/cairn/repo/blob"
	"github.com/cairnbackup/cairn/repo/drill"
	"github.com/cairnbackup/cairn/repo/snapshot"
)

// explain returns "local time: reasons" of every decision, oldest first,
// "-" for those not kept.
func explain(ds []Decision, loc *time.Location) []string {
	var out []string
	for i := len(ds) - 1; i >= 0; i-- {
		r := "-"
		if ds[i].Keep {
			r = strings.Join(ds[i].Reasons, ", ")
		}
		out = append(out, ds[i].Time.In(loc).Format("2006-01-02 15:04")+": "+r)
	}
	return out
}

// A snapshot dated after now never counts as newer than now: it takes no
// keep-last or calendar slot, keep-within is measured back from the
// newest real snapshot or now, whichever is earlier, and it is kept
// (issue 12, item 1).
func TestFutureDatedSnapshots(t *testing.T) {
	utc := time.UTC
	now := time.Date(2026, 12, 5, 12, 0, 0, 0, utc)
	var future []string
	for i := range 10 { // the ten, dated 2097-2099
		future = append(future, time.Date(2097, 1, 1, 12, 0, 0, 0, utc).AddDate(0, 0, 100*i).Format("2006-01-02 15:04"))
	}
	fd := func(ts ...string) []string {
		var out []string
		for _, t := range ts {
			out = append(out, t+": future-dated")
		}
		return out
	}
	cases := []struct {
		name  string
		times []string
		now   time.Time
		p     Policy
		want  []string
	}{
		{"the issue: every real snapshot is kept", append([]string{"2026-12-01 03:00", "2026-12-02 03:00", "2026-12-03 03:00", "2026-12-04 03:00"}, future...),
			now, Policy{Last: 3, Daily: 7, Within: Span{Days: 7}},
			append([]string{
				"2026-12-01 03:00: daily 2026-12-01, within 7d",
				"2026-12-02 03:00: last 3, daily 2026-12-02, within 7d",
				"2026-12-03 03:00: last 2, daily 2026-12-03, within 7d",
				"2026-12-04 03:00: last 1, daily 2026-12-04, within 7d",
			}, fd(future...)...)},
		{"keep-last 1 keeps the newest real one", []string{"2026-12-03 03:00", "2026-12-04 03:00", "2027-01-01 00:00"},
			now, Policy{Last: 1}, []string{"2026-12-03 03:00: -", "2026-12-04 03:00: last 1", "2027-01-01 00:00: future-dated"}},
		{"within the skew is not the future", []string{"2026-12-05 11:00", "2026-12-05 12:04"},
			now, Policy{Last: 1}, []string{"2026-12-05 11:00: -", "2026-12-05 12:04: last 1"}},
		{"within is measured back from now when the newest is ahead of now", []string{"2026-12-05 10:59", "2026-12-05 11:01", "2026-12-05 12:04"},
			now, Policy{Within: Span{Hours: 1}}, []string{"2026-12-05 10:59: -", "2026-12-05 11:01: within 1h", "2026-12-05 12:04: within 1h"}},
		{"within is measured back from the newest when it is older than now", []string{"2026-11-20 00:00", "2026-11-28 00:00", "2026-12-01 00:00"},
			now, Policy{Within: Span{Days: 7}}, []string{"2026-11-20 00:00: -", "2026-11-28 00:00: within 7d", "2026-12-01 00:00: within 7d"}},
		{"calendar slots are not used up by the future", []string{"2026-11-30 00:00", "2026-12-01 00:00", "2099-05-01 00:00", "2099-06-01 00:00"},
			now, Policy{Monthly: 2}, []string{"2026-11-30 00:00: monthly 2026-11", "2026-12-01 00:00: monthly 2026-12", "2099-05-01 00:00: future-dated", "2099-06-01 00:00: future-dated"}},
		{"only future-dated snapshots are all kept", future[:2], now, Policy{Last: 1}, fd(future[:2]...)},
	}
	for _, c := range cases {
		ds := Apply(timeline(t, utc, c.times...), c.p, Env{Now: c.now, Loc: utc})
		if got := explain(ds, utc); !slices.Equal(got, c.want) {
			t.Errorf("%s:\n got %q\nwant %q", c.name, got, c.want)
		}
	}
}

// keep_drilled keeps the newest N snapshots of a group whose newest
// drill passed; a snapshot whose later drill failed stays until another
// has passed (issue 19).
func TestKeepDrilled(t *testing.T) {
	utc := time.UTC
	now := time.Date(2026, 12, 10, 0, 0, 0, 0, utc)
	times := []string{"2026-12-01 00:00", "2026-12-02 00:00", "2026-12-03 00:00", "2026-12-04 00:00", "2026-12-05 00:00"}
	list := timeline(t, utc, times...)
	future := timeline(t, utc, "2099-01-01 00:00")[0]
	report := func(name string) blob.ID { return blob.Hash([]byte("report " + name)) }
	ok := func(r string) drill.Mark {
		return drill.Mark{Result: drill.MarkOK, Report: report(r), Passed: report(r)}
	}
	failed := func(r string) drill.Mark { return drill.Mark{Result: drill.MarkFailed, Report: report(r)} }
	passedThenFailed := func(passed, failedR string) drill.Mark {
		return drill.Mark{Result: drill.MarkFailed, Report: report(failedR), Passed: report(passed)}
	}
	n := func(v int) *int { return &v }
	rOK := func(r string) string { return "drilled-ok " + report(r).Short() }
	cases := []struct {
		name  string
		marks map[int]drill.Mark // by index into times
		p     Policy
		want  []string // reasons, oldest first; "-" for forgotten
	}{
		{"undrilled: keep-last alone", nil, Policy{Last: 2},
			[]string{"-", "-", "-", "last 2", "last 1"}},
		{"the newest drilled-ok snapshot is kept by default", map[int]drill.Mark{1: ok("a")}, Policy{Last: 2},
			[]string{"-", rOK("a"), "-", "last 2", "last 1"}},
		{"only the newest of two by default", map[int]drill.Mark{0: ok("a"), 1: ok("b")}, Policy{Last: 2},
			[]string{"-", rOK("b"), "-", "last 2", "last 1"}},
		{"keep_drilled 2", map[int]drill.Mark{0: ok("a"), 1: ok("b")}, Policy{Last: 2, Drilled: n(2)},
			[]string{rOK("a"), rOK("b"), "-", "last 2", "last 1"}},
		{"keep_drilled 0 turns it off", map[int]drill.Mark{1: ok("a")}, Policy{Last: 2, Drilled: n(0)},
			[]string{"-", "-", "-", "last 2", "last 1"}},
		{"a failed drill proves nothing", map[int]drill.Mark{2: failed("a")}, Policy{Last: 2},
			[]string{"-", "-", "-", "last 2", "last 1"}},
		{"passed, then failed: kept until another passes", map[int]drill.Mark{1: passedThenFailed("a", "b")}, Policy{Last: 2},
			[]string{"-", rOK("a") + " (drill " + report("b").Short() + " since failed)", "-", "last 2", "last 1"}},
		{"passed, then failed: released once another passed", map[int]drill.Mark{0: ok("c"), 1: passedThenFailed("a", "b")}, Policy{Last: 2},
			[]string{rOK("c"), "-", "-", "last 2", "last 1"}},
		{"a drilled-ok snapshot that another rule keeps", map[int]drill.Mark{4: ok("a")}, Policy{Last: 1},
			[]string{"-", "-", "-", "-", "last 1, " + rOK("a")}},
	}
	for _, c := range cases {
		marks := map[blob.ID]drill.Mark{}
		for i, m := range c.marks {
			marks[list[i].ID] = m
		}
		ds := Apply(list, c.p, Env{Now: now, Loc: utc, Marks: marks})
		var got []string
		for _, e := range explain(ds, utc) {
			got = append(got, strings.SplitN(e, ": ", 2)[1])
		}
		if !slices.Equal(got, c.want) {
			t.Errorf("%s:\n got %q\nwant %q", c.name, got, c.want)
		}
		for _, d := range ds {
			if d.Proven != slices.ContainsFunc(d.Reasons, func(r string) bool { return strings.HasPrefix(r, "drilled-ok ") }) {
				t.Errorf("%s: %s: Proven %v with reasons %q", c.name, d.Time.Format(time.DateOnly), d.Proven, d.Reasons)
			}
		}
	}

	// A future-dated drilled snapshot takes no keep_drilled slot.
	withFuture := append(slices.Clone(list), future)
	marks := map[blob.ID]drill.Mark{list[1].ID: ok("a"), future.ID: ok("f")}
	ds := Apply(withFuture, Policy{Last: 1}, Env{Now: now, Loc: utc, Marks: marks})
	want := []string{"2026-12-01 00:00: -", "2026-12-02 00:00: " + rOK("a"), "2026-12-03 00:00: -", "2026-12-04 00:00: -",
		"2026-12-05 00:00: last 1", "2099-01-01 00:00: future-dated"}
	if got := explain(ds, utc); !slices.Equal(got, want) {
		t.Errorf("future-dated drilled snapshot:\n got %q\nwant %q", got, want)
	}
}

func TestGroupBy(t *testing.T) {
	s := &snapshot.Snapshot{Node: "lyra", Plan: "", Paths: []string{"/srv/git", "/etc"}}
	cases := []struct {
		by   string
		want Group
		name string
	}{
		{"node,plan,paths", Group{Node: "lyra", Paths: "/etc\x00/srv/git"}, "lyra [/etc /srv/git]"},
		{"node", Group{Node: "lyra"}, "lyra"},
		{"paths", Group{Paths: "/etc\x00/srv/git"}, "[/etc /srv/git]"},
		{"", Group{}, "all snapshots"},
	}
	for _, c := range cases {
		b, err := ParseGroupBy(c.by)
		if err != nil {
			t.Fatal(err)
		}
		g := b.Of(s)
		if g != c.want || g.String() != c.name || b.String() != c.by {
			t.Errorf("group by %q: %+v %q (%q)", c.by, g, g.String(), b.String())
		}
	}
	if DefaultGroupBy.String() != "node,plan,paths" {
		t.Errorf("default %q", DefaultGroupBy)
	}
	if _, err := ParseGroupBy("node,host"); err == nil || err.Error() != `group by "node,host": unknown field "host" (use a comma list of node, plan, paths, or "")` {
		t.Errorf("ParseGroupBy(node,host): %v", err)
	}
	p := Policy{Last: 1, Drilled: new(int)}
	*p.Drilled = -1
	if err := p.Check(); err == nil || err.Error() != "keep_drilled is -1; give 0 or more" {
		t.Errorf("Check: %v", err)
	}
	if (Policy{}).KeepDrilled() != 1 || !(Policy{Drilled: new(int)}).Empty() {
		t.Error("keep_drilled defaults to 1 and alone keeps nothing")
	}
}
