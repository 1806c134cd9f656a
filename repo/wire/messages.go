package wire

import (
	"encoding/binary"
	"fmt"
	"slices"
	"strings"
	"unicode/utf8"

	"github.com/cairnbackup/cairn/repo/blob"
)

// Magic opens every [Hello] body.
const Magic = "cairn-wire"

// Compression values of [PutBlob] and [StoredBlob]; they equal the pack
// format's.
const (
	CompressionRaw  uint8 = 0 // the payload is the plaintext
	CompressionZstd uint8 = 1 // the payload is one zstd frame, shorter than the plaintext
)

// Perm is the set of permissions a server grants a node.
type Perm uint8

// Permissions; the bit values are part of the protocol.
const (
	PermPush  Perm = 1 << 0 // add blobs and snapshots for this node
	PermRead  Perm = 1 << 1 // list, load and restore this node's snapshots
	PermAdmin Perm = 1 << 2 // everything
	permAll        = PermPush | PermRead | PermAdmin
)

// Has reports whether p holds every permission in q.
func (p Perm) Has(q Perm) bool { return p&q == q }

// String lists the permissions as "push,read,admin", "none" for none.
func (p Perm) String() string {
	if p == 0 {
		return "none"
	}
	var names []string
	for _, n := range []struct {
		p    Perm
		name string
	}{{PermPush, "push"}, {PermRead, "read"}, {PermAdmin, "admin"}} {
		if p.Has(n.p) {
			names = append(names, n.name)
		}
	}
	if rest := p &^ permAll; rest != 0 {
		names = append(names, fmt.Sprintf("0x%02x", uint8(rest)))
	}
	return strings.Join(names, ",")
}

// ErrorCode says what kind of failure an [ErrorMsg] reports.
type ErrorCode uint16

// Error codes; the values are part of the protocol.
const (
	CodeProtocol         ErrorCode = 1 // the peer broke the protocol
	CodePermissionDenied ErrorCode = 2 // the node lacks the permission for a request
	CodeNotFound         ErrorCode = 3 // a blob or snapshot does not exist or is not visible
	CodeBadBlob          ErrorCode = 4 // a blob does not match its ID or does not decompress
	CodeInternal         ErrorCode = 5 // the server failed
	CodeLimitExceeded    ErrorCode = 6 // a request exceeds a limit announced in Welcome
	CodeUnsupported      ErrorCode = 7 // no common version, or a feature the peer lacks
)

// String names the code, such as "permission denied".
func (c ErrorCode) String() string {
	switch c {
	case CodeProtocol:
		return "protocol"
	case CodePermissionDenied:
		return "permission denied"
	case CodeNotFound:
		return "not found"
	case CodeBadBlob:
		return "bad blob"
	case CodeInternal:
		return "internal"
	case CodeLimitExceeded:
		return "limit exceeded"
	case CodeUnsupported:
		return "unsupported"
	}
	return fmt.Sprintf("code(%d)", uint16(c))
}

func (c ErrorCode) valid() bool { return c >= CodeProtocol && c <= CodeUnsupported }

// Hello is the client's first frame: who it is and which versions it
// speaks.
type Hello struct {
	MinVersion, MaxVersion uint16
	Client                 string // the client software, e.g. "cairn 0.1.0"
	Node                   string // the node the client believes it is; may be empty
}

// Append appends the body of h to dst.
func (h *Hello) Append(dst []byte) []byte {
	dst = append(dst, Magic...)
	dst = binary.BigEndian.AppendUint16(dst, h.MinVersion)
	dst = binary.BigEndian.AppendUint16(dst, h.MaxVersion)
	dst = appendString(dst, h.Client)
	return appendString(dst, h.Node)
}

// DecodeHello decodes the body of a [TypeHello] frame.
func DecodeHello(b []byte) (*Hello, error) {
	return decodeBody(TypeHello, b, func(d *decoder, h *Hello) {
		if m := d.take(len(Magic), "magic"); d.err == nil && string(m) != Magic {
			d.failf("bad magic %q", m)
		}
		h.MinVersion = d.u16("min version")
		h.MaxVersion = d.u16("max version")
		if d.err == nil {
			switch {
			case h.MinVersion == 0:
				d.failf("min version is 0")
			case h.MinVersion > h.MaxVersion:
				d.failf("min version %d exceeds max version %d", h.MinVersion, h.MaxVersion)
			}
		}
		h.Client = d.str("client")
		h.Node = d.str("node")
	})
}

