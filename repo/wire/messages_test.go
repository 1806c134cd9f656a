package wire

import (
	"bytes"
	"encoding/binary"
	"errors"
	"io"
	"reflect"
	"strings"
	"testing"

	"github.com/cairnbackup/cairn/repo/blob"
)

// message is what every message struct implements.
type message interface {
	Append(dst []byte) []byte
}

// decodeFunc decodes a body and returns the message as a pointer.
type decodeFunc func([]byte) (message, error)

func wrap[M message](decode func([]byte) (M, error)) decodeFunc {
	return func(b []byte) (message, error) {
		m, err := decode(b)
		if err != nil {
			return nil, err
		}
		return m, nil
	}
}

// decoders maps each frame type to its Decode function.
var decoders = map[Type]decodeFunc{
	TypeHello:         wrap(DecodeHello),
	TypeWelcome:       wrap(DecodeWelcome),
	TypeError:         wrap(DecodeError),
	TypeListSnapshots: wrap(DecodeListSnapshots),
	TypeSnapshots:     wrap(DecodeSnapshots),
	TypeLoadBlob:      wrap(DecodeLoadBlob),
	TypeBlob:          wrap(DecodeBlob),
	TypeHaveBlobs:     wrap(DecodeHaveBlobs),
	TypeHave:          wrap(DecodeHave),
	TypePutBlob:       wrap(DecodePutBlob),
	TypeCommit:        wrap(DecodeCommit),
	TypeCommitted:     wrap(DecodeCommitted),
	TypeBye:           wrap(DecodeBye),
	TypeStoredBlob:    wrap(DecodeStoredBlob),
}

// testID returns a recognisable ID: every byte is b, the last is 0xee.
func testID(b byte) blob.ID {
	var id blob.ID
	for i := range id {
		id[i] = b
	}
	id[blob.IDSize-1] = 0xee
	return id
}

func handles(n int) []blob.Handle {
	hs := make([]blob.Handle, n)
	for i := range hs {
		var id blob.ID
		binary.BigEndian.PutUint64(id[:], uint64(i)*0x9e3779b97f4a7c15)
		hs[i] = blob.Handle{ID: id, Type: blob.Type(1 + i%2)}
	}
	return hs
}

// sample is one message of a given type.
type sample struct {
	name string
	t    Type
	m    message
}

