package backup_test

import (
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"path/filepath"
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/cairnbackup/cairn/repo"
	"github.com/cairnbackup/cairn/repo/backup"
	"github.com/cairnbackup/cairn/repo/blob"
	"github.com/cairnbackup/cairn/repo/filter"
	"github.com/cairnbackup/cairn/repo/repotest"
	"github.com/cairnbackup/cairn/repo/snapshot"
)

func TestSourceRecorded(t *testing.T) {
	in := strings.NewReader("")
	for _, c := range []struct {
		src  backup.Source
		want []string
	}{
		{backup.Source{Paths: []string{"/srv", "/etc"}}, []string{"/srv", "/etc"}},
		{backup.Source{Stream: in, Name: "db.sql"}, []string{"/db.sql"}},
		{backup.Source{Stream: in, Name: "etc", Tar: true}, []string{"/etc"}},
		{backup.Source{Stream: in, Tar: true}, []string{"/"}},
	} {
		if got := c.src.Recorded(); !slices.Equal(got, c.want) {
			t.Errorf("%+v: %q, want %q", c.src, got, c.want)
		}
	}
}

// committed returns the record r holds under id, as JSON.
func committed(t *testing.T, r *repo.Repository, id blob.ID) string {
	t.Helper()
	list, err := r.Snapshots(t.Context(), snapshot.Filter{})
	if err != nil {
		t.Fatal(err)
	}
	for _, e := range list {
		if e.ID == id {
			b, err := json.Marshal(e.Snapshot)
			if err != nil {
				t.Fatal(err)
			}
			return string(b)
		}
	}
	t.Fatalf("snapshot %s is not in the repository", id.Short())
	return ""
}

// The record Snapshot writes holds exactly what each caller gives it and
// what the backup found, whatever the source: the metadata cairn backup
// and cairn push pass (node, host, plan, tags, a plan source's scope and
// its hooks, the parent), and what the appliance passes for a node's
// stream (node, plan, tags, the parent; no host: it cannot know it). The
// record's time is Meta.Start; the summary's figures of what was added
// are the target's.
func TestSnapshotRecord(t *testing.T) {
	r := repotest.New(t)
	src := filepath.Join(t.TempDir(), "src")
	repotest.WriteTree(t, src, map[string]string{"a.txt": "alpha", "b.o": "junk"})
	start := time.Date(2026, 5, 6, 7, 8, 9, 10, time.UTC)
	clock := func() time.Time { return start.Add(3 * time.Second) }
	o := opts(r)
	o.Now = clock
	excl, err := filter.New(filter.FromFlags([]string{"*.o"}, "--exclude"))
	if err != nil {
		t.Fatal(err)
	}
	o.Exclude = excl

	// The first snapshot, from paths, as cairn backup and push make it:
	// a plan file's source with its hooks.
	scope := &snapshot.Scope{PlanFile: "/etc/cairn/plan.yaml", Class: "files", Why: "what we write"}
	ran := []snapshot.Hook{{Phase: "before", Command: "true", Exit: new(int), Duration: time.Second}}
	s := r.NewSession()
	id1, sn1, err := backup.Snapshot(t.Context(), s, backup.Source{Paths: []string{src}}, backup.Meta{
		Node: "lyra", Host: "lyra.example", Plan: "code", Tags: []string{"t1", "t2"}, Scope: scope, Start: start,
		Finish: func(_ context.Context, err error) (backup.Finished, error) {
			return backup.Finished{Warnings: []string{"source code: after: exit status 1"}, Hooks: ran}, err
		},
	}, o)
	if err != nil {
		t.Fatal(err)
	}
	if blob.Hash(must(snapshot.Encode(sn1))) != id1 {
		t.Fatalf("the returned record is not the one stored as %s", id1.Short())
	}
	dirs := strings.Count(src, "/") // the directories leading to src, and src
	want := `{"version":1,"time":"2026-05-06T07:08:09.00000001Z","node":"lyra","plan":"code","host":"lyra.example","paths":["` + src + `"],"tags":["t1","t2"],` +
		`"tree":"` + sn1.Tree.String() + `","excludes":[{"rule":"--exclude \"*.o\"","count":1}],` +
		`"scope":{"plan_file":"/etc/cairn/plan.yaml","class":"files","why":"what we write","hooks":[{"phase":"before","command":"true","exit":0,"duration_ns":1000000000}]},` +
		`"summary":{"files":1,"dirs":` + itoa(uint64(dirs)) + `,"files_new":1,"files_changed":0,"files_unchanged":0,"bytes":5,"bytes_read":5,` +
		`"blobs_added":` + itoa(s.Stats().BlobsAdded) + `,"bytes_added":` + itoa(s.Stats().BytesAdded) + `,"stored_added":` + itoa(s.Stats().StoredAdded) +
		`,"duration_ns":3000000000,"warnings":["source code: after: exit status 1"]}}`
	if got := committed(t, r, id1); got != want {
		t.Fatalf("record\n got %s\nwant %s", got, want)
	}
	if scope.Hooks != nil {
		t.Fatal("Snapshot changed the caller's scope")
	}

	// The second, with the first as its parent: unchanged files are not
	// read again.
	e1 := snapshot.Entry{ID: id1, Snapshot: sn1}
	_, sn2, err := backup.Snapshot(t.Context(), r.NewSession(), backup.Source{Paths: []string{src}}, backup.Meta{Node: "lyra", Plan: "code", Parent: &e1, Start: start}, o)
	if err != nil {
		t.Fatal(err)
	}
	if sn2.Parent == nil || *sn2.Parent != id1 || sn2.Summary.FilesUnchanged != 1 || sn2.Summary.BytesRead != 0 || sn2.Host != "" || sn2.Scope != nil {
		t.Fatalf("second snapshot: %+v", sn2)
	}

	// A node's stream as the appliance stores it for an isolated node:
	// the figures are what the node sent, although the repository had
	// every blob but the tree.
	in := bytes.NewReader([]byte("alpha"))
	sc := r.NewSession().CountSent()
	id3, sn3, err := backup.Snapshot(t.Context(), sc, backup.Source{Stream: in, Name: "a.txt"}, backup.Meta{Node: "vega", Plan: "db", Tags: []string{"t"}, Parent: &e1, Start: start}, o)
	if err != nil {
		t.Fatal(err)
	}
	st := sc.Stats()
	want = `{"version":1,"time":"2026-05-06T07:08:09.00000001Z","node":"vega","plan":"db","paths":["/a.txt"],"tags":["t"],"tree":"` + sn3.Tree.String() + `","parent":"` + id1.String() + `",` +
		`"summary":{"files":1,"dirs":0,"files_new":1,"files_changed":0,"files_unchanged":0,"bytes":5,"bytes_read":5,"blobs_added":2,"bytes_added":` + itoa(st.BytesAdded) +
		`,"stored_added":` + itoa(st.StoredAdded) + `,"duration_ns":3000000000}}`
	if got := committed(t, r, id3); got != want || st.BlobsAdded != 2 {
		t.Fatalf("stream record\n got %s\nwant %s", got, want)
	}
}

