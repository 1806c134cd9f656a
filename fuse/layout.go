package fuse

import (
	"path"
	"slices"
	"strings"
	"time"

	"github.com/cairnbackup/cairn/repo/snapshot"
)

// latestName is the symlink to the newest snapshot of a node and plan.
// Time directories start with a digit, so it never collides either.
const latestName = "latest"

// metaKind says what a synthetic entry is.
type metaKind uint8

const (
	metaDir  metaKind = iota + 1 // a synthetic directory (nodes, nodes/lyra, tags/daily, …)
	metaLink                     // a symlink (latest, snapshots/<id>, tags/…/<time>)
	metaSnap                     // a snapshot's directory: its root tree
)

// metaEntry is one entry of the synthetic part of the mount.
type metaEntry struct {
	name   string
	kind   metaKind
	target string          // metaLink: the relative target
	snap   *snapshot.Entry // metaSnap: the snapshot; metaLink: the snapshot it leads to
	mtime  time.Time       // the newest snapshot time at or below the entry
}

// layout is the synthetic part of the mount computed from one snapshot
// list. It is immutable once built, so readers share it without locks;
// a refresh builds a new one.
type layout struct {
	// dirs maps the path of each synthetic directory ("" is the root)
	// to its entries, sorted by name.
	dirs map[string][]*metaEntry
	// entries maps the path of every synthetic entry to it; the root
	// "" is included.
	entries   map[string]*metaEntry
	snapshots int
}

// timeName is the directory name of a snapshot time: UTC, RFC 3339, to
// the second.
func timeName(t time.Time) string {
	return t.UTC().Format(time.RFC3339)
}

// planName is the directory name of a snapshot's plan: snapshot.NoPlan
// ("@none") without one. Plan names cannot contain '@'
// (snapshot.CheckName), so it never collides.
func planName(s *snapshot.Snapshot) string { return snapshot.PlanName(s.Plan) }

// validTag reports whether a tag can be a directory name. Tags cannot
// contain '/' or NUL (snapshot.Validate), but "." and ".." are allowed
// there and cannot be directory names here.
func validTag(t string) bool {
	return t != "." && t != ".."
}