// samples returns valid messages of every type, including edge cases.
// The first sample of each type is the seed corpus's "valid" body.
func samples() []sample {
	long := strings.Repeat("é", MaxString/2) // 4096 bytes of two-byte runes
	has := make([]bool, 9)
	has[0], has[2], has[3], has[8] = true, true, true, true
	return []sample{
		{"hello", TypeHello, &Hello{MinVersion: 1, MaxVersion: 1, Client: "cairn 0.1.0", Node: "lyra"}},
		{"hello-range", TypeHello, &Hello{MinVersion: 1, MaxVersion: 65535, Client: long, Node: ""}},
		{"welcome", TypeWelcome, &Welcome{Version: 1, Node: "lyra", Perms: PermPush | PermRead, Repo: testID(1),
			ChunkMin: 512 << 10, ChunkAvg: 1 << 20, ChunkMax: 8 << 20, ChunkerSeed: testID(2),
			Isolated: true, MaxBatch: 4096, MaxInflight: 64}},
		{"welcome-admin", TypeWelcome, &Welcome{Version: 7, Node: "", Perms: PermPush | PermRead | PermAdmin,
			MaxBatch: MaxHandles, MaxInflight: 1 << 31}},
		{"error", TypeError, &ErrorMsg{Code: CodePermissionDenied, Message: `node "lyra" may not read`}},
		{"error-empty", TypeError, &ErrorMsg{Code: CodeUnsupported}},
		{"list-snapshots", TypeListSnapshots, &ListSnapshots{Req: 7, Plan: "home"}},
		{"list-snapshots-all", TypeListSnapshots, &ListSnapshots{Req: 0xffffffff}},
		{"snapshots", TypeSnapshots, &Snapshots{Req: 7, More: true, Items: []SnapshotItem{
			{ID: testID(3), Record: []byte(`{"version":1}`)},
			{ID: testID(4)},
			{ID: testID(5), Record: []byte("x")},
		}}},
		{"snapshots-none", TypeSnapshots, &Snapshots{Req: 8}},
		{"load-blob", TypeLoadBlob, &LoadBlob{Req: 9, Handle: blob.Handle{ID: testID(6), Type: blob.Tree}}},
		{"blob", TypeBlob, &Blob{Req: 9, Data: []byte("plaintext")}},
		{"blob-empty", TypeBlob, &Blob{Req: 10}},
		{"have-blobs", TypeHaveBlobs, &HaveBlobs{Req: 11, Handles: handles(3)}},
		{"have-blobs-max", TypeHaveBlobs, &HaveBlobs{Req: 12, Handles: handles(MaxHandles)}},
		{"have", TypeHave, &Have{Req: 11, Has: has}},
		{"have-8", TypeHave, &Have{Req: 13, Has: []bool{false, true, false, false, false, false, false, true}}},
		{"have-max", TypeHave, &Have{Req: 12, Has: make([]bool, MaxHandles)}},
		{"put-blob", TypePutBlob, &PutBlob{Handle: blob.Handle{ID: blob.Hash([]byte("hello")), Type: blob.Data},
			Compression: CompressionRaw, RawLength: 5, Payload: []byte("hello")}},
		{"put-blob-zstd", TypePutBlob, &PutBlob{Handle: blob.Handle{ID: testID(7), Type: blob.Tree},
			Compression: CompressionZstd, RawLength: 1000, Payload: []byte("\x28\xb5\x2f\xfd not really zstd")}},
		{"put-blob-empty", TypePutBlob, &PutBlob{Handle: blob.Handle{ID: blob.Hash(nil), Type: blob.Data}}},
		{"stored-blob", TypeStoredBlob, &StoredBlob{Req: 15, Compression: CompressionRaw, RawLength: 5, Payload: []byte("hello")}},
		{"stored-blob-zstd", TypeStoredBlob, &StoredBlob{Req: 16, Compression: CompressionZstd, RawLength: 1000,
			Payload: []byte("\x28\xb5\x2f\xfd not really zstd")}},
		{"stored-blob-empty", TypeStoredBlob, &StoredBlob{Req: 17}},
		{"commit", TypeCommit, &Commit{Req: 14, Record: []byte(`{"version":1,"node":"lyra"}`)}},
		{"committed", TypeCommitted, &Committed{Req: 14, Snapshot: testID(8)}},
		{"bye", TypeBye, &Bye{}},
	}
}

// TestRoundTrip sends every sample through a Writer and a Reader and
// decodes it again.
func TestRoundTrip(t *testing.T) {
	var stream bytes.Buffer
	w := NewWriter(&stream)
	all := samples()
	for _, s := range all {
		if err := w.WriteFrame(s.t, s.m.Append(nil)); err != nil {
			t.Fatalf("%s: %v", s.name, err)
		}
	}
	if err := w.Flush(); err != nil {
		t.Fatal(err)
	}
	r := NewReader(&stream)
	var body []byte
	for _, s := range all {
		var typ Type
		var err error
		typ, body, err = r.Next(body)
		if err != nil || typ != s.t {
			t.Fatalf("%s: Next = %v, %v", s.name, typ, err)
		}
		got, err := decoders[typ](body)
		if err != nil {
			t.Fatalf("%s: %v", s.name, err)
		}
		if !reflect.DeepEqual(got, s.m) {
			t.Errorf("%s: decoded %+v, want %+v", s.name, got, s.m)
		}
		if enc := got.Append(nil); !bytes.Equal(enc, body) {
			t.Errorf("%s: re-encoding differs", s.name)
		}
	}
	if _, _, err := r.Next(body); err != io.EOF {
		t.Fatalf("after the last frame: %v", err)
	}
}

