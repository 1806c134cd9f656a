package repo

import (
	"context"

	"github.com/cairnbackup/cairn/repo/blob"
)

// ForgetUntilIndex runs DeleteSnapshot up to its crash point
// forget-before-index: marked, file deleted, index entry still there.
func (r *Repository) ForgetUntilIndex(ctx context.Context, id blob.ID) error {
	return r.deleteSnapshotFile(ctx, id)
}

// ForgetUntilDelete runs DeleteSnapshot up to its crash point
// forget-before-delete: marked as being forgotten, nothing deleted.
func (r *Repository) ForgetUntilDelete(id blob.ID) error {
	if err := r.idx.MarkForgetting(id, r.now()); err != nil {
		return err
	}
	return r.idx.Sync()
}
