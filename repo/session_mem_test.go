package repo_test

import (
	"io/fs"
	"math/rand/v2"
	"path/filepath"
	"runtime"
	"testing"

	"github.com/cairnbackup/cairn/repo/blob"
	"github.com/cairnbackup/cairn/repo/pack"
	"github.com/cairnbackup/cairn/repo/repotest"
	"github.com/cairnbackup/cairn/repo/seal"
)

// TestSessionReusesPackBuffers stores twenty packs' worth of
// incompressible blobs in one session and counts the bytes allocated:
// the data packs' buffers are recycled, so the session allocates a few
// packs' worth, not one buffer per pack (before, every pack took a new
// buffer, whose size never matched what the recycling expected).
func TestSessionReusesPackBuffers(t *testing.T) {
	dir := repotest.Init(t, repotest.Options()) // 1 MiB packs, chunks of at most 256 KiB
	r := repotest.Open(t, dir)
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

	// A pack is written before a blob would take it past the pack size,
	// so a data pack's buffer need not hold one more chunk: every pack
	// is at most 1 MiB plus its header (before, up to 1 MiB + 200 KiB).
	if err := s.Flush(t.Context()); err != nil {
		t.Fatal(err)
	}
	s.Abort()
	n := 0
	err := filepath.WalkDir(filepath.Join(dir, "packs"), func(p string, d fs.DirEntry, err error) error {
		if err != nil || d.IsDir() {
			return err
		}
		fi, err := d.Info()
		if err != nil {
			return err
		}
		n++
		if max := int64(1<<20 + 5*pack.EntrySize + seal.Overhead + pack.FooterSize); fi.Size() > max {
			t.Errorf("pack %s is %d bytes, more than %d", d.Name(), fi.Size(), max)
		}
		return nil
	})
	if err != nil || n < packs {
		t.Fatalf("%d packs, %v", n, err)
	}
}
