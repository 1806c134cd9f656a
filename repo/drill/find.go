package drill

import (
	"context"
	"fmt"

	"github.com/cairnbackup/cairn/repo"
	"github.com/cairnbackup/cairn/repo/blob"
	"github.com/cairnbackup/cairn/repo/storage"
)

// Find returns the report ref names: an ID prefix (blob.MatchPrefix), or
// "latest" for the newest report.
func Find(ctx context.Context, r *repo.Repository, ref string) (Saved, error) {
	if ref == "latest" {
		list, err := Recent(ctx, r)
		if len(list) == 0 {
			if err != nil {
				return Saved{}, err
			}
			return Saved{}, fmt.Errorf("no drill report: %w", blob.ErrNotFound)
		}
		rep, err := Load(ctx, r, list[0].ID)
		if err != nil {
			return Saved{}, err
		}
		return Saved{ID: list[0].ID, Report: rep}, nil
	}
	ids, err := r.ListRecords(ctx, storage.Drills)
	if err != nil {
		return Saved{}, fmt.Errorf("drill reports: %w", err)
	}
	i, err := blob.MatchPrefix("drill report", ref, ids)
	if err != nil {
		return Saved{}, err
	}
	rep, err := Load(ctx, r, ids[i])
	if err != nil {
		return Saved{}, err
	}
	return Saved{ID: ids[i], Report: rep}, nil
}