func must(b []byte, _ blob.ID, err error) []byte {
	if err != nil {
		panic(err)
	}
	return b
}

// Finish sees the backup's outcome; its error fails a backup that had
// none, and then nothing is saved; a backup's own error wins.
func TestSnapshotFinish(t *testing.T) {
	r := repotest.New(t)
	o := opts(r)
	dumpFailed := errors.New("command failed")
	var saw []error
	finish := func(fail error) func(context.Context, error) (backup.Finished, error) {
		return func(_ context.Context, err error) (backup.Finished, error) {
			saw = append(saw, err)
			return backup.Finished{Warnings: []string{"ignored"}}, fail
		}
	}
	stream := backup.Source{Stream: strings.NewReader("partial dump"), Name: "db.sql"}
	s := r.NewSession()
	if _, sn, err := backup.Snapshot(t.Context(), s, stream, backup.Meta{Node: "lyra", Finish: finish(dumpFailed)}, o); err != dumpFailed || sn != nil {
		t.Fatalf("a failing Finish: %v, %v", sn, err)
	}
	s.Abort()
	bad := backup.Source{Stream: strings.NewReader(""), Name: "a/b"} // not a name at the root
	if _, _, err := backup.Snapshot(t.Context(), r.NewSession(), bad, backup.Meta{Node: "lyra", Finish: finish(dumpFailed)}, o); err == nil || err == dumpFailed {
		t.Fatalf("a failed backup: %v", err)
	}
	if len(saw) != 2 || saw[0] != nil || saw[1] == nil {
		t.Fatalf("Finish saw %v", saw)
	}
	if list, err := r.Snapshots(t.Context(), snapshot.Filter{}); err != nil || len(list) != 0 {
		t.Fatalf("snapshots %v, %v", list, err)
	}
}
