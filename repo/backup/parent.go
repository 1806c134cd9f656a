package backup

import (
	"slices"
	"time"

	"github.com/cairnbackup/cairn/repo/snapshot"
)

// ParentQuery says which snapshot a new one is compared with.
type ParentQuery struct {
	// Node, Plan and Paths are the new snapshot's (Paths as it records
	// them, Source.Recorded). Plan "" is a plan of its own: snapshots
	// made without a plan.
	Node, Plan string
	Paths      []string
	// Ref, when set, names the parent instead: "latest" or an ID prefix
	// of at least 4 hex digits that no other snapshot of the list
	// shares (snapshot.Find).
	Ref string
	// ForceRead without Ref means no parent: every file is read.
	ForceRead bool
}

// Wanted reports whether q asks for a parent at all (not ForceRead
// alone): a caller need not list snapshots otherwise.
func (q ParentQuery) Wanted() bool { return q.Ref != "" || !q.ForceRead }

// FindParent picks the parent of a new snapshot among list (sorted by
// snapshot.Sort): the one q.Ref names, or the latest (snapshot.Latest)
// of the same node, plan and paths; nil when there is none. It is the
// one parent selection: cairn backup passes the repository's snapshots,
// cairn push those the appliance lists for its node, the appliance a
// node's own for the node's push --stdin or --tar.
func FindParent(list []snapshot.Entry, q ParentQuery, now time.Time) (*snapshot.Entry, error) {
	if q.Ref != "" {
		e, _, err := snapshot.Find(list, q.Ref, "", now)
		if err != nil {
			return nil, err
		}
		return &e, nil
	}
	if !q.Wanted() {
		return nil, nil
	}
	same := make([]snapshot.Entry, 0, len(list))
	for _, e := range list {
		if e.Node == q.Node && e.Plan == q.Plan && slices.Equal(e.Paths, q.Paths) {
			same = append(same, e)
		}
	}
	if i := snapshot.Latest(same, now); i >= 0 {
		return &same[i], nil
	}
	return nil, nil
}
