// Package snapfs is the read-only view of a snapshot's trees shared by
// restore and verify, check, drills, prune's mark, status, backup's
// parent trees, the FUSE mount and the commands that browse snapshots
// (ls, find, diff, dump, stats). It reads through a [BlobLoader], the one
// seam between storage and readers, and never sees the repository
// itself.
//
// # The one walk
//
// [Walk] is the one walk of snapshot trees: ls, diff, find, stats,
// status, drills (sampling), check, prune's mark and replication
// (prune.Reach), restore, verify and dump use it. It visits each tree
// once across walks when asked ([WalkOptions.Seen]), lets the caller
// leave directories out before they are read ([WalkOptions.Skip]) or
// when their entry comes ([Entry.SkipDir]), ends each directory with an
// entry of its own ([WalkOptions.Leave]) and reads trees ahead in
// parallel. Only the wire server's commit check walks trees itself
// (repo/wire/trust.go): it walks node-sent trees with its own heap
// stack and a trust state per tree that can be raised on a second
// visit.
//
// # Invariants
//
// Every tree it returns was authenticated, re-hashed and decoded by
// [tree.Decode], which rejects hostile names ("", ".", "..", "/", NUL),
// unsorted and duplicate entries. Paths it builds are therefore always
// clean, relative and inside the snapshot.
//
// # Memory
//
// One decoded tree per directory level being walked, and in [Walk] at
// most 4×[WalkOptions.ReadAhead] trees read ahead.
package snapfs

import (
	"context"
	"fmt"
	"path"
	"slices"
	"strings"

	"github.com/cairnbackup/cairn/repo/blob"
	"github.com/cairnbackup/cairn/repo/tree"
)

// BlobLoader returns the verified plaintext of a blob. *repo.Repository
// satisfies it.
type BlobLoader interface {
	LoadBlob(ctx context.Context, h blob.Handle, buf []byte) ([]byte, error)
}

// UnhashedLoader is a [BlobLoader] that can also load a data blob
// without re-hashing it: authenticated (AEAD) and decompressed to the
// length its index entry records, but not checked against its ID. It is
// for a reader that hashes every byte it gets itself against a hash it
// trusts, and checks each blob with LoadBlob when that hash does not
// match (restore: [File.Unhashed]). Only a loader that authenticates
// what it reads with the repository's key offers it (*repo.Repository,
// and [Cache] over one); a node restoring from an appliance keeps
// hashing every blob it receives.
type UnhashedLoader interface {
	BlobLoader
	LoadBlobUnhashed(ctx context.Context, h blob.Handle, buf []byte) ([]byte, error)
}

// BatchLoader is a [BlobLoader] that also loads many blobs together,
// cheaper than one at a time where every read is a request with a round
// trip (an object store): blobs of one pack that lie close together come
// with one request. *repo.Repository satisfies it.
type BatchLoader interface {
	BlobLoader
	// BatchReads reports whether LoadBlobs is cheaper than LoadBlob
	// blob by blob.
	BatchReads() bool
	// LoadBlobs loads the blobs hs and calls fn once for each, from
	// several goroutines at once, with its verified plaintext (which fn
	// may keep) or the error LoadBlob would give. It returns when every
	// call has returned; once ctx ends it returns ctx's error, and blobs
	// not loaded by then get no call.
	LoadBlobs(ctx context.Context, hs []blob.Handle, fn func(i int, data []byte, err error)) error
}

// UnhashedBatchLoader is a [BatchLoader] that also loads data blobs in
// batches without re-hashing them, as [UnhashedLoader] does one at a
// time. *repo.Repository satisfies it.
type UnhashedBatchLoader interface {
	BatchLoader
	LoadBlobsUnhashed(ctx context.Context, hs []blob.Handle, fn func(i int, data []byte, err error)) error
}

// LoadTree loads and decodes tree id.
func LoadTree(ctx context.Context, l BlobLoader, id blob.ID) (*tree.Tree, error) {
	data, err := l.LoadBlob(ctx, blob.Handle{ID: id, Type: blob.Tree}, nil)
	if err != nil {
		return nil, err
	}
	t, err := tree.Decode(data)
	if err != nil {
		return nil, fmt.Errorf("tree %s: %w", id.Short(), err)
	}
	return t, nil
}

// Lookup finds the node at p (slash-separated, relative to the root tree;
// "" or "/" is the root itself, returned as a synthetic directory node
// with Subtree root).
func Lookup(ctx context.Context, l BlobLoader, root blob.ID, p string) (tree.Node, error) {
	node := tree.Node{Type: tree.Dir, Subtree: root, Mode: 0o755}
	p = strings.Trim(path.Clean("/"+p), "/")
	if p == "" {
		return node, nil
	}
	for i, name := range strings.Split(p, "/") {
		if node.Type != tree.Dir {
			return tree.Node{}, fmt.Errorf("%s: not a directory: %w", strings.Join(strings.Split(p, "/")[:i], "/"), blob.ErrNotFound)
		}
		t, err := LoadTree(ctx, l, node.Subtree)
		if err != nil {
			return tree.Node{}, err
		}
		j, ok := slices.BinarySearchFunc(t.Nodes, name, func(n tree.Node, name string) int { return strings.Compare(n.Name, name) })
		if !ok {
			return tree.Node{}, fmt.Errorf("%s: no such file or directory in the snapshot: %w", p, blob.ErrNotFound)
		}
		node = t.Nodes[j]
	}
	return node, nil
}

func displayPath(p string) string {
	if p == "" {
		return "/"
	}
	return "/" + p
}
