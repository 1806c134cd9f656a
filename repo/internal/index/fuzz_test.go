package index

import (
	"bytes"
	"testing"
)

// Index values are read back from disk: any bytes decode to a value or an
// error, and a value that decodes encodes to the same bytes.
func FuzzDecodeValues(f *testing.F) {
	f.Add(Location{Offset: 12, Length: 100, RawLength: 70, Type: 1}.encode())
	f.Add(make([]byte, 20))
	f.Add([]byte{1, 2, 3})
	f.Fuzz(func(t *testing.T, b []byte) {
		if loc, err := decodeLocation(b); err == nil && !bytes.Equal(loc.encode(), b) {
			t.Fatalf("location %x decodes to %+v, which encodes to %x", b, loc, loc.encode())
		}
		if _, err := decodePackInfo(b); err == nil && len(b) != 20 {
			t.Fatalf("pack record of %d bytes decoded", len(b))
		}
	})
}
