package fuse

import (
	"fmt"
	"path"
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/cairnbackup/cairn/repo/blob"
	"github.com/cairnbackup/cairn/repo/snapshot"
)

// snap makes a snapshot list entry; id gives the ID's first bytes.
func snap(id string, node, plan string, t time.Time, tags ...string) snapshot.Entry {
	var sid blob.ID
	copy(sid[:], id)
	return snapshot.Entry{ID: sid, Snapshot: &snapshot.Snapshot{Version: 1, Time: t, Node: node, Plan: plan, Tags: tags, Tree: blob.Hash([]byte(id))}}
}

// dump lists every path of the layout with its kind and target, sorted.
func dump(l *layout) []string {
	var out []string
	for p, e := range l.entries {
		switch e.kind {
		case metaDir:
			out = append(out, p+"/")
		case metaLink:
			out = append(out, p+" -> "+e.target)
		case metaSnap:
			out = append(out, p+" = "+e.snap.ID.Short())
		}
	}
	slices.Sort(out)
	return out
}

func TestFuseLayout(t *testing.T) {
	t0 := time.Date(2026, 11, 26, 13, 20, 37, 500, time.UTC)
	list := []snapshot.Entry{
		snap("\xbb\x00\x00\x01", "lyra", "", t0.Add(time.Hour), "daily"),
		snap("\xaa\x00\x00\x01", "lyra", "etc", t0, "daily", "daily", "."),
		snap("\xcc\x00\x00\x01", "lyra", "etc", t0.Add(100*time.Millisecond), "weekly"), // same second
		snap("\xdd\x00\x00\x01", "rhea", "git", t0.In(time.FixedZone("CET", 3600)).Add(-time.Hour)),
	}
	l := buildLayout(list, time.Unix(0, 0), t0.Add(24*time.Hour))
	want := []string{
		"/",
		"nodes/",
		"nodes/lyra/",
		"nodes/lyra/@none/",
		"nodes/lyra/@none/2026-11-26T14:20:37Z = bb000001",
		"nodes/lyra/@none/latest -> 2026-11-26T14:20:37Z",
		"nodes/lyra/etc/",
		"nodes/lyra/etc/2026-11-26T13:20:37Z = aa000001",
		"nodes/lyra/etc/2026-11-26T13:20:37Z_cc000001 = cc000001",
		"nodes/lyra/etc/latest -> 2026-11-26T13:20:37Z_cc000001",
		"nodes/rhea/",
		"nodes/rhea/git/",
		"nodes/rhea/git/2026-11-26T12:20:37Z = dd000001",
		"nodes/rhea/git/latest -> 2026-11-26T12:20:37Z",
		"snapshots/",
		"snapshots/aa000001 -> ../nodes/lyra/etc/2026-11-26T13:20:37Z",
		"snapshots/bb000001 -> ../nodes/lyra/@none/2026-11-26T14:20:37Z",
		"snapshots/cc000001 -> ../nodes/lyra/etc/2026-11-26T13:20:37Z_cc000001",
		"snapshots/dd000001 -> ../nodes/rhea/git/2026-11-26T12:20:37Z",
		"tags/",
		"tags/daily/",
		"tags/daily/lyra/",
		"tags/daily/lyra/@none/",
		"tags/daily/lyra/@none/2026-11-26T14:20:37Z -> ../../../../nodes/lyra/@none/2026-11-26T14:20:37Z",
		"tags/daily/lyra/etc/",
		"tags/daily/lyra/etc/2026-11-26T13:20:37Z -> ../../../../nodes/lyra/etc/2026-11-26T13:20:37Z",
		"tags/weekly/",
		"tags/weekly/lyra/",
		"tags/weekly/lyra/etc/",
		"tags/weekly/lyra/etc/2026-11-26T13:20:37Z_cc000001 -> ../../../../nodes/lyra/etc/2026-11-26T13:20:37Z_cc000001",
	}
	if got := dump(l); !slices.Equal(got, want) {
		t.Fatalf("layout:\n%s\nwant:\n%s", strings.Join(got, "\n"), strings.Join(want, "\n"))
	}
	if l.snapshots != 4 {
		t.Errorf("snapshots = %d", l.snapshots)
	}
	// Every link resolves to a snapshot directory of the layout.
	for p, e := range l.entries {
		if e.kind != metaLink {
			continue
		}
		target := path.Join(path.Dir(p), e.target)
		if te := l.entries[target]; te == nil || te.kind != metaSnap || te.snap.ID != e.snap.ID {
			t.Errorf("%s -> %s does not lead to snapshot %s", p, e.target, e.snap.ID.Short())
		}
	}
	// Listings are sorted, and lookup finds each entry.
	for dir, entries := range l.dirs {
		if !slices.IsSortedFunc(entries, func(a, b *metaEntry) int { return strings.Compare(a.name, b.name) }) {
			t.Errorf("%s: not sorted", dir)
		}
		for _, e := range entries {
			if l.lookup(dir, e.name) != e {
				t.Errorf("lookup %s/%s", dir, e.name)
			}
		}
		if l.lookup(dir, "nothing") != nil {
			t.Errorf("lookup %s/nothing found something", dir)
		}
	}
	// Directory times: the newest snapshot below.
	for p, want := range map[string]time.Time{
		"":                                    t0.Add(time.Hour),
		"nodes":                               t0.Add(time.Hour),
		"nodes/lyra/etc":                      t0.Add(100 * time.Millisecond),
		"nodes/rhea":                          t0.Add(-time.Hour),
		"tags/weekly":                         t0.Add(100 * time.Millisecond),
		"nodes/lyra/etc/latest":               t0.Add(100 * time.Millisecond),
		"nodes/lyra/etc/2026-11-26T13:20:37Z": t0,
	} {
		if got := l.entries[p].mtime; !got.Equal(want) {
			t.Errorf("%q: time %s, want %s", p, got, want)
		}
	}
}

