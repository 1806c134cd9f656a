package seal

import (
	"bytes"
	"errors"
	"testing"
	"time"

	"github.com/cairnbackup/cairn/repo/blob"
)

var fastKDF = KDFParams{Time: 1, MemoryKiB: 64, Threads: 1}

func testKey(t testing.TB) *Key {
	t.Helper()
	k, err := NewKey(bytes.Repeat([]byte{7}, KeySize))
	if err != nil {
		t.Fatal(err)
	}
	return k
}

func TestSealOpen(t *testing.T) {
	k := testKey(t)
	msg := []byte("the quick brown fox")
	sealed := k.Seal([]byte("prefix"), msg, []byte("aad"))
	if !bytes.HasPrefix(sealed, []byte("prefix")) || len(sealed) != len("prefix")+len(msg)+Overhead {
		t.Fatalf("sealed length %d, want %d", len(sealed), len("prefix")+len(msg)+Overhead)
	}
	sealed = sealed[len("prefix"):]
	got, err := k.Open(nil, sealed, []byte("aad"))
	if err != nil || !bytes.Equal(got, msg) {
		t.Fatalf("open = %q, %v", got, err)
	}
	// Two seals of the same message differ (random nonce).
	if bytes.Equal(k.Seal(nil, msg, nil), k.Seal(nil, msg, nil)) {
		t.Fatal("two seals are identical")
	}
}

func TestOpenRejects(t *testing.T) {
	k := testKey(t)
	sealed := k.Seal(nil, []byte("data"), []byte("aad"))
	other, _ := NewKey(bytes.Repeat([]byte{8}, KeySize))
	flipped := bytes.Clone(sealed)
	flipped[NonceSize+1] ^= 1
	cases := map[string]struct {
		key    *Key
		sealed []byte
		aad    string
	}{
		"flipped byte": {k, flipped, "aad"},
		"wrong aad":    {k, sealed, "other"},
		"wrong key":    {other, sealed, "aad"},
		"truncated":    {k, sealed[:len(sealed)-1], "aad"},
	}
	for name, c := range cases {
		_, err := c.key.Open(nil, c.sealed, []byte(c.aad))
		if !errors.Is(err, ErrAuth) || !errors.Is(err, blob.ErrCorrupt) {
			t.Errorf("%s: err = %v, want ErrAuth and ErrCorrupt", name, err)
		}
	}
	_, err := k.Open(nil, sealed[:Overhead-1], nil)
	if err == nil || err.Error() != "sealed message of 27 bytes is shorter than 28: corrupt" {
		t.Errorf("short: err = %v", err)
	}
}

func TestNewKeyLength(t *testing.T) {
	_, err := NewKey(make([]byte, 16))
	if err == nil || err.Error() != "seal: key is 16 bytes, want 32" {
		t.Fatalf("err = %v", err)
	}
}

func TestDeriveIndependent(t *testing.T) {
	m := MasterKey(bytes.Repeat([]byte{1}, KeySize))
	a, b := m.Derive(PurposeData), m.Derive(PurposeChunker)
	if a == b {
		t.Fatal("purposes derive the same key")
	}
	if a != m.Derive(PurposeData) {
		t.Fatal("derivation is not deterministic")
	}
}

func TestWrapPassphrase(t *testing.T) {
	m, err := NewMasterKey()
	if err != nil {
		t.Fatal(err)
	}
	now := time.Date(2026, 1, 2, 3, 4, 5, 0, time.UTC)
	w, err := Wrap(m, []byte("secret"), fastKDF, now)
	if err != nil {
		t.Fatal(err)
	}
	enc, err := w.Encode()
	if err != nil {
		t.Fatal(err)
	}
	w2, err := DecodeWrapped(enc)
	if err != nil {
		t.Fatal(err)
	}
	got, err := w2.Unwrap([]byte("secret"))
	if err != nil || got != m {
		t.Fatalf("unwrap = %v", err)
	}
	if _, err := w2.Unwrap([]byte("Secret")); !errors.Is(err, ErrWrongKey) {
		t.Fatalf("wrong passphrase: err = %v, want ErrWrongKey", err)
	}
	if !w2.Created.Equal(now) || w2.KDF != KDFArgon2id || w2.Params != fastKDF {
		t.Fatalf("decoded %+v", w2)
	}
}