// Welcome is the server's answer to [Hello]: the version it picked and
// what the client needs to know to push.
type Welcome struct {
	Version                      uint16
	Node                         string   // the node the server knows the client as
	Perms                        Perm     // what the node may do
	Repo                         blob.ID  // the repository's ID
	ChunkMin, ChunkAvg, ChunkMax uint32   // the repository's chunker parameters
	ChunkerSeed                  [32]byte // seed of the chunker's gear table
	Isolated                     bool     // HaveBlobs answers only for blobs this node sent
	MaxBatch                     uint32   // most handles in one HaveBlobs, 1 to MaxHandles
	MaxInflight                  uint32   // most unanswered requests the client may have, at least 1
}

const flagIsolated = 1 << 0

// Append appends the body of w to dst.
func (w *Welcome) Append(dst []byte) []byte {
	dst = binary.BigEndian.AppendUint16(dst, w.Version)
	dst = appendString(dst, w.Node)
	dst = append(dst, byte(w.Perms))
	dst = append(dst, w.Repo[:]...)
	dst = binary.BigEndian.AppendUint32(dst, w.ChunkMin)
	dst = binary.BigEndian.AppendUint32(dst, w.ChunkAvg)
	dst = binary.BigEndian.AppendUint32(dst, w.ChunkMax)
	dst = append(dst, w.ChunkerSeed[:]...)
	var flags byte
	if w.Isolated {
		flags |= flagIsolated
	}
	dst = append(dst, flags)
	dst = binary.BigEndian.AppendUint32(dst, w.MaxBatch)
	return binary.BigEndian.AppendUint32(dst, w.MaxInflight)
}

// DecodeWelcome decodes the body of a [TypeWelcome] frame. The chunker
// parameters are checked by the chunker, not here.
func DecodeWelcome(b []byte) (*Welcome, error) {
	return decodeBody(TypeWelcome, b, func(d *decoder, w *Welcome) {
		if w.Version = d.u16("version"); d.err == nil && w.Version == 0 {
			d.failf("version is 0")
		}
		w.Node = d.str("node")
		if w.Perms = Perm(d.u8("perms")); d.err == nil && w.Perms&^permAll != 0 {
			d.failf("perms 0x%02x has unknown bits", uint8(w.Perms))
		}
		w.Repo = d.id("repo")
		w.ChunkMin = d.u32("chunk min")
		w.ChunkAvg = d.u32("chunk avg")
		w.ChunkMax = d.u32("chunk max")
		w.ChunkerSeed = d.id("chunker seed")
		flags := d.u8("flags")
		if d.err == nil && flags&^flagIsolated != 0 {
			d.failf("flags 0x%02x has unknown bits", flags)
		}
		w.Isolated = flags&flagIsolated != 0
		if w.MaxBatch = d.u32("max batch"); d.err == nil && (w.MaxBatch == 0 || w.MaxBatch > MaxHandles) {
			d.failf("max batch %d is not in 1..%d", w.MaxBatch, MaxHandles)
		}
		if w.MaxInflight = d.u32("max inflight"); d.err == nil && w.MaxInflight == 0 {
			d.failf("max inflight is 0")
		}
	})
}

// ErrorMsg reports a failure to the peer and ends the session. As an
// error it reads "wire: remote error (permission denied): message".
type ErrorMsg struct {
	Code    ErrorCode
	Message string // for people; at most MaxString bytes
}

func (e *ErrorMsg) Error() string {
	if e.Message == "" {
		return "wire: remote error (" + e.Code.String() + ")"
	}
	return "wire: remote error (" + e.Code.String() + "): " + e.Message
}

// Append appends the body of e to dst.
func (e *ErrorMsg) Append(dst []byte) []byte {
	dst = binary.BigEndian.AppendUint16(dst, uint16(e.Code))
	return appendString(dst, e.Message)
}

// DecodeError decodes the body of a [TypeError] frame. Unknown codes are
// refused: both sides speak the same version, hence the same codes.
func DecodeError(b []byte) (*ErrorMsg, error) {
	return decodeBody(TypeError, b, func(d *decoder, e *ErrorMsg) {
		if e.Code = ErrorCode(d.u16("code")); d.err == nil && !e.Code.valid() {
			d.failf("unknown code %d", uint16(e.Code))
		}
		e.Message = d.str("message")
	})
}

