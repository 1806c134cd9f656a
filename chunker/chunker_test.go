package chunker

import (
	"bytes"
	"errors"
	"fmt"
	"io"
	"slices"
	"testing"
	"testing/iotest"
)

func TestValidate(t *testing.T) {
	tests := []struct {
		p    Params
		want string // "" for valid
	}{
		{DefaultParams, ""},
		{Params{Min: 64, Avg: 128, Max: 129}, ""},
		{Params{Min: 127, Avg: 128, Max: 64 << 20}, ""},
		{Params{Min: 1 << 20, Avg: 32 << 20, Max: 64 << 20}, ""},
		{Params{Min: 63, Avg: 128, Max: 256}, "chunker: min 63 is less than 64"},
		{Params{Min: 0, Avg: 128, Max: 256}, "chunker: min 0 is less than 64"},
		{Params{Min: -1, Avg: 128, Max: 256}, "chunker: min -1 is less than 64"},
		{Params{}, "chunker: min 0 is less than 64"},
		{Params{Min: 512, Avg: 1000, Max: 4096}, "chunker: avg 1000 is not a power of two"},
		{Params{Min: 512, Avg: 0, Max: 4096}, "chunker: avg 0 is not a power of two"},
		{Params{Min: 512, Avg: -1024, Max: 4096}, "chunker: avg -1024 is not a power of two"},
		{Params{Min: 1024, Avg: 1024, Max: 4096}, "chunker: min 1024 is not less than avg 1024"},
		{Params{Min: 2048, Avg: 1024, Max: 4096}, "chunker: min 2048 is not less than avg 1024"},
		{Params{Min: 512, Avg: 1024, Max: 1024}, "chunker: avg 1024 is not less than max 1024"},
		{Params{Min: 512, Avg: 1024, Max: 1000}, "chunker: avg 1024 is not less than max 1000"},
		{Params{Min: 512, Avg: 1024, Max: 64<<20 + 1}, "chunker: max 67108865 is greater than 67108864"},
		{Params{Min: 512, Avg: 64 << 20, Max: 128 << 20}, "chunker: max 134217728 is greater than 67108864"},
	}
	for _, tt := range tests {
		err := tt.p.Validate()
		got := ""
		if err != nil {
			got = err.Error()
		}
		if got != tt.want {
			t.Errorf("%+v.Validate() = %q, want %q", tt.p, got, tt.want)
		}
	}
}

func TestMasks(t *testing.T) {
	tests := []struct {
		p          Params
		hard, easy uint64
	}{
		{DefaultParams, 0xffff_fc00_0000_0000, 0xffff_c000_0000_0000},                       // 22 and 18 bits
		{Params{Min: 64, Avg: 128, Max: 256}, 0xff80_0000_0000_0000, 0xf800_0000_0000_0000}, // 9 and 5 bits
	}
	for _, tt := range tests {
		hard, easy := tt.p.masks()
		if hard != tt.hard || easy != tt.easy {
			t.Errorf("%+v.masks() = %#x, %#x, want %#x, %#x", tt.p, hard, easy, tt.hard, tt.easy)
		}
	}
}

func TestNewPanics(t *testing.T) {
	tests := []struct {
		name string
		p    Params
		t    *Table
		want string
	}{
		{"invalid params", Params{Min: 512, Avg: 1000, Max: 4096}, testTable(), "chunker: avg 1000 is not a power of two"},
		{"nil table", DefaultParams, nil, "chunker: nil table"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			defer func() {
				if got := fmt.Sprint(recover()); got != tt.want {
					t.Errorf("New panicked with %q, want %q", got, tt.want)
				}
			}()
			New(bytes.NewReader(nil), tt.p, tt.t)
		})
	}
}

func TestEmpty(t *testing.T) {
	c := New(bytes.NewReader(nil), DefaultParams, testTable())
	dst := make([]byte, 10, 100)
	for i := range 3 { // EOF stays EOF
		chunk, err := c.Next(dst)
		if err != io.EOF || len(chunk) != 0 || cap(chunk) != 100 {
			t.Fatalf("call %d: Next = (len %d cap %d, %v), want (dst[:0], io.EOF)", i, len(chunk), cap(chunk), err)
		}
	}
}

