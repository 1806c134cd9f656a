package pack

import (
	"encoding/binary"
	"errors"
	"fmt"
	"hash/crc32"
	"io"
	"slices"

	"github.com/cairnbackup/cairn/repo/blob"
	"github.com/cairnbackup/cairn/repo/seal"
	"github.com/minio/sha256-simd"
)

// Format constants; see FORMAT.md.
const (
	Magic      = "CAIRNPAK"
	magicSize  = 8
	Version    = 1
	PrefixSize = magicSize + 4 // magic, uint32 version
	FooterSize = 4 + 4 + 4 + 4 + magicSize
	EntrySize  = 1 + blob.IDSize + 8 + 4 + 4
	// MaxEntries is the most entries a pack header may list. Readers
	// refuse larger counts before allocating anything.
	MaxEntries = 1 << 20
	// WriterMaxEntries is where a Writer reports itself full even if its
	// size target is not reached (many tiny blobs).
	WriterMaxEntries = 1 << 16
)

const headerAAD = "cairn v1 pack header"

var crcTable = crc32.MakeTable(crc32.Castagnoli)

// Entry locates one blob in a pack.
type Entry struct {
	blob.Handle
	Offset    uint64 // of the envelope, from the start of the pack
	Length    uint32 // of the envelope
	RawLength uint32 // of the plaintext
}

// FormatError reports a pack that does not follow the format.
type FormatError struct {
	Pack   string // pack name, may be empty
	Offset int64  // where the problem is, -1 when not known
	Reason string
}

func (e *FormatError) Error() string {
	name := e.Pack
	if name == "" {
		name = "pack"
	} else {
		name = "pack " + name
	}
	if e.Offset >= 0 {
		return fmt.Sprintf("%s: offset %d: %s", name, e.Offset, e.Reason)
	}
	return fmt.Sprintf("%s: %s", name, e.Reason)
}

// Is reports that a FormatError is [blob.ErrCorrupt].
func (e *FormatError) Is(target error) bool { return target == blob.ErrCorrupt }

// Writer builds one pack in memory: [Writer.Add] seals each blob's
// envelope directly into the pack's buffer (no copy of the payload
// besides the one into the pack), and [Writer.Finish] hashes the whole
// pack once. It is not safe for concurrent use.
type Writer struct {
	key     *seal.Key
	out     []byte
	entries []Entry
	done    bool
}

// NewWriter starts a pack in buf's array (buf[:0]; a nil or short buf
// grows as blobs are added) and writes its prefix.
func NewWriter(buf []byte, key *seal.Key) *Writer {
	pw := &Writer{}
	pw.Reset(buf, key)
	return pw
}

// Reset starts a new pack in buf's array as NewWriter does, keeping the
// Writer's entry list for reuse.
func (pw *Writer) Reset(buf []byte, key *seal.Key) {
	pw.key = key
	pw.entries = pw.entries[:0]
	pw.done = false
	pw.out = append(buf[:0], Magic...)
	pw.out = binary.BigEndian.AppendUint32(pw.out, Version)
}

// Add seals a blob whose payload is already compressed as c says and
// appends it to the pack. rawLen is the plaintext length.
func (pw *Writer) Add(h blob.Handle, c Compression, payload []byte, rawLen int) (Entry, error) {
	if pw.done {
		return Entry{}, errors.New("pack: add after finish")
	}
	if !h.Type.Valid() {
		return Entry{}, fmt.Errorf("pack: add %s: invalid blob type", h)
	}
	if rawLen < 0 || rawLen > blob.MaxSize {
		return Entry{}, fmt.Errorf("pack: add %s: length %d out of range", h, rawLen)
	}
	if len(payload) > blob.MaxSize {
		// Readers refuse envelopes above MaxSize+MinEnvelope: never
		// write one.
		return Entry{}, fmt.Errorf("pack: add %s: payload of %d bytes exceeds %d", h, len(payload), blob.MaxSize)
	}
	e := Entry{Handle: h, Offset: uint64(len(pw.out)), RawLength: uint32(rawLen)}
	pw.out = appendEnvelope(pw.out, pw.key, h, c, payload)
	e.Length = uint32(uint64(len(pw.out)) - e.Offset)
	pw.entries = append(pw.entries, e)
	return e, nil
}

