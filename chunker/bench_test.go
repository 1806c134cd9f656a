package chunker

import (
	"bytes"
	"io"
	"sync"
	"testing"
)

var benchData = sync.OnceValue(func() []byte { return randomBytes(99, 64<<20) })

func benchmarkChunker(b *testing.B, p Params) {
	data := benchData()
	r := bytes.NewReader(data)
	c := New(r, p, testTable())
	dst := make([]byte, 0, p.Max)
	b.SetBytes(int64(len(data)))
	b.ReportAllocs()
	chunks := 0
	for b.Loop() {
		r.Reset(data)
		c.Reset(r)
		for {
			_, err := c.Next(dst)
			if err == io.EOF {
				break
			}
			if err != nil {
				b.Fatal(err)
			}
			chunks++
		}
	}
	b.ReportMetric(float64(chunks)/float64(b.N), "chunks/op")
}

// BenchmarkChunker chunks 64 MiB of random data with DefaultParams.
func BenchmarkChunker(b *testing.B) { benchmarkChunker(b, DefaultParams) }

// BenchmarkChunkerSmall chunks 64 MiB of random data with 2/8/64 KiB
// Params, where the per-chunk cost and the hashed share are higher.
func BenchmarkChunkerSmall(b *testing.B) { benchmarkChunker(b, smallParams) }

// BenchmarkScan measures the gear loop alone over 1 MiB, with a mask
// that (almost surely) never matches.
func BenchmarkScan(b *testing.B) {
	data := benchData()[:1<<20]
	t := testTable()
	b.SetBytes(int64(len(data)))
	var sink uint64
	for b.Loop() {
		i, fp := scan(t, 0, ^uint64(0), data)
		if i >= 0 {
			b.Fatalf("cut at %d", i)
		}
		sink += fp
	}
	_ = sink
}

func BenchmarkNewTable(b *testing.B) {
	for b.Loop() {
		NewTable([32]byte{})
	}
}
