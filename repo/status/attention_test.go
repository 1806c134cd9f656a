package status_test

import (
	"bytes"
	"regexp"
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/cairnbackup/cairn/repo"
	"github.com/cairnbackup/cairn/repo/blob"
	"github.com/cairnbackup/cairn/repo/drill"
	"github.com/cairnbackup/cairn/repo/repotest"
	"github.com/cairnbackup/cairn/repo/status"
)

// Configured nodes and expected node/plans with no snapshot at all need
// attention: "never backed up" (issue 13 item 3).
func TestGatherNeverBackedUp(t *testing.T) {
	r := repotest.New(t)
	now := time.Date(2026, 12, 7, 12, 0, 0, 0, time.UTC)
	commitAt(t, r, "git", []string{"/srv/git"}, now.Add(-time.Hour)) // lyra/git
	st, err := status.Gather(t.Context(), r, status.Options{
		Now:    now,
		Expect: map[string]time.Duration{"lyra/git": 8 * 24 * time.Hour, "lyra/db": 24 * time.Hour, "orion/db": 24 * time.Hour, "vega": 48 * time.Hour, "default": 26 * time.Hour},
		// orion has an expected plan; sirius has none (the default applies).
		Nodes: []string{"lyra", "orion", "sirius"},
	})
	if err != nil {
		t.Fatal(err)
	}
	want := []status.Never{
		{Node: "lyra", Plan: "db", Expected: 24 * time.Hour},
		{Node: "orion", Plan: "db", Expected: 24 * time.Hour},
		{Node: "sirius", Expected: 26 * time.Hour},
		{Node: "vega", Expected: 48 * time.Hour},
	}
	if !slices.Equal(st.Never, want) {
		t.Errorf("never %+v\nwant  %+v", st.Never, want)
	}
	wantAtt := []string{
		"lyra/db: never backed up (expected every 1d)",
		"orion/db: never backed up (expected every 1d)",
		"sirius: never backed up (a node in the configuration; expected every 1d2h)",
		"vega: never backed up (expected every 2d)",
	}
	if !slices.Equal(st.Attention, wantAtt) {
		t.Errorf("attention:\n%s\nwant:\n%s", strings.Join(st.Attention, "\n"), strings.Join(wantAtt, "\n"))
	}
	if len(st.Groups) != 1 || st.Groups[0].Name() != "lyra/git [/srv/git]" || len(st.Late) != 0 {
		t.Errorf("groups %+v, late %+v", st.Groups, st.Late)
	}

	// A configured node without any expectation still needs one backup.
	st, err = status.Gather(t.Context(), r, status.Options{Now: now, Nodes: []string{"lyra", "orion"}})
	if err != nil {
		t.Fatal(err)
	}
	if want := []status.Never{{Node: "orion"}}; !slices.Equal(st.Never, want) ||
		!slices.Equal(st.Attention, []string{"orion: never backed up (a node in the configuration)"}) {
		t.Errorf("never %+v, attention %q", st.Never, st.Attention)
	}

	// The runbook lists them under the node, and in what needs attention.
	var b bytes.Buffer
	if err := status.WriteRunbook(&b, st, status.RunbookOptions{Repo: "/srv/cairn/repo"}); err != nil {
		t.Fatal(err)
	}
	book := b.String()
	for _, want := range []string{
		"## Node orion\n\n- **orion has never backed up**: there is no snapshot to restore.\n\n",
		"## Needs attention now\n\n- orion: never backed up (a node in the configuration)\n",
	} {
		if !strings.Contains(book, want) {
			t.Errorf("runbook lacks %q:\n%s", want, book)
		}
	}
}

