package drill

import (
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"slices"

	"github.com/cairnbackup/cairn/repo"
	"github.com/cairnbackup/cairn/repo/blob"
	"github.com/cairnbackup/cairn/repo/storage"
)

// Saved is a stored report with its ID.
type Saved struct {
	ID blob.ID `json:"id"`
	*Report
}

// Save stores rep as a sealed record drills/<id> (its JSON encoding,
// whose SHA-256 is the ID) and returns the ID. This is the only thing a
// drill writes into the repository.
func Save(ctx context.Context, r *repo.Repository, rep *Report) (blob.ID, error) {
	b, err := json.Marshal(rep)
	if err != nil {
		return blob.ID{}, fmt.Errorf("drill report: %w", err)
	}
	id, err := r.PutRecord(ctx, storage.Drills, b)
	if err != nil {
		return blob.ID{}, fmt.Errorf("drill report: %w", err)
	}
	return id, nil
}

// Load reads the report drills/<id>.
func Load(ctx context.Context, r *repo.Repository, id blob.ID) (*Report, error) {
	b, err := r.GetRecord(ctx, storage.Drills, id)
	if err != nil {
		return nil, fmt.Errorf("drill report: %w", err)
	}
	return decodeReport(b, id)
}

// decodeReport parses a report's authenticated contents.
func decodeReport(b []byte, id blob.ID) (*Report, error) {
	var rep Report
	if err := json.Unmarshal(b, &rep); err != nil {
		return nil, fmt.Errorf("drill report %s: %w: %w", id.Short(), err, blob.ErrCorrupt)
	}
	if rep.Version != Version {
		return nil, fmt.Errorf("drill report %s: version %d is not supported", id.Short(), rep.Version)
	}
	return &rep, nil
}

// List returns every stored report, newest first (by Finished, then
// ID). Reports that cannot be read are left out and named in the error,
// which comes with the reports that could be read.
func List(ctx context.Context, r *repo.Repository) ([]Saved, error) {
	ids, err := r.ListRecords(ctx, storage.Drills)
	if err != nil {
		return nil, fmt.Errorf("drill reports: %w", err)
	}
	var list []Saved
	var errs []error
	for _, id := range ids {
		rep, err := Load(ctx, r, id)
		if err != nil {
			if ctx.Err() != nil {
				return nil, ctx.Err()
			}
			errs = append(errs, err)
			continue
		}
		list = append(list, Saved{ID: id, Report: rep})
	}
	slices.SortFunc(list, func(a, b Saved) int {
		if c := b.Finished.Compare(a.Finished); c != 0 {
			return c
		}
		return bytes.Compare(a.ID[:], b.ID[:])
	})
	return list, errors.Join(errs...)
}

// Latest returns, for each snapshot drilled, its newest report.
func Latest(list []Saved) map[blob.ID]Saved {
	m := map[blob.ID]Saved{}
	for _, s := range list {
		if cur, ok := m[s.Snapshot]; !ok || s.Finished.After(cur.Finished) ||
			s.Finished.Equal(cur.Finished) && bytes.Compare(s.ID[:], cur.ID[:]) < 0 {
			m[s.Snapshot] = s
		}
	}
	return m
}