// TestDecodeCopies checks that decoded strings and records do not change
// when the body buffer is reused, and that Blob and PutBlob alias it.
func TestDecodeCopies(t *testing.T) {
	body := (&Snapshots{Items: []SnapshotItem{{ID: testID(1), Record: []byte("ab")}, {Record: []byte("cd")}}}).Append(nil)
	s, err := DecodeSnapshots(body)
	if err != nil {
		t.Fatal(err)
	}
	clear(body)
	if string(s.Items[0].Record) != "ab" || string(s.Items[1].Record) != "cd" {
		t.Fatalf("records changed with the body: %q %q", s.Items[0].Record, s.Items[1].Record)
	}
	// Appending to one record must not overwrite the next.
	_ = append(s.Items[0].Record, 'X')
	if string(s.Items[1].Record) != "cd" {
		t.Fatalf("append to a record overwrote the next: %q", s.Items[1].Record)
	}

	body = (&Commit{Req: 1, Record: []byte("rec")}).Append(nil)
	c, err := DecodeCommit(body)
	if err != nil {
		t.Fatal(err)
	}
	clear(body)
	if string(c.Record) != "rec" {
		t.Fatalf("commit record changed with the body: %q", c.Record)
	}

	body = (&Blob{Req: 1, Data: []byte("data")}).Append(nil)
	b, err := DecodeBlob(body)
	if err != nil {
		t.Fatal(err)
	}
	if &b.Data[0] != &body[4] {
		t.Fatal("DecodeBlob copied the data")
	}
	body = (&PutBlob{Handle: blob.Handle{Type: blob.Data}, RawLength: 4, Payload: []byte("data")}).Append(nil)
	p, err := DecodePutBlob(body)
	if err != nil {
		t.Fatal(err)
	}
	if &p.Payload[0] != &body[putBlobHeader] {
		t.Fatal("DecodePutBlob copied the payload")
	}
	body = (&StoredBlob{Req: 1, RawLength: 4, Payload: []byte("data")}).Append(nil)
	sb, err := DecodeStoredBlob(body)
	if err != nil {
		t.Fatal(err)
	}
	if &sb.Payload[0] != &body[storedBlobHeader] {
		t.Fatal("DecodeStoredBlob copied the payload")
	}
}

// TestEncoding pins the bytes of a few messages, so the layout in
// PROTOCOL.md and the code agree. The fuzz seeds pin every type.
func TestEncoding(t *testing.T) {
	for _, tc := range []struct {
		m    message
		want string
	}{
		{&Hello{MinVersion: 1, MaxVersion: 2, Client: "c", Node: "nd"},
			"cairn-wire\x00\x01\x00\x02\x00\x01c\x00\x02nd"},
		{&ErrorMsg{Code: CodeNotFound, Message: "gone"}, "\x00\x03\x00\x04gone"},
		{&Have{Req: 0x01020304, Has: []bool{true, false, false, false, false, false, false, true, false, true}},
			"\x01\x02\x03\x04\x00\x00\x00\x0a\x81\x40"},
		{&LoadBlob{Req: 5, Handle: blob.Handle{ID: testID(0xab), Type: blob.Tree}},
			"\x00\x00\x00\x05\x02" + string(bytes.Repeat([]byte{0xab}, 31)) + "\xee"},
		{&PutBlob{Handle: blob.Handle{ID: testID(1), Type: blob.Data}, Compression: CompressionZstd, RawLength: 300},
			"\x01" + string(bytes.Repeat([]byte{1}, 31)) + "\xee\x01\x00\x00\x01\x2c"},
		{&StoredBlob{Req: 0x01020304, Compression: CompressionZstd, RawLength: 300, Payload: []byte("z")},
			"\x01\x02\x03\x04\x01\x00\x00\x01\x2cz"},
		{&Snapshots{Req: 1, More: true, Items: []SnapshotItem{{ID: testID(2), Record: []byte("r")}}},
			"\x00\x00\x00\x01\x01\x00\x00\x00\x01" + string(bytes.Repeat([]byte{2}, 31)) + "\xee\x00\x00\x00\x01r"},
		{&Welcome{Version: 1, Node: "n", Perms: PermRead | PermAdmin, Isolated: true, ChunkMin: 1, ChunkAvg: 2, ChunkMax: 3, MaxBatch: 4, MaxInflight: 5},
			"\x00\x01\x00\x01n\x06" + strings.Repeat("\x00", 32) + "\x00\x00\x00\x01\x00\x00\x00\x02\x00\x00\x00\x03" +
				strings.Repeat("\x00", 32) + "\x01\x00\x00\x00\x04\x00\x00\x00\x05"},
	} {
		if got := tc.m.Append(nil); string(got) != tc.want {
			t.Errorf("%T: encoded %q, want %q", tc.m, got, tc.want)
		}
	}
}

