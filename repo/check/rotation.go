package check

import (
	"slices"
	"time"

	"github.com/cairnbackup/cairn/repo/blob"
)

// PackAge is a pack with when it was last read and verified completely
// (zero: never).
type PackAge struct {
	ID       blob.ID
	Size     int64
	Verified time.Time
}

// Rotation chooses the packs one run of the scheduled verify job reads so
// that all data is verified at least once per cycle: every pack last
// verified before now-cycle (or never), and beyond those, least recently
// verified first, until at least fraction of all bytes is chosen. With
// fraction = the time between runs / cycle, each run does its share and
// nothing waits longer than a cycle.
func Rotation(packs []PackAge, now time.Time, cycle time.Duration, fraction float64) []blob.ID {
	sorted := slices.Clone(packs)
	slices.SortStableFunc(sorted, func(a, b PackAge) int { return a.Verified.Compare(b.Verified) })
	var total int64
	for _, p := range sorted {
		total += p.Size
	}
	want := int64(float64(total) * fraction)
	due := now.Add(-cycle)
	var out []blob.ID
	var got int64
	for _, p := range sorted {
		if got >= want && !p.Verified.Before(due) {
			break
		}
		out = append(out, p.ID)
		got += p.Size
	}
	return out
}
