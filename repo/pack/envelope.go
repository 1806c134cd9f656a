package pack

import (
	"errors"
	"fmt"
	"slices"
	"sync"

	"github.com/cairnbackup/cairn/repo/blob"
	"github.com/cairnbackup/cairn/repo/seal"
	"github.com/klauspost/compress/zstd"
)

// Compression says how a blob's payload is stored inside its envelope.
type Compression uint8

// Compression values; they are part of the envelope format.
const (
	Raw  Compression = 0 // stored as is (incompressible data)
	Zstd Compression = 1 // a single zstd frame
)

// MinEnvelope is the size of the smallest possible envelope: the seal
// overhead plus the compression byte.
const MinEnvelope = seal.Overhead + 1

// Level is a zstd compression level as understood by the encoder.
type Level = zstd.EncoderLevel

// Compression levels offered to operators.
const (
	LevelFastest = zstd.SpeedFastest
	LevelDefault = zstd.SpeedDefault
	LevelBetter  = zstd.SpeedBetterCompression
)

var (
	encMu    sync.Mutex
	encoders = map[Level]*zstd.Encoder{}
	decOnce  sync.Once
	decoder  *zstd.Decoder
)

// encoderWindow is the zstd window of the encoders: how far back a match
// may lie, and half the history each encoder state keeps.
const encoderWindow = 2 << 20

// smallBlob is the size under which the default level compresses with
// the fastest level's matcher: a small file (most files of a source tree
// or a configuration directory are one blob of a few KiB) gains little
// from the default matcher's second, 1 MiB hash table, whose every
// lookup misses the CPU caches in a backup, where file reads and hashing
// evict it between blobs. On the 40 000 files (182 MiB) of the peers
// tree's source directories a first backup took 3.4-4.4 user CPU
// seconds instead of 4.8-6.5 and stored 62.0 MiB instead of 59.4, the
// same with the threshold at 16, 64 or 256 KiB. BenchmarkCompressSmall
// measures both matchers alone, where the gap is smaller. Larger chunks
// keep the default matcher.
const smallBlob = 64 << 10

func encoder(l Level) *zstd.Encoder {
	encMu.Lock()
	defer encMu.Unlock()
	e := encoders[l]
	if e == nil {
		var err error
		// EncodeAll is safe for concurrent use; the encoder keeps a
		// small pool of states, bounded by its concurrency.
		// The window is 2 MiB instead of the level's 8 MiB (4 MiB at
		// the fastest): each state keeps two windows of history, so
		// this is 12 MiB less per state, 24 MiB on two CPUs, and
		// blobs average 1 MiB, so few matches lie further back.
		e, err = zstd.NewWriter(nil, zstd.WithEncoderLevel(l), zstd.WithEncoderCRC(false),
			zstd.WithZeroFrames(true), zstd.WithWindowSize(encoderWindow))
		if err != nil {
			panic("pack: zstd encoder: " + err.Error()) // only for invalid options
		}
		encoders[l] = e
	}
	return e
}

func zstdDecoder() *zstd.Decoder {
	decOnce.Do(func() {
		var err error
		decoder, err = zstd.NewReader(nil, zstd.WithDecoderMaxMemory(blob.MaxSize),
			zstd.WithDecoderMaxWindow(blob.MaxSize), zstd.WithDecoderConcurrency(0))
		if err != nil {
			panic("pack: zstd decoder: " + err.Error())
		}
	})
	return decoder
}

