package wire

import (
	"bytes"
	"encoding/binary"
	"errors"
	"io"
	"math/rand/v2"
	"runtime"
	"strconv"
	"testing"

	"github.com/cairnbackup/cairn/repo/blob"
)

// allTypes lists every known frame type.
var allTypes = []Type{
	TypeHello, TypeWelcome, TypeError, TypeListSnapshots, TypeSnapshots,
	TypeLoadBlob, TypeBlob, TypeHaveBlobs, TypeHave, TypePutBlob,
	TypeCommit, TypeCommitted, TypeBye, TypeStoredBlob,
}

// header returns a frame header announcing a body of n bytes.
func header(t Type, n uint64) []byte {
	h := binary.BigEndian.AppendUint32(nil, uint32(n+1))
	return append(h, byte(t))
}

// zeros is an endless stream of zero bytes.
type zeros struct{}

func (zeros) Read(p []byte) (int, error) {
	clear(p)
	return len(p), nil
}

// headerOnly serves a frame header and fails the test if anything reads
// past it.
type headerOnly struct {
	t   *testing.T
	hdr []byte
}

func (r *headerOnly) Read(p []byte) (int, error) {
	if len(r.hdr) == 0 {
		r.t.Error("read past the frame header")
		return 0, io.ErrNoProgress
	}
	n := copy(p, r.hdr)
	r.hdr = r.hdr[n:]
	return n, nil
}

// bytesAllocated returns how many heap bytes f allocates.
func bytesAllocated(f func()) uint64 {
	var before, after runtime.MemStats
	runtime.ReadMemStats(&before)
	f()
	runtime.ReadMemStats(&after)
	return after.TotalAlloc - before.TotalAlloc
}

func TestTypeString(t *testing.T) {
	want := []string{"hello", "welcome", "error", "list-snapshots", "snapshots",
		"load-blob", "blob", "have-blobs", "have", "put-blob", "commit", "committed", "bye", "stored-blob"}
	for i, typ := range allTypes {
		if got := typ.String(); got != want[i] {
			t.Errorf("Type(0x%02x).String() = %q, want %q", uint8(typ), got, want[i])
		}
	}
	if got := Type(0x7f).String(); got != "type(0x7f)" {
		t.Errorf("Type(0x7f).String() = %q", got)
	}
}

func TestMaxBody(t *testing.T) {
	want := map[Type]int{
		TypeHello: 4 << 20, TypeWelcome: 4 << 20, TypeError: 4 << 20,
		TypeListSnapshots: 4 << 20, TypeSnapshots: 32 << 20, TypeLoadBlob: 4 << 20,
		TypeBlob: 64<<20 + 64, TypeHaveBlobs: 4 << 20, TypeHave: 4 << 20,
		TypePutBlob: 64<<20 + 64, TypeCommit: 4 << 20, TypeCommitted: 4 << 20, TypeBye: 4 << 20,
		TypeStoredBlob: 64<<20 + 64,
	}
	for c := range 256 {
		typ := Type(c)
		got, ok := MaxBody(typ)
		w, known := want[typ]
		if got != w || ok != known {
			t.Errorf("MaxBody(%v) = %d, %v; want %d, %v", typ, got, ok, w, known)
		}
	}
}

// TestReaderLimits reads a frame of exactly the limit of each class and
// refuses one byte more without reading or allocating for the body.
func TestReaderLimits(t *testing.T) {
	for _, typ := range []Type{TypePutBlob, TypeBlob, TypeSnapshots, TypeHaveBlobs, TypeBye} {
		limit, _ := MaxBody(typ)
		t.Run(typ.String(), func(t *testing.T) {
			r := NewReader(io.MultiReader(bytes.NewReader(header(typ, uint64(limit))), zeros{}))
			got, body, err := r.Next(nil)
			if err != nil || got != typ || len(body) != limit {
				t.Fatalf("Next = %v, %d bytes, %v; want %v, %d bytes", got, len(body), err, typ, limit)
			}
			if cap(body) != limit {
				t.Errorf("body capacity %d, want %d", cap(body), limit)
			}

			want := &FrameError{Type: typ, Length: uint64(limit) + 2, Reason: "body of " + strconv.Itoa(limit+1) + " bytes exceeds " + strconv.Itoa(limit)}
			var err2 error
			r = NewReader(&headerOnly{t: t, hdr: header(typ, uint64(limit)+1)})
			if n := bytesAllocated(func() { _, _, err2 = r.Next(nil) }); n > 4<<10 {
				t.Errorf("refusing an oversized header allocated %d bytes", n)
			}
			var fe *FrameError
			if !errors.As(err2, &fe) || *fe != *want || !errors.Is(err2, ErrProtocol) {
				t.Fatalf("Next = %v, want %v", err2, want)
			}
		})
	}
}