// ListSnapshots asks for the snapshots of the client's node.
type ListSnapshots struct {
	Req  uint32
	Plan string // only this plan; empty for all plans
}

// Append appends the body of l to dst.
func (l *ListSnapshots) Append(dst []byte) []byte {
	dst = binary.BigEndian.AppendUint32(dst, l.Req)
	return appendString(dst, l.Plan)
}

// DecodeListSnapshots decodes the body of a [TypeListSnapshots] frame.
func DecodeListSnapshots(b []byte) (*ListSnapshots, error) {
	return decodeBody(TypeListSnapshots, b, func(d *decoder, l *ListSnapshots) {
		l.Req = d.u32("req")
		l.Plan = d.str("plan")
	})
}

// SnapshotItem is one snapshot in a [Snapshots] answer.
type SnapshotItem struct {
	ID     blob.ID
	Record []byte // the encoded snapshot record, at most MaxRecord bytes
}

// snapshotItemMin is the encoded size of an item with an empty record.
const snapshotItemMin = blob.IDSize + 4

// Snapshots answers [ListSnapshots], in as many frames as needed: every
// frame but the last has More set.
type Snapshots struct {
	Req   uint32
	More  bool // more Snapshots frames with this Req follow
	Items []SnapshotItem
}

// Append appends the body of s to dst.
func (s *Snapshots) Append(dst []byte) []byte {
	dst = binary.BigEndian.AppendUint32(dst, s.Req)
	dst = appendBool(dst, s.More)
	dst = binary.BigEndian.AppendUint32(dst, uint32(len(s.Items)))
	for i := range s.Items {
		dst = append(dst, s.Items[i].ID[:]...)
		dst = binary.BigEndian.AppendUint32(dst, uint32(len(s.Items[i].Record)))
		dst = append(dst, s.Items[i].Record...)
	}
	return dst
}

// DecodeSnapshots decodes the body of a [TypeSnapshots] frame. The
// records are copied (into one allocation), so they stay valid when b is
// reused.
func DecodeSnapshots(b []byte) (*Snapshots, error) {
	d := newDecoder(TypeSnapshots, b)
	var s Snapshots
	s.Req = d.u32("req")
	s.More = d.bool("more")
	count := d.u32("count")
	if d.err == nil && uint64(count)*snapshotItemMin > uint64(d.remaining()) {
		d.failf("count %d needs at least %d bytes, have %d", count, uint64(count)*snapshotItemMin, d.remaining())
	}
	if d.err != nil {
		return nil, d.err
	}
	if count > 0 {
		s.Items = make([]SnapshotItem, count)
	}
	total := 0
	for i := range s.Items {
		s.Items[i].ID = d.id("snapshot id")
		n := d.u32("record length")
		if d.err == nil && n > MaxRecord {
			d.failf("record %d of %d bytes exceeds %d", i, n, MaxRecord)
		}
		s.Items[i].Record = d.take(int(n), "record")
		if d.err != nil {
			return nil, d.err
		}
		total += int(n)
	}
	if err := d.finish(); err != nil {
		return nil, err
	}
	records := make([]byte, total)
	for i := range s.Items {
		r := s.Items[i].Record
		if len(r) == 0 {
			s.Items[i].Record = nil
			continue
		}
		n := copy(records, r)
		s.Items[i].Record, records = records[:n:n], records[n:]
	}
	return &s, nil
}

// LoadBlob asks for the plaintext of one blob.
type LoadBlob struct {
	Req    uint32
	Handle blob.Handle
}

// Append appends the body of l to dst.
func (l *LoadBlob) Append(dst []byte) []byte {
	dst = binary.BigEndian.AppendUint32(dst, l.Req)
	return appendHandle(dst, l.Handle)
}

// DecodeLoadBlob decodes the body of a [TypeLoadBlob] frame.
func DecodeLoadBlob(b []byte) (*LoadBlob, error) {
	return decodeBody(TypeLoadBlob, b, func(d *decoder, l *LoadBlob) {
		l.Req = d.u32("req")
		l.Handle = d.handle("handle")
	})
}

