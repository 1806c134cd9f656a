// Package stats sums what snapshots hold for cairn stats: their files'
// logical size and the distinct chunks their trees reference, reading
// each distinct tree once through a snapfs.BlobLoader.
package stats

import (
	"context"
	"fmt"

	"github.com/cairnbackup/cairn/repo/blob"
	"github.com/cairnbackup/cairn/repo/snapfs"
	"github.com/cairnbackup/cairn/repo/snapshot"
	"github.com/cairnbackup/cairn/repo/tree"
)

// Usage walks snapshot trees, each distinct tree once, summing file sizes
// per tree and collecting the distinct data blobs referenced.
// Memory: two map entries per distinct tree, and with chunks set one per
// distinct chunk (about 100 bytes each, map overhead included).
type Usage struct {
	l      snapfs.BlobLoader
	trees  map[blob.ID]uint64   // tree → total size of the files below it
	seen   map[blob.ID]struct{} // the trees walked
	chunks map[blob.ID]struct{}
	unique uint64 // plaintext bytes of chunks
}

// Logical returns the size of sn's files: its summary's figure when it
// has one, otherwise the sum over its tree. With walk set, it reads the
// tree in any case, to collect the chunks.
func (u *Usage) Logical(ctx context.Context, sn snapshot.Entry, walk bool) (uint64, error) {
	if sn.Summary.Bytes > 0 && !walk {
		return sn.Summary.Bytes, nil
	}
	size, err := u.tree(ctx, sn.Tree)
	if err != nil {
		return 0, fmt.Errorf("snapshot %s: %w", sn.ID.Short(), err)
	}
	if sn.Summary.Bytes > 0 {
		return sn.Summary.Bytes, nil
	}
	return size, nil
}

// tree returns the total size of the files below tree root, walking
// with [snapfs.Walk] the trees not walked before and summing each
// directory at its end.
func (u *Usage) tree(ctx context.Context, root blob.ID) (uint64, error) {
	if size, ok := u.trees[root]; ok {
		return size, nil
	}
	sizes := []uint64{0} // per directory being walked, the root first
	for e, err := range snapfs.Walk(ctx, u.l, root, snapfs.WalkOptions{Seen: u.seen, Leave: true}) {
		if err != nil {
			return 0, err // a *snapfs.TreeError names the directory
		}
		n := e.Node
		top := len(sizes) - 1
		switch {
		case e.Leave: // the root's last
			u.trees[e.Tree] = sizes[top]
			if sizes = sizes[:top]; top > 0 {
				sizes[top-1] += u.trees[e.Tree]
			}
		case n.Type == tree.Dir && e.Seen:
			sizes[top] += u.trees[n.Subtree]
		case n.Type == tree.Dir:
			sizes = append(sizes, 0)
		case n.Type == tree.File:
			sizes[top] += n.Size
			if u.chunks == nil {
				continue
			}
			for _, c := range n.Content {
				if _, seen := u.chunks[c.ID]; !seen && !c.ID.IsZero() {
					u.chunks[c.ID] = struct{}{}
					u.unique += c.Size
				}
			}
		}
	}
	return u.trees[root], nil
}

// NewUsage returns a Usage reading trees through l; with chunks set it
// collects the distinct chunks the trees reference (Unique).
func NewUsage(l snapfs.BlobLoader, chunks bool) *Usage {
	u := &Usage{l: l, trees: map[blob.ID]uint64{}, seen: map[blob.ID]struct{}{}}
	if chunks {
		u.chunks = map[blob.ID]struct{}{}
	}
	return u
}

// Unique returns how many distinct chunks the trees walked reference and
// their plaintext bytes.
func (u *Usage) Unique() (chunks, bytes uint64) { return uint64(len(u.chunks)), u.unique }