// TestReference checks the Chunker against the byte-at-a-time reference
// on inputs that hit every path: cuts in the hard and easy regions,
// forced cuts at Max (zero runs), and short tails.
func TestReference(t *testing.T) {
	t.Parallel()
	random := randomBytes(10, 3<<20)
	mixed := slices.Concat(random[:200<<10], make([]byte, 300<<10), dnaBytes(11, 100<<10), random[1<<20:])
	for _, p := range []Params{tinyParams, smallParams, {Min: 100, Avg: 128, Max: 130}, {Min: 4096, Avg: 8192, Max: 8193}, DefaultParams} {
		for name, data := range map[string][]byte{"random": random, "mixed": mixed} {
			t.Run(fmt.Sprintf("%d-%d-%d/%s", p.Min, p.Avg, p.Max, name), func(t *testing.T) {
				got := lengths(chunkAll(t, bytes.NewReader(data), p, testTable()))
				want := refLengths(data, p, testTable())
				if i := firstDiff(got, want); i >= 0 {
					t.Fatalf("chunk %d differs from the reference: got %d chunks %v…, want %d chunks %v…",
						i, len(got), got[i:min(i+3, len(got))], len(want), want[i:min(i+3, len(want))])
				}
			})
		}
	}
}

func TestBounds(t *testing.T) {
	t.Parallel()
	for _, p := range []Params{tinyParams, smallParams, {Min: 64, Avg: 128, Max: 129}} {
		sizes := []int{1, 2, 63, p.Min - 1, p.Min, p.Min + 1, p.Avg - 1, p.Avg, p.Avg + 1,
			p.Max - 1, p.Max, p.Max + 1, 2*p.Max - 1, 2 * p.Max, 2*p.Max + 1, 100*p.Max + 7,
			bufSize - 1, bufSize, bufSize + 1, 3*bufSize + 5}
		for _, size := range sizes {
			inputs := map[string][]byte{
				"random": randomBytes(uint64(size), size),
				"zeros":  make([]byte, size),
				"dna":    dnaBytes(uint64(size), size),
			}
			for name, data := range inputs {
				chunks := chunkAll(t, bytes.NewReader(data), p, testTable())
				checkChunks(t, chunks, data, p)
				if want := refLengths(data, p, testTable()); !slices.Equal(lengths(chunks), want) {
					t.Fatalf("%+v, %s, %d bytes: lengths %v, reference %v", p, name, size, lengths(chunks), want)
				}
			}
		}
	}
}

func TestZerosCutAtMax(t *testing.T) {
	data := make([]byte, 10*smallParams.Max+123)
	got := lengths(chunkAll(t, bytes.NewReader(data), smallParams, testTable()))
	want := append(slices.Repeat([]int{smallParams.Max}, 10), 123)
	if !slices.Equal(got, want) {
		t.Fatalf("zero input cut into %v, want %v", got, want)
	}
}

// TestReaderIndependence checks that how the reader splits its data into
// reads does not move cut points.
func TestReaderIndependence(t *testing.T) {
	t.Parallel()
	data := slices.Concat(randomBytes(20, 2<<20), make([]byte, 200<<10), randomBytes(21, 1<<20+13))
	for _, p := range []Params{tinyParams, smallParams, DefaultParams} {
		want := sums(chunkAll(t, bytes.NewReader(data), p, testTable()))
		readers := map[string]func() io.Reader{
			"OneByteReader":  func() io.Reader { return iotest.OneByteReader(bytes.NewReader(data)) },
			"HalfReader":     func() io.Reader { return iotest.HalfReader(bytes.NewReader(data)) },
			"DataErrReader":  func() io.Reader { return iotest.DataErrReader(bytes.NewReader(data)) },
			"randomReader/1": func() io.Reader { return &randomReader{data: data, g: splitmix64{s: 1}} },
			"randomReader/2": func() io.Reader { return &randomReader{data: data, g: splitmix64{s: 2}} },
		}
		for name, r := range readers {
			t.Run(fmt.Sprintf("%d/%s", p.Avg, name), func(t *testing.T) {
				chunks := chunkAll(t, r(), p, testTable())
				checkChunks(t, chunks, data, p)
				if i := firstDiff(sums(chunks), want); i >= 0 {
					t.Fatalf("chunk %d of %d differs from the bytes.Reader result (%d chunks)", i, len(chunks), len(want))
				}
			})
		}
	}
}