// TestHeaderOnlyAppend checks that a message with a nil payload encodes
// its header alone, so header and payload can go to WriteFrame as parts.
func TestHeaderOnlyAppend(t *testing.T) {
	payload := []byte("payload")
	for _, tc := range []struct {
		full, head message
		size       int
	}{
		{&PutBlob{Handle: blob.Handle{ID: testID(1), Type: blob.Data}, RawLength: 7, Payload: payload},
			&PutBlob{Handle: blob.Handle{ID: testID(1), Type: blob.Data}, RawLength: 7}, 38},
		{&Blob{Req: 3, Data: payload}, &Blob{Req: 3}, 4},
		{&StoredBlob{Req: 3, RawLength: 7, Payload: payload}, &StoredBlob{Req: 3, RawLength: 7}, 9},
		{&Commit{Req: 3, Record: payload}, &Commit{Req: 3}, 4},
	} {
		head := tc.head.Append(nil)
		if len(head) != tc.size || !bytes.Equal(append(head, payload...), tc.full.Append(nil)) {
			t.Errorf("%T: header of %d bytes does not prefix the full body", tc.head, len(head))
		}
	}
}

func TestAppendCutsLongStrings(t *testing.T) {
	for _, tc := range []struct {
		s    string
		want int
	}{
		{strings.Repeat("a", MaxString+10), MaxString},
		{"ab" + strings.Repeat("€", MaxString/3), MaxString - 2}, // 3-byte runes, cut before one
		{strings.Repeat("é", MaxString/2+1), MaxString},
	} {
		body := (&ErrorMsg{Code: CodeInternal, Message: tc.s}).Append(nil)
		e, err := DecodeError(body)
		if err != nil {
			t.Fatalf("decode of a cut string: %v", err)
		}
		if len(e.Message) != tc.want || !strings.HasPrefix(tc.s, e.Message) {
			t.Errorf("cut a %d-byte string to %d bytes, want %d", len(tc.s), len(e.Message), tc.want)
		}
	}
}

func TestPermString(t *testing.T) {
	for p, want := range map[Perm]string{
		0:                               "none",
		PermPush:                        "push",
		PermPush | PermRead:             "push,read",
		PermRead | PermAdmin:            "read,admin",
		PermPush | PermRead | PermAdmin: "push,read,admin",
		PermRead | 0x80:                 "read,0x80",
	} {
		if got := p.String(); got != want {
			t.Errorf("Perm(%d).String() = %q, want %q", uint8(p), got, want)
		}
	}
	p := PermPush | PermRead
	if !p.Has(PermPush) || !p.Has(PermPush|PermRead) || p.Has(PermAdmin) || p.Has(PermRead|PermAdmin) || !p.Has(0) {
		t.Error("Perm.Has is wrong")
	}
}

func TestErrorMsg(t *testing.T) {
	want := []string{"protocol", "permission denied", "not found", "bad blob", "internal", "limit exceeded", "unsupported"}
	for i, w := range want {
		if got := ErrorCode(i + 1).String(); got != w {
			t.Errorf("ErrorCode(%d) = %q, want %q", i+1, got, w)
		}
	}
	if got := ErrorCode(9).String(); got != "code(9)" {
		t.Errorf("ErrorCode(9) = %q", got)
	}
	var err error = &ErrorMsg{Code: CodePermissionDenied, Message: `node "lyra" may not read`}
	if got := err.Error(); got != `wire: remote error (permission denied): node "lyra" may not read` {
		t.Errorf("Error() = %q", got)
	}
	if got := (&ErrorMsg{Code: CodeInternal}).Error(); got != "wire: remote error (internal)" {
		t.Errorf("Error() = %q", got)
	}
	var e *ErrorMsg
	if !errors.As(err, &e) || e.Code != CodePermissionDenied || errors.Is(err, ErrProtocol) {
		t.Error("ErrorMsg does not behave as an error value")
	}
}

// body concatenates parts into one body.
func body(parts ...any) []byte {
	var b []byte
	for _, p := range parts {
		switch v := p.(type) {
		case string:
			b = append(b, v...)
		case []byte:
			b = append(b, v...)
		case byte:
			b = append(b, v)
		case uint16:
			b = binary.BigEndian.AppendUint16(b, v)
		case uint32:
			b = binary.BigEndian.AppendUint32(b, v)
		case blob.ID:
			b = append(b, v[:]...)
		default:
			panic("body: unsupported part")
		}
	}
	return b
}