// Blob answers [LoadBlob] with the blob's plaintext. With Data nil,
// Append gives the 4-byte header alone, so a sender can pass the data to
// [Writer.WriteFrame] as a second part instead of copying it.
type Blob struct {
	Req  uint32
	Data []byte // the plaintext, at most blob.MaxSize bytes
}

// Append appends the body of m to dst.
func (m *Blob) Append(dst []byte) []byte {
	return append(m.AppendHead(dst), m.Data...)
}

// AppendHead appends the body of m without its Data to dst: a writer
// sends Data after it as a second part of the frame, without copying it.
func (m *Blob) AppendHead(dst []byte) []byte {
	return binary.BigEndian.AppendUint32(dst, m.Req)
}

// DecodeBlob decodes the body of a [TypeBlob] frame. Data aliases b.
func DecodeBlob(b []byte) (*Blob, error) {
	return decodeBody(TypeBlob, b, func(d *decoder, m *Blob) {
		m.Req = d.u32("req")
		m.Data = d.rest()
		if d.err == nil && len(m.Data) > blob.MaxSize {
			d.failf("data of %d bytes exceeds %d", len(m.Data), blob.MaxSize)
		}
	})
}

// HaveBlobs asks which of a batch of blobs the server already holds.
type HaveBlobs struct {
	Req     uint32
	Handles []blob.Handle // 1 to MaxHandles, and at most Welcome.MaxBatch
}

// Append appends the body of h to dst.
func (h *HaveBlobs) Append(dst []byte) []byte {
	dst = binary.BigEndian.AppendUint32(dst, h.Req)
	dst = binary.BigEndian.AppendUint32(dst, uint32(len(h.Handles)))
	n := len(dst)
	dst = slices.Grow(dst, len(h.Handles)*HandleSize)[:n+len(h.Handles)*HandleSize]
	for i := range h.Handles {
		e := dst[n+i*HandleSize : n+(i+1)*HandleSize]
		e[0] = byte(h.Handles[i].Type)
		copy(e[1:], h.Handles[i].ID[:])
	}
	return dst
}

// DecodeHaveBlobs decodes the body of a [TypeHaveBlobs] frame.
func DecodeHaveBlobs(b []byte) (*HaveBlobs, error) {
	d := newDecoder(TypeHaveBlobs, b)
	var h HaveBlobs
	h.Req = d.u32("req")
	count := d.count()
	if d.err == nil && uint64(count)*HandleSize > uint64(d.remaining()) {
		d.failf("count %d needs %d bytes, have %d", count, uint64(count)*HandleSize, d.remaining())
	}
	if d.err != nil {
		return nil, d.err
	}
	start := d.off
	p := d.take(int(count)*HandleSize, "handles")
	h.Handles = make([]blob.Handle, count)
	for i := range h.Handles {
		e := p[i*HandleSize : (i+1)*HandleSize]
		if t := blob.Type(e[0]); !t.Valid() {
			d.failf("handle at offset %d has unknown blob type %d", start+i*HandleSize, e[0])
			return nil, d.err
		}
		h.Handles[i].Type = blob.Type(e[0])
		copy(h.Handles[i].ID[:], e[1:])
	}
	if err := d.finish(); err != nil {
		return nil, err
	}
	return &h, nil
}

// Have answers [HaveBlobs]: Has[i] reports whether the server holds the
// i-th handle of the request. It travels as a bitmap.
type Have struct {
	Req uint32
	Has []bool // as many as the request had handles
}

// Append appends the body of h to dst.
func (h *Have) Append(dst []byte) []byte {
	dst = binary.BigEndian.AppendUint32(dst, h.Req)
	dst = binary.BigEndian.AppendUint32(dst, uint32(len(h.Has)))
	var c byte
	for i, has := range h.Has {
		if has {
			c |= 0x80 >> (i % 8)
		}
		if i%8 == 7 {
			dst = append(dst, c)
			c = 0
		}
	}
	if len(h.Has)%8 != 0 {
		dst = append(dst, c)
	}
	return dst
}

// DecodeHave decodes the body of a [TypeHave] frame.
func DecodeHave(b []byte) (*Have, error) {
	d := newDecoder(TypeHave, b)
	var h Have
	h.Req = d.u32("req")
	count := d.count()
	bitmap := d.take((int(count)+7)/8, "bitmap")
	if d.err == nil && count%8 != 0 && bitmap[len(bitmap)-1]&(0xff>>(count%8)) != 0 {
		d.failf("bitmap has bits set beyond count %d", count)
	}
	if err := d.finish(); err != nil {
		return nil, err
	}
	h.Has = make([]bool, count)
	for i := range h.Has {
		h.Has[i] = bitmap[i/8]&(0x80>>(i%8)) != 0
	}
	return &h, nil
}

