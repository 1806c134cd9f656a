package repo_test

import (
	"errors"
	"math/rand/v2"
	"strings"
	"testing"

	"github.com/cairnbackup/cairn/repo/blob"
	"github.com/cairnbackup/cairn/repo/pack"
	"github.com/cairnbackup/cairn/repo/repotest"
)

// LoadStored gives a blob as stored: the compression byte and the
// payload, which decompresses to the plaintext LoadBlob gives; a blob
// the index does not know is not found.
func TestLoadStored(t *testing.T) {
	r := repotest.New(t)
	text := []byte(strings.Repeat("a line that compresses well\n", 500))
	noise := make([]byte, 9000)
	rand.NewChaCha8([32]byte{5}).Read(noise)
	s := r.NewSession()
	var hs []blob.Handle
	for _, data := range [][]byte{text, noise} {
		id, _, err := s.SaveBlob(t.Context(), blob.Data, data)
		if err != nil {
			t.Fatal(err)
		}
		hs = append(hs, blob.Handle{ID: id, Type: blob.Data})
	}
	if err := s.Flush(t.Context()); err != nil {
		t.Fatal(err)
	}
	for i, want := range []struct {
		c    pack.Compression
		data []byte
	}{{pack.Zstd, text}, {pack.Raw, noise}} {
		env, rawLen, err := r.LoadStored(t.Context(), hs[i], nil)
		if err != nil {
			t.Fatal(err)
		}
		if pack.Compression(env[0]) != want.c || rawLen != len(want.data) {
			t.Fatalf("blob %d: compression %d, raw length %d; want %d, %d", i, env[0], rawLen, want.c, len(want.data))
		}
		if want.c == pack.Zstd && len(env)-1 >= len(want.data) {
			t.Fatalf("blob %d: a zstd payload of %d bytes for %d", i, len(env)-1, len(want.data))
		}
		got, err := pack.VerifyPayload(nil, hs[i], want.c, rawLen, env[1:])
		if err != nil || string(got) != string(want.data) {
			t.Fatalf("blob %d: payload does not verify: %v", i, err)
		}
	}
	h := blob.Handle{ID: blob.Hash([]byte("nowhere")), Type: blob.Data}
	_, _, err := r.LoadStored(t.Context(), h, nil)
	if !errors.Is(err, blob.ErrNotFound) || err.Error() != "blob "+h.String()+": not found" {
		t.Fatalf("missing blob: %v", err)
	}
}
