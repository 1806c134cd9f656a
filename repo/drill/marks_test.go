package drill_test

import (
	"testing"
	"time"

	"github.com/cairnbackup/cairn/repo/blob"
	"github.com/cairnbackup/cairn/repo/drill"
)

// A snapshot's mark is its newest drill's result; Passed remembers the
// newest drill that passed, even after a later one failed.
func TestMarks(t *testing.T) {
	t0 := time.Date(2026, 12, 1, 0, 0, 0, 0, time.UTC)
	a, b := blob.Hash([]byte("a")), blob.Hash([]byte("b"))
	saved := func(name string, snap blob.ID, result string, tm time.Time) drill.Saved {
		return drill.Saved{ID: blob.Hash([]byte(name)), Report: &drill.Report{Snapshot: snap, Result: result, Finished: tm}}
	}
	list := []drill.Saved{ // newest first, as List returns them
		saved("a3", a, drill.ResultFailed, t0.Add(3*time.Hour)),
		saved("a2", a, drill.ResultOK, t0.Add(2*time.Hour)),
		saved("b1", b, drill.ResultFailed, t0.Add(time.Hour)),
		saved("a1", a, drill.ResultOK, t0),
	}
	m := drill.Marks(list)
	want := map[blob.ID]drill.Mark{
		a: {Result: drill.MarkFailed, Report: list[0].ID, Passed: list[1].ID},
		b: {Result: drill.MarkFailed, Report: list[2].ID},
	}
	if len(m) != len(want) || m[a] != want[a] || m[b] != want[b] {
		t.Fatalf("marks %+v, want %+v", m, want)
	}
	if m[a].OK() {
		t.Fatal("a's newest drill failed")
	}
}