// PutBlob sends one blob, compressed or not. The server answers nothing
// unless the blob is refused, which ends the session with an [ErrorMsg].
// With Payload nil, Append gives the 38-byte header alone, so a sender
// can pass the payload to [Writer.WriteFrame] as a second part instead of
// copying it.
type PutBlob struct {
	Handle      blob.Handle
	Compression uint8  // CompressionRaw or CompressionZstd
	RawLength   uint32 // plaintext length, at most blob.MaxSize
	Payload     []byte // RawLength bytes if raw; fewer if zstd
}

// putBlobHeader is the size of a PutBlob body without its payload.
const putBlobHeader = HandleSize + 1 + 4

// Append appends the body of p to dst.
func (p *PutBlob) Append(dst []byte) []byte {
	return append(p.AppendHead(dst), p.Payload...)
}

// AppendHead appends the frame body before the payload: a sender writes
// it and the payload as two parts of one frame (Writer.WriteFrame), so
// the payload is not copied into a body of its own.
func (p *PutBlob) AppendHead(dst []byte) []byte {
	dst = appendHandle(dst, p.Handle)
	dst = append(dst, p.Compression)
	return binary.BigEndian.AppendUint32(dst, p.RawLength)
}

// DecodePutBlob decodes the body of a [TypePutBlob] frame. Payload
// aliases b. A zstd payload must be shorter than RawLength (a sender
// whose compression saves nothing sends the blob raw); whether it
// decompresses to RawLength bytes that hash to the ID is for the server
// to find out.
func DecodePutBlob(b []byte) (*PutBlob, error) {
	return decodeBody(TypePutBlob, b, func(d *decoder, p *PutBlob) {
		p.Handle = d.handle("handle")
		p.Compression = d.u8("compression")
		p.RawLength = d.u32("raw length")
		p.Payload = d.rest()
		d.payload(p.Compression, p.RawLength, len(p.Payload))
	})
}

// payload checks a payload of n bytes that compression c says holds
// rawLen bytes of plaintext: rawLen at most blob.MaxSize, a raw payload
// exactly rawLen bytes, a zstd one shorter.
func (d *decoder) payload(c uint8, rawLen uint32, n int) {
	if d.err != nil {
		return
	}
	if p := payloadProblem(c, uint64(rawLen), n); p != "" {
		d.failf("%s", p)
	}
}

// payloadProblem says what is wrong with a payload of n bytes that
// compression c says holds rawLen bytes of plaintext, or "".
func payloadProblem(c uint8, rawLen uint64, n int) string {
	switch {
	case rawLen > blob.MaxSize:
		return fmt.Sprintf("raw length %d exceeds %d", rawLen, blob.MaxSize)
	case c == CompressionRaw && uint64(n) != rawLen:
		return fmt.Sprintf("raw payload of %d bytes, raw length %d", n, rawLen)
	case c == CompressionZstd && uint64(n) >= rawLen:
		return fmt.Sprintf("zstd payload of %d bytes is not shorter than raw length %d", n, rawLen)
	case c > CompressionZstd:
		return fmt.Sprintf("unknown compression %d", c)
	}
	return ""
}

// StoredBlob answers [LoadBlob] from version 2 on with a blob as the
// repository stores it: compressed or not, as [PutBlob] sends one. The
// client decompresses it, bounded by RawLength, and re-hashes the
// plaintext against the ID it asked for ([StoredBlob.Plaintext]). With
// Payload nil, Append gives the 9-byte header alone, so a sender can pass
// the payload to [Writer.WriteFrame] as a second part.
type StoredBlob struct {
	Req         uint32
	Compression uint8  // CompressionRaw or CompressionZstd
	RawLength   uint32 // plaintext length, at most blob.MaxSize
	Payload     []byte // RawLength bytes if raw; fewer if zstd
}

// storedBlobHeader is the size of a StoredBlob body without its payload.
const storedBlobHeader = 4 + 1 + 4

