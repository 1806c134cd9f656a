package datagen

import (
	"os"
	"path/filepath"
	"strconv"
	"testing"
)

// benchGenerate generates s once per iteration into a fresh directory,
// removed outside the timed region, and reports MB/s of data written.
func benchGenerate(b *testing.B, s Spec) {
	root := b.TempDir()
	var data int64
	for i := 0; i < b.N; i++ {
		dir := filepath.Join(root, strconv.Itoa(i))
		st, err := Generate(dir, s, uint64(i))
		if err != nil {
			b.Fatal(err)
		}
		data = st.DataBytes
		b.StopTimer()
		if err := os.RemoveAll(dir); err != nil {
			b.Fatal(err)
		}
		b.StartTimer()
	}
	b.SetBytes(data)
}

// BenchmarkGenerateRandom writes 256 MiB of incompressible files: four
// of 48 MiB and sixteen of 4 MiB.
func BenchmarkGenerateRandom(b *testing.B) {
	benchGenerate(b, Spec{RandomFiles: append(cycleSizes(4, 48, 48), cycleSizes(16, 4, 4)...)})
}

// BenchmarkGenerateDumps writes two SQL dumps of 64 MiB.
func BenchmarkGenerateDumps(b *testing.B) {
	benchGenerate(b, Spec{Dumps: []int64{64 * mib, 64 * mib}})
}

// BenchmarkGenerateSmallFiles writes 5000 small files in their
// directories.
func BenchmarkGenerateSmallFiles(b *testing.B) {
	benchGenerate(b, Spec{SmallFiles: 5000})
}

// BenchmarkFill measures the PRNG alone, filling a buffer in memory.
func BenchmarkFill(b *testing.B) {
	buf := make([]byte, bufSize)
	r := newRNG(1)
	b.SetBytes(bufSize)
	for b.Loop() {
		r.fill(buf)
	}
}