func TestReaderErrors(t *testing.T) {
	valid := append(header(TypeLoadBlob, 3), 1, 2, 3)
	for _, tc := range []struct {
		name   string
		stream []byte
		frames int // good frames before the error
		err    error
		msg    string // exact error text, for protocol errors
	}{
		{name: "empty stream", err: io.EOF},
		{name: "clean end after a frame", stream: valid, frames: 1, err: io.EOF},
		{name: "inside the length", stream: []byte{0, 0}, err: io.ErrUnexpectedEOF},
		{name: "inside the length after a frame", stream: append(valid[:len(valid):len(valid)], 0), frames: 1, err: io.ErrUnexpectedEOF},
		{name: "before the type", stream: []byte{0, 0, 0, 4}, err: io.ErrUnexpectedEOF},
		{name: "inside the body", stream: valid[:len(valid)-1], err: io.ErrUnexpectedEOF},
		{name: "empty body cut", stream: header(TypeBye, 0)[:4], err: io.ErrUnexpectedEOF},
		{name: "zero length", stream: []byte{0, 0, 0, 0, 0x19}, err: ErrProtocol,
			msg: "wire: frame of length 0: no type byte"},
		{name: "unknown type", stream: []byte{0, 0, 0, 1, 0x7f}, err: ErrProtocol,
			msg: "wire: type(0x7f) frame of length 1: unknown type"},
		{name: "type 0", stream: []byte{0, 0, 0, 1, 0}, err: ErrProtocol,
			msg: "wire: type(0x00) frame of length 1: unknown type"},
		{name: "unknown type after a frame", stream: append(valid[:len(valid):len(valid)], 0, 0, 0, 1, 0x20), frames: 1, err: ErrProtocol,
			msg: "wire: type(0x20) frame of length 1: unknown type"},
		{name: "oversized control", stream: header(TypeHello, MaxControlBody+1), err: ErrProtocol,
			msg: "wire: hello frame of length 4194306: body of 4194305 bytes exceeds 4194304"},
		{name: "largest length", stream: []byte{0xff, 0xff, 0xff, 0xff, 0x16}, err: ErrProtocol,
			msg: "wire: put-blob frame of length 4294967295: body of 4294967294 bytes exceeds 67108928"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			r := NewReader(bytes.NewReader(tc.stream))
			var buf []byte
			for i := range tc.frames {
				var err error
				if _, buf, err = r.Next(buf); err != nil {
					t.Fatalf("frame %d: %v", i, err)
				}
			}
			for range 2 { // the error sticks
				typ, body, err := r.Next(buf)
				if !errors.Is(err, tc.err) || typ != 0 || len(body) != 0 {
					t.Fatalf("Next = %v, %q, %v; want %v", typ, body, err, tc.err)
				}
				if tc.msg != "" && err.Error() != tc.msg {
					t.Fatalf("error %q, want %q", err, tc.msg)
				}
				if tc.err == io.EOF && err != io.EOF {
					t.Fatalf("error %#v, want io.EOF itself", err)
				}
			}
		})
	}
}

type failingReader struct{ err error }

func (r failingReader) Read([]byte) (int, error) { return 0, r.err }

func TestReaderPassesReadErrors(t *testing.T) {
	boom := errors.New("boom")
	r := NewReader(io.MultiReader(bytes.NewReader(header(TypeBlob, 10)[:5]), failingReader{boom}))
	if _, _, err := r.Next(nil); err != boom {
		t.Fatalf("Next = %v, want %v", err, boom)
	}
}

func TestReaderReusesBuffer(t *testing.T) {
	var stream []byte
	for i := range 3 {
		stream = append(stream, header(TypeCommit, uint64(10+i))...)
		stream = append(stream, bytes.Repeat([]byte{byte(i)}, 10+i)...)
	}
	r := NewReader(bytes.NewReader(stream))
	buf := make([]byte, 5, 64)
	for i := range 3 {
		typ, body, err := r.Next(buf)
		if err != nil || typ != TypeCommit || !bytes.Equal(body, bytes.Repeat([]byte{byte(i)}, 10+i)) {
			t.Fatalf("frame %d: %v %q %v", i, typ, body, err)
		}
		if &body[:1][0] != &buf[:1][0] {
			t.Fatalf("frame %d: body does not reuse the buffer", i)
		}
	}
}

