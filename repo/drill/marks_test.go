package drill_test

import (
	"bytes"
	"encoding/json"
	"fmt"
	"maps"
	"os"
	"path/filepath"
	"slices"
	"testing"
	"time"

	"github.com/cairnbackup/cairn/repo"
	"github.com/cairnbackup/cairn/repo/blob"
	"github.com/cairnbackup/cairn/repo/drill"
	"github.com/cairnbackup/cairn/repo/repotest"
	"github.com/cairnbackup/cairn/repo/storage"
)

// want is the marks as every report says them, derived the way drill
// marks were before the index kept them: for each snapshot, the newest
// report (latest Finished, then smallest ID) decides, and Passed is the
// newest that passed; replicas' reports mark nothing.
func want(list []drill.Saved) map[blob.ID]drill.Mark {
	newer := func(a, b drill.Saved) bool {
		return a.Finished.After(b.Finished) || a.Finished.Equal(b.Finished) && bytes.Compare(a.ID[:], b.ID[:]) < 0
	}
	newest, passed := map[blob.ID]drill.Saved{}, map[blob.ID]drill.Saved{}
	for _, s := range list {
		if s.Replica != "" {
			continue
		}
		if cur, ok := newest[s.Snapshot]; !ok || newer(s, cur) {
			newest[s.Snapshot] = s
		}
		if cur, ok := passed[s.Snapshot]; s.OK() && (!ok || newer(s, cur)) {
			passed[s.Snapshot] = s
		}
	}
	out := map[blob.ID]drill.Mark{}
	for id, s := range newest {
		m := drill.Mark{Result: drill.MarkFailed, Report: s.ID, Passed: passed[id].ID}
		if s.OK() {
			m.Result = drill.MarkOK
		}
		out[id] = m
	}
	return out
}

// reports makes n reports of 3 snapshots, some of a replica, with
// results and times that repeat (so ties are decided by ID).
func reports(n int) []*drill.Report {
	t0 := time.Date(2026, 12, 1, 0, 0, 0, 0, time.UTC)
	var out []*drill.Report
	for i := range n {
		rep := &drill.Report{Version: drill.Version, Snapshot: blob.Hash(fmt.Appendf(nil, "snap%d", i%3)), Node: "web", Plan: "etc",
			Result: drill.ResultOK, Finished: t0.Add(time.Duration(i*7%5) * time.Hour), Files: uint64(i),
			Probes: []drill.Probe{{Name: "command", Output: "probe output"}}}
		if i%4 == 1 {
			rep.Result, rep.Failures = drill.ResultFailed, []drill.Failure{{Path: "/etc/hosts", Reason: fmt.Sprint("differs ", i)}}
		}
		if i%5 == 4 {
			rep.Replica = "offsite"
		}
		out = append(out, rep)
	}
	return out
}

func check(t *testing.T, r *repo.Repository, what string) {
	t.Helper()
	list, err := drill.List(t.Context(), r)
	if err != nil {
		t.Fatal(err)
	}
	got, err := drill.Marks(t.Context(), r)
	if err != nil {
		t.Fatalf("%s: %v", what, err)
	}
	strip := maps.Clone(got)
	for id, m := range strip {
		if m.Newest.ID != m.Report || m.Newest.Probes != nil || m.Newest.Snapshot != id {
			t.Errorf("%s: snapshot %s: newest report %+v, want report %s without its probes", what, id.Short(), m.Newest, m.Report.Short())
		}
		m.Newest = drill.Saved{}
		strip[id] = m
	}
	if w := want(list); !maps.Equal(strip, w) {
		t.Errorf("%s: marks %v, want %v", what, strip, w)
	}
}

