package drill

import (
	"context"

	"github.com/cairnbackup/cairn/repo/blob"
	"github.com/cairnbackup/cairn/repo/snapfs"
	"github.com/cairnbackup/cairn/repo/snapshot"
)

// Source is what [Run] reads: a snapshot's record and the blobs under
// it, each authenticated and re-hashed. *repo.Repository satisfies it,
// and so does a replica's repository (repo.OpenReplica), which a
// replica's drill reads from alone.
type Source interface {
	snapfs.BlobLoader
	LoadSnapshot(ctx context.Context, id blob.ID) (*snapshot.Snapshot, error)
}
