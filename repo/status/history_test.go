package status_test

import (
	"slices"
	"testing"
	"time"

	"github.com/cairnbackup/cairn/repo"
	"github.com/cairnbackup/cairn/repo/drill"
	"github.com/cairnbackup/cairn/repo/repotest"
	"github.com/cairnbackup/cairn/repo/status"
)

// The timeline counts snapshots per day and marks the days after the
// first snapshot that have none as missed (or, with an expectation, only
// those by whose end the last backup is older than expected); drills
// are per plan, a forgotten snapshot's too; the coverage curve rises to
// the share verified; the size history ends with the size now.
func TestHistory(t *testing.T) {
	r := repotest.New(t)
	loc := time.UTC
	now := time.Date(2026, 12, 10, 12, 0, 0, 0, loc)
	at := func(daysAgo int, hour int) time.Time {
		return time.Date(2026, 12, 10-daysAgo, hour, 0, 0, 0, loc)
	}
	a := commitAt(t, r, "git", []string{"/srv/git"}, at(4, 3))
	commitAt(t, r, "git", []string{"/srv/git"}, at(4, 9))
	commitAt(t, r, "git", []string{"/srv/git"}, at(1, 3))
	commitAt(t, r, "etc", []string{"/etc"}, at(2, 3))
	if _, err := drill.Save(t.Context(), r, &drill.Report{Version: drill.Version, Snapshot: a, Node: "lyra", Plan: "git", Started: at(3, 1), Finished: at(3, 1), Result: drill.ResultOK, RestoreSeconds: 2.5}); err != nil {
		t.Fatal(err)
	}
	// A report of a snapshot that no longer exists still counts for its plan.
	if _, err := drill.Save(t.Context(), r, &drill.Report{Version: drill.Version, Snapshot: id("gone"), Node: "lyra", Plan: "git", Started: at(5, 1), Finished: at(5, 1), Result: drill.ResultFailed, RestoreSeconds: 7}); err != nil {
		t.Fatal(err)
	}
	if err := r.PutSizeSample(repo.SizeSample{Time: at(3, 0), StoredBytes: 1, Packs: 1, Bytes: 5, Snapshots: 1}); err != nil {
		t.Fatal(err)
	}
	h, err := status.GetHistory(t.Context(), r, status.HistoryOptions{Now: now, Loc: loc, Days: 7, Cycle: 10 * 24 * time.Hour})
	if err != nil {
		t.Fatal(err)
	}
	if len(h.Days) != 7 || !h.Days[0].Equal(at(6, 0)) || !h.Days[6].Equal(at(0, 0)) {
		t.Fatalf("days %v", h.Days)
	}
	if len(h.Nodes) != 1 || h.Nodes[0].Node != "lyra" {
		t.Fatalf("nodes %+v", h.Nodes)
	}
	want := []status.Day{{Before: true}, {Before: true}, {Snapshots: 2}, {Missed: true}, {Snapshots: 1}, {Snapshots: 1}, {}}
	if !slices.Equal(h.Nodes[0].Days, want) {
		t.Errorf("timeline %+v\nwant     %+v", h.Nodes[0].Days, want)
	}
	// Expected every 2 days: the day without a snapshot is not missed.
	h2, err := status.GetHistory(t.Context(), r, status.HistoryOptions{Now: now, Loc: loc, Days: 7, Expect: map[string]time.Duration{"lyra": 48 * time.Hour}})
	if err != nil {
		t.Fatal(err)
	}
	if d := h2.Nodes[0].Days[3]; d.Missed {
		t.Errorf("with a 2-day expectation the day is %+v", d)
	}

	var names []string
	for _, p := range h.Plans {
		names = append(names, p.Name())
	}
	if !slices.Equal(names, []string{"lyra/etc", "lyra/git"}) {
		t.Fatalf("plans %v", names)
	}
	git := h.Plans[1]
	if len(git.Groups) != 1 || len(git.Groups[0].Pushes) != 3 || !git.Groups[0].Pushes[0].Time.Equal(at(4, 3)) {
		t.Errorf("git groups %+v", git.Groups)
	}
	if len(git.Drills) != 2 || git.Drills[0].OK || git.Drills[0].Seconds != 7 || !git.Drills[1].OK || git.Drills[1].Seconds != 2.5 {
		t.Errorf("git drills %+v", git.Drills)
	}

	if len(h.Sizes) != 2 || h.Sizes[0].StoredBytes != 1 || !h.Sizes[1].Time.Equal(now) || h.Sizes[1].Snapshots != 4 || h.Sizes[1].StoredBytes == 0 {
		t.Errorf("sizes %+v", h.Sizes)
	}
	// Nothing verified yet: the curve stays at zero up to the cycle.
	if len(h.Cover) != 12 || h.Cover[11].Fraction != 0 {
		t.Errorf("coverage %+v", h.Cover)
	}
}
