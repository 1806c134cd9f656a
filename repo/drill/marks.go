package drill

import (
	"context"
	"fmt"
	"slices"
	"time"

	"github.com/cairnbackup/cairn/repo"
	"github.com/cairnbackup/cairn/repo/blob"
	"github.com/cairnbackup/cairn/repo/snapshot"
)

// Marks of a snapshot, from its newest drill.
const (
	MarkOK     = "drilled-ok"
	MarkFailed = "drilled-failed"
)

// Mark is what the drills of one snapshot say. A snapshot is immutable,
// so its mark is not stored with it: it is derived from the reports
// naming it, and the newest one decides (the latest Finished; of two
// that finished at the same instant, the smaller ID).
type Mark struct {
	Result string  `json:"result"` // MarkOK or MarkFailed: the newest drill's result
	Report blob.ID `json:"report"` // the newest report
	// Passed is the newest report that passed (the zero ID when none
	// did); it is Report when the newest drill passed.
	Passed blob.ID `json:"-"`
	// Newest is the newest report as the index keeps it (see [Recent]).
	Newest Saved `json:"-"`
}

// OK reports whether the newest drill passed.
func (m Mark) OK() bool { return m.Result == MarkOK }

// Marks returns the mark of every drilled snapshot. Drills of a replica
// (Report.Replica) are left out: they prove the replica. The marks come
// from the repository's index, which notes each report as it is saved
// ([Save]) and, once, every report in drills/ when it has not got them
// (a rebuilt index, or one of an older version): so Marks costs the same
// however many reports there are. Reports that cannot be read are left
// out and named in the error, which comes with the marks of the others
// (nil marks: nothing could be read).
func Marks(ctx context.Context, r Notes) (map[blob.ID]Mark, error) {
	partial, err := noteAll(ctx, r)
	if err != nil {
		return nil, err
	}
	marks := map[blob.ID]Mark{}
	err = r.SnapshotDrills(func(newest repo.DrillNote, passed *repo.DrillNote) error {
		s, err := summary(newest)
		if err != nil {
			return err
		}
		m := Mark{Result: MarkFailed, Report: newest.Report, Newest: s}
		if newest.OK {
			m.Result = MarkOK
		}
		if passed != nil {
			m.Passed = passed.Report
		}
		marks[newest.Snapshot] = m
		return nil
	})
	if err != nil {
		return nil, fmt.Errorf("drill reports: %w", err)
	}
	return marks, partial
}

// Proof names a proven restore point: a snapshot that a drill restored
// and checked.
type Proof struct {
	Index int  // in the list given to Proven
	Mark  Mark // its drills; Mark.Passed is the report that proved it
}

// Reason says why a proven snapshot is kept: "drilled-ok <report>", and
// for a snapshot whose later drill failed "drilled-ok <report> (drill
// <report> since failed)".
func (p Proof) Reason() string {
	s := MarkOK + " " + p.Mark.Passed.Short()
	if !p.Mark.OK() {
		s += " (drill " + p.Mark.Report.Short() + " since failed)"
	}
	return s
}

// Proven returns the proven restore points among list, the snapshots of
// one group newest first: the newest n whose newest drill passed. While
// fewer than n have, the newest of those that passed a drill and failed
// a later one make up the number: a failed drill does not release a
// snapshot until another snapshot of the group has passed one, so the
// group never loses its last snapshot that restored. Snapshots that are
// future-dated at now are left out (the caller keeps them anyway); n <= 0
// gives none.
func Proven(list []snapshot.Entry, marks map[blob.ID]Mark, n int, now time.Time) []Proof {
	var out, fallback []Proof
	for i, e := range list {
		if len(out) >= n {
			break
		}
		m, ok := marks[e.ID]
		if !ok || m.Passed.IsZero() || snapshot.FutureDated(e.Time, now) {
			continue
		}
		if m.OK() {
			out = append(out, Proof{Index: i, Mark: m})
		} else if len(fallback) < n {
			fallback = append(fallback, Proof{Index: i, Mark: m})
		}
	}
	if len(out) < n {
		out = append(out, fallback[:min(n-len(out), len(fallback))]...)
		slices.SortFunc(out, func(a, b Proof) int { return a.Index - b.Index })
	}
	return out
}