// TestBufferSize checks that the size of the read buffer does not move
// cut points.
func TestBufferSize(t *testing.T) {
	t.Parallel()
	data := slices.Concat(randomBytes(22, 1<<20), make([]byte, 100<<10), dnaBytes(23, 300<<10+7))
	for _, p := range []Params{tinyParams, smallParams} {
		want := sums(chunkAll(t, bytes.NewReader(data), p, testTable()))
		for _, size := range []int{1, 2, 3, 7, 8, 9, 15, 16, 17, 63, 64, 65, 1000, p.Max - 1, p.Max, p.Max + 1} {
			got := sums(chunkAllSize(t, bytes.NewReader(data), p, testTable(), size))
			if i := firstDiff(got, want); i >= 0 {
				t.Fatalf("%+v, buffer %d: chunk %d of %d differs", p, size, i, len(got))
			}
		}
	}
}

// TestEditLocality inserts and deletes bytes in a large input: the chunks
// before the edit must be unchanged, and the chunk sequence must
// resynchronise within a few chunks after it.
func TestEditLocality(t *testing.T) {
	t.Parallel()
	type edit struct {
		off    int
		delete int
		insert []byte
	}
	run := func(t *testing.T, p Params, size int, edits []edit) {
		data := randomBytes(30, size)
		orig := chunkAll(t, bytes.NewReader(data), p, testTable())
		origSums := sums(orig)
		for _, e := range edits {
			t.Run(fmt.Sprintf("off=%d,del=%d,ins=%d", e.off, e.delete, len(e.insert)), func(t *testing.T) {
				edited := slices.Concat(data[:e.off], e.insert, data[e.off+e.delete:])
				chunks := chunkAll(t, bytes.NewReader(edited), p, testTable())
				checkChunks(t, chunks, edited, p)
				got := sums(chunks)

				// Every chunk that ends at or before the edit is unchanged.
				before, end := 0, 0
				for _, c := range orig {
					if end+len(c) > e.off {
						break
					}
					end += len(c)
					before++
				}
				prefix := 0
				for prefix < min(len(got), len(origSums)) && got[prefix] == origSums[prefix] {
					prefix++
				}
				if prefix != before {
					t.Fatalf("%d leading chunks unchanged, want exactly the %d that end before offset %d", prefix, before, e.off)
				}

				// The rest resynchronises: only a few chunks around the
				// edit differ, and every chunk after them is unchanged.
				suffix := 0
				for suffix < min(len(got), len(origSums))-prefix &&
					got[len(got)-1-suffix] == origSums[len(origSums)-1-suffix] {
					suffix++
				}
				const maxChanged = 3
				t.Logf("%d chunks replaced by %d, %d before and %d after unchanged", len(origSums)-prefix-suffix, len(got)-prefix-suffix, prefix, suffix)
				oldChanged, newChanged := len(origSums)-prefix-suffix, len(got)-prefix-suffix
				if oldChanged < 1 || oldChanged > maxChanged || newChanged < 1 || newChanged > maxChanged {
					t.Fatalf("edit replaced %d of %d chunks with %d new ones, want 1 to %d each", oldChanged, len(origSums), newChanged, maxChanged)
				}
			})
		}
	}

	t.Run("small", func(t *testing.T) {
		size := 8 << 20
		run(t, smallParams, size, []edit{
			{off: size / 2, insert: []byte("x")},
			{off: size / 2, insert: []byte("seven b")},
			{off: size/3 + 1, insert: randomBytes(31, 3000)},
			{off: 2*size/3 + 5, delete: 1},
			{off: 1000, delete: 500, insert: []byte("abc")},
			{off: size - 100, insert: []byte("near the end")},
		})
	})
	t.Run("default", func(t *testing.T) {
		if testing.Short() {
			t.Skip("64 MiB input")
		}
		size := 64 << 20
		run(t, DefaultParams, size, []edit{
			{off: size / 2, insert: []byte("cairn")},
			{off: size/3 + 12345, delete: 17},
		})
	})
}

