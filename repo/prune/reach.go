package prune

import (
	"context"
	"fmt"

	"github.com/cairnbackup/cairn/repo/blob"
	"github.com/cairnbackup/cairn/repo/snapfs"
	"github.com/cairnbackup/cairn/repo/tree"
)

// TreeError is a tree [Reach] could not load or decode.
type TreeError struct {
	Tree blob.ID
	Err  error
}

func (e *TreeError) Error() string {
	return fmt.Sprintf("tree %s cannot be read: %v", e.Tree.Short(), e.Err)
}
func (e *TreeError) Unwrap() error { return e.Err }

// Reach walks the trees reachable from root, each once, and calls fn
// with the handle of every tree (before the tree is loaded) and of every
// data blob a file lists (holes, which have no blob, are left out). seen
// holds the IDs of the trees walked so far and may be shared between
// calls: the snapshots of a repository share most of their trees, and
// each is then walked once among them all. An error from fn ends the
// walk and is returned; a tree that cannot be loaded or decoded ends it
// with a *TreeError. Prune's mark and replication (which packs a
// snapshot needs) are its callers: the one walk of "what a snapshot
// uses".
//
// Memory: seen (about 40 bytes per distinct tree) and one decoded tree
// per level of the directory being walked.
func Reach(ctx context.Context, l snapfs.BlobLoader, root blob.ID, seen map[blob.ID]struct{}, fn func(blob.Handle) error) error {
	if _, ok := seen[root]; ok {
		return nil
	}
	seen[root] = struct{}{}
	if err := ctx.Err(); err != nil {
		return err
	}
	if err := fn(blob.Handle{ID: root, Type: blob.Tree}); err != nil {
		return err
	}
	t, err := snapfs.LoadTree(ctx, l, root)
	if err != nil {
		if ctx.Err() != nil {
			return ctx.Err()
		}
		return &TreeError{Tree: root, Err: err}
	}
	for _, n := range t.Nodes {
		switch n.Type {
		case tree.Dir:
			if err := Reach(ctx, l, n.Subtree, seen, fn); err != nil {
				return err
			}
		case tree.File:
			for _, c := range n.Content {
				if !c.ID.IsZero() {
					if err := fn(blob.Handle{ID: c.ID, Type: blob.Data}); err != nil {
						return err
					}
				}
			}
		}
	}
	return nil
}