// Compress compresses src at level l and appends the result to dst. When
// compression saves less than 1/64 of the size (incompressible data such
// as media or already compressed files), it appends src unchanged and
// returns [Raw].
//
// dst is grown once to the encoder's bound for src first: EncodeAll
// grows it by appending, and a payload buffer the collector has taken
// from its pool (a backup collects often) was grown and copied several
// times per chunk, up to four times the chunk's size for incompressible
// data (BenchmarkCompress/*/fresh).
//
// At [LevelDefault], a src under [smallBlob] is compressed with the
// fastest level's matcher (see there).
func Compress(dst, src []byte, l Level) ([]byte, Compression) {
	n := len(dst)
	if l == LevelDefault && len(src) < smallBlob {
		l = LevelFastest
	}
	enc := encoder(l)
	if need := n + enc.MaxEncodedSize(len(src)); cap(dst) < need {
		nd := make([]byte, n, need)
		copy(nd, dst)
		dst = nd
	}
	out := enc.EncodeAll(src, dst)
	if len(out)-n >= len(src)-len(src)/64 {
		return append(out[:n], src...), Raw
	}
	return out, Zstd
}

// Decompress appends the plaintext of payload to dst. rawLen is the
// expected plaintext length; a payload that decodes to any other length is
// corrupt.
func Decompress(dst, payload []byte, c Compression, rawLen int) ([]byte, error) {
	if rawLen < 0 || rawLen > blob.MaxSize {
		return dst, fmt.Errorf("blob length %d out of range: %w", rawLen, blob.ErrCorrupt)
	}
	switch c {
	case Raw:
		if len(payload) != rawLen {
			return dst, fmt.Errorf("raw payload is %d bytes, want %d: %w", len(payload), rawLen, blob.ErrCorrupt)
		}
		return append(dst, payload...), nil
	case Zstd:
		n := len(dst)
		if cap(dst)-n < rawLen {
			nd := make([]byte, n, n+rawLen)
			copy(nd, dst)
			dst = nd
		}
		out, err := zstdDecoder().DecodeAll(payload, dst)
		if err != nil {
			return dst[:n], fmt.Errorf("zstd: %w: %w", err, blob.ErrCorrupt)
		}
		if len(out)-n != rawLen {
			return dst[:n], fmt.Errorf("decompressed to %d bytes, want %d: %w", len(out)-n, rawLen, blob.ErrCorrupt)
		}
		return out, nil
	}
	return dst, fmt.Errorf("unknown compression %d: %w", c, blob.ErrCorrupt)
}

// envelopeAAD binds a sealed envelope to the blob it holds, so an
// envelope cannot be passed off as another blob even before re-hashing.
func envelopeAAD(h blob.Handle) [1 + blob.IDSize]byte {
	var a [1 + blob.IDSize]byte
	a[0] = byte(h.Type)
	copy(a[1:], h.ID[:])
	return a
}

// SealBlob appends the envelope of a blob to dst: the payload (already
// compressed as c says) sealed together with its compression byte.
func SealBlob(dst []byte, key *seal.Key, h blob.Handle, c Compression, payload []byte) []byte {
	return appendEnvelope(dst, key, h, c, payload)
}

// appendEnvelope is SealBlob: nonce, compression byte and payload are
// appended to dst and sealed where they lie, so the payload is copied
// once, into dst.
func appendEnvelope(dst []byte, key *seal.Key, h blob.Handle, c Compression, payload []byte) []byte {
	n := len(dst)
	dst = slices.Grow(dst, MinEnvelope+len(payload))
	dst = dst[:n+seal.NonceSize]
	dst = append(dst, byte(c))
	dst = append(dst, payload...)
	aad := envelopeAAD(h)
	return key.SealInPlace(dst, n, aad[:])
}

// OpenBlob authenticates and decodes one envelope of blob h whose
// plaintext is rawLen bytes long, verifies that the plaintext hashes to
// h.ID, and appends it to dst. scratch is reused for the decrypted
// payload and returned for the next call. Every failure wraps
// [blob.ErrCorrupt].
func OpenBlob(dst []byte, key *seal.Key, h blob.Handle, rawLen int, envelope, scratch []byte) (out, scratchOut []byte, err error) {
	return openBlob(dst, key, h, rawLen, envelope, scratch, true)
}