// TestSeedChangesCuts checks that a different table seed gives different
// cut points on the same input.
func TestSeedChangesCuts(t *testing.T) {
	t.Parallel()
	data := randomBytes(40, 8<<20)
	cuts := func(seed [32]byte) map[int]bool {
		m := map[int]bool{}
		off := 0
		for _, n := range lengths(chunkAll(t, bytes.NewReader(data), smallParams, NewTable(seed))) {
			off += n
			m[off] = true
		}
		delete(m, len(data))
		return m
	}
	a, b := cuts(testSeed(0)), cuts(testSeed(1))
	shared := 0
	for off := range a {
		if b[off] {
			shared++
		}
	}
	if len(a) < 500 || len(b) < 500 || shared > len(a)/20 {
		t.Fatalf("seeds share %d of %d and %d cut points, want under 5%%", shared, len(a), len(b))
	}
}

func TestNewTableDeterministic(t *testing.T) {
	a, b := NewTable(testSeed(0)), NewTable(testSeed(0))
	if *a != *b {
		t.Fatal("NewTable gave two tables for one seed")
	}
	if c := NewTable(testSeed(1)); *a == *c {
		t.Fatal("NewTable gave one table for two seeds")
	}
	seen := map[uint64]bool{}
	for _, w := range a {
		seen[w] = true
	}
	if len(seen) != len(a) {
		t.Fatalf("table has %d distinct words, want %d", len(seen), len(a))
	}
}

func TestReset(t *testing.T) {
	a, b := randomBytes(50, 1<<20), randomBytes(51, 2<<20)
	c := New(bytes.NewReader(a), smallParams, testTable())
	buf := make([]byte, 0, smallParams.Max)
	for range 3 {
		if _, err := c.Next(buf); err != nil {
			t.Fatal(err)
		}
	}
	c.Reset(bytes.NewReader(b))
	var got [][]byte
	for {
		chunk, err := c.Next(buf)
		if err == io.EOF {
			break
		}
		if err != nil {
			t.Fatal(err)
		}
		got = append(got, bytes.Clone(chunk))
	}
	want := chunkAll(t, bytes.NewReader(b), smallParams, testTable())
	if i := firstDiff(sums(got), sums(want)); i >= 0 {
		t.Fatalf("after Reset, chunk %d differs from a fresh Chunker", i)
	}

	// Reset also clears a sticky error.
	c.Reset(iotest.ErrReader(errTest))
	if _, err := c.Next(buf); err != errTest {
		t.Fatalf("Next = %v, want %v", err, errTest)
	}
	c.Reset(bytes.NewReader(a))
	if chunk, err := c.Next(buf); err != nil || len(chunk) < smallParams.Min {
		t.Fatalf("Next after Reset = (%d bytes, %v)", len(chunk), err)
	}
}

func TestReadErrors(t *testing.T) {
	data := randomBytes(60, 1<<20)
	want := chunkAll(t, bytes.NewReader(data), smallParams, testTable())

	t.Run("mid-stream", func(t *testing.T) {
		// The reader fails after the first half of the input: the chunks
		// that end before the failure are delivered, then the error.
		half := len(data) / 2
		c := New(&failReader{data: data[:half], err: errTest}, smallParams, testTable())
		buf := make([]byte, 0, smallParams.Max)
		off := 0
		for i := 0; ; i++ {
			chunk, err := c.Next(buf)
			if err != nil {
				if err != errTest || len(chunk) != 0 {
					t.Fatalf("chunk %d: Next = (%d bytes, %v), want (0 bytes, %v)", i, len(chunk), err, errTest)
				}
				if off+len(want[i]) <= half {
					t.Fatalf("error at chunk %d ending at %d, before the failure at %d", i, off+len(want[i]), half)
				}
				break
			}
			if !bytes.Equal(chunk, want[i]) {
				t.Fatalf("chunk %d differs", i)
			}
			off += len(chunk)
		}
		for range 2 { // sticky
			if chunk, err := c.Next(buf); err != errTest || len(chunk) != 0 {
				t.Fatalf("Next after error = (%d bytes, %v), want (0 bytes, %v)", len(chunk), err, errTest)
			}
		}
	})
	t.Run("data with error", func(t *testing.T) {
		// A read that returns data and an error: the data, shorter than
		// Min, is dropped and the error is reported as-is.
		r := funcReader(func(p []byte) (int, error) { return copy(p, data[:50]), errTest })
		c := New(r, tinyParams, testTable())
		if chunk, err := c.Next(nil); err != errTest || len(chunk) != 0 {
			t.Fatalf("Next = (%d bytes, %v), want (0 bytes, %v)", len(chunk), err, errTest)
		}
	})
	t.Run("no progress", func(t *testing.T) {
		calls := 0
		r := funcReader(func([]byte) (int, error) { calls++; return 0, nil })
		c := New(r, tinyParams, testTable())
		if _, err := c.Next(nil); err != io.ErrNoProgress {
			t.Fatalf("Next = %v, want %v", err, io.ErrNoProgress)
		}
		if calls != maxEmptyReads {
			t.Fatalf("reader called %d times, want %d", calls, maxEmptyReads)
		}
	})
	t.Run("invalid count", func(t *testing.T) {
		for _, n := range []int{-1, bufSize + 1} {
			r := funcReader(func([]byte) (int, error) { return n, nil })
			c := New(r, tinyParams, testTable())
			if _, err := c.Next(nil); !errors.Is(err, errInvalidRead) || err.Error() != "chunker: reader returned an invalid count" {
				t.Fatalf("count %d: Next = %v, want %v", n, err, errInvalidRead)
			}
		}
	})
}

