package drill

import (
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"slices"
	"syscall"

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
// whose SHA-256 is the ID), notes it in the repository's index (see
// [Marks]) and returns the ID. This is the only thing a drill writes
// into the repository.
func Save(ctx context.Context, r Recorder, rep *Report) (blob.ID, error) {
	b, err := json.Marshal(rep)
	if err != nil {
		return blob.ID{}, fmt.Errorf("drill report: %w", err)
	}
	id, err := r.PutRecord(ctx, storage.Drills, b)
	if err != nil {
		return blob.ID{}, fmt.Errorf("drill report: %w", err)
	}
	n, err := note(Saved{ID: id, Report: rep})
	if err == nil {
		err = r.NoteDrills([]repo.DrillNote{n}, false)
	}
	if err != nil {
		return blob.ID{}, fmt.Errorf("drill report %s stored, but not noted in the index (cairn repair index notes it): %w", id.Short(), err)
	}
	return id, nil
}

// note is what the index keeps of a report: the report without its
// probes, configured probe commands and warnings.
func note(s Saved) (repo.DrillNote, error) {
	sum := *s.Report
	sum.Probes, sum.Configured, sum.Warnings = nil, nil, nil
	b, err := json.Marshal(Saved{ID: s.ID, Report: &sum})
	if err != nil {
		return repo.DrillNote{}, fmt.Errorf("drill report %s: %w", s.ID.Short(), err)
	}
	return repo.DrillNote{Report: s.ID, Snapshot: s.Snapshot, Replica: s.Replica, Node: s.Node, Plan: s.Plan,
		Finished: s.Finished, OK: s.OK(), Summary: b}, nil
}

// summary decodes what the index keeps of a report.
func summary(n repo.DrillNote) (Saved, error) {
	s := Saved{Report: &Report{}}
	if err := json.Unmarshal(n.Summary, &s); err != nil || s.ID != n.Report {
		return Saved{}, fmt.Errorf("drill report %s: the index's summary does not decode (cairn repair index rebuilds it): %w", n.Report.Short(), blob.ErrCorrupt)
	}
	return s, nil
}

// noteAll notes every report in the index once, when the index has not
// got them (a new or rebuilt index, or one of an older version). partial
// names reports that could not be read: the others are noted, and the
// next call tries again; err is a failure to list or to note.
func noteAll(ctx context.Context, r Notes) (partial, err error) {
	if ok, err := r.DrillsNoted(); err != nil || ok {
		return nil, err
	}
	list, partial := List(ctx, r)
	if list == nil && partial != nil {
		return nil, partial
	}
	notes := make([]repo.DrillNote, 0, len(list))
	for _, s := range list {
		n, err := note(s)
		if err != nil {
			return nil, err
		}
		notes = append(notes, n)
	}
	if err := r.NoteDrills(notes, partial == nil); err != nil {
		if len(notes) == 0 && errors.Is(err, syscall.ENOSPC) {
			// No report to note: the index already holds all there is,
			// and a read on a full disk must not fail for a marker that
			// can wait for room (the next call writes it).
			return partial, nil
		}
		return nil, err
	}
	return partial, nil
}

// Recent returns the newest reports of each replica, node and plan
// (repo.DrillsKept of each), newest first as [List] orders them, as the
// index keeps them: without their probes, configured probe commands and
// warnings ([Load] reads a whole report). It reads no report unless the
// index has not noted them yet. Reports that cannot be read are left out
// and named in the error, which comes with the others.
func Recent(ctx context.Context, r *repo.Repository) ([]Saved, error) {
	partial, err := noteAll(ctx, r)
	if err != nil {
		return nil, err
	}
	var list []Saved
	err = r.RecentDrills(func(n repo.DrillNote) error {
		s, err := summary(n)
		list = append(list, s)
		return err
	})
	if err != nil {
		return nil, fmt.Errorf("drill reports: %w", err)
	}
	sortNewest(list)
	return list, partial
}

// Load reads the report drills/<id>.
func Load(ctx context.Context, r Records, id blob.ID) (*Report, error) {
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
func List(ctx context.Context, r Records) ([]Saved, error) {
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
	sortNewest(list)
	return list, errors.Join(errs...)
}

// sortNewest sorts list newest first: by Finished, then ID.
func sortNewest(list []Saved) {
	slices.SortFunc(list, func(a, b Saved) int {
		if c := b.Finished.Compare(a.Finished); c != 0 {
			return c
		}
		return bytes.Compare(a.ID[:], b.ID[:])
	})
}
