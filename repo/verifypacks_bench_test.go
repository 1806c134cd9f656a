package repo_test

import (
	"math/rand/v2"
	"syscall"
	"testing"
	"time"

	"github.com/cairnbackup/cairn/repo/blob"
	"github.com/cairnbackup/cairn/repo/repotest"
)

// BenchmarkVerifyPack measures check --read-data's work on one core:
// VerifyPack of 16 MiB packs from a directory (warm page cache) holding
// 1 MiB blobs, half incompressible and half text that zstd shrinks
// about 4 times, like a home server's data. MB/s of pack files.
// docs/benchmarks.md compares it with the floor (BenchmarkFloor* in
// repo/pack and BenchmarkOpen in repo/seal).
func BenchmarkVerifyPack(b *testing.B) {
	o := repotest.Options()
	o.PackSize = 16 << 20
	r := repotest.Open(b, repotest.Init(b, o))
	s := r.NewSession()
	rng := rand.New(rand.NewPCG(3, 4))
	words := []string{"INSERT ", "INTO ", "users ", "VALUES ", "(42, ", "'alice', ", "'2026-12-07'", ");\n", "select ", "from ", "where "}
	data := make([]byte, 1<<20)
	for i := range 96 {
		if i%2 == 0 {
			for j := range data {
				data[j] = byte(rng.Uint32())
			}
		} else {
			data = data[:0]
			for len(data) < 1<<20 {
				data = append(data, words[rng.IntN(len(words))]...)
				if rng.IntN(8) == 0 {
					data = append(data, byte('0'+rng.IntN(10)), byte('a'+rng.IntN(26)), byte('A'+rng.IntN(26)))
				}
			}
			data = data[:1<<20]
		}
		if _, _, err := s.SaveBlob(b.Context(), blob.Data, data); err != nil {
			b.Fatal(err)
		}
	}
	packs := flushedPacks(b, r, s)
	var total int64
	for _, size := range packs {
		total += size
	}
	b.SetBytes(total)
	b.ReportAllocs()
	cpu0 := cpuTime(b)
	for b.Loop() {
		for id := range packs {
			if rep := r.VerifyPack(b.Context(), id); rep.Err != nil || len(rep.Damaged) > 0 {
				b.Fatalf("pack %s: %v %v", id.Short(), rep.Err, rep.Damaged)
			}
		}
	}
	// The machine is shared: CPU time is steadier than the wall.
	b.ReportMetric(float64(total)*float64(b.N)/(cpuTime(b)-cpu0).Seconds()/1e6, "cpu-MB/s")
}

// cpuTime is the user and system CPU time of the process so far.
func cpuTime(b *testing.B) time.Duration {
	var ru syscall.Rusage
	if err := syscall.Getrusage(syscall.RUSAGE_SELF, &ru); err != nil {
		b.Fatal(err)
	}
	return time.Duration(ru.Utime.Nano() + ru.Stime.Nano())
}
