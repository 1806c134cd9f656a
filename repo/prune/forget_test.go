package prune_test

import (
	"maps"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/cairnbackup/cairn/repo"
	"github.com/cairnbackup/cairn/repo/backup"
	"github.com/cairnbackup/cairn/repo/drill"
	"github.com/cairnbackup/cairn/repo/prune"
	"github.com/cairnbackup/cairn/repo/repotest"
	"github.com/cairnbackup/cairn/repo/snapshot"
	"github.com/cairnbackup/cairn/repo/storage"
)

// snapAs backs up files as a snapshot of node lyra recording paths.
func snapAs(t *testing.T, r *repo.Repository, tm time.Time, paths []string, files map[string][]byte) state {
	t.Helper()
	src := filepath.Join(t.TempDir(), "src")
	for p, b := range files {
		os.MkdirAll(filepath.Dir(filepath.Join(src, p)), 0o755)
		if err := os.WriteFile(filepath.Join(src, p), b, 0o644); err != nil {
			t.Fatal(err)
		}
	}
	s := r.NewSession()
	res, err := backup.Run(t.Context(), s, []string{src}, backup.Options{Params: r.ChunkerParams(), Table: r.ChunkerTable()})
	if err != nil {
		t.Fatal(err)
	}
	id, err := s.Commit(t.Context(), &snapshot.Snapshot{Version: 1, Time: tm, Node: "lyra", Paths: paths, Tree: res.Tree})
	if err != nil {
		t.Fatal(err)
	}
	return state{id: id, src: src}
}

// Forget against a real repository: a drilled-ok snapshot and a
// future-dated one survive keep-last 1, prune afterwards, and the proven
// snapshot still restores and drills ok; a snapshot of another source
// (paths) is a group of its own. A drill report that cannot be read stops
// forget before it deletes anything.
func TestForgetKeepsProvenAndFutureDated(t *testing.T) {
	r := repotest.New(t)
	now := time.Date(2026, 12, 7, 12, 0, 0, 0, time.UTC)
	data := []string{"/data"}
	var s []state
	for i := range 4 {
		s = append(s, snapAs(t, r, now.Add(time.Duration(i-4)*time.Hour), data, map[string][]byte{"v.bin": randomBytes(uint64(10+i), 300<<10)}))
	}
	future := snapAs(t, r, time.Date(2099, 1, 1, 0, 0, 0, 0, time.UTC), data, map[string][]byte{"f.txt": []byte("from the future")})
	other := snapAs(t, r, now.Add(-10*time.Hour), []string{"/hello.txt"}, map[string][]byte{"hello.txt": []byte("hello")})
	rep, err := drill.Run(t.Context(), r, s[0].id, drill.Options{Scratch: t.TempDir()})
	if err != nil || !rep.OK() {
		t.Fatalf("drill: %v %+v", err, rep)
	}
	report, err := drill.Save(t.Context(), r, rep)
	if err != nil {
		t.Fatal(err)
	}

	res, err := prune.Forget(t.Context(), r, prune.ForgetOptions{GroupBy: prune.DefaultGroupBy,
		PolicyFor: func(prune.Group) (prune.Policy, bool) { return prune.Policy{Last: 1}, true }, Loc: time.UTC, Now: now})
	if err != nil {
		t.Fatal(err)
	}
	var got []string
	for _, g := range slices.SortedFunc(maps.Keys(res), prune.Group.Compare) {
		for _, d := range res[g] {
			got = append(got, g.String()+" "+d.ID.Short()+" "+strings.Join(d.Reasons, ","))
		}
	}
	want := []string{
		"lyra [/data] " + future.id.Short() + " future-dated",
		"lyra [/data] " + s[3].id.Short() + " last 1",
		"lyra [/data] " + s[2].id.Short() + " ",
		"lyra [/data] " + s[1].id.Short() + " ",
		"lyra [/data] " + s[0].id.Short() + " drilled-ok " + report.Short(),
		"lyra [/hello.txt] " + other.id.Short() + " last 1",
	}
	if !slices.Equal(got, want) {
		t.Fatalf("decisions\n%s\nwant\n%s", strings.Join(got, "\n"), strings.Join(want, "\n"))
	}
	if _, err := prune.Run(t.Context(), r, prune.Options{}); err != nil {
		t.Fatal(err)
	}
	restores(t, r, s[0])
	restores(t, r, other)
	if rep, err := drill.Run(t.Context(), r, s[0].id, drill.Options{Scratch: t.TempDir()}); err != nil || !rep.OK() {
		t.Fatalf("drill after prune: %v %+v", err, rep)
	}

	// Damage the report and rebuild the index, which notes the reports
	// again (a report noted before it was damaged keeps its mark):
	// forget refuses and deletes nothing.
	p := filepath.Join(r.Dir(), string(storage.Drills), report.String())
	b, err := os.ReadFile(p)
	if err != nil {
		t.Fatal(err)
	}
	b[len(b)/2] ^= 1
	os.Chmod(p, 0o600)
	if err := os.WriteFile(p, b, 0o600); err != nil {
		t.Fatal(err)
	}
	if _, err := r.RebuildIndex(t.Context()); err != nil {
		t.Fatal(err)
	}
	before, _ := r.Snapshots(t.Context(), snapshot.Filter{})
	_, err = prune.Forget(t.Context(), r, prune.ForgetOptions{GroupBy: prune.DefaultGroupBy,
		PolicyFor: func(prune.Group) (prune.Policy, bool) { return prune.Policy{Last: 1}, true }, Loc: time.UTC, Now: now})
	if err == nil || !strings.Contains(err.Error(), "nothing forgotten (a report that cannot be read may name a group's proven snapshot; with keep_drilled 0 forget does not need them)") {
		t.Fatalf("forget with a damaged report: %v", err)
	}
	if after, _ := r.Snapshots(t.Context(), snapshot.Filter{}); len(after) != len(before) {
		t.Fatalf("%d snapshots before, %d after", len(before), len(after))
	}
	// Without keep_drilled, the reports are not needed.
	res, err = prune.Forget(t.Context(), r, prune.ForgetOptions{GroupBy: prune.DefaultGroupBy,
		PolicyFor: func(prune.Group) (prune.Policy, bool) { return prune.Policy{Last: 1, Drilled: new(int)}, true }, Loc: time.UTC, Now: now})
	if err != nil || len(res[prune.DefaultGroupBy.Of(&snapshot.Snapshot{Node: "lyra", Paths: data})]) != 3 {
		t.Fatalf("forget with keep_drilled 0: %v %+v", err, res)
	}
	if after, _ := r.Snapshots(t.Context(), snapshot.Filter{}); len(after) != len(before)-1 {
		t.Fatalf("%d snapshots before, %d after forgetting the proven one", len(before), len(after))
	}
}