// Append appends the body of m to dst.
func (m *StoredBlob) Append(dst []byte) []byte {
	return append(m.AppendHead(dst), m.Payload...)
}

// AppendHead appends the body of m without its Payload to dst.
func (m *StoredBlob) AppendHead(dst []byte) []byte {
	dst = binary.BigEndian.AppendUint32(dst, m.Req)
	dst = append(dst, m.Compression)
	return binary.BigEndian.AppendUint32(dst, m.RawLength)
}

// DecodeStoredBlob decodes the body of a [TypeStoredBlob] frame. Payload
// aliases b. It checks the lengths as [DecodePutBlob] does; whether the
// payload decompresses to RawLength bytes that hash to the ID is for
// [StoredBlob.Plaintext] to find out.
func DecodeStoredBlob(b []byte) (*StoredBlob, error) {
	return decodeBody(TypeStoredBlob, b, func(d *decoder, m *StoredBlob) {
		m.Req = d.u32("req")
		m.Compression = d.u8("compression")
		m.RawLength = d.u32("raw length")
		m.Payload = d.rest()
		d.payload(m.Compression, m.RawLength, len(m.Payload))
	})
}

// Commit asks the server to save a snapshot record once everything it
// names is durable.
type Commit struct {
	Req    uint32
	Record []byte // the encoded snapshot record, at most MaxRecord bytes
}

// Append appends the body of c to dst.
func (c *Commit) Append(dst []byte) []byte {
	dst = binary.BigEndian.AppendUint32(dst, c.Req)
	return append(dst, c.Record...)
}

// DecodeCommit decodes the body of a [TypeCommit] frame. The record is
// copied, so it stays valid when b is reused.
func DecodeCommit(b []byte) (*Commit, error) {
	return decodeBody(TypeCommit, b, func(d *decoder, c *Commit) {
		c.Req = d.u32("req")
		rec := d.rest()
		if d.err == nil && len(rec) > MaxRecord {
			d.failf("record of %d bytes exceeds %d", len(rec), MaxRecord)
		}
		if d.err == nil {
			c.Record = clone(rec) // the frame's body buffer is reused
		}
	})
}

// Committed answers [Commit] once the snapshot is durable.
type Committed struct {
	Req      uint32
	Snapshot blob.ID // the ID of the saved snapshot
}

// Append appends the body of c to dst.
func (c *Committed) Append(dst []byte) []byte {
	dst = binary.BigEndian.AppendUint32(dst, c.Req)
	return append(dst, c.Snapshot[:]...)
}

// DecodeCommitted decodes the body of a [TypeCommitted] frame.
func DecodeCommitted(b []byte) (*Committed, error) {
	return decodeBody(TypeCommitted, b, func(d *decoder, c *Committed) {
		c.Req = d.u32("req")
		c.Snapshot = d.id("snapshot")
	})
}

// Bye ends the session cleanly. Its body is empty.
type Bye struct{}

// Append appends the (empty) body of a Bye to dst.
func (*Bye) Append(dst []byte) []byte { return dst }

// DecodeBye decodes the body of a [TypeBye] frame, which must be empty.
func DecodeBye(b []byte) (*Bye, error) {
	return decodeBody(TypeBye, b, func(*decoder, *Bye) {})
}

// messageError reports a body that breaks the protocol.
type messageError struct {
	t      Type
	reason string
}

func (e *messageError) Error() string { return "wire: " + e.t.String() + ": " + e.reason }

func (e *messageError) Is(target error) bool { return target == ErrProtocol }

// decoder reads the fields of one body in order. The first failure sticks:
// later reads return zero values, and finish returns it.
type decoder struct {
	t   Type
	b   []byte
	off int
	err error
}

// decodeBody decodes b, the body of a frame of type t, into a new M:
// fields reads M's fields from d in order and checks them (d.failf);
// the body must end where the fields do.
func decodeBody[M any](t Type, b []byte, fields func(d *decoder, m *M)) (*M, error) {
	d := newDecoder(t, b)
	var m M
	fields(&d, &m)
	if err := d.finish(); err != nil {
		return nil, err
	}
	return &m, nil
}

func newDecoder(t Type, b []byte) decoder {
	d := decoder{t: t, b: b}
	if limit, _ := MaxBody(t); len(b) > limit {
		d.failf("body of %d bytes exceeds %d", len(b), limit)
	}
	return d
}

