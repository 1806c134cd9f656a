package chunker

import (
	"bytes"
	"slices"
	"testing"
	"testing/iotest"
)

// fuzzParams derives valid small Params from the low 24 bits of shape:
// Avg from 128 to 1024, Min from 64 to Avg-1, Max from Avg+1 to 4*Avg.
func fuzzParams(shape uint32) Params {
	avg := 128 << (shape & 3)
	minSize := 64 + int(shape>>2&0x3ff)%(avg-64)
	maxSize := avg + 1 + int(shape>>12&0xfff)%(3*avg)
	return Params{Min: minSize, Avg: avg, Max: maxSize}
}

// FuzzChunker checks the round-trip property: the chunks concatenate to
// the input, respect the bounds, do not depend on how the input is read
// or on the size of the read buffer (the top 8 bits of shape), and agree
// with the reference implementation.
func FuzzChunker(f *testing.F) {
	f.Add([]byte("hello, cairn"), uint32(0))
	f.Add(randomBytes(1, 3000), uint32(0x12345))
	f.Add(make([]byte, 2500), uint32(0xfff003))
	f.Fuzz(func(t *testing.T, data []byte, shape uint32) {
		p := fuzzParams(shape)
		if err := p.Validate(); err != nil {
			t.Fatalf("fuzzParams(%#x): %v", shape, err)
		}
		// A read buffer of 1 to 256 bytes puts refills everywhere, and
		// keeps each run cheap.
		size := 1 + int(shape>>24)
		chunks := chunkAllSize(t, bytes.NewReader(data), p, testTable(), size)
		checkChunks(t, chunks, data, p)
		if got, want := lengths(chunks), refLengths(data, p, testTable()); !slices.Equal(got, want) {
			t.Fatalf("%+v: lengths %v, reference %v", p, got, want)
		}
		one := chunkAllSize(t, iotest.OneByteReader(bytes.NewReader(data)), p, testTable(), 4096)
		if !slices.EqualFunc(one, chunks, bytes.Equal) {
			t.Fatalf("%+v: OneByteReader gives lengths %v, bytes.Reader %v", p, lengths(one), lengths(chunks))
		}
	})
}
