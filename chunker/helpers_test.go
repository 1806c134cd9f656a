package chunker

import (
	"bytes"
	"crypto/sha256"
	"errors"
	"io"
	"math/bits"
	"sync"
	"testing"
)

// splitmix64 is the deterministic generator behind every test input. It is
// written out here, not taken from math/rand, so inputs (and therefore the
// golden cut points) are identical on every Go version.
type splitmix64 struct{ s uint64 }

func (g *splitmix64) next() uint64 {
	g.s += 0x9e3779b97f4a7c15
	z := g.s
	z = (z ^ z>>30) * 0xbf58476d1ce4e5b9
	z = (z ^ z>>27) * 0x94d049bb133111eb
	return z ^ z>>31
}

// intn returns a value in [0, n) for n > 0.
func (g *splitmix64) intn(n int) int {
	return int(g.next() % uint64(n))
}

// randomBytes returns n pseudo-random bytes: splitmix64 from seed, each
// output word written little-endian.
func randomBytes(seed uint64, n int) []byte {
	g := splitmix64{s: seed}
	b := make([]byte, n)
	i := 0
	for ; i+8 <= n; i += 8 {
		w := g.next()
		for j := range 8 {
			b[i+j] = byte(w >> (8 * j))
		}
	}
	if i < n {
		w := g.next()
		for j := range n - i {
			b[i+j] = byte(w >> (8 * j))
		}
	}
	return b
}

// dnaBytes returns n bytes from the alphabet "ACGT": low entropy, no runs.
func dnaBytes(seed uint64, n int) []byte {
	g := splitmix64{s: seed}
	b := make([]byte, n)
	for i := range b {
		b[i] = "ACGT"[g.next()>>62]
	}
	return b
}

// testSeed returns the table seed 0x00, 0x01, …, 0x1f shifted by k.
func testSeed(k byte) [32]byte {
	var s [32]byte
	for i := range s {
		s[i] = byte(i) + k
	}
	return s
}

var testTable = sync.OnceValue(func() *Table { return NewTable(testSeed(0)) })

// Small parameter sets used throughout the tests.
var (
	tinyParams  = Params{Min: 64, Avg: 256, Max: 1024}
	smallParams = Params{Min: 2 << 10, Avg: 8 << 10, Max: 64 << 10}
)

// chunkAll chunks r to the end and returns copies of the chunks.
func chunkAll(tb testing.TB, r io.Reader, p Params, t *Table) [][]byte {
	tb.Helper()
	return chunkAllSize(tb, r, p, t, bufSize)
}

// chunkAllSize is chunkAll with a read buffer of size bytes.
func chunkAllSize(tb testing.TB, r io.Reader, p Params, t *Table, size int) [][]byte {
	tb.Helper()
	c := newSize(r, p, t, size)
	buf := make([]byte, 0, p.Max)
	var out [][]byte
	for {
		chunk, err := c.Next(buf)
		if err == io.EOF {
			if len(chunk) != 0 {
				tb.Fatalf("Next returned %d bytes with io.EOF", len(chunk))
			}
			return out
		}
		if err != nil {
			tb.Fatalf("Next: %v", err)
		}
		if len(chunk) == 0 {
			tb.Fatalf("Next returned an empty chunk without error")
		}
		out = append(out, bytes.Clone(chunk))
	}
}

// lengths returns the length of each chunk.
func lengths(chunks [][]byte) []int {
	l := make([]int, len(chunks))
	for i, c := range chunks {
		l[i] = len(c)
	}
	return l
}

// sums returns the SHA-256 of each chunk.
func sums(chunks [][]byte) [][32]byte {
	s := make([][32]byte, len(chunks))
	for i, c := range chunks {
		s[i] = sha256.Sum256(c)
	}
	return s
}

// refLengths is the reference implementation: the algorithm as doc.go
// states it, one byte at a time over the whole input, with its own mask
// computation. The Chunker must agree with it on every input.
func refLengths(data []byte, p Params, t *Table) []int {
	avgBits := bits.Len(uint(p.Avg)) - 1
	hard := ^uint64(0) << (64 - (avgBits + 2))
	easy := ^uint64(0) << (64 - (avgBits - 2))
	var out []int
	for len(data) > 0 {
		n := min(len(data), p.Max)
		var fp uint64
		for i := p.Min; i < n; i++ {
			fp = fp<<1 + t[data[i]]
			mask := easy
			if i < p.Avg {
				mask = hard
			}
			if fp&mask == 0 {
				n = i + 1
				break
			}
		}
		out = append(out, n)
		data = data[n:]
	}
	return out
}

// checkChunks asserts the bounds and round-trip properties of chunks cut
// from data with p.
func checkChunks(tb testing.TB, chunks [][]byte, data []byte, p Params) {
	tb.Helper()
	for i, c := range chunks {
		last := i == len(chunks)-1
		if len(c) > p.Max || len(c) == 0 || (!last && len(c) < p.Min) {
			tb.Fatalf("chunk %d of %d: length %d outside [%d, %d]", i, len(chunks), len(c), p.Min, p.Max)
		}
	}
	if got := bytes.Join(chunks, nil); !bytes.Equal(got, data) {
		tb.Fatalf("concatenated chunks (%d bytes) differ from the input (%d bytes)", len(got), len(data))
	}
}

// firstDiff reports the first index at which a and b differ, or -1.
func firstDiff[T comparable](a, b []T) int {
	for i := range min(len(a), len(b)) {
		if a[i] != b[i] {
			return i
		}
	}
	if len(a) != len(b) {
		return min(len(a), len(b))
	}
	return -1
}

// randomReader returns reads of pseudo-random sizes from 0 to 3*bufSize
// bytes, including occasional empty reads.
type randomReader struct {
	data []byte
	g    splitmix64
}

func (r *randomReader) Read(p []byte) (int, error) {
	if len(r.data) == 0 {
		return 0, io.EOF
	}
	var n int
	switch r.g.intn(8) {
	case 0:
		n = 0
	case 1:
		n = 1 + r.g.intn(8)
	case 2:
		n = len(p)
	default:
		n = 1 + r.g.intn(3*bufSize)
	}
	n = min(n, len(p), len(r.data))
	copy(p, r.data[:n])
	r.data = r.data[n:]
	return n, nil
}

// failReader returns data, then err.
type failReader struct {
	data []byte
	err  error
}

func (r *failReader) Read(p []byte) (int, error) {
	if len(r.data) == 0 {
		return 0, r.err
	}
	n := copy(p, r.data)
	r.data = r.data[n:]
	return n, nil
}

// funcReader adapts a function to io.Reader.
type funcReader func([]byte) (int, error)

func (f funcReader) Read(p []byte) (int, error) { return f(p) }

var errTest = errors.New("test read error")
