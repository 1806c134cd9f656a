package status_test

import (
	"path/filepath"
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/cairnbackup/cairn/repo"
	"github.com/cairnbackup/cairn/repo/backup"
	"github.com/cairnbackup/cairn/repo/blob"
	"github.com/cairnbackup/cairn/repo/drill"
	"github.com/cairnbackup/cairn/repo/repotest"
	"github.com/cairnbackup/cairn/repo/snapshot"
	"github.com/cairnbackup/cairn/repo/status"
)

// commitAt stores a snapshot of a small tree for node/plan with paths,
// dated t.
func commitAt(t testing.TB, r *repo.Repository, plan string, paths []string, tm time.Time) blob.ID {
	t.Helper()
	src := filepath.Join(t.TempDir(), "src")
	repotest.WriteTree(t, src, map[string]string{"a.txt": "alpha"})
	s := r.NewSession()
	res, err := backup.Run(t.Context(), s, []string{src}, backup.Options{Params: r.ChunkerParams(), Table: r.ChunkerTable()})
	if err != nil {
		t.Fatal(err)
	}
	id, err := s.Commit(t.Context(), &snapshot.Snapshot{Version: 1, Time: tm, Node: "lyra", Plan: plan, Paths: paths, Tree: res.Tree})
	if err != nil {
		t.Fatal(err)
	}
	return id
}

// saveDrill stores a drill report of snapshot id with result, finished at tm.
func saveDrill(t testing.TB, r *repo.Repository, id blob.ID, result string, tm time.Time) blob.ID {
	t.Helper()
	rid, err := drill.Save(t.Context(), r, &drill.Report{Version: drill.Version, Snapshot: id, Node: "lyra", Started: tm, Finished: tm, Result: result})
	if err != nil {
		t.Fatal(err)
	}
	return rid
}

// Status has a row per group (node, plan and paths); a node/plan's
// expectation is met by the newest snapshot of any of its groups; a
// future-dated snapshot is not the newest; a snapshot whose newest
// drill failed is not a proven restore point, even where retention keeps
// it (issue 12 items 1 and 2, issue 19, issue 13 item 4).
func TestGatherGroups(t *testing.T) {
	r := repotest.New(t)
	now := time.Date(2026, 12, 7, 12, 0, 0, 0, time.UTC)
	oneOff := commitAt(t, r, "", []string{"/hello.txt"}, now.Add(-72*time.Hour))
	proven := commitAt(t, r, "", []string{"/srv/git", "/etc"}, now.Add(-2*time.Hour))
	newest := commitAt(t, r, "", []string{"/etc", "/srv/git"}, now.Add(-time.Hour))
	commitAt(t, r, "", []string{"/etc", "/srv/git"}, time.Date(2099, 1, 1, 0, 0, 0, 0, time.UTC))
	commitAt(t, r, "db", []string{"/db.sql"}, now.Add(-50*time.Hour))
	saveDrill(t, r, proven, drill.ResultOK, now.Add(-100*time.Minute))
	failed := saveDrill(t, r, proven, drill.ResultFailed, now.Add(-90*time.Minute))

	st, err := status.Gather(t.Context(), r, status.Options{Now: now, Expect: map[string]time.Duration{"default": 26 * time.Hour}})
	if err != nil {
		t.Fatal(err)
	}
	var names []string
	for _, g := range st.Groups {
		names = append(names, g.Name())
	}
	if want := []string{"lyra [/etc /srv/git]", "lyra [/hello.txt]", "lyra/db [/db.sql]"}; !slices.Equal(names, want) {
		t.Fatalf("groups %q, want %q", names, want)
	}
	dirs, hello, db := st.Groups[0], st.Groups[1], st.Groups[2]
	if dirs.Last.ID != newest || dirs.Snapshots != 3 || dirs.Future != 1 || dirs.Missing || dirs.Age != time.Hour {
		t.Errorf("lyra [/etc /srv/git]: %+v", dirs)
	}
	if dirs.DrilledOK != nil || dirs.OKDrill != nil || dirs.Drill.Report != failed {
		t.Errorf("lyra [/etc /srv/git]: proven %+v by %+v, last drill %+v", dirs.DrilledOK, dirs.OKDrill, dirs.Drill)
	}
	if hello.Last.ID != oneOff || hello.Missing {
		t.Errorf("lyra [/hello.txt] (the node's expectation is met by its other group): %+v", hello)
	}
	if !db.Missing || len(st.Late) != 1 || st.Late[0].Name() != "lyra/db" || st.Late[0].Age != 50*time.Hour {
		t.Errorf("lyra/db: %+v; late %+v", db, st.Late)
	}
	want := []string{
		"lyra/db: last backup 2d2h ago, expected every 1d2h",
		"lyra [/etc /srv/git]: the last drill (report " + failed.Short() + ", snapshot " + proven.Short() + ") failed (cairn drills " + failed.Short() + ")",
		"lyra [/etc /srv/git]: 1 snapshots are dated after now (the newest 2099-01-01T00:00:00Z); retention keeps them and counts them for nothing until then",
	}
	if !slices.Equal(st.Attention, want) {
		t.Errorf("attention:\n%s\nwant:\n%s", strings.Join(st.Attention, "\n"), strings.Join(want, "\n"))
	}
}
