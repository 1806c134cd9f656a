package status

import (
	"context"
	"path"
	"slices"

	"github.com/cairnbackup/cairn/repo/blob"
	"github.com/cairnbackup/cairn/repo/snapfs"
	"github.com/cairnbackup/cairn/repo/snapshot"
	"github.com/cairnbackup/cairn/repo/tree"
)

// MaxGitDirs bounds the git repositories a runbook names per snapshot;
// the rest are counted.
const MaxGitDirs = 100

// Contents is what the runbook needs to know of a snapshot's tree.
type Contents struct {
	// GitDirs are the snapshot's git directories: a bare repository's
	// directory, or a work tree's .git; snapshot paths without the
	// leading "/", sorted, at most MaxGitDirs. A git directory inside
	// another (a submodule's, kept under .git/modules) is left out: its
	// repository's own check reaches it.
	GitDirs []string
	More    int    // git directories beyond MaxGitDirs
	Err     string // the first tree that could not be read, if any
}

// RestorePoint is the snapshot a runbook restores of group g: its proven
// restore point, or without one its newest snapshot.
func RestorePoint(g Group) Snapshot {
	if g.DrilledOK != nil {
		return *g.DrilledOK
	}
	return g.Last
}

// Inspect reads what the runbook for node ("" for all nodes) needs of
// the snapshots it restores: for each git source's restore point, its
// git directories, found by walking the snapshot's trees
// ([snapfs.Walk]). It reads snapshot records and trees, never file
// contents. A tree that cannot be read is noted in the snapshot's
// Contents.
func Inspect(ctx context.Context, r Trees, st *Status, node string) (map[blob.ID]Contents, error) {
	list, err := r.Snapshots(ctx, snapshot.Filter{Node: node})
	if err != nil {
		return nil, err
	}
	trees := map[blob.ID]blob.ID{}
	for _, e := range list {
		trees[e.ID] = e.Tree
	}
	out := map[blob.ID]Contents{}
	for _, g := range st.Groups {
		s := RestorePoint(g)
		if node != "" && g.Node != node || g.Last.Scope == nil || g.Last.Scope.Class != "git" {
			continue
		}
		root, ok := trees[s.ID]
		if _, done := out[s.ID]; done || !ok {
			continue // forgotten since st was gathered: the runbook gives the general hint
		}
		c, err := gitDirs(ctx, r, root)
		if err != nil {
			return nil, err
		}
		out[s.ID] = c
	}
	return out, nil
}

// gitDirs walks the tree root and finds its git directories, as the
// drill's probes recognise them: a directory with a HEAD file and
// objects and refs directories.
func gitDirs(ctx context.Context, l snapfs.BlobLoader, root blob.ID) (Contents, error) {
	const head, objects, refs = 1, 2, 4
	marks := map[string]uint8{} // by directory: which of the three it holds
	var c Contents
	for e, err := range snapfs.Walk(ctx, l, root, snapfs.WalkOptions{}) {
		if err != nil {
			if ctx.Err() != nil {
				return Contents{}, ctx.Err()
			}
			if c.Err == "" {
				c.Err = err.Error()
			}
			continue
		}
		switch n := e.Node; {
		case n.Name == "HEAD" && n.Type == tree.File:
			marks[path.Dir(e.Path)] |= head
		case n.Name == "objects" && n.Type == tree.Dir:
			marks[path.Dir(e.Path)] |= objects
		case n.Name == "refs" && n.Type == tree.Dir:
			marks[path.Dir(e.Path)] |= refs
		}
	}
	var dirs []string
	for d, m := range marks {
		if m == head|objects|refs {
			dirs = append(dirs, d)
		}
	}
	slices.Sort(dirs)
	for _, d := range dirs {
		inside := false
		for p := path.Dir(d); p != "." && p != "/" && !inside; p = path.Dir(p) {
			_, inside = slices.BinarySearch(dirs, p)
		}
		switch {
		case inside:
		case len(c.GitDirs) < MaxGitDirs:
			c.GitDirs = append(c.GitDirs, d)
		default:
			c.More++
		}
	}
	return c, nil
}
