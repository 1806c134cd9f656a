package status_test

import (
	"bytes"
	"flag"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/cairnbackup/cairn/repo/backup"
	"github.com/cairnbackup/cairn/repo/blob"
	"github.com/cairnbackup/cairn/repo/drill"
	"github.com/cairnbackup/cairn/repo/repotest"
	"github.com/cairnbackup/cairn/repo/snapshot"
	"github.com/cairnbackup/cairn/repo/status"
)

var update = flag.Bool("update", false, "rewrite testdata/runbook.golden")

func id(s string) blob.ID { return blob.Hash([]byte(s)) }

// goldenStatus is a fixed state: three plans of one node, one never
// drilled, one whose last drill failed.
func goldenStatus() *status.Status {
	t0 := time.Date(2026, 11, 26, 3, 0, 0, 0, time.UTC)
	git := status.Snapshot{ID: id("git2"), Time: t0, Bytes: 50 << 20, Files: 1200, Paths: []string{"/srv/git"},
		Scope: &snapshot.Scope{Class: "git", Why: "the source of truth for our code"}}
	db := status.Snapshot{ID: id("db2"), Time: t0.Add(time.Minute), Bytes: 300 << 20, Files: 1, Paths: []string{"/postgres.sql"},
		Scope: &snapshot.Scope{Class: "database", Why: "all application data", Command: "pg_dumpall"}}
	dbOld := db
	dbOld.ID, dbOld.Time = id("db1"), t0.Add(-24*time.Hour)
	vol := status.Snapshot{ID: id("vol1"), Time: t0.Add(2 * time.Minute), Bytes: 2 << 30, Files: 40000, Paths: []string{"/var/lib/docker/volumes/app"},
		Scope: &snapshot.Scope{Class: "volume", Why: "container state that is in no git repository"}}
	okDrill := &status.Drill{Report: id("r1"), Snapshot: git.ID, Time: t0.Add(time.Hour), Result: "ok", RestoreSeconds: 4.2, MBPerSecond: 12, Files: 1200}
	dbOK := &status.Drill{Report: id("r2"), Snapshot: dbOld.ID, Time: t0.Add(-23 * time.Hour), Result: "ok", RestoreSeconds: 9.5, MBPerSecond: 31, Files: 1}
	dbBad := &status.Drill{Report: id("r3"), Snapshot: db.ID, Time: t0.Add(time.Hour), Result: "failed", Failures: []string{"/postgres.sql: contents hash to x, the snapshot recorded y"}}
	return &status.Status{
		Time: t0.Add(2 * time.Hour),
		Groups: []status.Group{
			{Node: "lyra", Plan: "db", Paths: db.Paths, Snapshots: 2, Last: db, Drill: dbBad, DrilledOK: &dbOld, OKDrill: dbOK},
			{Node: "lyra", Plan: "git", Paths: git.Paths, Snapshots: 1, Last: git, Drill: okDrill, DrilledOK: &git, OKDrill: okDrill},
			{Node: "lyra", Plan: "volumes", Paths: vol.Paths, Snapshots: 1, Last: vol},
		},
		Attention: []string{"lyra/db: the last drill (report " + id("r3").Short() + ", snapshot " + id("db2").Short() + ") failed"},
	}
}

// goldenOptions point the golden runbook at an appliance rhea that
// lyra reaches with its key and the read permission; its git source
// holds a work tree and a bare repository.
func goldenOptions() status.RunbookOptions {
	return status.RunbookOptions{Repo: "/srv/cairn/repo", KeyFile: "/srv/cairn/repo.key",
		SSH: "rhea:2222", HostKey: "SHA256:hQ5f1Hq0lqSZt2R0nYVZb8o0a3Zkq4GwJXo0mX5Zc2E",
		Nodes:    map[string]status.NodeAccess{"lyra": {Read: true, Keys: []string{"SHA256:lyra0key0fingerprint"}}},
		Contents: map[blob.ID]status.Contents{id("git2"): {GitDirs: []string{"srv/git/app/.git", "srv/git/site.git"}}}}
}

func TestRunbookGolden(t *testing.T) {
	var b bytes.Buffer
	if err := status.WriteRunbook(&b, goldenStatus(), goldenOptions()); err != nil {
		t.Fatal(err)
	}
	golden := filepath.Join("testdata", "runbook.golden")
	if *update {
		os.WriteFile(golden, b.Bytes(), 0o644)
	}
	want, err := os.ReadFile(golden)
	if err != nil {
		t.Fatalf("%v (create it with -update)", err)
	}
	if b.String() != string(want) {
		t.Fatalf("runbook differs from %s:\n%s", golden, b.String())
	}
}

func TestGather(t *testing.T) {
	r := repotest.New(t)
	src := filepath.Join(t.TempDir(), "src")
	repotest.WriteTree(t, src, map[string]string{"a.txt": "alpha"})
	t0 := time.Now().Add(-3 * time.Hour)
	var ids []blob.ID
	for i, plan := range []string{"docs", "docs", "old"} {
		s := r.NewSession()
		res, err := backup.Run(t.Context(), s, []string{src}, backup.Options{Params: r.ChunkerParams(), Table: r.ChunkerTable()})
		if err != nil {
			t.Fatal(err)
		}
		tm := t0.Add(time.Duration(i) * time.Hour)
		if plan == "old" {
			tm = t0.Add(-72 * time.Hour)
		}
		sid, err := s.Commit(t.Context(), &snapshot.Snapshot{Version: 1, Time: tm, Node: "lyra", Plan: plan, Paths: []string{src}, Tree: res.Tree, Summary: snapshot.Summary{Bytes: 5, Files: 1}})
		if err != nil {
			t.Fatal(err)
		}
		ids = append(ids, sid)
	}
	rep, err := drill.Run(t.Context(), r, ids[1], drill.Options{Scratch: t.TempDir()})
	if err != nil || rep.Result != drill.ResultOK {
		t.Fatalf("drill: %v %+v", err, rep)
	}
	rid, err := drill.Save(t.Context(), r, rep)
	if err != nil {
		t.Fatal(err)
	}
	st, err := status.Gather(t.Context(), r, status.Options{
		Expect: map[string]time.Duration{"default": 26 * time.Hour},
		Cycle:  30 * 24 * time.Hour,
		Jobs:   []status.Job{{Name: "verify", Status: "failed", Error: "disk on fire", LastStart: t0}},
	})
	if err != nil {
		t.Fatal(err)
	}
	var names []string
	for _, g := range st.Groups {
		names = append(names, g.Name())
	}
	if !slices.Equal(names, []string{"lyra/docs [" + src + "]", "lyra/old [" + src + "]"}) {
		t.Fatalf("groups %v", names)
	}
	docs, old := st.Groups[0], st.Groups[1]
	if docs.Snapshots != 2 || docs.Last.ID != ids[1] || docs.Missing || docs.DrilledOK == nil || docs.DrilledOK.ID != ids[1] || docs.OKDrill.Report != rid {
		t.Fatalf("docs %+v", docs)
	}
	if !old.Missing || old.Drill != nil {
		t.Fatalf("old %+v", old)
	}
	if st.Packs == 0 || st.NeverVerified != st.Packs || st.VerifiedFraction != 0 {
		t.Fatalf("verification %+v", st)
	}
	att := strings.Join(st.Attention, "\n")
	if !strings.Contains(att, "lyra/old: last backup 3d3h ago, expected every 1d2h") || !strings.Contains(att, "job verify failed") {
		t.Fatalf("attention:\n%s", att)
	}
}
