package prune

import (
	"context"
	"errors"
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
// with the handle of every tree (before the walk enters it) and of every
// data blob a file lists (holes, which have no blob, are left out). seen
// holds the IDs of the trees walked so far and may be shared between
// calls: the snapshots of a repository share most of their trees, and
// each is then walked once among them all. An error from fn ends the
// walk and is returned; a tree that cannot be loaded or decoded ends it
// with a *TreeError. Prune's mark and replication (which packs a
// snapshot needs) are its callers. It is [snapfs.Walk] with
// [snapfs.WalkOptions.Seen] (trees read ahead in parallel; l must be
// safe for concurrent use).
//
// Memory: seen (about 40 bytes per distinct tree) and what
// [snapfs.Walk] holds.
func Reach(ctx context.Context, l snapfs.BlobLoader, root blob.ID, seen map[blob.ID]struct{}, fn func(blob.Handle) error) error {
	if _, ok := seen[root]; ok {
		return nil
	}
	if err := fn(blob.Handle{ID: root, Type: blob.Tree}); err != nil {
		return err
	}
	for e, err := range snapfs.Walk(ctx, l, root, snapfs.WalkOptions{Seen: seen}) {
		if err != nil {
			if ctx.Err() != nil {
				return ctx.Err()
			}
			var te *snapfs.TreeError
			if errors.As(err, &te) {
				return &TreeError{Tree: te.Tree, Err: te.Err}
			}
			return err
		}
		switch n := e.Node; n.Type {
		case tree.Dir:
			if !e.Seen {
				if err := fn(blob.Handle{ID: n.Subtree, Type: blob.Tree}); err != nil {
					return err
				}
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