// TestReaderGrowsWithData announces the largest frame and sends 100 KiB:
// the reader allocates in proportion to what arrived, not to what was
// announced.
func TestReaderGrowsWithData(t *testing.T) {
	data := make([]byte, 100<<10)
	stream := append(header(TypePutBlob, MaxBlobBody), data...)
	r := NewReader(bytes.NewReader(stream))
	var err error
	n := bytesAllocated(func() { _, _, err = r.Next(nil) })
	if err != io.ErrUnexpectedEOF {
		t.Fatalf("Next = %v, want io.ErrUnexpectedEOF", err)
	}
	if n > 512<<10 {
		t.Fatalf("allocated %d bytes for 100 KiB of body", n)
	}
}

// TestReaderNextWhole reads a 1 MiB body into one buffer allocated from
// its header, and an announced body beyond the limit in steps as Next
// does.
func TestReaderNextWhole(t *testing.T) {
	data := make([]byte, 1<<20)
	for i := range data {
		data[i] = byte(i)
	}
	stream := append(header(TypeBlob, uint64(len(data))), data...)
	r := NewReader(bytes.NewReader(stream))
	var body []byte
	var err error
	n := bytesAllocated(func() { _, body, err = r.NextWhole(8 << 20) })
	if err != nil || !bytes.Equal(body, data) {
		t.Fatalf("NextWhole = %d bytes, %v", len(body), err)
	}
	if n > 1<<20+4<<10 {
		t.Fatalf("allocated %d bytes for a body of 1 MiB", n)
	}
	stream = append(header(TypePutBlob, MaxBlobBody), make([]byte, 100<<10)...)
	r = NewReader(bytes.NewReader(stream))
	n = bytesAllocated(func() { _, _, err = r.NextWhole(8 << 20) })
	if err != io.ErrUnexpectedEOF {
		t.Fatalf("NextWhole = %v, want io.ErrUnexpectedEOF", err)
	}
	if n > 512<<10 {
		t.Fatalf("allocated %d bytes for 100 KiB of a body beyond the limit", n)
	}
}

// TestReaderGrowsSmallBuffer reads a body larger than the buffer's
// capacity in several steps.
func TestReaderGrowsSmallBuffer(t *testing.T) {
	body := make([]byte, 300<<10)
	for i := range body {
		body[i] = byte(i * 7)
	}
	stream := append(header(TypeBlob, uint64(len(body))), body...)
	r := NewReader(&oneByteAtFirst{r: bytes.NewReader(stream)})
	_, got, err := r.Next(make([]byte, 0, 1000))
	if err != nil || !bytes.Equal(got, body) {
		t.Fatalf("Next = %d bytes, %v", len(got), err)
	}
}

// oneByteAtFirst returns short reads, to exercise partial fills.
type oneByteAtFirst struct {
	r io.Reader
	n int
}

func (o *oneByteAtFirst) Read(p []byte) (int, error) {
	o.n++
	if o.n%3 == 0 && len(p) > 1 {
		p = p[:len(p)/3+1]
	}
	return o.r.Read(p)
}

func TestWriter(t *testing.T) {
	var out bytes.Buffer
	w := NewWriter(&out)
	if err := w.WriteFrame(TypeCommit, []byte{0, 0, 0, 7}, nil, []byte("rec")); err != nil {
		t.Fatal(err)
	}
	if err := w.WriteFrame(TypeBye); err != nil {
		t.Fatal(err)
	}
	if out.Len() != 0 {
		t.Fatalf("WriteFrame flushed %d bytes", out.Len())
	}
	if err := w.Flush(); err != nil {
		t.Fatal(err)
	}
	want := []byte{0, 0, 0, 8, 0x17, 0, 0, 0, 7, 'r', 'e', 'c', 0, 0, 0, 1, 0x19}
	if !bytes.Equal(out.Bytes(), want) {
		t.Fatalf("wrote %x, want %x", out.Bytes(), want)
	}
}