func (d *decoder) failf(format string, args ...any) {
	if d.err == nil {
		d.err = &messageError{t: d.t, reason: fmt.Sprintf(format, args...)}
	}
}

func (d *decoder) remaining() int { return len(d.b) - d.off }

// take returns the next n bytes, aliasing the body, with their capacity
// cut so that appending to them cannot overwrite what follows.
func (d *decoder) take(n int, what string) []byte {
	return d.takeField(n, what, "")
}

// takeField is take for a part of a field, named what+part in errors;
// the name is built only on failure, so decoding allocates nothing for it.
func (d *decoder) takeField(n int, what, part string) []byte {
	if d.err != nil {
		return nil
	}
	if n > d.remaining() {
		d.failf("truncated %s%s at offset %d: need %d bytes, have %d", what, part, d.off, n, d.remaining())
		return nil
	}
	p := d.b[d.off : d.off+n : d.off+n]
	d.off += n
	return p
}

func (d *decoder) rest() []byte {
	if d.err != nil || d.remaining() == 0 {
		return nil
	}
	return d.take(d.remaining(), "")
}

func (d *decoder) u8(what string) uint8 {
	if p := d.take(1, what); p != nil {
		return p[0]
	}
	return 0
}

func (d *decoder) u16(what string) uint16 {
	if p := d.take(2, what); p != nil {
		return binary.BigEndian.Uint16(p)
	}
	return 0
}

func (d *decoder) u32(what string) uint32 {
	if p := d.take(4, what); p != nil {
		return binary.BigEndian.Uint32(p)
	}
	return 0
}

func (d *decoder) bool(what string) bool {
	c := d.u8(what)
	if c > 1 {
		d.failf("%s is %d, want 0 or 1", what, c)
	}
	return c == 1
}

func (d *decoder) id(what string) blob.ID {
	var id blob.ID
	copy(id[:], d.take(blob.IDSize, what))
	return id
}

func (d *decoder) handle(what string) blob.Handle {
	var h blob.Handle
	if p := d.takeField(1, what, " type"); p != nil {
		h.Type = blob.Type(p[0])
		if !h.Type.Valid() {
			d.failf("%s at offset %d has unknown blob type %d", what, d.off-1, p[0])
		}
	}
	copy(h.ID[:], d.takeField(blob.IDSize, what, " id"))
	return h
}

// count reads the handle count of HaveBlobs and Have.
func (d *decoder) count() uint32 {
	n := d.u32("count")
	if d.err == nil {
		switch {
		case n == 0:
			d.failf("count is 0")
		case n > MaxHandles:
			d.failf("count %d exceeds %d", n, MaxHandles)
		}
	}
	return n
}

func (d *decoder) str(what string) string {
	var n int
	if p := d.takeField(2, what, " length"); p != nil {
		n = int(binary.BigEndian.Uint16(p))
	}
	if d.err == nil && n > MaxString {
		d.failf("%s of %d bytes exceeds %d", what, n, MaxString)
	}
	p := d.take(n, what)
	if d.err == nil && !utf8.Valid(p) {
		d.failf("%s is not valid UTF-8", what)
	}
	return string(p)
}

// finish reports the first failure, or trailing bytes after the last
// field.
func (d *decoder) finish() error {
	switch n := d.remaining(); {
	case d.err != nil || n == 0:
	case n == 1:
		d.failf("1 trailing byte")
	default:
		d.failf("%d trailing bytes", n)
	}
	return d.err
}

func appendBool(dst []byte, v bool) []byte {
	if v {
		return append(dst, 1)
	}
	return append(dst, 0)
}

func appendHandle(dst []byte, h blob.Handle) []byte {
	dst = append(dst, byte(h.Type))
	return append(dst, h.ID[:]...)
}

// appendString appends s with its uint16 length, cut to MaxString bytes
// at a character boundary.
func appendString(dst []byte, s string) []byte {
	if len(s) > MaxString {
		n := MaxString
		for n > 0 && !utf8.RuneStart(s[n]) {
			n--
		}
		s = s[:n]
	}
	dst = binary.BigEndian.AppendUint16(dst, uint16(len(s)))
	return append(dst, s...)
}

// clone copies b; empty becomes nil.
func clone(b []byte) []byte {
	if len(b) == 0 {
		return nil
	}
	return append([]byte(nil), b...)
}