// One answer per snapshot, from its newest drill (drill.Marks): a
// snapshot whose newest drill failed is never shown as proven, and the
// group's drill is the newest drilled snapshot's, so a passing drill of
// an older snapshot does not hide that the newest failed (issue 13
// item 4).
func TestGatherOneVerdictPerSnapshot(t *testing.T) {
	r := repotest.New(t)
	now := time.Date(2026, 12, 7, 12, 0, 0, 0, time.UTC)
	// Group A: one snapshot, passed then failed.
	a := commitAt(t, r, "a", []string{"/a"}, now.Add(-3*time.Hour))
	saveDrill(t, r, a, drill.ResultOK, now.Add(-150*time.Minute))
	aFailed := saveDrillWhy(t, r, a, now.Add(-140*time.Minute), drill.Failure{Path: "/a/.git", Reason: "git fsck: exit status 4: error: pack checksum mismatch"})
	// Group B: the newest snapshot failed; an older one passed later.
	bOld := commitAt(t, r, "b", []string{"/b"}, now.Add(-3*time.Hour))
	bNew := commitAt(t, r, "b", []string{"/b"}, now.Add(-2*time.Hour))
	bFailed := saveDrillWhy(t, r, bNew, now.Add(-100*time.Minute), drill.Failure{Path: "/b/x", Reason: "hash mismatch"}, drill.Failure{Path: "/b/y", Reason: "hash mismatch"})
	bPassed := saveDrill(t, r, bOld, drill.ResultOK, now.Add(-90*time.Minute))

	st, err := status.Gather(t.Context(), r, status.Options{Now: now})
	if err != nil {
		t.Fatal(err)
	}
	ga, gb := st.Groups[0], st.Groups[1]
	if ga.DrilledOK != nil || ga.OKDrill != nil || ga.Drill == nil || ga.Drill.Report != aFailed || ga.Drill.Result != drill.ResultFailed {
		t.Errorf("group a: drilled ok %+v, drill %+v", ga.DrilledOK, ga.Drill)
	}
	if gb.DrilledOK == nil || gb.DrilledOK.ID != bOld || gb.OKDrill.Report != bPassed || gb.Drill == nil || gb.Drill.Report != bFailed {
		t.Errorf("group b: drilled ok %+v by %+v, drill %+v", gb.DrilledOK, gb.OKDrill, gb.Drill)
	}
	want := []string{
		"lyra/a [/a]: the last drill (report " + aFailed.Short() + ", snapshot " + a.Short() + ") failed: /a/.git: git fsck: exit status 4: error: pack checksum mismatch (cairn drills " + aFailed.Short() + ")",
		"lyra/b [/b]: the last drill (report " + bFailed.Short() + ", snapshot " + bNew.Short() + ") failed: /b/x: hash mismatch, and 1 more (cairn drills " + bFailed.Short() + ")",
	}
	if !slices.Equal(st.Attention, want) {
		t.Errorf("attention:\n%s\nwant:\n%s", strings.Join(st.Attention, "\n"), strings.Join(want, "\n"))
	}

	// The runbook says the same: a's snapshot is not called passed.
	var b bytes.Buffer
	if err := status.WriteRunbook(&b, st, status.RunbookOptions{Repo: "/srv/cairn/repo"}); err != nil {
		t.Fatal(err)
	}
	book := b.String()
	sec := book[strings.Index(book, "### lyra / a"):strings.Index(book, "### lyra / b")]
	if regexp.MustCompile(`drill [0-9a-f]{8} passed`).MatchString(sec) || strings.Contains(sec, "Proven") ||
		!strings.Contains(sec, "- **No snapshot of this source passed its newest drill.**") ||
		!strings.Contains(sec, "- The last drill ("+aFailed.Short()+", snapshot "+a.Short()+") FAILED: /a/.git: git fsck: exit status 4: error: pack checksum mismatch\n") {
		t.Errorf("runbook section of a:\n%s", sec)
	}
}

// saveDrillWhy stores a failed drill report of snapshot id with failures.
func saveDrillWhy(t *testing.T, r *repo.Repository, id blob.ID, tm time.Time, f ...drill.Failure) blob.ID {
	t.Helper()
	rid, err := drill.Save(t.Context(), r, &drill.Report{Version: drill.Version, Snapshot: id, Node: "lyra", Started: tm, Finished: tm, Result: drill.ResultFailed, Failures: f})
	if err != nil {
		t.Fatal(err)
	}
	return rid
}
