package repo

import "github.com/cairnbackup/cairn/repo/blob"

// CacheSnapshotRecord replaces the index's cached record of snapshot id,
// as damage to the index would.
func (r *Repository) CacheSnapshotRecord(id blob.ID, record []byte) error {
	return r.idx.AddSnapshot(id, record)
}
