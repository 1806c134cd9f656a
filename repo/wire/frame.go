package wire

import (
	"bufio"
	"encoding/binary"
	"errors"
	"fmt"
	"io"

	"github.com/cairnbackup/cairn/repo/blob"
)

// Version is the highest protocol version this package speaks. Version 2
// adds [StoredBlob]: a LoadBlob may be answered with the blob as stored,
// compressed, instead of its plaintext.
const Version = 2

// MinVersion is the lowest protocol version this package speaks: a peer
// of version 1 gets every blob as plaintext in a [Blob].
const MinVersion = 1

// Frame and message limits; see PROTOCOL.md.
const (
	// HeaderSize is the size of a frame header: a uint32 length and the
	// type byte.
	HeaderSize = 5
	// MaxBlobBody bounds the body of [TypePutBlob], [TypeBlob] and
	// [TypeStoredBlob] frames:
	// one blob of [blob.MaxSize] bytes and a small header.
	MaxBlobBody = blob.MaxSize + 64
	// MaxSnapshotsBody bounds the body of a [TypeSnapshots] frame.
	MaxSnapshotsBody = 32 << 20
	// MaxControlBody bounds the body of every other frame.
	MaxControlBody = 4 << 20
	// MaxString is the longest string field, in bytes.
	MaxString = 4096
	// MaxHandles is the most handles one [HaveBlobs] may carry, and the
	// most bits one [Have] may carry.
	MaxHandles = 1 << 16
	// MaxRecord bounds an encoded snapshot record in [Commit] and
	// [Snapshots]. It equals snapshot.MaxSize.
	MaxRecord = 1 << 20
	// HandleSize is the encoded size of a [blob.Handle]: type byte and ID.
	HandleSize = 1 + blob.IDSize
)

// bufSize is the size of the bufio buffers of [Reader] and [Writer], and
// the first step by which [Reader.Next] grows a body buffer.
const bufSize = 64 << 10

// ErrProtocol is matched (with [errors.Is]) by every error that reports a
// peer breaking the protocol: a [*FrameError] and every error of a Decode
// function.
var ErrProtocol = errors.New("wire: protocol error")

// Type is the type byte of a frame. Its values are part of the protocol.
type Type uint8

// Frame types; PROTOCOL.md describes each body.
const (
	TypeHello         Type = 0x01 // client → server, first frame
	TypeWelcome       Type = 0x02 // server → client, answer to Hello
	TypeError         Type = 0x03 // either way, ends the session
	TypeListSnapshots Type = 0x10 // client → server
	TypeSnapshots     Type = 0x11 // server → client, answer to ListSnapshots
	TypeLoadBlob      Type = 0x12 // client → server
	TypeBlob          Type = 0x13 // server → client, answer to LoadBlob
	TypeHaveBlobs     Type = 0x14 // client → server
	TypeHave          Type = 0x15 // server → client, answer to HaveBlobs
	TypePutBlob       Type = 0x16 // client → server, no answer
	TypeCommit        Type = 0x17 // client → server
	TypeCommitted     Type = 0x18 // server → client, answer to Commit
	TypeBye           Type = 0x19 // client → server, ends the session
	TypeStoredBlob    Type = 0x1a // server → client, answer to LoadBlob (version 2)
)

// String returns the name used in messages, such as "have-blobs", or
// "type(0x7f)" for an unknown type.
func (t Type) String() string {
	switch t {
	case TypeHello:
		return "hello"
	case TypeWelcome:
		return "welcome"
	case TypeError:
		return "error"
	case TypeListSnapshots:
		return "list-snapshots"
	case TypeSnapshots:
		return "snapshots"
	case TypeLoadBlob:
		return "load-blob"
	case TypeBlob:
		return "blob"
	case TypeHaveBlobs:
		return "have-blobs"
	case TypeHave:
		return "have"
	case TypePutBlob:
		return "put-blob"
	case TypeCommit:
		return "commit"
	case TypeCommitted:
		return "committed"
	case TypeBye:
		return "bye"
	case TypeStoredBlob:
		return "stored-blob"
	}
	return fmt.Sprintf("type(0x%02x)", uint8(t))
}