// TestNextUsesDst checks that Next returns dst's memory when it is large
// enough, and still works with a nil or short dst.
func TestNextUsesDst(t *testing.T) {
	data := randomBytes(70, 100<<10)
	c := New(bytes.NewReader(data), smallParams, testTable())
	dst := make([]byte, 5, smallParams.Max)
	chunk, err := c.Next(dst)
	if err != nil {
		t.Fatal(err)
	}
	if &chunk[0] != &dst[0] {
		t.Fatal("chunk does not alias dst")
	}
	want := chunkAll(t, bytes.NewReader(data), smallParams, testTable())
	if !bytes.Equal(chunk, want[0]) {
		t.Fatal("chunk 0 differs")
	}
	for i := 1; ; i++ {
		chunk, err := c.Next(make([]byte, 3, 10))
		if err == io.EOF {
			if i != len(want) {
				t.Fatalf("got %d chunks, want %d", i, len(want))
			}
			break
		}
		if err != nil || !bytes.Equal(chunk, want[i]) {
			t.Fatalf("chunk %d: err %v, or bytes differ", i, err)
		}
	}
}

func TestNextAllocs(t *testing.T) {
	data := randomBytes(80, 4<<20)
	for _, p := range []Params{tinyParams, smallParams, DefaultParams} {
		r := bytes.NewReader(data)
		c := New(r, p, testTable())
		dst := make([]byte, 0, p.Max)
		chunks := 0
		allocs := testing.AllocsPerRun(200, func() {
			_, err := c.Next(dst)
			if err == io.EOF {
				r.Reset(data)
				c.Reset(r)
				return
			}
			if err != nil {
				panic(err)
			}
			chunks++
		})
		if allocs != 0 || chunks == 0 {
			t.Errorf("%+v: %v allocations per Next over %d chunks, want 0", p, allocs, chunks)
		}
	}
}

// TestNextGrowsByDoubling cuts a chunk of the largest size into a dst of
// the smallest: dst grows by doubling up to Max (four allocations from
// Min to Max at the default sizes), not in append's 25 % steps, and the
// chunk is the same as into a dst of Max.
func TestNextGrowsByDoubling(t *testing.T) {
	p := DefaultParams
	data := make([]byte, p.Max) // zeros never cut before Max
	r := bytes.NewReader(data)
	c := New(r, p, testTable())
	var chunk []byte
	allocs := testing.AllocsPerRun(1, func() {
		r.Reset(data)
		c.Reset(r)
		var err error
		chunk, err = c.Next(make([]byte, 0, p.Min))
		if err != nil {
			panic(err)
		}
	})
	if len(chunk) != p.Max || cap(chunk) != p.Max {
		t.Fatalf("chunk of %d bytes in a buffer of %d, want %d in %d", len(chunk), cap(chunk), p.Max, p.Max)
	}
	// One for the Min buffer, four doublings to Max.
	if allocs > 5 {
		t.Fatalf("%v allocations to cut one chunk of Max into a buffer of Min, want at most 5", allocs)
	}
}