// OpenBlobUnhashed is OpenBlob without the last step: the plaintext is
// authenticated, decompressed and rawLen bytes long, but not hashed. It
// is for a reader that hashes every byte it gets itself and checks that
// against a hash it trusts (restore, which hashes each file of several
// chunks whole against the SHA-256 its tree records): hashing each
// chunk on the way as well would hash every byte twice.
func OpenBlobUnhashed(dst []byte, key *seal.Key, h blob.Handle, rawLen int, envelope, scratch []byte) (out, scratchOut []byte, err error) {
	return openBlob(dst, key, h, rawLen, envelope, scratch, false)
}

func openBlob(dst []byte, key *seal.Key, h blob.Handle, rawLen int, envelope, scratch []byte, rehash bool) (out, scratchOut []byte, err error) {
	aad := envelopeAAD(h)
	pt, err := key.Open(scratch[:0], envelope, aad[:])
	if err != nil {
		return dst, scratch, fmt.Errorf("blob %s: %w", h, err)
	}
	if len(pt) < 1 {
		return dst, pt, fmt.Errorf("blob %s: empty envelope: %w", h, blob.ErrCorrupt)
	}
	n := len(dst)
	out, err = Decompress(dst, pt[1:], Compression(pt[0]), rawLen)
	if err != nil {
		return dst, pt, fmt.Errorf("blob %s: %w", h, err)
	}
	if rehash && blob.Hash(out[n:]) != h.ID {
		return dst, pt, fmt.Errorf("blob %s: plaintext does not match its id: %w", h, blob.ErrCorrupt)
	}
	return out, pt, nil
}

// OpenStored authenticates an envelope of blob h and appends its content
// to dst: the compression byte, then the payload as stored. It neither
// decompresses nor re-hashes: whoever uses the payload must (see
// [VerifyPayload]). Every failure wraps [blob.ErrCorrupt].
func OpenStored(dst []byte, key *seal.Key, h blob.Handle, envelope []byte) ([]byte, error) {
	aad := envelopeAAD(h)
	pt, err := key.Open(dst[:0], envelope, aad[:])
	if err != nil {
		return dst[:0], fmt.Errorf("blob %s: %w", h, err)
	}
	if len(pt) < 1 {
		return pt, fmt.Errorf("blob %s: empty envelope: %w", h, blob.ErrCorrupt)
	}
	return pt, nil
}

// VerifyPayload decompresses a payload as received from a node and checks
// that it hashes to h.ID. It returns the plaintext appended to dst.
func VerifyPayload(dst []byte, h blob.Handle, c Compression, rawLen int, payload []byte) ([]byte, error) {
	n := len(dst)
	out, err := Decompress(dst, payload, c, rawLen)
	if err != nil {
		return dst, fmt.Errorf("blob %s: %w", h, err)
	}
	if blob.Hash(out[n:]) != h.ID {
		return dst[:n], fmt.Errorf("blob %s: %w", h, errMismatch)
	}
	return out, nil
}

var errMismatch = blob.Corrupt(errors.New("plaintext does not match its id"))

// OpenEnvelope authenticates an envelope of blob h, checks (by
// decompressing and re-hashing) that it holds the blob, and returns its
// compression and payload as stored, for copying into another pack
// without compressing again.
func OpenEnvelope(key *seal.Key, h blob.Handle, rawLen int, envelope []byte) (Compression, []byte, error) {
	aad := envelopeAAD(h)
	pt, err := key.Open(nil, envelope, aad[:])
	if err != nil {
		return 0, nil, fmt.Errorf("blob %s: %w", h, err)
	}
	if len(pt) < 1 {
		return 0, nil, fmt.Errorf("blob %s: empty envelope: %w", h, blob.ErrCorrupt)
	}
	c := Compression(pt[0])
	if _, err := VerifyPayload(nil, h, c, rawLen, pt[1:]); err != nil {
		return 0, nil, err
	}
	return c, pt[1:], nil
}
