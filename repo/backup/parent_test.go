package backup_test

import (
	"testing"
	"time"

	"github.com/cairnbackup/cairn/repo/backup"
	"github.com/cairnbackup/cairn/repo/blob"
	"github.com/cairnbackup/cairn/repo/snapshot"
)

func TestFindParent(t *testing.T) {
	now := time.Date(2026, 5, 6, 12, 0, 0, 0, time.UTC)
	entry := func(id byte, hoursAgo int, node, plan string, paths ...string) snapshot.Entry {
		var i blob.ID
		i[0], i[1] = id, id
		return snapshot.Entry{ID: i, Snapshot: &snapshot.Snapshot{Time: now.Add(-time.Duration(hoursAgo) * time.Hour), Node: node, Plan: plan, Paths: paths}}
	}
	list := []snapshot.Entry{
		entry(0x10, 9, "lyra", "", "/srv"),
		entry(0x11, 8, "lyra", "db", "/srv"),
		entry(0x12, 7, "lyra", "", "/srv"),
		entry(0x13, 6, "lyra", "", "/srv", "/etc"),
		entry(0x14, 5, "vega", "", "/srv"),
		entry(0x15, 4, "lyra", "db", "/srv"),
		entry(0x16, -1, "lyra", "", "/srv"), // an hour ahead: future-dated
		entry(0x17, 3, "lyra", "web", "/srv"),
		entry(0x18, 2, "lyra", "web", "/srv"),
	}
	snapshot.Sort(list)
	srv := []string{"/srv"}
	for _, c := range []struct {
		name string
		q    backup.ParentQuery
		want byte   // the parent's first ID byte; 0 for none
		err  string // the error, if any
	}{
		{"no plan is a plan of its own", backup.ParentQuery{Node: "lyra", Paths: srv}, 0x12, ""},
		{"same plan", backup.ParentQuery{Node: "lyra", Plan: "db", Paths: srv}, 0x15, ""},
		{"same paths", backup.ParentQuery{Node: "lyra", Paths: []string{"/srv", "/etc"}}, 0x13, ""},
		{"paths in order", backup.ParentQuery{Node: "lyra", Paths: []string{"/etc", "/srv"}}, 0, ""},
		{"same node", backup.ParentQuery{Node: "vega", Paths: srv}, 0x14, ""},
		{"none", backup.ParentQuery{Node: "lyra", Plan: "mail", Paths: srv}, 0, ""},
		{"force-read", backup.ParentQuery{Node: "lyra", Paths: srv, ForceRead: true}, 0, ""},
		{"ref latest", backup.ParentQuery{Node: "lyra", Plan: "db", Paths: srv, Ref: "latest"}, 0x18, ""},
		{"ref prefix", backup.ParentQuery{Node: "lyra", Paths: srv, Ref: "1111"}, 0x11, ""},
		{"ref prefix with force-read", backup.ParentQuery{Node: "lyra", Paths: srv, Ref: "1111", ForceRead: true}, 0x11, ""},
		{"ref too short", backup.ParentQuery{Node: "lyra", Paths: srv, Ref: "111"}, 0, `snapshot "111": give at least 4 hex digits of its id, or latest`},
		{"ref unknown", backup.ParentQuery{Node: "lyra", Paths: srv, Ref: "abcd"}, 0, "snapshot abcd: not found"},
	} {
		got, err := backup.FindParent(list, c.q, now)
		switch {
		case c.err != "":
			if err == nil || err.Error() != c.err || got != nil {
				t.Errorf("%s: %v, %v; want error %q", c.name, got, err, c.err)
			}
		case err != nil:
			t.Errorf("%s: %v", c.name, err)
		case c.want == 0 && got != nil:
			t.Errorf("%s: parent %s, want none", c.name, got.ID.Short())
		case c.want != 0 && (got == nil || got.ID[0] != c.want):
			t.Errorf("%s: parent %v, want %02x…", c.name, got, c.want)
		}
	}
	if (backup.ParentQuery{ForceRead: true}).Wanted() || !(backup.ParentQuery{ForceRead: true, Ref: "latest"}).Wanted() {
		t.Error("Wanted: force-read alone asks for no parent, with a ref for that one")
	}
}
