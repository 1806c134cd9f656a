package seal

import (
	"crypto/aes"
	"crypto/cipher"
	"crypto/hkdf"
	"crypto/rand"
	"errors"
	"fmt"

	"github.com/cairnbackup/cairn/repo/blob"
	"github.com/minio/sha256-simd"
)

// Sizes of the sealed envelope.
const (
	KeySize   = 32
	NonceSize = 12
	TagSize   = 16
	// Overhead is how many bytes Seal adds to a plaintext.
	Overhead = NonceSize + TagSize
)

// ErrAuth is returned (wrapped together with [blob.ErrCorrupt]) when a
// sealed message fails authentication: it was damaged, or sealed with
// another key or for another purpose.
var ErrAuth = errors.New("message authentication failed")

// Key seals and opens messages with AES-256-GCM. It is safe for
// concurrent use.
type Key struct {
	aead cipher.AEAD
}

// NewKey returns a Key for the 32-byte secret k.
func NewKey(k []byte) (*Key, error) {
	if len(k) != KeySize {
		return nil, fmt.Errorf("seal: key is %d bytes, want %d", len(k), KeySize)
	}
	block, err := aes.NewCipher(k)
	if err != nil {
		return nil, fmt.Errorf("seal: %w", err)
	}
	aead, err := cipher.NewGCM(block)
	if err != nil {
		return nil, fmt.Errorf("seal: %w", err)
	}
	return &Key{aead: aead}, nil
}

// Seal appends nonce || ciphertext || tag of plaintext to dst. The nonce
// is 96 random bits, so every message gets its own. aad is authenticated
// but not stored: Open must be given the same aad.
func (k *Key) Seal(dst, plaintext, aad []byte) []byte {
	n := len(dst)
	dst = grow(dst, NonceSize)
	nonce := dst[n : n+NonceSize]
	if _, err := rand.Read(nonce); err != nil {
		panic("seal: crypto/rand failed: " + err.Error()) // never happens on Linux
	}
	return k.aead.Seal(dst, nonce, plaintext, aad)
}

// SealInPlace seals the message b[n+NonceSize:] where it lies: it fills
// b[n:n+NonceSize] with a fresh nonce, encrypts the message over itself
// and appends the tag, so b[n:] becomes what Seal(b[:n], message, aad)
// appends, without a copy of the message. b needs TagSize bytes of spare
// capacity, or it is reallocated. It panics if len(b) < n+NonceSize.
func (k *Key) SealInPlace(b []byte, n int, aad []byte) []byte {
	nonce := b[n : n+NonceSize]
	if _, err := rand.Read(nonce); err != nil {
		panic("seal: crypto/rand failed: " + err.Error()) // never happens on Linux
	}
	msg := b[n+NonceSize:]
	// The ciphertext goes exactly over the message, which cipher.AEAD
	// allows (dst's spare capacity starts where the message starts).
	return k.aead.Seal(b[:n+NonceSize], nonce, msg, aad)
}

// Open authenticates and decrypts sealed (as made by Seal with the same
// aad) and appends the plaintext to dst. A damaged message or a wrong key
// or aad gives an error wrapping both [ErrAuth] and [blob.ErrCorrupt].
func (k *Key) Open(dst, sealed, aad []byte) ([]byte, error) {
	if len(sealed) < Overhead {
		return dst, fmt.Errorf("sealed message of %d bytes is shorter than %d: %w", len(sealed), Overhead, blob.ErrCorrupt)
	}
	out, err := k.aead.Open(dst, sealed[:NonceSize], sealed[NonceSize:], aad)
	if err != nil {
		return dst, blob.Corrupt(ErrAuth)
	}
	return out, nil
}

func grow(b []byte, n int) []byte {
	if cap(b)-len(b) < n {
		nb := make([]byte, len(b), len(b)+n+64)
		copy(nb, b)
		b = nb
	}
	return b[:len(b)+n]
}

// MasterKey is the repository's secret: 256 random bits from which every
// working key is derived.
type MasterKey [KeySize]byte

// NewMasterKey returns a fresh random master key.
func NewMasterKey() (MasterKey, error) {
	var m MasterKey
	if _, err := rand.Read(m[:]); err != nil {
		return m, fmt.Errorf("seal: random master key: %w", err)
	}
	return m, nil
}

// Derive returns a 32-byte subkey of the master key for one purpose
// (HKDF-SHA256 with purpose as info). Distinct purposes give independent
// keys.
func (m *MasterKey) Derive(purpose string) [KeySize]byte {
	out, err := hkdf.Key(sha256.New, m[:], nil, purpose, KeySize)
	if err != nil {
		panic("seal: hkdf: " + err.Error()) // only for lengths we never ask
	}
	return [KeySize]byte(out)
}

// Purposes passed to [MasterKey.Derive]. Changing one makes every
// repository unreadable.
const (
	PurposeData    = "cairn v1 data key"
	PurposeChunker = "cairn v1 chunker seed"
)

// DataKey returns the AEAD key that seals everything in the repository.
func (m *MasterKey) DataKey() *Key {
	k := m.Derive(PurposeData)
	key, err := NewKey(k[:])
	if err != nil {
		panic(err) // the length is right by construction
	}
	return key
}
