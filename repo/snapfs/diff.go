package snapfs

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"iter"
	"path"
	"slices"
	"strings"

	"github.com/cairnbackup/cairn/repo/blob"
	"github.com/cairnbackup/cairn/repo/tree"
)

// ChangeKind says how an entry differs between two trees.
type ChangeKind uint8

// Kinds of [Change].
const (
	// Added: the entry is only in the new tree.
	Added ChangeKind = iota + 1
	// Removed: the entry is only in the old tree.
	Removed
	// Modified: the type changed, or a file's contents differ (size or
	// SHA-256, or the chunk list when a hash is unknown).
	Modified
	// Metadata: same type and contents, but the mode, owner (IDs or
	// names), modification time, extended attributes, symlink target or
	// device number changed.
	Metadata
)

// String names the kind: "added", "removed", "modified" or "metadata".
func (k ChangeKind) String() string {
	switch k {
	case Added:
		return "added"
	case Removed:
		return "removed"
	case Modified:
		return "modified"
	case Metadata:
		return "metadata"
	}
	return fmt.Sprintf("changekind(%d)", uint8(k))
}

// Change is one difference between two trees, reported by [Diff].
type Change struct {
	// Path is the entry's path relative to the compared trees,
	// slash-separated, with no leading "/".
	Path string
	// Kind says what changed.
	Kind ChangeKind
	// Old is the entry in the old tree (nil when Added); New the entry
	// in the new tree (nil when Removed). They point into trees decoded
	// for this diff only, so the caller may keep them.
	Old, New *tree.Node
}

// Diff compares the trees a (old) and b (new) and yields every entry that
// differs, depth first and in name order, a directory before its
// contents. An added or removed directory is yielded together with
// everything below it; so are the contents of a directory that became
// something else, or the reverse (the entry itself as Modified).
//
// Directories are compared by their metadata (see [Compare]); a
// directory whose subtree ID is the same on both sides is not loaded,
// so unchanged parts of two snapshots cost nothing. The times a backup
// cannot help changing (access and change times), and inode, device and
// link counts, are not compared.
//
// A tree that cannot be loaded is yielded as an error naming its
// directory, and the comparison goes on with the rest. Memory: one
// decoded tree per directory level on each side.
func Diff(ctx context.Context, l BlobLoader, a, b blob.ID) iter.Seq2[Change, error] {
	return func(yield func(Change, error) bool) {
		d := &differ{ctx: ctx, l: l, yield: yield}
		d.trees("", a, b)
	}
}

// Compare reports how the entry o (old) differs from n (new): Modified
// when the types differ or a file's contents do, Metadata when only what
// [Metadata] lists does, and changed false when neither. A directory's
// contents are not compared, only its own metadata.
func Compare(o, n *tree.Node) (kind ChangeKind, changed bool) {
	switch {
	case o.Type != n.Type:
		return Modified, true
	case o.Type == tree.File && !sameContents(o, n):
		return Modified, true
	case !sameMetadata(o, n):
		return Metadata, true
	}
	return 0, false
}

// sameContents compares two file nodes by size and whole-file SHA-256;
// when either hash is unknown (zero), by their chunk lists.
func sameContents(o, n *tree.Node) bool {
	if o.Size != n.Size {
		return false
	}
	if !o.FileHash.IsZero() && !n.FileHash.IsZero() {
		return o.FileHash == n.FileHash
	}
	return slices.Equal(o.Content, n.Content)
}

func sameMetadata(o, n *tree.Node) bool {
	return o.Mode == n.Mode && o.UID == n.UID && o.GID == n.GID &&
		o.User == n.User && o.Group == n.Group && o.MTime == n.MTime &&
		o.LinkTarget == n.LinkTarget && o.Rdev == n.Rdev &&
		slices.EqualFunc(o.Xattrs, n.Xattrs, func(x, y tree.Xattr) bool {
			return x.Name == y.Name && bytes.Equal(x.Value, y.Value)
		})
}

type differ struct {
	ctx   context.Context
	l     BlobLoader
	yield func(Change, error) bool
}

// trees compares the listings a and b of directory dir. It returns false
// when the walk must stop.
func (d *differ) trees(dir string, a, b blob.ID) bool {
	if a == b {
		return true
	}
	if err := d.ctx.Err(); err != nil {
		d.yield(Change{Path: dir}, err)
		return false
	}
	ta, err := LoadTree(d.ctx, d.l, a)
	if err != nil {
		return d.yield(Change{Path: dir}, fmt.Errorf("%s: old tree: %w", displayPath(dir), err))
	}
	tb, err := LoadTree(d.ctx, d.l, b)
	if err != nil {
		return d.yield(Change{Path: dir}, fmt.Errorf("%s: new tree: %w", displayPath(dir), err))
	}
	i, j := 0, 0
	for i < len(ta.Nodes) || j < len(tb.Nodes) {
		var c int
		switch {
		case i == len(ta.Nodes):
			c = 1
		case j == len(tb.Nodes):
			c = -1
		default:
			c = strings.Compare(ta.Nodes[i].Name, tb.Nodes[j].Name)
		}
		var ok bool
		switch {
		case c < 0:
			o := &ta.Nodes[i]
			i++
			ok = d.one(path.Join(dir, o.Name), o, Removed)
		case c > 0:
			n := &tb.Nodes[j]
			j++
			ok = d.one(path.Join(dir, n.Name), n, Added)
		default:
			o, n := &ta.Nodes[i], &tb.Nodes[j]
			i++
			j++
			ok = d.both(path.Join(dir, o.Name), o, n)
		}
		if !ok {
			return false
		}
	}
	return true
}

// both compares an entry present on both sides.
func (d *differ) both(p string, o, n *tree.Node) bool {
	if kind, changed := Compare(o, n); changed {
		if !d.yield(Change{Path: p, Kind: kind, Old: o, New: n}, nil) {
			return false
		}
	}
	switch {
	case o.Type == tree.Dir && n.Type == tree.Dir:
		return d.trees(p, o.Subtree, n.Subtree)
	case o.Type == tree.Dir:
		return d.all(p, o.Subtree, Removed)
	case n.Type == tree.Dir:
		return d.all(p, n.Subtree, Added)
	}
	return true
}

// one yields an entry present on one side only, and for a directory
// everything below it.
func (d *differ) one(p string, n *tree.Node, kind ChangeKind) bool {
	c := Change{Path: p, Kind: kind}
	if kind == Added {
		c.New = n
	} else {
		c.Old = n
	}
	if !d.yield(c, nil) {
		return false
	}
	if n.Type == tree.Dir {
		return d.all(p, n.Subtree, kind)
	}
	return true
}

// all yields everything below directory dir (tree id) as kind, walking
// with [Walk].
func (d *differ) all(dir string, id blob.ID, kind ChangeKind) bool {
	for e, err := range Walk(d.ctx, d.l, id, WalkOptions{}) {
		p := path.Join(dir, e.Path)
		var te *TreeError
		switch {
		case errors.As(err, &te) && d.ctx.Err() == nil:
			if !d.yield(Change{Path: p}, fmt.Errorf("%s: %w", displayPath(p), te.Err)) {
				return false
			}
			continue
		case err != nil:
			d.yield(Change{Path: p}, err)
			return false
		}
		c := Change{Path: p, Kind: kind}
		if kind == Added {
			c.New = e.Node
		} else {
			c.Old = e.Node
		}
		if !d.yield(c, nil) {
			return false
		}
	}
	return true
}