// A short ID shared by two snapshots is written out in full, and the
// suffix for a second snapshot in the same second uses the short ID.
func TestFuseLayoutSharedShortID(t *testing.T) {
	t0 := time.Date(2026, 1, 2, 3, 4, 5, 0, time.UTC)
	a := snap("\x01\x02\x03\x04\xaa", "n", "p", t0)
	b := snap("\x01\x02\x03\x04\xbb", "n", "p", t0)
	c := snap("\x01\x02\x03\x04\xcc", "n", "p", t0)
	l := buildLayout([]snapshot.Entry{c, b, a}, t0, t0)
	var names []string
	for _, e := range l.dirs["snapshots"] {
		names = append(names, e.name)
	}
	want := []string{a.ID.String(), b.ID.String(), c.ID.String()}
	if !slices.Equal(names, want) {
		t.Fatalf("snapshots/: %v, want %v", names, want)
	}
	names = nil
	for _, e := range l.dirs["nodes/n/p"] {
		names = append(names, e.name)
	}
	// a is first (same time, smaller ID); b's short suffix is taken by
	// nobody yet; c's short suffix equals b's, so c gets the full ID.
	want = []string{"2026-01-02T03:04:05Z", "2026-01-02T03:04:05Z_01020304", "2026-01-02T03:04:05Z_" + c.ID.String(), "latest"}
	if !slices.Equal(names, want) {
		t.Fatalf("nodes/n/p: %q, want %q", names, want)
	}
}

// latest never points at a future-dated snapshot while the plan has one
// that is not (issue 12, item 1); with only future-dated ones it points
// at the newest of them.
func TestFuseLayoutLatestSkipsFutureDated(t *testing.T) {
	now := time.Date(2026, 12, 7, 12, 0, 0, 0, time.UTC)
	list := []snapshot.Entry{
		snap("\x01", "bob", "p", now.Add(-time.Hour)),
		snap("\x02", "bob", "p", now.Add(snapshot.ClockSkew)), // within the skew: not future-dated
		snap("\x03", "bob", "p", time.Date(2099, 1, 1, 0, 0, 0, 0, time.UTC)),
		snap("\x04", "bob", "q", time.Date(2098, 1, 1, 0, 0, 0, 0, time.UTC)),
		snap("\x05", "bob", "q", time.Date(2099, 1, 1, 0, 0, 0, 0, time.UTC)),
	}
	l := buildLayout(list, now, now)
	if got, want := l.entries["nodes/bob/p/latest"].target, "2026-12-07T12:05:00Z"; got != want {
		t.Errorf("bob/p latest -> %s, want %s", got, want)
	}
	if got, want := l.entries["nodes/bob/q/latest"].target, "2099-01-01T00:00:00Z"; got != want {
		t.Errorf("bob/q latest -> %s, want %s", got, want)
	}
}

func TestFuseLayoutEmpty(t *testing.T) {
	mounted := time.Date(2026, 5, 6, 7, 8, 9, 0, time.UTC)
	l := buildLayout(nil, mounted, mounted)
	if got := dump(l); !slices.Equal(got, []string{"/", "nodes/", "snapshots/", "tags/"}) {
		t.Fatalf("empty layout: %v", got)
	}
	for p, e := range l.entries {
		if !e.mtime.Equal(mounted) {
			t.Errorf("%q: time %s", p, e.mtime)
		}
	}
	if len(l.dirs["nodes"]) != 0 {
		t.Error("nodes/ not empty")
	}
}

func BenchmarkLayout10k(b *testing.B) {
	t0 := time.Date(2026, 1, 1, 0, 0, 0, 0, time.UTC)
	var list []snapshot.Entry
	for i := range 10000 {
		list = append(list, snap(fmt.Sprintf("%08d", i), fmt.Sprintf("node%d", i%20), fmt.Sprintf("plan%d", i%3), t0.Add(time.Duration(i)*time.Minute), "daily"))
	}
	for b.Loop() {
		buildLayout(list, t0, t0.Add(10000*time.Minute))
	}
}