// Size is the number of bytes written so far.
func (pw *Writer) Size() int64 { return int64(len(pw.out)) }

// Fits reports whether a blob of a payload of n bytes, and then the
// header and footer [Writer.Finish] writes, fit in the buffer the pack
// is built in without growing it.
func (pw *Writer) Fits(n int) bool {
	return len(pw.out)+MinEnvelope+n+(len(pw.entries)+1)*EntrySize+seal.Overhead+FooterSize <= cap(pw.out)
}

// Count is the number of blobs added so far.
func (pw *Writer) Count() int { return len(pw.entries) }

// Entries returns the blobs added so far. The slice is owned by the Writer.
func (pw *Writer) Entries() []Entry { return pw.entries }

// Bytes returns the pack written so far: after [Writer.Finish], the whole
// pack. The slice is the Writer's buffer, valid until the next Reset.
func (pw *Writer) Bytes() []byte { return pw.out }

// Finish writes the sealed header and the footer and returns the pack ID
// (the SHA-256 of all bytes written) and the total size.
func (pw *Writer) Finish() (blob.ID, int64, error) {
	if pw.done {
		return blob.ID{}, 0, errors.New("pack: finish called twice")
	}
	pw.done = true
	n := len(pw.out)
	pw.out = slices.Grow(pw.out, len(pw.entries)*EntrySize+seal.Overhead+FooterSize)
	pw.out = pw.out[:n+seal.NonceSize]
	for _, e := range pw.entries {
		pw.out = appendEntry(pw.out, e)
	}
	pw.out = pw.key.SealInPlace(pw.out, n, []byte(headerAAD))
	sealed := pw.out[n:]
	var f [FooterSize]byte
	binary.BigEndian.PutUint32(f[0:], uint32(len(sealed)))
	binary.BigEndian.PutUint32(f[4:], uint32(len(pw.entries)))
	binary.BigEndian.PutUint32(f[8:], crc32.Checksum(sealed, crcTable))
	binary.BigEndian.PutUint32(f[12:], Version)
	copy(f[16:], Magic)
	pw.out = append(pw.out, f[:]...)
	return blob.ID(sha256.Sum256(pw.out)), int64(len(pw.out)), nil
}

func appendEntry(b []byte, e Entry) []byte {
	b = append(b, byte(e.Type))
	b = append(b, e.ID[:]...)
	b = binary.BigEndian.AppendUint64(b, e.Offset)
	b = binary.BigEndian.AppendUint32(b, e.Length)
	b = binary.BigEndian.AppendUint32(b, e.RawLength)
	return b
}

// ReadHeader reads and checks the footer and header of a pack of the
// given size and returns its entries in file order. Nothing is allocated
// before the footer's counts are checked against the file size and
// [MaxEntries].
func ReadHeader(r io.ReaderAt, size int64, key *seal.Key) ([]Entry, error) {
	if size < int64(PrefixSize+FooterSize) {
		return nil, &FormatError{Offset: -1, Reason: fmt.Sprintf("file of %d bytes is too short to be a pack", size)}
	}
	var f [FooterSize]byte
	if _, err := r.ReadAt(f[:], size-FooterSize); err != nil {
		return nil, fmt.Errorf("pack: read footer: %w", err)
	}
	footer, err := parseFooter(f[:], size)
	if err != nil {
		return nil, err
	}
	var p [PrefixSize]byte
	if _, err := r.ReadAt(p[:], 0); err != nil {
		return nil, fmt.Errorf("pack: read prefix: %w", err)
	}
	if string(p[:len(Magic)]) != Magic || binary.BigEndian.Uint32(p[len(Magic):]) != Version {
		return nil, &FormatError{Offset: 0, Reason: "bad magic or version at the start"}
	}
	sealed := make([]byte, footer.headerLen)
	if _, err := r.ReadAt(sealed, footer.headerOff); err != nil {
		return nil, fmt.Errorf("pack: read header: %w", err)
	}
	return decodeHeader(sealed, footer, key)
}

type footer struct {
	headerOff int64
	headerLen int64
	count     int
	crc       uint32
}