// A snapshot's mark is its newest drill's result; Passed remembers the
// newest drill that passed, even after a later one failed. The index
// gives the same marks as every report does: noted as reports are saved,
// after a rebuild of the index, and filled once by an index that has not
// got them (one of an older version).
func TestMarks(t *testing.T) {
	dir := repotest.Init(t, repotest.Options())
	r, err := repo.Open(t.Context(), dir, repotest.Credentials(), repo.Options{})
	if err != nil {
		t.Fatal(err)
	}
	for _, rep := range reports(40) {
		if _, err := drill.Save(t.Context(), r, rep); err != nil {
			t.Fatal(err)
		}
	}
	check(t, r, "saved")
	if _, err := r.RebuildIndex(t.Context()); err != nil {
		t.Fatal(err)
	}
	if ok, err := r.DrillsNoted(); ok || err != nil {
		t.Fatalf("a rebuilt index has noted the reports: %v, %v", ok, err)
	}
	check(t, r, "rebuilt")
	if ok, err := r.DrillsNoted(); !ok || err != nil {
		t.Fatalf("after Marks, the rebuilt index has not noted every report: %v, %v", ok, err)
	}

	// Reports an older version wrote are noted once.
	for _, rep := range reports(60)[40:] {
		b, _ := json.Marshal(rep)
		if _, err := r.PutRecord(t.Context(), storage.Drills, b); err != nil {
			t.Fatal(err)
		}
	}
	if _, err := r.RebuildIndex(t.Context()); err != nil {
		t.Fatal(err)
	}
	check(t, r, "written without notes")

	// Once noted, marks read no report: the same marks without drills/.
	before, err := drill.Marks(t.Context(), r)
	if err != nil {
		t.Fatal(err)
	}
	if err := os.RemoveAll(filepath.Join(dir, string(storage.Drills))); err != nil {
		t.Fatal(err)
	}
	after, err := drill.Marks(t.Context(), r)
	if err != nil {
		t.Fatal(err)
	}
	if !maps.EqualFunc(before, after, func(a, b drill.Mark) bool {
		return a.Report == b.Report && a.Passed == b.Passed && a.Result == b.Result
	}) || len(after) != 3 {
		t.Fatalf("marks without reading reports %v, want %v", after, before)
	}
	recent, err := drill.Recent(t.Context(), r)
	if err != nil {
		t.Fatal(err)
	}
	if len(recent) != 60 || !slices.IsSortedFunc(recent, func(a, b drill.Saved) int { return b.Finished.Compare(a.Finished) }) {
		t.Fatalf("%d recent reports, want 60 newest first", len(recent))
	}
	if err := r.Close(); err != nil {
		t.Fatal(err)
	}
}

// The index keeps the newest repo.DrillsKept reports of each replica,
// node and plan.
func TestRecentKeepsTheNewest(t *testing.T) {
	r := repotest.New(t)
	t0 := time.Date(2026, 12, 1, 0, 0, 0, 0, time.UTC)
	var notes []repo.DrillNote
	var ids []blob.ID
	for i := range repo.DrillsKept + 5 {
		s := drill.Saved{ID: blob.Hash(fmt.Append(nil, i)), Report: &drill.Report{Version: drill.Version, Node: "web", Plan: "etc", Result: drill.ResultOK, Finished: t0.Add(time.Duration(i) * time.Minute)}}
		b, _ := json.Marshal(s)
		notes = append(notes, repo.DrillNote{Report: s.ID, Node: "web", Plan: "etc", Finished: s.Finished, OK: true, Summary: b})
		ids = append(ids, s.ID)
	}
	for _, n := range notes {
		if err := r.NoteDrills([]repo.DrillNote{n}, false); err != nil {
			t.Fatal(err)
		}
	}
	if err := r.NoteDrills(nil, true); err != nil {
		t.Fatal(err)
	}
	recent, err := drill.Recent(t.Context(), r)
	if err != nil {
		t.Fatal(err)
	}
	var got []blob.ID
	for _, s := range recent {
		got = append(got, s.ID)
	}
	slices.Reverse(ids)
	if !slices.Equal(got, ids[:repo.DrillsKept]) {
		t.Fatalf("recent %d reports, want the newest %d", len(got), repo.DrillsKept)
	}
}
