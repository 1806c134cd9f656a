package wire

import (
	"errors"
	"strings"
	"testing"

	"github.com/cairnbackup/cairn/repo/blob"
	"github.com/cairnbackup/cairn/repo/pack"
)

// FuzzStoredBlobPlaintext feeds StoredBlob.Plaintext, which decompresses
// what an appliance sends, any payload, compression and raw length for a
// known blob. It must never panic; it succeeds only with the blob's own
// plaintext, of RawLength bytes; every refusal matches blob.ErrCorrupt.
func FuzzStoredBlobPlaintext(f *testing.F) {
	want := []byte(strings.Repeat("the blob the node asked for\n", 40))
	h := blob.Handle{ID: blob.Hash(want), Type: blob.Data}
	z, _ := pack.Compress(nil, want, pack.LevelDefault)
	f.Add(uint8(CompressionZstd), uint32(len(want)), z)
	f.Add(uint8(CompressionZstd), uint32(len(want)+1), z)
	f.Add(uint8(CompressionZstd), uint32(len(want)), z[:len(z)/2])
	f.Add(uint8(CompressionRaw), uint32(len(want)), want)
	f.Add(uint8(2), uint32(3), []byte("abc"))
	f.Fuzz(func(t *testing.T, c uint8, rawLen uint32, payload []byte) {
		m := &StoredBlob{Req: 1, Compression: c, RawLength: rawLen, Payload: payload}
		got, err := m.Plaintext(h)
		if err != nil {
			if !errors.Is(err, blob.ErrCorrupt) {
				t.Fatalf("error %v does not match blob.ErrCorrupt", err)
			}
			if got != nil {
				t.Fatalf("an error and %d bytes", len(got))
			}
			return
		}
		if string(got) != string(want) || uint32(len(got)) != rawLen {
			t.Fatalf("accepted %d bytes (raw length %d) that are not the blob", len(got), rawLen)
		}
	})
}