func parseFooter(f []byte, size int64) (footer, error) {
	if string(f[16:]) != Magic {
		return footer{}, &FormatError{Offset: size - FooterSize, Reason: "bad magic in footer"}
	}
	if v := binary.BigEndian.Uint32(f[12:]); v != Version {
		return footer{}, &FormatError{Offset: size - FooterSize, Reason: fmt.Sprintf("unsupported version %d", v)}
	}
	hl := int64(binary.BigEndian.Uint32(f[0:]))
	count := int64(binary.BigEndian.Uint32(f[4:]))
	if count > MaxEntries {
		return footer{}, &FormatError{Offset: size - FooterSize, Reason: fmt.Sprintf("header claims %d entries, more than the limit %d", count, MaxEntries)}
	}
	if hl != count*EntrySize+seal.Overhead {
		return footer{}, &FormatError{Offset: size - FooterSize, Reason: fmt.Sprintf("header length %d does not fit %d entries", hl, count)}
	}
	off := size - FooterSize - hl
	if off < int64(PrefixSize) {
		return footer{}, &FormatError{Offset: size - FooterSize, Reason: fmt.Sprintf("header length %d exceeds the file", hl)}
	}
	return footer{headerOff: off, headerLen: hl, count: int(count), crc: binary.BigEndian.Uint32(f[8:])}, nil
}

func decodeHeader(sealed []byte, f footer, key *seal.Key) ([]Entry, error) {
	if crc32.Checksum(sealed, crcTable) != f.crc {
		return nil, &FormatError{Offset: f.headerOff, Reason: "header checksum mismatch"}
	}
	plain, err := key.Open(nil, sealed, []byte(headerAAD))
	if err != nil {
		return nil, &FormatError{Offset: f.headerOff, Reason: "header does not authenticate (wrong key or damaged)"}
	}
	if len(plain) != f.count*EntrySize {
		return nil, &FormatError{Offset: f.headerOff, Reason: "header length mismatch"}
	}
	entries := make([]Entry, f.count)
	next := uint64(PrefixSize)
	for i := range entries {
		b := plain[i*EntrySize : (i+1)*EntrySize]
		e := Entry{
			Handle:    blob.Handle{Type: blob.Type(b[0]), ID: blob.ID(b[1 : 1+blob.IDSize])},
			Offset:    binary.BigEndian.Uint64(b[33:]),
			Length:    binary.BigEndian.Uint32(b[41:]),
			RawLength: binary.BigEndian.Uint32(b[45:]),
		}
		switch {
		case !e.Type.Valid():
			return nil, headerErr(f, i, fmt.Sprintf("invalid blob type %d", b[0]))
		case e.Offset != next:
			return nil, headerErr(f, i, fmt.Sprintf("offset %d, want %d", e.Offset, next))
		case e.Length < MinEnvelope || e.Length > blob.MaxSize+MinEnvelope:
			return nil, headerErr(f, i, fmt.Sprintf("envelope length %d out of range", e.Length))
		case e.RawLength > blob.MaxSize:
			return nil, headerErr(f, i, fmt.Sprintf("blob length %d out of range", e.RawLength))
		}
		next += uint64(e.Length)
		entries[i] = e
	}
	if next != uint64(f.headerOff) {
		return nil, &FormatError{Offset: f.headerOff, Reason: fmt.Sprintf("blobs end at %d but the header starts at %d", next, f.headerOff)}
	}
	return entries, nil
}

func headerErr(f footer, i int, reason string) error {
	return &FormatError{Offset: f.headerOff, Reason: fmt.Sprintf("entry %d: %s", i, reason)}
}

// DecodeHeader checks and decodes a pack held entirely in memory. It is
// [ReadHeader] over a byte slice; the fuzz test uses it.
func DecodeHeader(data []byte, key *seal.Key) ([]Entry, error) {
	return ReadHeader(bytesReaderAt(data), int64(len(data)), key)
}

type bytesReaderAt []byte

func (b bytesReaderAt) ReadAt(p []byte, off int64) (int, error) {
	if off < 0 || off > int64(len(b)) {
		return 0, io.EOF
	}
	n := copy(p, b[off:])
	if n < len(p) {
		return n, io.EOF
	}
	return n, nil
}
