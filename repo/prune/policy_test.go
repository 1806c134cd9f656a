package prune

import (
	"slices"
	"strings"
	"testing"
	"time"
	_ "time/tzdata" // the tests use named zones; a fresh machine may lack tzdata

	"github.com/cairnbackup/cairn/repo/blob"
	"github.com/cairnbackup/cairn/repo/snapshot"
)

// timeline makes snapshots at the given local times (layout
// "2006-01-02 15:04") in loc; their IDs are derived from the times.
func timeline(t *testing.T, loc *time.Location, times ...string) []snapshot.Entry {
	t.Helper()
	var out []snapshot.Entry
	for _, s := range times {
		tm, err := time.ParseInLocation("2006-01-02 15:04", s, loc)
		if err != nil {
			t.Fatal(err)
		}
		out = append(out, snapshot.Entry{ID: blob.Hash([]byte(s)), Snapshot: &snapshot.Snapshot{Time: tm, Node: "lyra"}})
	}
	return out
}

// later is a clock after every snapshot of the tables: none is
// future-dated.
var later = time.Date(2100, 1, 1, 0, 0, 0, 0, time.UTC)

// kept returns the local times of the kept snapshots, oldest first.
func kept(ds []Decision, loc *time.Location) []string {
	var out []string
	for i := len(ds) - 1; i >= 0; i-- {
		if ds[i].Keep {
			out = append(out, ds[i].Time.In(loc).Format("2006-01-02 15:04"))
		}
	}
	return out
}

func TestPolicies(t *testing.T) {
	berlin, err := time.LoadLocation("Europe/Berlin")
	if err != nil {
		t.Fatal(err)
	}
	utc := time.UTC
	cases := []struct {
		name  string
		loc   *time.Location
		times []string
		p     Policy
		want  []string
	}{
		{"last", utc, []string{"2026-01-01 10:00", "2026-01-02 10:00", "2026-01-03 10:00"}, Policy{Last: 2},
			[]string{"2026-01-02 10:00", "2026-01-03 10:00"}},
		{"daily keeps the newest of each day", utc,
			[]string{"2026-01-01 08:00", "2026-01-01 20:00", "2026-01-02 09:00", "2026-01-03 01:00", "2026-01-03 23:59"},
			Policy{Daily: 2}, []string{"2026-01-02 09:00", "2026-01-03 23:59"}},
		{"month ends", utc,
			[]string{"2026-01-31 23:00", "2026-02-01 00:30", "2026-02-28 22:00", "2026-03-01 00:00", "2026-03-31 12:00", "2026-04-30 12:00"},
			Policy{Monthly: 3}, []string{"2026-02-28 22:00", "2026-03-31 12:00", "2026-04-30 12:00"}},
		{"leap day", utc,
			[]string{"2028-02-28 12:00", "2028-02-29 12:00", "2028-03-01 12:00", "2029-02-28 12:00"},
			Policy{Daily: 3}, []string{"2028-02-29 12:00", "2028-03-01 12:00", "2029-02-28 12:00"}},
		{"leap day within a year", utc,
			[]string{"2028-02-29 12:00", "2028-03-01 12:00", "2029-02-28 12:00", "2029-03-01 12:00"},
			Policy{Within: Span{Years: 1}}, []string{"2028-03-01 12:00", "2029-02-28 12:00", "2029-03-01 12:00"}},
		{"weekly is ISO weeks across the year end", utc,
			[]string{"2025-12-28 12:00", "2025-12-29 12:00", "2026-01-04 12:00", "2026-01-05 12:00"},
			Policy{Weekly: 3}, []string{"2025-12-28 12:00", "2026-01-04 12:00", "2026-01-05 12:00"}},
		{"yearly", utc, []string{"2024-06-01 00:00", "2024-12-31 23:00", "2025-01-01 00:00", "2026-03-01 00:00"},
			Policy{Yearly: 2}, []string{"2025-01-01 00:00", "2026-03-01 00:00"}},
		// Spring forward: 02:00-03:00 does not exist on 2026-03-29 in
		// Berlin; days are calendar days, so each is still one bucket.
		{"daily across spring DST", berlin,
			[]string{"2026-03-28 23:30", "2026-03-29 01:30", "2026-03-29 03:30", "2026-03-30 00:10"},
			Policy{Daily: 3}, []string{"2026-03-28 23:30", "2026-03-29 03:30", "2026-03-30 00:10"}},
		{"daily in Berlin is the Berlin calendar day", berlin,
			[]string{"2026-06-01 00:30", "2026-06-01 23:30"}, Policy{Daily: 1}, []string{"2026-06-01 23:30"}},
		{"within is measured from the newest snapshot", utc,
			[]string{"2025-01-01 00:00", "2026-01-01 00:00", "2026-01-05 00:00", "2026-01-08 00:00"},
			Policy{Within: Span{Days: 7}}, []string{"2026-01-01 00:00", "2026-01-05 00:00", "2026-01-08 00:00"}},
		{"rules combine", utc,
			[]string{"2026-01-01 00:00", "2026-01-15 00:00", "2026-02-01 00:00", "2026-02-02 00:00", "2026-02-03 00:00"},
			Policy{Last: 1, Monthly: 2}, []string{"2026-01-15 00:00", "2026-02-03 00:00"}},
	}
	for _, c := range cases {
		ds := Apply(timeline(t, c.loc, c.times...), c.p, Env{Now: later, Loc: c.loc})
		if got := kept(ds, c.loc); !slices.Equal(got, c.want) {
			t.Errorf("%s: kept %v, want %v", c.name, got, c.want)
		}
	}
}

