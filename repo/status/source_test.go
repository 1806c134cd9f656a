package status_test

import (
	"encoding/json"
	"path/filepath"
	"testing"
	"time"

	"github.com/cairnbackup/cairn/repo/backup"
	"github.com/cairnbackup/cairn/repo/drill"
	"github.com/cairnbackup/cairn/repo/repotest"
	"github.com/cairnbackup/cairn/repo/snapshot"
	"github.com/cairnbackup/cairn/repo/status"
)

// sourceOnly hides every method of the repository but a Source's,
// storedOnly every one but a Stored's and treesOnly every one but a
// Trees'.
type (
	sourceOnly struct{ status.Source }
	storedOnly struct{ status.Stored }
	treesOnly  struct{ status.Trees }
)

// Gather reads the repository through status.Source, and Sample through
// status.Stored: what they say through them is what they say of the
// repository itself.
func TestGatherNeedsOnlyASource(t *testing.T) {
	r := repotest.New(t)
	src := filepath.Join(t.TempDir(), "src")
	repotest.WriteTree(t, src, map[string]string{"a.txt": "alpha"})
	now := time.Date(2026, 12, 7, 12, 0, 0, 0, time.UTC)
	s := r.NewSession()
	res, err := backup.Run(t.Context(), s, []string{src}, backup.Options{Params: r.ChunkerParams(), Table: r.ChunkerTable()})
	if err != nil {
		t.Fatal(err)
	}
	sid, err := s.Commit(t.Context(), &snapshot.Snapshot{Version: 1, Time: now.Add(-30 * time.Hour), Node: "lyra", Plan: "docs", Paths: []string{src}, Tree: res.Tree, Summary: snapshot.Summary{Bytes: 5, Files: 1}})
	if err != nil {
		t.Fatal(err)
	}
	rep, err := drill.Run(t.Context(), r, sid, drill.Options{Scratch: t.TempDir()})
	if err != nil {
		t.Fatal(err)
	}
	if _, err := drill.Save(t.Context(), r, rep); err != nil {
		t.Fatal(err)
	}
	o := status.Options{Now: now, Expect: map[string]time.Duration{"default": 26 * time.Hour}, Cycle: 24 * time.Hour, Nodes: []string{"lyra", "vega"},
		Replicas: []status.Replica{{Name: "offsite", Schedule: "0 3 * * *", Interval: 24 * time.Hour}}}
	whole, err := status.Gather(t.Context(), r, o)
	if err != nil {
		t.Fatal(err)
	}
	narrow, err := status.Gather(t.Context(), sourceOnly{r}, o)
	if err != nil {
		t.Fatal(err)
	}
	w, _ := json.Marshal(whole)
	n, _ := json.Marshal(narrow)
	if string(n) != string(w) {
		t.Fatalf("Gather through status.Source:\n%s\nwant what it says of the repository:\n%s", n, w)
	}
	if len(whole.Groups) != 1 || whole.Groups[0].Drill == nil || len(whole.Late) != 1 || len(whole.Never) != 1 || whole.Packs == 0 || len(whole.Replicas) != 1 {
		t.Fatalf("status %s: want one late group with a drill, vega never backed up, packs and the replica", w)
	}
	ws, err := status.Sample(t.Context(), r, now)
	if err != nil {
		t.Fatal(err)
	}
	ns, err := status.Sample(t.Context(), storedOnly{r}, now)
	if err != nil || ns != ws {
		t.Fatalf("Sample through status.Stored: %+v, %v; want %+v", ns, err, ws)
	}
}