func TestWrapSecret(t *testing.T) {
	m, _ := NewMasterKey()
	secret := bytes.Repeat([]byte{9}, KeySize)
	w, err := WrapWithSecret(m, secret, time.Now())
	if err != nil {
		t.Fatal(err)
	}
	if got, err := w.Unwrap(secret); err != nil || got != m {
		t.Fatalf("unwrap: %v", err)
	}
	if _, err := w.Unwrap(bytes.Repeat([]byte{8}, KeySize)); !errors.Is(err, ErrWrongKey) {
		t.Fatalf("wrong secret: %v", err)
	}
	if _, err := w.Unwrap([]byte("short")); !errors.Is(err, ErrWrongKey) {
		t.Fatalf("short secret: %v", err)
	}
}

func TestUnwrapHostileParams(t *testing.T) {
	m, _ := NewMasterKey()
	w, _ := Wrap(m, []byte("pw"), fastKDF, time.Now())
	w.Params.MemoryKiB = 1 << 30
	_, err := w.Unwrap([]byte("pw"))
	if err == nil || err.Error() != "seal: argon2id parameters out of range (time 1, memory 1073741824 KiB, threads 1)" {
		t.Fatalf("err = %v", err)
	}
}

func FuzzDecodeWrapped(f *testing.F) {
	m := MasterKey(bytes.Repeat([]byte{3}, KeySize))
	w, _ := Wrap(m, []byte("pw"), fastKDF, time.Unix(0, 0))
	enc, _ := w.Encode()
	f.Add(enc)
	ws, _ := WrapWithSecret(m, bytes.Repeat([]byte{4}, KeySize), time.Unix(0, 0))
	enc, _ = ws.Encode()
	f.Add(enc)
	f.Add([]byte(`{"version":1,"kdf":"argon2id","params":{"time":64,"memory_kib":4194304,"threads":255}}`))
	f.Fuzz(func(t *testing.T, data []byte) {
		w, err := DecodeWrapped(data)
		if err != nil {
			return
		}
		// Keep the fuzzer from spending its time in argon2: only
		// cheap parameters are tried.
		if w.KDF == KDFArgon2id && (w.Params.Time > 1 || w.Params.MemoryKiB > 1024) {
			return
		}
		got, err := w.Unwrap([]byte("pw"))
		if err == nil && got != m {
			t.Fatalf("unwrapped a different key without error")
		}
	})
}

func BenchmarkSeal(b *testing.B) {
	k := testKey(b)
	msg := make([]byte, 1<<20)
	dst := make([]byte, 0, len(msg)+Overhead)
	b.SetBytes(int64(len(msg)))
	for b.Loop() {
		k.Seal(dst[:0], msg, nil)
	}
}

func BenchmarkOpen(b *testing.B) {
	k := testKey(b)
	msg := make([]byte, 1<<20)
	sealed := k.Seal(nil, msg, nil)
	dst := make([]byte, 0, len(msg))
	b.SetBytes(int64(len(msg)))
	for b.Loop() {
		if _, err := k.Open(dst[:0], sealed, nil); err != nil {
			b.Fatal(err)
		}
	}
}

// TestSealInPlace seals a message where it lies after a prefix: the
// result opens like Seal's, the prefix is kept, and with room for the
// tag nothing is reallocated.
func TestSealInPlace(t *testing.T) {
	k := testKey(t)
	msg := []byte("the quick brown fox")
	b := make([]byte, 0, 6+NonceSize+len(msg)+TagSize)
	b = append(b, "prefix"...)
	b = b[:6+NonceSize]
	b = append(b, msg...)
	out := k.SealInPlace(b, 6, []byte("aad"))
	if &out[0] != &b[0] || len(out) != 6+len(msg)+Overhead || string(out[:6]) != "prefix" {
		t.Fatalf("sealed %d bytes (want %d), same array %v, prefix %q", len(out), 6+len(msg)+Overhead, &out[0] == &b[0], out[:6])
	}
	got, err := k.Open(nil, out[6:], []byte("aad"))
	if err != nil || !bytes.Equal(got, msg) {
		t.Fatalf("open = %q, %v", got, err)
	}
	if allocs := testing.AllocsPerRun(10, func() {
		b = b[:6+NonceSize]
		b = append(b, msg...)
		k.SealInPlace(b, 6, nil)
	}); allocs != 0 {
		t.Fatalf("%v allocations per seal, want 0", allocs)
	}
}