// MaxBody returns the largest body a frame of type t may carry, and false
// if t is not a known type.
func MaxBody(t Type) (int, bool) {
	switch t {
	case TypePutBlob, TypeBlob, TypeStoredBlob:
		return MaxBlobBody, true
	case TypeSnapshots:
		return MaxSnapshotsBody, true
	case TypeHello, TypeWelcome, TypeError, TypeListSnapshots, TypeLoadBlob,
		TypeHaveBlobs, TypeHave, TypeCommit, TypeCommitted, TypeBye:
		return MaxControlBody, true
	}
	return 0, false
}

// FrameError reports a frame header that breaks the limits: a zero
// length, an unknown type or a body larger than [MaxBody] allows. It
// matches [ErrProtocol].
type FrameError struct {
	Type   Type   // the type byte; meaningless when Length is 0
	Length uint64 // the length field: type byte plus body
	Reason string
}

func (e *FrameError) Error() string {
	if e.Length == 0 {
		return "wire: frame of length 0: " + e.Reason
	}
	return fmt.Sprintf("wire: %s frame of length %d: %s", e.Type, e.Length, e.Reason)
}

// Is reports that a FrameError is an [ErrProtocol].
func (e *FrameError) Is(target error) bool { return target == ErrProtocol }

// checkFrame checks a frame header: the type byte and the length field
// (type byte plus body).
func checkFrame(t Type, length uint64) error {
	if length == 0 {
		return &FrameError{Length: 0, Reason: "no type byte"}
	}
	limit, ok := MaxBody(t)
	if !ok {
		return &FrameError{Type: t, Length: length, Reason: "unknown type"}
	}
	if length-1 > uint64(limit) {
		return &FrameError{Type: t, Length: length, Reason: fmt.Sprintf("body of %d bytes exceeds %d", length-1, limit)}
	}
	return nil
}

// Reader reads frames from a byte stream. It is not safe for concurrent
// use. A Reader that returned an error (io.EOF included) stays failed and
// returns the same error again: the stream position is no longer known.
type Reader struct {
	br  *bufio.Reader
	hdr [HeaderSize]byte
	err error
}

// NewReader returns a Reader that reads r through a 64 KiB buffer.
func NewReader(r io.Reader) *Reader {
	return &Reader{br: bufio.NewReaderSize(r, bufSize)}
}

// Next reads one frame and returns its type and body. The body is
// appended to buf[:0], so a caller that passes the previous body back
// reuses its memory; the body is valid until that buffer is reused.
//
// The header is checked against [MaxBody] before any body byte is read
// or any memory is allocated, and a body larger than cap(buf) is grown
// step by step as its bytes arrive (doubling from 64 KiB), so a peer
// that announces a large frame and sends little costs little.
//
// Next returns io.EOF when the stream ends cleanly before a frame,
// io.ErrUnexpectedEOF when it ends inside one, a [*FrameError] for a
// header that breaks the limits, and the underlying reader's error
// otherwise. On error the body is buf[:0].
func (r *Reader) Next(buf []byte) (Type, []byte, error) {
	if r.err != nil {
		return 0, buf[:0], r.err
	}
	t, body, err := r.next(buf[:0])
	if err != nil {
		r.err = err
		return 0, buf[:0], err
	}
	return t, body, nil
}

// NextWhole is [Reader.Next] for a reader that may trust the announced
// length up to whole bytes: a body of at most whole bytes is read into a
// buffer allocated at once from its header, instead of one grown in steps
// (which for a 1 MiB body allocates about 2 MiB and copies 1 MiB). A
// peer that announces such a frame and stalls costs at most whole bytes;
// longer bodies grow in steps as with Next. The body is the caller's.
func (r *Reader) NextWhole(whole int) (Type, []byte, error) {
	if _, n, err := r.Peek(); err == nil && n <= whole {
		return r.Next(make([]byte, 0, n))
	}
	return r.Next(nil)
}

