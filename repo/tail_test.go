package repo

import (
	"bytes"
	"errors"
	"io"
	"testing"
)

// countingReaderAt counts the reads that reach the file.
type countingReaderAt struct {
	*bytes.Reader
	reads int
}

func (c *countingReaderAt) ReadAt(p []byte, off int64) (int, error) {
	c.reads++
	return c.Reader.ReadAt(p, off)
}

// A tailReader reads the last tailSize bytes once and serves every read
// within them from that; reads before them go to the file; results are
// those of the file itself.
func TestTailReader(t *testing.T) {
	for _, size := range []int{10, tailSize, tailSize + 1000} {
		data := make([]byte, size)
		for i := range data {
			data[i] = byte(i * 7)
		}
		f := &countingReaderAt{Reader: bytes.NewReader(data)}
		tr := newTailReader(f, int64(size))
		for _, c := range []struct{ off, n int }{{size - 24, 24}, {size - 100, 50}, {0, 8}, {size - 5, 10}, {size, 1}, {max(0, size-tailSize-3), 6}} {
			if c.off < 0 {
				continue
			}
			got := make([]byte, c.n)
			n, err := tr.ReadAt(got, int64(c.off))
			want := make([]byte, c.n)
			wn, werr := bytes.NewReader(data).ReadAt(want, int64(c.off))
			if n != wn || !bytes.Equal(got[:n], want[:wn]) || errors.Is(err, io.EOF) != errors.Is(werr, io.EOF) || (err == nil) != (werr == nil) {
				t.Errorf("size %d: ReadAt(%d, %d) = %d, %v; the file gives %d, %v", size, c.n, c.off, n, err, wn, werr)
			}
		}
		// One read for the tail, one per read before it.
		before := 0
		if size > tailSize {
			before = 2
		}
		if f.reads != 1+before {
			t.Errorf("size %d: %d reads reached the file, want %d", size, f.reads, 1+before)
		}
	}
}