// str encodes a string field.
func str(s string) []byte { return appendString(nil, s) }

func TestDecodeErrors(t *testing.T) {
	id := testID(9)
	magic := Magic
	u16, u32 := func(v uint16) uint16 { return v }, func(v uint32) uint32 { return v }
	welcome := func(version uint16, perms, flags byte, batch, inflight uint32) []byte {
		return body(version, str("n"), perms, id, u32(1), u32(2), u32(3), id, flags, batch, inflight)
	}
	valid := func(t Type) []byte {
		for _, s := range samples() {
			if s.t == t {
				return s.m.Append(nil)
			}
		}
		panic("no sample")
	}
	plus := func(b []byte, extra ...byte) []byte { return append(b[:len(b):len(b)], extra...) }

	for _, tc := range []struct {
		name string
		t    Type
		body []byte
		want string
	}{
		// hello
		{"empty", TypeHello, nil, "wire: hello: truncated magic at offset 0: need 10 bytes, have 0"},
		{"short magic", TypeHello, []byte("cairn"), "wire: hello: truncated magic at offset 0: need 10 bytes, have 5"},
		{"bad magic", TypeHello, body("cairn-wirf", u16(1), u16(1), str(""), str("")), `wire: hello: bad magic "cairn-wirf"`},
		{"min version 0", TypeHello, body(magic, u16(0), u16(1), str(""), str("")), "wire: hello: min version is 0"},
		{"empty range", TypeHello, body(magic, u16(3), u16(2), str(""), str("")), "wire: hello: min version 3 exceeds max version 2"},
		{"truncated version", TypeHello, body(magic, u16(1), byte(0)), "wire: hello: truncated max version at offset 12: need 2 bytes, have 1"},
		{"truncated string length", TypeHello, body(magic, u16(1), u16(1), byte(0)), "wire: hello: truncated client length at offset 14: need 2 bytes, have 1"},
		{"string past the end", TypeHello, body(magic, u16(1), u16(1), u16(20), "abc"), "wire: hello: truncated client at offset 16: need 20 bytes, have 3"},
		{"string too long", TypeHello, body(magic, u16(1), u16(1), u16(MaxString+1), strings.Repeat("a", MaxString+1), str("")), "wire: hello: client of 4097 bytes exceeds 4096"},
		{"string not utf-8", TypeHello, body(magic, u16(1), u16(1), str("c"), u16(2), "\xc3\x28"), "wire: hello: node is not valid UTF-8"},
		{"missing node", TypeHello, body(magic, u16(1), u16(1), str("c")), "wire: hello: truncated node length at offset 17: need 2 bytes, have 0"},
		{"trailing byte", TypeHello, plus(valid(TypeHello), 0), "wire: hello: 1 trailing byte"},
		{"trailing bytes", TypeHello, plus(valid(TypeHello), 0, 0, 0), "wire: hello: 3 trailing bytes"},
		{"oversized", TypeHello, make([]byte, MaxControlBody+1), "wire: hello: body of 4194305 bytes exceeds 4194304"},

		// welcome
		{"version 0", TypeWelcome, welcome(0, 1, 0, 1, 1), "wire: welcome: version is 0"},
		{"unknown perms", TypeWelcome, welcome(1, 0x09, 0, 1, 1), "wire: welcome: perms 0x09 has unknown bits"},
		{"unknown flags", TypeWelcome, welcome(1, 1, 0x03, 1, 1), "wire: welcome: flags 0x03 has unknown bits"},
		{"max batch 0", TypeWelcome, welcome(1, 1, 0, 0, 1), "wire: welcome: max batch 0 is not in 1..65536"},
		{"max batch too large", TypeWelcome, welcome(1, 1, 0, MaxHandles+1, 1), "wire: welcome: max batch 65537 is not in 1..65536"},
		{"max inflight 0", TypeWelcome, welcome(1, 1, 0, 1, 0), "wire: welcome: max inflight is 0"},
		{"truncated seed", TypeWelcome, welcome(1, 1, 0, 1, 1)[:60], "wire: welcome: truncated chunker seed at offset 50: need 32 bytes, have 10"},
		{"trailing", TypeWelcome, plus(welcome(1, 1, 0, 1, 1), 1), "wire: welcome: 1 trailing byte"},

		// error
		{"code 0", TypeError, body(u16(0), str("x")), "wire: error: unknown code 0"},
		{"code 8", TypeError, body(u16(8), str("x")), "wire: error: unknown code 8"},
		{"message too long", TypeError, body(u16(1), u16(5000), strings.Repeat("m", 5000)), "wire: error: message of 5000 bytes exceeds 4096"},
		{"truncated code", TypeError, []byte{0}, "wire: error: truncated code at offset 0: need 2 bytes, have 1"},
		{"no message", TypeError, body(u16(1)), "wire: error: truncated message length at offset 2: need 2 bytes, have 0"},

		// list-snapshots
		{"truncated req", TypeListSnapshots, []byte{1, 2}, "wire: list-snapshots: truncated req at offset 0: need 4 bytes, have 2"},
		{"plan not utf-8", TypeListSnapshots, body(u32(1), u16(1), "\xff"), "wire: list-snapshots: plan is not valid UTF-8"},
		{"trailing", TypeListSnapshots, body(u32(1), str("p"), "zz"), "wire: list-snapshots: 2 trailing bytes"},

		// snapshots
		{"more 2", TypeSnapshots, body(u32(1), byte(2), u32(0)), "wire: snapshots: more is 2, want 0 or 1"},
		{"count vs bytes", TypeSnapshots, body(u32(1), byte(0), u32(1000), id, u32(0)), "wire: snapshots: count 1000 needs at least 36000 bytes, have 36"},
		{"count huge", TypeSnapshots, body(u32(1), byte(0), u32(0xffffffff)), "wire: snapshots: count 4294967295 needs at least 154618822620 bytes, have 0"},
		{"record too long", TypeSnapshots, body(u32(1), byte(0), u32(1), id, u32(MaxRecord+1), make([]byte, MaxRecord+1)), "wire: snapshots: record 0 of 1048577 bytes exceeds 1048576"},
		{"record past the end", TypeSnapshots, body(u32(1), byte(0), u32(1), id, u32(10), "abc"), "wire: snapshots: truncated record at offset 45: need 10 bytes, have 3"},
		{"second record cut", TypeSnapshots, body(u32(1), byte(0), u32(2), id, u32(0), id, u32(5), "abc"), "wire: snapshots: truncated record at offset 81: need 5 bytes, have 3"},
		{"trailing", TypeSnapshots, body(u32(1), byte(1), u32(1), id, u32(1), "r", "t"), "wire: snapshots: 1 trailing byte"},
		{"oversized", TypeSnapshots, make([]byte, MaxSnapshotsBody+1), "wire: snapshots: body of 33554433 bytes exceeds 33554432"},

		// load-blob
		{"bad blob type", TypeLoadBlob, body(u32(1), byte(3), id), "wire: load-blob: handle at offset 4 has unknown blob type 3"},
		{"blob type 0", TypeLoadBlob, body(u32(1), byte(0), id), "wire: load-blob: handle at offset 4 has unknown blob type 0"},
		{"truncated id", TypeLoadBlob, body(u32(1), byte(1), id)[:36], "wire: load-blob: truncated handle id at offset 5: need 32 bytes, have 31"},
		{"trailing", TypeLoadBlob, body(u32(1), byte(1), id, byte(0)), "wire: load-blob: 1 trailing byte"},

		// blob
		{"truncated req", TypeBlob, []byte{0, 0, 1}, "wire: blob: truncated req at offset 0: need 4 bytes, have 3"},
		{"data too long", TypeBlob, make([]byte, 4+blob.MaxSize+1), "wire: blob: data of 67108865 bytes exceeds 67108864"},
		{"oversized", TypeBlob, make([]byte, MaxBlobBody+1), "wire: blob: body of 67108929 bytes exceeds 67108928"},

		// have-blobs
		{"count 0", TypeHaveBlobs, body(u32(1), u32(0)), "wire: have-blobs: count is 0"},
		{"count too large", TypeHaveBlobs, body(u32(1), u32(70000)), "wire: have-blobs: count 70000 exceeds 65536"},
		{"count vs bytes", TypeHaveBlobs, body(u32(1), u32(2), byte(1), id), "wire: have-blobs: count 2 needs 66 bytes, have 33"},
		{"bad blob type", TypeHaveBlobs, body(u32(1), u32(2), byte(1), id, byte(0), id), "wire: have-blobs: handle at offset 41 has unknown blob type 0"},
		{"trailing", TypeHaveBlobs, body(u32(1), u32(1), byte(2), id, byte(2)), "wire: have-blobs: 1 trailing byte"},
		{"truncated count", TypeHaveBlobs, body(u32(1), u16(0)), "wire: have-blobs: truncated count at offset 4: need 4 bytes, have 2"},

		// have
		{"count 0", TypeHave, body(u32(1), u32(0)), "wire: have: count is 0"},
		{"count too large", TypeHave, body(u32(1), u32(65537), make([]byte, 8193)), "wire: have: count 65537 exceeds 65536"},
		{"bitmap cut", TypeHave, body(u32(1), u32(9), byte(0xff)), "wire: have: truncated bitmap at offset 8: need 2 bytes, have 1"},
		{"trailing bits", TypeHave, body(u32(1), u32(9), byte(0xff), byte(0x40)), "wire: have: bitmap has bits set beyond count 9"},
		{"trailing bit 7", TypeHave, body(u32(1), u32(7), byte(0x01)), "wire: have: bitmap has bits set beyond count 7"},
		{"trailing", TypeHave, body(u32(1), u32(8), byte(0xff), byte(0)), "wire: have: 1 trailing byte"},

		// put-blob
		{"bad blob type", TypePutBlob, body(byte(9), id, byte(0), u32(0)), "wire: put-blob: handle at offset 0 has unknown blob type 9"},
		{"unknown compression", TypePutBlob, body(byte(1), id, byte(2), u32(3), "abc"), "wire: put-blob: unknown compression 2"},
		{"raw length too large", TypePutBlob, body(byte(1), id, byte(1), u32(blob.MaxSize+1), "abc"), "wire: put-blob: raw length 67108865 exceeds 67108864"},
		{"raw payload short", TypePutBlob, body(byte(1), id, byte(0), u32(5), "abcd"), "wire: put-blob: raw payload of 4 bytes, raw length 5"},
		{"raw payload long", TypePutBlob, body(byte(1), id, byte(0), u32(3), "abcd"), "wire: put-blob: raw payload of 4 bytes, raw length 3"},
		{"zstd not shorter", TypePutBlob, body(byte(1), id, byte(1), u32(5), "abcde"), "wire: put-blob: zstd payload of 5 bytes is not shorter than raw length 5"},
		{"zstd empty blob", TypePutBlob, body(byte(1), id, byte(1), u32(0)), "wire: put-blob: zstd payload of 0 bytes is not shorter than raw length 0"},
		{"truncated header", TypePutBlob, body(byte(1), id, byte(1), u16(0)), "wire: put-blob: truncated raw length at offset 34: need 4 bytes, have 2"},
		{"oversized", TypePutBlob, make([]byte, MaxBlobBody+1), "wire: put-blob: body of 67108929 bytes exceeds 67108928"},
		// stored-blob
		{"stored unknown compression", TypeStoredBlob, body(u32(1), byte(2), u32(3), "abc"), "wire: stored-blob: unknown compression 2"},
		{"stored raw length too large", TypeStoredBlob, body(u32(1), byte(1), u32(blob.MaxSize+1), "abc"), "wire: stored-blob: raw length 67108865 exceeds 67108864"},
		{"stored raw payload short", TypeStoredBlob, body(u32(1), byte(0), u32(5), "abcd"), "wire: stored-blob: raw payload of 4 bytes, raw length 5"},
		{"stored raw payload long", TypeStoredBlob, body(u32(1), byte(0), u32(3), "abcd"), "wire: stored-blob: raw payload of 4 bytes, raw length 3"},
		{"stored zstd not shorter", TypeStoredBlob, body(u32(1), byte(1), u32(5), "abcde"), "wire: stored-blob: zstd payload of 5 bytes is not shorter than raw length 5"},
		{"stored truncated header", TypeStoredBlob, body(u32(1), byte(1), u16(0)), "wire: stored-blob: truncated raw length at offset 5: need 4 bytes, have 2"},
		{"stored oversized", TypeStoredBlob, make([]byte, MaxBlobBody+1), "wire: stored-blob: body of 67108929 bytes exceeds 67108928"},

		// commit
		{"truncated req", TypeCommit, nil, "wire: commit: truncated req at offset 0: need 4 bytes, have 0"},
		{"record too long", TypeCommit, make([]byte, 4+MaxRecord+1), "wire: commit: record of 1048577 bytes exceeds 1048576"},

		// committed
		{"truncated id", TypeCommitted, body(u32(1), id)[:35], "wire: committed: truncated snapshot at offset 4: need 32 bytes, have 31"},
		{"trailing", TypeCommitted, body(u32(1), id, "xy"), "wire: committed: 2 trailing bytes"},

		// bye
		{"not empty", TypeBye, []byte{0}, "wire: bye: 1 trailing byte"},
	} {
		t.Run(tc.t.String()+"/"+tc.name, func(t *testing.T) {
			m, err := decoders[tc.t](tc.body)
			if err == nil {
				t.Fatalf("decoded %+v, want error %q", m, tc.want)
			}
			if err.Error() != tc.want {
				t.Errorf("error %q\nwant       %q", err, tc.want)
			}
			if !errors.Is(err, ErrProtocol) {
				t.Errorf("error %v does not match ErrProtocol", err)
			}
		})
	}
}