// buildLayout computes the synthetic tree for a snapshot list (in any
// order). A synthetic directory's time is that of the newest snapshot
// below it; empty ones (no snapshots, no tags) get the time empty:
//
//	nodes/<node>/<plan>/<time>           the snapshot's root tree
//	nodes/<node>/<plan>/latest           -> <time> of the newest
//	snapshots/<id8>                      -> ../nodes/<node>/<plan>/<time>
//	tags/<tag>/<node>/<plan>/<time>      -> ../../../../nodes/<node>/<plan>/<time>
//
// Snapshots of one node and plan that fall in the same second get
// "_<id8>" appended to all but the first (ordered by time, then ID);
// short IDs shared by two snapshots are written out in full. latest is
// chosen by [snapshot.Latest] at now: never a future-dated snapshot over
// one that is not.
func buildLayout(list []snapshot.Entry, empty, now time.Time) *layout {
	list = slices.Clone(list)
	snapshot.Sort(list)
	l := &layout{dirs: map[string][]*metaEntry{}, entries: map[string]*metaEntry{}, snapshots: len(list)}
	l.entries[""] = &metaEntry{kind: metaDir}
	for _, name := range []string{"nodes", "snapshots", "tags"} {
		l.add("", &metaEntry{name: name, kind: metaDir})
	}
	if len(list) > 0 {
		l.touch("", list[len(list)-1].Time)
	}

	// Canonical names, in time order.
	canon := make([]string, len(list))
	used := map[string]bool{}
	// Each plan directory's snapshots, oldest first, and their indexes in list.
	type planSnaps struct {
		list []snapshot.Entry
		at   []int
	}
	byDir := map[string]*planSnaps{}
	for i := range list {
		sn := &list[i]
		dir := path.Join("nodes", sn.Node, planName(sn.Snapshot))
		name := timeName(sn.Time)
		if used[dir+"/"+name] {
			name += "_" + sn.ID.Short()
			if used[dir+"/"+name] {
				name = timeName(sn.Time) + "_" + sn.ID.String()
			}
		}
		used[dir+"/"+name] = true
		canon[i] = dir + "/" + name
		ps := byDir[dir]
		if ps == nil {
			ps = &planSnaps{}
			byDir[dir] = ps
		}
		ps.list, ps.at = append(ps.list, *sn), append(ps.at, i)
		l.mkdirAll(dir, sn.Time)
		l.add(dir, &metaEntry{name: name, kind: metaSnap, snap: sn, mtime: sn.Time})
	}
	for dir, ps := range byDir {
		i := ps.at[snapshot.Latest(ps.list, now)]
		l.add(dir, &metaEntry{name: latestName, kind: metaLink, target: path.Base(canon[i]), snap: &list[i], mtime: list[i].Time})
	}

	// snapshots/<id8>, or the full ID when two share the short form.
	short := map[string]int{}
	for i := range list {
		short[list[i].ID.Short()]++
	}
	for i := range list {
		sn := &list[i]
		name := sn.ID.Short()
		if short[name] > 1 {
			name = sn.ID.String()
		}
		l.touch("snapshots", sn.Time)
		l.add("snapshots", &metaEntry{name: name, kind: metaLink, target: "../" + canon[i], snap: sn, mtime: sn.Time})
	}

	// tags/<tag>/<node>/<plan>/<time>.
	for i := range list {
		sn := &list[i]
		for _, tag := range slices.Compact(slices.Sorted(slices.Values(sn.Tags))) {
			if !validTag(tag) {
				continue
			}
			dir := path.Join("tags", tag, sn.Node, planName(sn.Snapshot))
			l.mkdirAll(dir, sn.Time)
			l.add(dir, &metaEntry{name: path.Base(canon[i]), kind: metaLink, target: "../../../../" + canon[i], snap: sn, mtime: sn.Time})
		}
	}
	for _, e := range l.entries {
		if e.mtime.IsZero() {
			e.mtime = empty
		}
	}
	for _, entries := range l.dirs {
		slices.SortFunc(entries, func(a, b *metaEntry) int { return strings.Compare(a.name, b.name) })
	}
	return l
}

// add puts e into directory dir, which must exist.
func (l *layout) add(dir string, e *metaEntry) {
	l.dirs[dir] = append(l.dirs[dir], e)
	l.entries[path.Join(dir, e.name)] = e
	if e.kind == metaDir {
		if _, ok := l.dirs[path.Join(dir, e.name)]; !ok {
			l.dirs[path.Join(dir, e.name)] = nil
		}
	}
}

// mkdirAll creates directory dir and its parents as needed, and makes t
// the time of each of them (and of the root's top-level directory) when
// it is newer.
func (l *layout) mkdirAll(dir string, t time.Time) {
	if dir == "" || dir == "." {
		return
	}
	if _, ok := l.entries[dir]; !ok {
		parent := path.Dir(dir)
		if parent == "." {
			parent = ""
		}
		l.mkdirAll(parent, t)
		l.add(parent, &metaEntry{name: path.Base(dir), kind: metaDir, mtime: t})
	}
	for p := dir; p != "." && p != ""; p = path.Dir(p) {
		l.touch(p, t)
	}
}

// touch makes t the time of the entry at p if it is newer.
func (l *layout) touch(p string, t time.Time) {
	if e := l.entries[p]; e != nil && t.After(e.mtime) {
		e.mtime = t
	}
}

// lookup returns the entry name in directory dir, or nil.
func (l *layout) lookup(dir, name string) *metaEntry {
	entries := l.dirs[dir]
	i, ok := slices.BinarySearchFunc(entries, name, func(e *metaEntry, name string) int { return strings.Compare(e.name, name) })
	if !ok {
		return nil
	}
	return entries[i]
}
