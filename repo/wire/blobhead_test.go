package wire_test

import (
	"bytes"
	"testing"

	"github.com/cairnbackup/cairn/repo/wire"
)

// The appliance sends a blob's plaintext as the second part of its frame
// (no copy into a frame body): the bytes on the wire and what the client
// decodes are those of Append.
func TestBlobSentInTwoParts(t *testing.T) {
	m := &wire.Blob{Req: 0x01020304, Data: []byte("plaintext of a chunk")}
	var one, two bytes.Buffer
	w1, w2 := wire.NewWriter(&one), wire.NewWriter(&two)
	if err := w1.WriteFrame(wire.TypeBlob, m.Append(nil)); err != nil {
		t.Fatal(err)
	}
	if err := w2.WriteFrame(wire.TypeBlob, m.AppendHead(nil), m.Data); err != nil {
		t.Fatal(err)
	}
	w1.Flush()
	w2.Flush()
	if !bytes.Equal(one.Bytes(), two.Bytes()) {
		t.Fatalf("two parts:\n%x\nwant\n%x", two.Bytes(), one.Bytes())
	}
	typ, body, err := wire.NewReader(&two).Next(nil)
	if err != nil || typ != wire.TypeBlob {
		t.Fatalf("read %s, %v", typ, err)
	}
	got, err := wire.DecodeBlob(body)
	if err != nil || got.Req != m.Req || !bytes.Equal(got.Data, m.Data) {
		t.Fatalf("decoded %+v, %v", got, err)
	}
}