// TestDecodeTruncations cuts every valid sample at every length: each
// prefix must be refused with a protocol error, never panic or succeed
// (except where a shorter body is valid on its own, which only messages
// ending in a rest-of-frame field allow).
func TestDecodeTruncations(t *testing.T) {
	for _, s := range samples() {
		full := s.m.Append(nil)
		if len(full) > 1<<10 {
			continue
		}
		for n := range len(full) {
			m, err := decoders[s.t](full[:n])
			if err == nil {
				if enc := m.Append(nil); !bytes.Equal(enc, full[:n]) {
					t.Errorf("%s cut to %d bytes: decoded, but re-encodes differently", s.name, n)
				}
				switch s.t {
				case TypeBlob, TypeCommit, TypePutBlob, TypeStoredBlob:
					continue
				}
				t.Errorf("%s cut to %d bytes: decoded %+v", s.name, n, m)
				continue
			}
			if !errors.Is(err, ErrProtocol) {
				t.Errorf("%s cut to %d bytes: %v is not a protocol error", s.name, n, err)
			}
		}
	}
}

// BenchmarkHaveBlobs encodes and decodes a batch of 1024 handles.
func BenchmarkHaveBlobs(b *testing.B) {
	msg := &HaveBlobs{Req: 1, Handles: handles(1024)}
	enc := msg.Append(nil)
	b.Run("encode", func(b *testing.B) {
		buf := make([]byte, 0, len(enc))
		b.SetBytes(int64(len(enc)))
		b.ReportAllocs()
		for b.Loop() {
			buf = msg.Append(buf[:0])
		}
	})
	b.Run("decode", func(b *testing.B) {
		b.SetBytes(int64(len(enc)))
		b.ReportAllocs()
		for b.Loop() {
			if _, err := DecodeHaveBlobs(enc); err != nil {
				b.Fatal(err)
			}
		}
	})
}

// A PutBlob frame written as its head and its payload (two parts of one
// frame, as the uploader sends it, without copying the payload) is the
// frame Append gives, and decodes to the message.
func TestPutBlobHeadAndPayload(t *testing.T) {
	m := &PutBlob{Handle: blob.Handle{ID: blob.Hash([]byte("hello")), Type: blob.Data}, Compression: CompressionRaw, RawLength: 5, Payload: []byte("hello")}
	var parts, whole bytes.Buffer
	if err := NewWriter(&parts).WriteFrame(TypePutBlob, m.AppendHead(nil), m.Payload); err != nil {
		t.Fatal(err)
	}
	if err := NewWriter(&whole).WriteFrame(TypePutBlob, m.Append(nil)); err != nil {
		t.Fatal(err)
	}
	if !bytes.Equal(parts.Bytes(), whole.Bytes()) {
		t.Fatalf("parts %x\nwhole %x", parts.Bytes(), whole.Bytes())
	}
	got, err := DecodePutBlob(m.Append(nil))
	if err != nil || got.Handle != m.Handle || got.RawLength != 5 || string(got.Payload) != "hello" {
		t.Fatalf("decoded %+v, %v", got, err)
	}
}