// Peek waits for the header of the next frame and returns its type and
// body length, checked as [Reader.Next] checks them, without consuming
// anything: a server can decide whether to read the body now (a memory
// budget) before any of it is buffered. On error the caller calls Next,
// which reports the same problem.
func (r *Reader) Peek() (Type, int, error) {
	if r.err != nil {
		return 0, 0, r.err
	}
	h, err := r.br.Peek(4)
	if err != nil {
		return 0, 0, err
	}
	length := uint64(binary.BigEndian.Uint32(h))
	if length == 0 {
		return 0, 0, checkFrame(0, 0)
	}
	if h, err = r.br.Peek(HeaderSize); err != nil {
		return 0, 0, err
	}
	t := Type(h[4])
	if err := checkFrame(t, length); err != nil {
		return 0, 0, err
	}
	return t, int(length - 1), nil
}

// PeekBody returns the first k bytes of the next frame's body (fewer if
// the body is shorter) without consuming anything; call it after Peek.
func (r *Reader) PeekBody(k int) ([]byte, error) {
	_, n, err := r.Peek()
	if err != nil {
		return nil, err
	}
	b, err := r.br.Peek(HeaderSize + min(k, n))
	if err != nil {
		return nil, err
	}
	return b[HeaderSize:], nil
}

func (r *Reader) next(body []byte) (Type, []byte, error) {
	// The length first, on its own: a zero length has no type byte, and
	// reading one would take a byte of the next frame.
	if _, err := io.ReadFull(r.br, r.hdr[:4]); err != nil {
		return 0, body, err // io.EOF before the first byte, else io.ErrUnexpectedEOF
	}
	length := uint64(binary.BigEndian.Uint32(r.hdr[:4]))
	if length == 0 {
		return 0, body, checkFrame(0, 0)
	}
	c, err := r.br.ReadByte()
	if err != nil {
		return 0, body, noEOF(err)
	}
	t := Type(c)
	if err := checkFrame(t, length); err != nil {
		return 0, body, err
	}
	n := int(length - 1)
	for len(body) < n {
		if len(body) == cap(body) {
			grown := make([]byte, len(body), min(n, max(2*cap(body), bufSize)))
			copy(grown, body)
			body = grown
		}
		m, err := io.ReadFull(r.br, body[len(body):min(n, cap(body))])
		body = body[:len(body)+m]
		if err != nil {
			return 0, body, noEOF(err)
		}
	}
	return t, body, nil
}

// noEOF turns io.EOF into io.ErrUnexpectedEOF, for reads inside a frame.
func noEOF(err error) error {
	if err == io.EOF {
		return io.ErrUnexpectedEOF
	}
	return err
}

// Writer writes frames to a byte stream through a 64 KiB buffer. It is
// not safe for concurrent use: callers serialise writes. A Writer whose
// underlying writer failed stays failed and returns that error again.
type Writer struct {
	bw  *bufio.Writer
	hdr [HeaderSize]byte
	err error
}

// NewWriter returns a Writer that writes to w through a 64 KiB buffer.
func NewWriter(w io.Writer) *Writer {
	return &Writer{bw: bufio.NewWriterSize(w, bufSize)}
}

// WriteFrame writes one frame of type t whose body is the concatenation
// of the parts, so a header and a large payload need not be copied into
// one buffer first. A frame that [MaxBody] refuses is not written and is
// reported as a [*FrameError]; the Writer stays usable. WriteFrame does
// not flush: bodies larger than the buffer go straight to the underlying
// writer, the rest waits for [Writer.Flush].
func (w *Writer) WriteFrame(t Type, body ...[]byte) error {
	if w.err != nil {
		return w.err
	}
	length := uint64(1)
	for _, p := range body {
		length += uint64(len(p))
	}
	if err := checkFrame(t, length); err != nil {
		return err
	}
	binary.BigEndian.PutUint32(w.hdr[:4], uint32(length))
	w.hdr[4] = byte(t)
	if _, err := w.bw.Write(w.hdr[:]); err != nil {
		w.err = err
		return err
	}
	for _, p := range body {
		if _, err := w.bw.Write(p); err != nil {
			w.err = err
			return err
		}
	}
	return nil
}

// Flush writes any buffered frames to the underlying writer.
func (w *Writer) Flush() error {
	if w.err != nil {
		return w.err
	}
	if err := w.bw.Flush(); err != nil {
		w.err = err
		return err
	}
	return nil
}
