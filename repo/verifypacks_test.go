package repo_test

import (
	"math/rand/v2"
	"runtime"
	"runtime/debug"
	"testing"

	"github.com/cairnbackup/cairn/repo/blob"
	"github.com/cairnbackup/cairn/repo/repotest"
)

// TestVerifyPackReusesBuffers: reading pack after pack (check
// --read-data) reuses VerifyPack's read buffer, envelope and plaintext
// instead of allocating them for every pack; before, each call
// allocated its 1 MiB read buffer and every blob's buffers anew.
func TestVerifyPackReusesBuffers(t *testing.T) {
	if raceEnabled {
		t.Skip("the race detector makes sync.Pool drop items at random")
	}
	r := repotest.New(t)
	s := r.NewSession()
	rng := rand.New(rand.NewPCG(5, 6))
	data := make([]byte, 200<<10)
	for range 4 {
		for i := range data {
			data[i] = byte(rng.Uint32())
		}
		if _, _, err := s.SaveBlob(t.Context(), blob.Data, data); err != nil {
			t.Fatal(err)
		}
	}
	packs := flushedPacks(t, r, s)
	verify := func() {
		for id := range packs {
			if rep := r.VerifyPack(t.Context(), id); rep.Err != nil || len(rep.Damaged) > 0 {
				t.Fatalf("pack %s: %v %v", id.Short(), rep.Err, rep.Damaged)
			}
		}
	}
	// No collection in between: one empties the pool, and whether one
	// falls inside the measured runs depends on what the package's
	// earlier tests left on the heap (it did, with the same 170 kB a
	// pack every time, after an unrelated change to Compress).
	defer debug.SetGCPercent(debug.SetGCPercent(-1))
	verify()
	const runs = 10
	var before, after runtime.MemStats
	runtime.ReadMemStats(&before)
	for range runs {
		verify()
	}
	runtime.ReadMemStats(&after)
	perPack := (after.TotalAlloc - before.TotalAlloc) / runs / uint64(len(packs))
	if perPack > 64<<10 {
		t.Errorf("VerifyPack allocated %d bytes a pack, want at most %d (its buffers are reused)", perPack, 64<<10)
	}
}
