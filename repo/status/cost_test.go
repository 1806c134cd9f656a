package status_test

import (
	"fmt"
	"os"
	"path/filepath"
	"reflect"
	"testing"
	"time"

	"github.com/cairnbackup/cairn/repo"
	"github.com/cairnbackup/cairn/repo/blob"
	"github.com/cairnbackup/cairn/repo/drill"
	"github.com/cairnbackup/cairn/repo/repotest"
	"github.com/cairnbackup/cairn/repo/status"
	"github.com/cairnbackup/cairn/repo/storage"
)

// drilled makes a repository with two snapshots of lyra/etc and n drill
// reports of them, the newest of each snapshot's passing.
func drilled(tb testing.TB, n int) (*repo.Repository, [2]blob.ID, time.Time) {
	r := repotest.New(tb)
	t0 := time.Date(2026, 12, 1, 3, 0, 0, 0, time.UTC)
	snaps := [2]blob.ID{commitAt(tb, r, "etc", []string{"/etc"}, t0), commitAt(tb, r, "etc", []string{"/etc"}, t0.Add(time.Hour))}
	for i := range n {
		result := drill.ResultFailed
		if i >= n-2 {
			result = drill.ResultOK
		}
		saveDrill(tb, r, snaps[i%2], result, t0.Add(2*time.Hour+time.Duration(i)*time.Second))
	}
	return r, snaps, t0.Add(48 * time.Hour)
}

// Status reads no drill report: once the reports are noted, it says the
// same without drills/.
func TestGatherReadsNoReport(t *testing.T) {
	r, snaps, now := drilled(t, 20)
	before, err := status.Gather(t.Context(), r, status.Options{Now: now})
	if err != nil {
		t.Fatal(err)
	}
	if len(before.Groups) != 1 || before.Groups[0].Drill == nil || before.Groups[0].Drill.Snapshot != snaps[1] || before.Groups[0].DrilledOK.ID != snaps[1] {
		t.Fatalf("groups %+v", before.Groups)
	}
	if err := os.RemoveAll(filepath.Join(r.Dir(), string(storage.Drills))); err != nil {
		t.Fatal(err)
	}
	after, err := status.Gather(t.Context(), r, status.Options{Now: now})
	if err != nil {
		t.Fatal(err)
	}
	if g := after.Groups[0]; !reflect.DeepEqual(g.Drill, before.Groups[0].Drill) || !reflect.DeepEqual(g.OKDrill, before.Groups[0].OKDrill) {
		t.Fatalf("without drills/: drill %+v, ok drill %+v; want %+v, %+v", g.Drill, g.OKDrill, before.Groups[0].Drill, before.Groups[0].OKDrill)
	}
	h, err := status.GetHistory(t.Context(), r, status.HistoryOptions{Now: now, Loc: time.UTC})
	if err != nil {
		t.Fatal(err)
	}
	points := 0
	for _, p := range h.Plans {
		points += len(p.Drills)
	}
	if points != 20 {
		t.Fatalf("history without drills/: %d drills, want 20", points)
	}
}

// BenchmarkStatus gathers status (what cairn status, the metrics and
// the runbook read), the history of the status page, and the newest
// reports (the replicas' drills of status and the metrics), with 10 and
// 10 000 drill reports: the figures are the same.
func BenchmarkStatus(b *testing.B) {
	for _, n := range []int{10, 10000} {
		r, _, now := drilled(b, n)
		// An index without notes (a rebuilt one, one of an older
		// version, a new repository's) notes every report of drills/
		// once, at the first Marks or Recent: after that, nothing reads
		// a report. (Save notes each report too; the versions each
		// note replaces stay in badger until it compacts them.)
		if _, err := r.RebuildIndex(b.Context()); err != nil {
			b.Fatal(err)
		}
		if _, err := drill.Marks(b.Context(), r); err != nil {
			b.Fatal(err)
		}
		b.Run(fmt.Sprintf("gather/reports=%d", n), func(b *testing.B) {
			for b.Loop() {
				if _, err := status.Gather(b.Context(), r, status.Options{Now: now}); err != nil {
					b.Fatal(err)
				}
			}
		})
		b.Run(fmt.Sprintf("history/reports=%d", n), func(b *testing.B) {
			for b.Loop() {
				if _, err := status.GetHistory(b.Context(), r, status.HistoryOptions{Now: now, Loc: time.UTC}); err != nil {
					b.Fatal(err)
				}
			}
		})
		b.Run(fmt.Sprintf("recent/reports=%d", n), func(b *testing.B) {
			for b.Loop() {
				if _, err := drill.Recent(b.Context(), r); err != nil {
					b.Fatal(err)
				}
			}
		})
	}
}