// The hour 02:00-03:00 happens twice when Berlin falls back on
// 2026-10-25; both 02:30s fall in one local hour bucket, so hourly keeps
// only the newer of them.
func TestHourlyAutumnRepeatedHour(t *testing.T) {
	berlin, _ := time.LoadLocation("Europe/Berlin")
	first := time.Date(2026, 10, 25, 0, 30, 0, 0, time.UTC) // 02:30 CEST
	second := first.Add(time.Hour)                          // 02:30 CET
	third := second.Add(time.Hour)                          // 03:30 CET
	list := []snapshot.Entry{
		{ID: blob.Hash([]byte("1")), Snapshot: &snapshot.Snapshot{Time: first}},
		{ID: blob.Hash([]byte("2")), Snapshot: &snapshot.Snapshot{Time: second}},
		{ID: blob.Hash([]byte("3")), Snapshot: &snapshot.Snapshot{Time: third}},
	}
	ds := Apply(list, Policy{Hourly: 5}, Env{Now: later, Loc: berlin})
	var got []bool
	for _, d := range ds {
		got = append(got, d.Keep)
	}
	if !slices.Equal(got, []bool{true, true, false}) {
		t.Fatalf("kept %v (newest first)", got)
	}
	if r := strings.Join(ds[1].Reasons, ","); r != "hourly 2026-10-25 02h" {
		t.Fatalf("reasons %q", r)
	}
}

func TestReasonsAndTags(t *testing.T) {
	list := timeline(t, time.UTC, "2026-01-01 00:00", "2026-01-02 00:00", "2026-01-03 00:00")
	list[0].Tags = []string{"release"}
	ds := Apply(list, Policy{Last: 1, Daily: 2, Tags: []string{"release"}}, Env{Now: later, Loc: time.UTC})
	want := [][]string{{"last 1", "daily 2026-01-03"}, {"daily 2026-01-02"}, {"tag release"}}
	for i, d := range ds {
		if !slices.Equal(d.Reasons, want[i]) || !d.Keep {
			t.Errorf("snapshot %d: %v %v, want %v", i, d.Keep, d.Reasons, want[i])
		}
	}
}

func TestParseSpan(t *testing.T) {
	for in, want := range map[string]Span{"7d": {Days: 7}, "1y6m": {Years: 1, Months: 6}, "2y3m4d5h": {2, 3, 4, 5}, "12h": {Hours: 12}} {
		got, err := ParseSpan(in)
		if err != nil || got != want || got.String() != in {
			t.Errorf("ParseSpan(%q) = %+v %v", in, got, err)
		}
	}
	for _, bad := range []string{"", "7", "d", "7w", "1y-2d"} {
		if _, err := ParseSpan(bad); err == nil {
			t.Errorf("ParseSpan(%q) accepted", bad)
		}
	}
	if !(Policy{}).Empty() || (Policy{Within: Span{Days: 1}}).Empty() {
		t.Fatal("Empty")
	}
}
