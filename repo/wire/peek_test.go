package wire

import (
	"bytes"
	"errors"
	"io"
	"testing"

	"github.com/cairnbackup/cairn/repo/blob"
)

// Peek and PeekBody show the next frame's header and the start of its
// body without consuming them; a bad header gives the error Next gives.
func TestReaderPeek(t *testing.T) {
	put := (&PutBlob{Handle: blob.Handle{ID: blob.Hash([]byte("x")), Type: blob.Data}, RawLength: 1, Payload: []byte("x")}).Append(nil)
	var b bytes.Buffer
	w := NewWriter(&b)
	w.WriteFrame(TypePutBlob, put)
	w.WriteFrame(TypeBye)
	w.Flush()
	r := NewReader(&b)
	for range 2 {
		typ, n, err := r.Peek()
		if err != nil || typ != TypePutBlob || n != len(put) {
			t.Fatalf("peek: %s %d %v", typ, n, err)
		}
	}
	if head, err := r.PeekBody(putBlobHeader); err != nil || !bytes.Equal(head, put[:putBlobHeader]) {
		t.Fatalf("peek body: %x %v", head, err)
	}
	if head, err := r.PeekBody(1 << 20); err != nil || !bytes.Equal(head, put) {
		t.Fatalf("peek more than the body: %x %v", head, err)
	}
	typ, body, err := r.Next(nil)
	if err != nil || typ != TypePutBlob || !bytes.Equal(body, put) {
		t.Fatalf("next after peek: %s %x %v", typ, body, err)
	}
	if typ, n, err := r.Peek(); err != nil || typ != TypeBye || n != 0 {
		t.Fatalf("peek bye: %s %d %v", typ, n, err)
	}
	r.Next(nil)
	if _, _, err := r.Peek(); !errors.Is(err, io.EOF) {
		t.Fatalf("peek at the end: %v", err)
	}
	for _, h := range [][]byte{{0, 0, 0, 0}, header(Type(0x7f), 3), header(TypeHello, MaxControlBody+1)} {
		r := NewReader(bytes.NewReader(h))
		_, _, perr := r.Peek()
		_, _, nerr := r.Next(nil)
		if !errors.Is(perr, ErrProtocol) || perr.Error() != nerr.Error() {
			t.Errorf("header %x: peek %v, next %v", h, perr, nerr)
		}
	}
}
