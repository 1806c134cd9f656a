package repo

import (
	"time"

	"github.com/cairnbackup/cairn/repo/blob"
	"github.com/cairnbackup/cairn/repo/internal/index"
)

// DrillsKept is how many of the newest drill reports of each replica,
// node and plan the index keeps for status, the metrics and the status
// page ([Repository.RecentDrills]); every report stays in drills/.
const DrillsKept = 100

// DrillNote is what the index keeps of one drill report (drills/<id>),
// so that what shows the newest drills does not read every report.
type DrillNote struct {
	Report   blob.ID
	Snapshot blob.ID
	// Replica, Node and Plan group the notes: the index keeps the
	// newest DrillsKept of each group. A note with a Replica is not its
	// snapshot's: it proves the replica.
	Replica, Node, Plan string
	Finished            time.Time
	OK                  bool
	Summary             []byte // what the writer keeps of the report
}

func (n DrillNote) index() index.DrillNote {
	return index.DrillNote{Report: n.Report, Snapshot: n.Snapshot, Group: n.Replica + "\x00" + n.Node + "\x00" + n.Plan,
		Finished: n.Finished, OK: n.OK, Mark: n.Replica == "", Value: n.Summary}
}

func fromIndexNote(n index.DrillNote) DrillNote {
	return DrillNote{Report: n.Report, Snapshot: n.Snapshot, Finished: n.Finished, OK: n.OK, Summary: n.Value}
}

// NoteDrills notes reports in the index. Each becomes its snapshot's
// newest (and, if it passed, newest passed) report unless a newer one
// was noted, where newer is the later Finished and, of two that finished
// at the same instant, the smaller ID; and each joins its group's
// newest [DrillsKept]. With complete, the caller noted every report in
// drills/: [Repository.DrillsNoted] says so from then on, until the
// index is rebuilt. Noting a report twice changes nothing.
//
// On a repository opened with [Options.ReadOnly] the notes go to an
// index in memory, which answers DrillsNoted, SnapshotDrills and
// RecentDrills from then on until Close: the index on disk is noted by
// the next process that opens it for writing.
func (r *Repository) NoteDrills(notes []DrillNote, complete bool) error {
	in := make([]index.DrillNote, len(notes))
	for i, n := range notes {
		in[i] = n.index()
	}
	idx := r.idx
	if idx.ReadOnly() {
		r.notesMu.Lock()
		defer r.notesMu.Unlock()
		if r.notes == nil {
			m, err := index.OpenMemory()
			if err != nil {
				return err
			}
			r.notes = m
		}
		idx = r.notes
	}
	return idx.AddDrills(in, DrillsKept, complete)
}

// drillIndex is where the drill notes are read: the index, or what a
// read-only open noted in memory.
func (r *Repository) drillIndex() *index.Index {
	r.notesMu.Lock()
	defer r.notesMu.Unlock()
	if r.notes != nil {
		return r.notes
	}
	return r.idx
}

// DrillsNoted reports whether every report in drills/ was noted: false
// for a new or rebuilt index, or one written by a version that did not
// note them.
func (r *Repository) DrillsNoted() (bool, error) { return r.drillIndex().DrillsNoted() }

// SnapshotDrills calls fn with each drilled snapshot's newest noted
// report and its newest that passed (nil when none did). Replicas'
// reports are not among them.
func (r *Repository) SnapshotDrills(fn func(newest DrillNote, passed *DrillNote) error) error {
	return r.drillIndex().SnapshotDrills(func(newest index.DrillNote, passed *index.DrillNote) error {
		var p *DrillNote
		if passed != nil {
			n := fromIndexNote(*passed)
			p = &n
		}
		return fn(fromIndexNote(newest), p)
	})
}

// RecentDrills calls fn with the newest [DrillsKept] noted reports of
// each replica, node and plan, in no particular order. Only Report,
// Finished, OK and Summary are set.
func (r *Repository) RecentDrills(fn func(DrillNote) error) error {
	return r.drillIndex().RecentDrills(func(n index.DrillNote) error { return fn(fromIndexNote(n)) })
}
