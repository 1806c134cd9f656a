package repo

import (
	"context"

	"github.com/cairnbackup/cairn/repo/blob"
)

// CacheSnapshotRecord replaces the index's cached record of snapshot id,
// as damage to the index would.
func (r *Repository) CacheSnapshotRecord(id blob.ID, record []byte) error {
	return r.idx.AddSnapshot(id, record)
}

// RefreshLock rewrites the heartbeat of an object-store repository's
// lock now, as its heartbeat does every LockHeartbeat.
func (r *Repository) RefreshLock(ctx context.Context) error {
	return r.owner.refresh(ctx)
}
