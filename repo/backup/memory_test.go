package backup_test

import (
	"math/rand/v2"
	"os"
	"path/filepath"
	"runtime"
	"strconv"
	"testing"

	"github.com/cairnbackup/cairn/repo"
	"github.com/cairnbackup/cairn/repo/backup"
	"github.com/cairnbackup/cairn/repo/repotest"
)

// TestChunkBuffersFollowAverage backs up 12 MiB of incompressible files
// with the default chunk sizes (512 KiB / 1 MiB / 8 MiB) and counts the
// bytes the backup allocates, after a first backup warmed the process's
// encoders and pack buffers: the chunk buffers are twice the average
// chunk (4 × 2 MiB on two workers), not the maximum (4 × 8 MiB).
func TestChunkBuffersFollowAverage(t *testing.T) {
	if raceEnabled {
		t.Skip("allocation counts are not meaningful under the race detector")
	}
	r := repotest.Open(t, repotest.Init(t, repo.InitOptions{}))
	o := opts(r)
	o.Workers = 2
	rng := rand.New(rand.NewPCG(3, 4))
	mk := func(dir string) string {
		src := filepath.Join(t.TempDir(), dir)
		if err := os.Mkdir(src, 0o755); err != nil {
			t.Fatal(err)
		}
		for i := range 8 {
			b := make([]byte, 1536<<10)
			for j := range b {
				b[j] = byte(rng.Uint32())
			}
			if err := os.WriteFile(filepath.Join(src, strconv.Itoa(i)), b, 0o644); err != nil {
				t.Fatal(err)
			}
		}
		return src
	}
	warm, src := mk("warm"), mk("src")
	run(t, r, o, warm)
	var before, after runtime.MemStats
	runtime.ReadMemStats(&before)
	s := r.NewSession()
	if _, err := backup.Run(t.Context(), s, []string{src}, o); err != nil {
		t.Fatal(err)
	}
	runtime.ReadMemStats(&after)
	s.Abort()
	// Before: 36 MB (four 8 MiB chunk buffers). After: 13 MB.
	const limit = 24 << 20
	if got := after.TotalAlloc - before.TotalAlloc; got > limit {
		t.Fatalf("backing up 12 MiB allocated %d bytes, want at most %d", got, limit)
	}
}
