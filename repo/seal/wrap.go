package seal

import (
	"crypto/rand"
	"encoding/json"
	"errors"
	"fmt"
	"os"
	"runtime"
	"time"

	"golang.org/x/crypto/argon2"
)

// KDF names how a wrapped key's key-encryption key is made.
const (
	KDFArgon2id = "argon2id" // from a passphrase
	KDFKeyFile  = "keyfile"  // a random 256-bit secret kept in a key file outside the repository
)

// KDFParams are the argon2id costs used to wrap a key with a passphrase.
type KDFParams struct {
	Time      uint32 `json:"time"`
	MemoryKiB uint32 `json:"memory_kib"`
	Threads   uint8  `json:"threads"`
}

// DefaultKDF costs about a quarter second and 64 MiB on a small box.
var DefaultKDF = KDFParams{Time: 3, MemoryKiB: 64 << 10, Threads: 2}

// Limits on the argon2id costs accepted from a stored key, so a hostile
// key file cannot make Unwrap allocate or spin without bound.
const (
	maxKDFTime   = 64
	maxKDFMemory = 1 << 20 // KiB: 1 GiB, so a 2 GiB box can always open its keys
)

// ErrWrongKey is returned by [Wrapped.Unwrap] when the passphrase or key
// file secret does not open the wrapped key.
var ErrWrongKey = errors.New("wrong passphrase or key file")

// Wrapped is a master key sealed with a key-encryption key. It is stored
// as JSON in the repository's keys/ directory.
type Wrapped struct {
	Version int       `json:"version"`
	KDF     string    `json:"kdf"`
	Params  KDFParams `json:"params,omitzero"`
	Salt    []byte    `json:"salt,omitempty"`
	Created time.Time `json:"created"`
	Sealed  []byte    `json:"sealed"`
}

const wrapAAD = "cairn v1 wrapped master key"

// Wrap seals m with a key derived from passphrase with argon2id.
func Wrap(m MasterKey, passphrase []byte, p KDFParams, now time.Time) (*Wrapped, error) {
	if len(passphrase) == 0 {
		return nil, errors.New("seal: empty passphrase")
	}
	w := &Wrapped{Version: 1, KDF: KDFArgon2id, Params: p, Salt: make([]byte, 16), Created: now.UTC()}
	if _, err := rand.Read(w.Salt); err != nil {
		return nil, fmt.Errorf("seal: salt: %w", err)
	}
	return w, w.seal(m, passphrase)
}

// WrapWithSecret seals m with a random 32-byte secret (key file mode).
func WrapWithSecret(m MasterKey, secret []byte, now time.Time) (*Wrapped, error) {
	if len(secret) != KeySize {
		return nil, fmt.Errorf("seal: key file secret is %d bytes, want %d", len(secret), KeySize)
	}
	w := &Wrapped{Version: 1, KDF: KDFKeyFile, Created: now.UTC()}
	return w, w.seal(m, secret)
}

func (w *Wrapped) seal(m MasterKey, cred []byte) error {
	kek, err := w.kek(cred)
	if err != nil {
		return err
	}
	w.Sealed = kek.Seal(nil, m[:], []byte(wrapAAD))
	return nil
}

func (w *Wrapped) kek(cred []byte) (*Key, error) {
	switch w.KDF {
	case KDFArgon2id:
		p := w.Params
		if p.Time == 0 || p.Time > maxKDFTime || p.MemoryKiB < 8 || p.MemoryKiB > maxKDFMemory || p.Threads == 0 {
			return nil, fmt.Errorf("seal: argon2id parameters out of range (time %d, memory %d KiB, threads %d)", p.Time, p.MemoryKiB, p.Threads)
		}
		if len(w.Salt) < 16 {
			return nil, fmt.Errorf("seal: salt of %d bytes is too short", len(w.Salt))
		}
		prefaultHeap(int(p.MemoryKiB) << 10)
		k := argon2.IDKey(cred, w.Salt, p.Time, p.MemoryKiB, p.Threads, KeySize)
		// argon2 leaves p.MemoryKiB (64 MiB by default) of garbage and
		// a heap goal of twice that: collect it now, so that what the
		// command allocates next reuses those pages instead of adding
		// to them (peak RSS of every command that opens with a
		// passphrase).
		runtime.GC()
		return NewKey(k)
	case KDFKeyFile:
		if len(cred) != KeySize {
			return nil, ErrWrongKey
		}
		return NewKey(cred)
	}
	return nil, fmt.Errorf("seal: unknown key derivation %q", w.KDF)
}

// Unwrap opens the master key with cred: the passphrase for argon2id, the
// 32-byte secret for a key file. A wrong credential gives [ErrWrongKey].
func (w *Wrapped) Unwrap(cred []byte) (MasterKey, error) {
	var m MasterKey
	if w.Version != 1 {
		return m, fmt.Errorf("seal: wrapped key version %d is not supported", w.Version)
	}
	kek, err := w.kek(cred)
	if err != nil {
		return m, err
	}
	pt, err := kek.Open(nil, w.Sealed, []byte(wrapAAD))
	if err != nil {
		return m, ErrWrongKey
	}
	if len(pt) != KeySize {
		return m, fmt.Errorf("seal: unwrapped key is %d bytes, want %d", len(pt), KeySize)
	}
	copy(m[:], pt)
	return m, nil
}

// MaxWrappedSize bounds the encoded size of a [Wrapped] accepted by
// [DecodeWrapped].
const MaxWrappedSize = 64 << 10

// Encode returns w as indented JSON.
func (w *Wrapped) Encode() ([]byte, error) {
	b, err := json.MarshalIndent(w, "", "  ")
	if err != nil {
		return nil, err
	}
	return append(b, '\n'), nil
}

// DecodeWrapped parses a stored wrapped key.
func DecodeWrapped(b []byte) (*Wrapped, error) {
	if len(b) > MaxWrappedSize {
		return nil, fmt.Errorf("seal: wrapped key of %d bytes is too large", len(b))
	}
	var w Wrapped
	if err := json.Unmarshal(b, &w); err != nil {
		return nil, fmt.Errorf("seal: wrapped key: %w", err)
	}
	if w.KDF != KDFArgon2id && w.KDF != KDFKeyFile {
		return nil, fmt.Errorf("seal: unknown key derivation %q", w.KDF)
	}
	return &w, nil
}

// prefaultHeap gives the heap n bytes of memory the process has written
// to, free for the next allocation of that size: argon2's. Fresh from
// the kernel, argon2's 64 MiB were faulted in page by page by its two
// threads, most pages twice (mapped to the zero page when first read,
// copied when written) with a TLB shootdown across the CPUs each time:
// 0.3 s of system time and 0.25 s of wall time to open a repository,
// more than argon2's own work. Written here first, one fault a page and
// no copies, then freed, the pages are reused by argon2's allocation
// (the heap hands a freed span to the next allocation that fits it):
// deriving the default key took 0.13 s and 0.21 CPU seconds instead of
// 0.25 s and 0.48 (and the same peak RSS). If the heap placed argon2
// elsewhere, this would cost a few milliseconds for nothing.
func prefaultHeap(n int) {
	b := make([]byte, n)
	page := os.Getpagesize()
	for i := 0; i < len(b); i += page {
		b[i] = 1
	}
	runtime.KeepAlive(b)
	b = nil
	runtime.GC()
}
