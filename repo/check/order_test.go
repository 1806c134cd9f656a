package check

import (
	"slices"
	"testing"

	"github.com/cairnbackup/cairn/repo/blob"
)

// TestCostliestFirst: check --read-data starts the packs that cost most
// to verify first: a pack of compressed text (16 MiB holding 100 MiB),
// then one of media, then one whose header is unreadable (only hashed),
// then a small one; equal costs keep the order of ids.
func TestCostliestFirst(t *testing.T) {
	const mib = 1 << 20
	ids := []blob.ID{{1}, {2}, {3}, {4}, {5}}
	sizes := map[blob.ID]int64{{1}: mib, {2}: 16 * mib, {3}: 16 * mib, {4}: 16 * mib, {5}: mib}
	plain := map[blob.ID]int64{{1}: mib, {2}: 16 * mib, {3}: 100 * mib, {5}: mib}
	got := costliestFirst(ids, sizes, plain)
	if want := []int{2, 1, 3, 0, 4}; !slices.Equal(got, want) {
		t.Errorf("order %v, want %v", got, want)
	}
}
