package snapshot_test

import (
	"errors"
	"testing"
	"time"

	"github.com/cairnbackup/cairn/repo/blob"
	"github.com/cairnbackup/cairn/repo/snapshot"
)

func TestHolds(t *testing.T) {
	s := &snapshot.Snapshot{Paths: []string{"/etc", "/srv/git"}}
	for p, want := range map[string]bool{
		"/etc": true, "/etc/ssh": true, "etc/ssh/": true, "/srv": true, "/": true, "/srv/git/a.git": true,
		"/etcx": false, "/srv/www": false, "/app": false, "/sr": false,
	} {
		if got := s.Holds(p); got != want {
			t.Errorf("Holds(%q) = %v, want %v", p, got, want)
		}
	}
	if !(&snapshot.Snapshot{Paths: []string{"/"}}).Holds("/anything") {
		t.Error("a snapshot of / does not hold /anything")
	}
}

// latest:PATH is the newest snapshot that holds PATH (never a
// future-dated one while another holds it); an ID prefix ignores PATH.
func TestFindLatestWithPath(t *testing.T) {
	now := time.Date(2026, 12, 7, 12, 0, 0, 0, time.UTC)
	entry := func(name, node, plan string, tm time.Time, paths ...string) snapshot.Entry {
		return snapshot.Entry{ID: blob.Hash([]byte(name)), Snapshot: &snapshot.Snapshot{Time: tm, Node: node, Plan: plan, Paths: paths}}
	}
	etcOld := entry("etc1", "lyra", "etc", now.Add(-48*time.Hour), "/etc")
	etc := entry("etc2", "lyra", "etc", now.Add(-24*time.Hour), "/etc")
	dump := entry("dump", "lyra", "", now.Add(-time.Hour), "/db.dump")
	app := entry("app", "lyra", "app", now.Add(-time.Minute), "/app")
	future := entry("future", "lyra", "etc", now.Add(time.Hour), "/etc")
	list := []snapshot.Entry{etcOld, etc, dump, app, future}

	e, note, err := snapshot.Find(list, "latest", "/etc/ssh", now)
	want := "latest:/etc/ssh is snapshot " + etc.ID.Short() + " (lyra/etc, 2026-12-06T12:00:00Z), the newest that holds /etc/ssh (2 newer snapshots hold other paths)"
	if err != nil || e.ID != etc.ID || note != want {
		t.Fatalf("latest:/etc/ssh = %s %q %v\nwant %s %q", e.ID.Short(), note, err, etc.ID.Short(), want)
	}
	if e, note, err := snapshot.Find(list, "latest", "/app/data", now); err != nil || e.ID != app.ID || note != "" {
		t.Fatalf("latest:/app/data = %s %q %v, want the newest and no note", e.ID.Short(), note, err)
	}
	if e, note, err := snapshot.Find(list, "latest", "/", now); err != nil || e.ID != app.ID || note != "" {
		t.Fatalf("latest:/ = %s %q %v", e.ID.Short(), note, err)
	}
	_, _, err = snapshot.Find(list, "latest", "/home", now)
	if !errors.Is(err, blob.ErrNotFound) || err.Error() != "latest:/home: not found in any snapshot; the newest is "+app.ID.Short()+" (lyra/app, 2026-12-07T11:59:00Z), which holds /app" {
		t.Fatalf("latest:/home: %v", err)
	}
	if e, note, err := snapshot.Find(list, etcOld.ID.String()[:8], "/app", now); err != nil || e.ID != etcOld.ID || note != "" {
		t.Fatalf("an ID prefix with a path: %s %q %v", e.ID.Short(), note, err)
	}
}
