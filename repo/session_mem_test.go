package repo_test

import (
	"math/rand/v2"
	"runtime"
	"testing"

	"github.com/cairnbackup/cairn/repo/blob"
	"github.com/cairnbackup/cairn/repo/repotest"
)

// TestSessionReusesPackBuffers stores twenty packs' worth of
// incompressible blobs in one session and counts the bytes allocated:
// the data packs' buffers are recycled, so the session allocates a few
// packs' worth, not one buffer per pack (before, every pack took a new
// buffer, whose size never matched what the recycling expected).
func TestSessionReusesPackBuffers(t *testing.T) {
	r := repotest.New(t) // 1 MiB packs, chunks of at most 256 KiB
	const blobSize, packs = 200 << 10, 20
	rng := rand.New(rand.NewPCG(1, 2))
	blobs := make([][]byte, packs*(1<<20)/blobSize)
	for i := range blobs {
		blobs[i] = make([]byte, blobSize)
		for j := 0; j < blobSize; j += 8 {
			v := rng.Uint64()
			for k := range 8 {
				blobs[i][j+k] = byte(v >> (8 * k))
			}
		}
	}
	s := r.NewSession()
	defer s.Abort()
	// Warm up: the encoder's window and the first buffers.
	for _, b := range blobs[:10] {
		if _, _, err := s.SaveBlob(t.Context(), blob.Data, b); err != nil {
			t.Fatal(err)
		}
	}
	var before, after runtime.MemStats
	runtime.ReadMemStats(&before)
	for _, b := range blobs[10:] {
		if _, _, err := s.SaveBlob(t.Context(), blob.Data, b); err != nil {
			t.Fatal(err)
		}
	}
	runtime.ReadMemStats(&after)
	if st := s.Stats(); st.Packs < packs-3 {
		t.Fatalf("%d packs written, want at least %d", st.Packs, packs-3)
	}
	// A data pack's buffer is 1 MiB + 256 KiB + the header's reserve
	// (about 1.45 MiB); 18 of them were 29 MB. Recycled, the 18 packs
	// allocate under 1 MB, and 11-13 MB under the race detector (which
	// makes sync.Pool drop a share of what it is given).
	const limit = 16 << 20
	if got := after.TotalAlloc - before.TotalAlloc; got > limit {
		t.Fatalf("storing %d packs allocated %d bytes, want at most %d", packs-2, got, limit)
	}
}