func TestWriterLimits(t *testing.T) {
	for _, typ := range []Type{TypePutBlob, TypeSnapshots, TypeLoadBlob} {
		limit, _ := MaxBody(typ)
		body := make([]byte, limit+1)
		var out bytes.Buffer
		w := NewWriter(&out)
		err := w.WriteFrame(typ, body[:1], body[1:])
		var fe *FrameError
		if !errors.As(err, &fe) || fe.Type != typ || fe.Length != uint64(limit)+2 || !errors.Is(err, ErrProtocol) {
			t.Fatalf("%v: WriteFrame of %d bytes = %v", typ, limit+1, err)
		}
		// Refused, nothing written, and the writer still works.
		if err := w.WriteFrame(typ, body[:limit]); err != nil {
			t.Fatalf("%v: WriteFrame of %d bytes = %v", typ, limit, err)
		}
		if err := w.Flush(); err != nil {
			t.Fatal(err)
		}
		if !bytes.Equal(out.Bytes()[:HeaderSize], header(typ, uint64(limit))) || out.Len() != HeaderSize+limit {
			t.Fatalf("%v: wrote %d bytes, want one frame of %d", typ, out.Len(), HeaderSize+limit)
		}
	}
	w := NewWriter(io.Discard)
	if err := w.WriteFrame(Type(0x42)); err == nil || err.Error() != "wire: type(0x42) frame of length 1: unknown type" {
		t.Fatalf("WriteFrame of an unknown type = %v", err)
	}
}

type failAfter struct {
	n   int
	err error
}

func (f *failAfter) Write(p []byte) (int, error) {
	if len(p) > f.n {
		n := f.n
		f.n = 0
		return n, f.err
	}
	f.n -= len(p)
	return len(p), nil
}

func TestWriterStaysFailed(t *testing.T) {
	boom := errors.New("boom")
	w := NewWriter(&failAfter{n: 10, err: boom})
	if err := w.WriteFrame(TypeBlob, make([]byte, 1<<20)); err != boom {
		t.Fatalf("WriteFrame = %v, want %v", err, boom)
	}
	if err := w.WriteFrame(TypeBye); err != boom {
		t.Fatalf("WriteFrame after a failure = %v, want %v", err, boom)
	}
	if err := w.Flush(); err != boom {
		t.Fatalf("Flush after a failure = %v, want %v", err, boom)
	}

	w = NewWriter(&failAfter{n: 0, err: boom})
	if err := w.WriteFrame(TypeBye); err != nil {
		t.Fatalf("buffered WriteFrame = %v", err)
	}
	if err := w.Flush(); err != boom {
		t.Fatalf("Flush = %v, want %v", err, boom)
	}
	if err := w.WriteFrame(TypeBye); err != boom {
		t.Fatalf("WriteFrame after a failed Flush = %v, want %v", err, boom)
	}
}

// benchPayload returns 1 MiB of incompressible data and its handle.
func benchPayload(b *testing.B) (blob.Handle, []byte) {
	payload := make([]byte, 1<<20)
	rng := rand.New(rand.NewChaCha8([32]byte{1}))
	for i := range payload {
		payload[i] = byte(rng.Uint32())
	}
	return blob.Handle{ID: blob.Hash(payload), Type: blob.Data}, payload
}

// BenchmarkPutBlobFrame measures WriteFrame and Next (with Append of the
// header and DecodePutBlob) of 1 MiB PutBlob frames: through a
// bytes.Buffer in one goroutine, and through an io.Pipe between two.
func BenchmarkPutBlobFrame(b *testing.B) {
	h, payload := benchPayload(b)
	msg := PutBlob{Handle: h, Compression: CompressionRaw, RawLength: uint32(len(payload))}
	hdr := msg.Append(nil)

	b.Run("buffer", func(b *testing.B) {
		var pipe bytes.Buffer
		w, r := NewWriter(&pipe), NewReader(&pipe)
		var body []byte
		b.SetBytes(int64(len(payload)))
		b.ReportAllocs()
		for b.Loop() {
			if err := w.WriteFrame(TypePutBlob, hdr, payload); err != nil {
				b.Fatal(err)
			}
			if err := w.Flush(); err != nil {
				b.Fatal(err)
			}
			var err error
			if _, body, err = r.Next(body); err != nil {
				b.Fatal(err)
			}
			if _, err := DecodePutBlob(body); err != nil {
				b.Fatal(err)
			}
		}
	})

	b.Run("pipe", func(b *testing.B) {
		pr, pw := io.Pipe()
		defer pr.Close() // unblocks the writer if the reader fails
		n := b.N
		done := make(chan error, 1)
		go func() {
			w := NewWriter(pw)
			for range n {
				if err := w.WriteFrame(TypePutBlob, hdr, payload); err != nil {
					done <- err
					return
				}
			}
			done <- w.Flush()
			pw.Close()
		}()
		r := NewReader(pr)
		var body []byte
		b.SetBytes(int64(len(payload)))
		b.ReportAllocs()
		b.ResetTimer()
		for range n {
			var err error
			if _, body, err = r.Next(body); err != nil {
				b.Fatal(err)
			}
			if _, err := DecodePutBlob(body); err != nil {
				b.Fatal(err)
			}
		}
		if err := <-done; err != nil {
			b.Fatal(err)
		}
	})
}
