package blob

import (
	"encoding/hex"
	"errors"
	"fmt"

	"github.com/minio/sha256-simd"
)

// IDSize is the length of an [ID] in bytes.
const IDSize = 32

// MaxSize is the largest plaintext a single blob may hold. It bounds
// every buffer that holds one blob: a chunk (the chunker's maximum is
// well below it) or an encoded tree.
const MaxSize = 64 << 20

// ID names a blob, a pack or a snapshot: the SHA-256 of its plaintext (for
// blobs and snapshots) or of its bytes on disk (for packs).
type ID [IDSize]byte

// Hash returns the ID of data.
func Hash(data []byte) ID {
	return ID(sha256.Sum256(data))
}

// String returns the ID as 64 lowercase hex digits.
func (id ID) String() string {
	return hex.EncodeToString(id[:])
}

// Short returns the first 8 hex digits of the ID, for messages.
func (id ID) Short() string {
	return hex.EncodeToString(id[:4])
}

// IsZero reports whether the ID is all zero bytes. The zero ID never names
// stored data; the tree format uses it to mark holes in sparse files.
func (id ID) IsZero() bool {
	return id == ID{}
}

// MarshalText encodes the ID as hex.
func (id ID) MarshalText() ([]byte, error) {
	out := make([]byte, 2*IDSize)
	hex.Encode(out, id[:])
	return out, nil
}

// UnmarshalText parses a hex ID.
func (id *ID) UnmarshalText(b []byte) error {
	v, err := ParseID(string(b))
	if err != nil {
		return err
	}
	*id = v
	return nil
}

// ParseID parses 64 hex digits.
func ParseID(s string) (ID, error) {
	var id ID
	if len(s) != 2*IDSize {
		return id, fmt.Errorf("invalid id %q: want %d hex digits, have %d", s, 2*IDSize, len(s))
	}
	if _, err := hex.Decode(id[:], []byte(s)); err != nil {
		return id, fmt.Errorf("invalid id %q: %w", s, err)
	}
	return id, nil
}

// Type says what a blob holds.
type Type uint8

// Blob types. The numeric values are part of the pack format.
const (
	Invalid Type = 0
	Data    Type = 1 // a chunk of file contents
	Tree    Type = 2 // an encoded directory listing
)

// Valid reports whether t is a known blob type.
func (t Type) Valid() bool { return t == Data || t == Tree }

// String names the type.
func (t Type) String() string {
	switch t {
	case Data:
		return "data"
	case Tree:
		return "tree"
	}
	return fmt.Sprintf("type(%d)", uint8(t))
}

// Handle identifies a blob together with its type.
type Handle struct {
	ID   ID
	Type Type
}

// String formats the handle as "type/shortid".
func (h Handle) String() string {
	return h.Type.String() + "/" + h.ID.Short()
}

// ErrNotFound is returned (wrapped) when a blob, pack or snapshot does not exist.
var ErrNotFound = errors.New("not found")

// ErrCorrupt is returned (wrapped) when stored data fails authentication,
// does not decode, or does not hash to its ID.
var ErrCorrupt = errors.New("corrupt")

// Corrupt marks err as corruption: the result has err's message, and
// errors.Is finds both err (and what it wraps) and [ErrCorrupt]. Use it
// rather than errors.Join(err, ErrCorrupt), whose message would end with
// a line of its own saying "corrupt".
func Corrupt(err error) error { return &corruptError{err} }

type corruptError struct{ err error }

func (e *corruptError) Error() string   { return e.err.Error() }
func (e *corruptError) Unwrap() []error { return []error{e.err, ErrCorrupt} }
