package check

import (
	"slices"
	"testing"
	"time"

	"github.com/cairnbackup/cairn/repo/blob"
)

func TestRotation(t *testing.T) {
	now := time.Date(2026, 11, 26, 12, 0, 0, 0, time.UTC)
	day := 24 * time.Hour
	id := func(s string) blob.ID { return blob.Hash([]byte(s)) }
	packs := []PackAge{
		{ID: id("fresh"), Size: 100, Verified: now.Add(-1 * day)},
		{ID: id("never"), Size: 100},
		{ID: id("old"), Size: 100, Verified: now.Add(-40 * day)},
		{ID: id("mid"), Size: 100, Verified: now.Add(-10 * day)},
		{ID: id("recent"), Size: 100, Verified: now.Add(-2 * day)},
	}
	// Never and overdue packs always; then oldest first up to 40 % of
	// the bytes.
	got := Rotation(packs, now, 30*day, 0.4)
	if want := []blob.ID{id("never"), id("old")}; !slices.Equal(got, want) {
		t.Fatalf("40%%: %v", got)
	}
	got = Rotation(packs, now, 30*day, 0.5)
	if want := []blob.ID{id("never"), id("old"), id("mid")}; !slices.Equal(got, want) {
		t.Fatalf("50%%: %v", got)
	}
	// A fraction of zero still takes everything overdue.
	got = Rotation(packs, now, 5*day, 0)
	if want := []blob.ID{id("never"), id("old"), id("mid")}; !slices.Equal(got, want) {
		t.Fatalf("overdue only: %v", got)
	}
	// Run daily for a 30-day cycle: after 30 runs every pack was read.
	var many []PackAge
	for i := range 300 {
		many = append(many, PackAge{ID: id(string(rune(i))), Size: 1})
	}
	seen := map[blob.ID]bool{}
	cur := now
	for range 30 {
		chosen := Rotation(many, cur, 30*day, 1.0/30)
		for _, c := range chosen {
			seen[c] = true
			for i := range many {
				if many[i].ID == c {
					many[i].Verified = cur
				}
			}
		}
		cur = cur.Add(day)
	}
	if len(seen) != 300 {
		t.Fatalf("after a cycle %d of 300 packs were verified", len(seen))
	}
}
