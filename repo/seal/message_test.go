package seal

import (
	"bytes"
	"errors"
	"testing"

	"github.com/cairnbackup/cairn/repo/blob"
)

// A damaged sealed message said "message authentication failed" and then,
// on a line of its own, "corrupt" (errors.Join of the two markers).
func TestOpenErrorIsOneLine(t *testing.T) {
	k, err := NewKey(bytes.Repeat([]byte{7}, KeySize))
	if err != nil {
		t.Fatal(err)
	}
	sealed := k.Seal(nil, []byte("plaintext"), []byte("aad"))
	sealed[len(sealed)-1] ^= 1
	_, err = k.Open(nil, sealed, []byte("aad"))
	if err == nil || err.Error() != "message authentication failed" || !errors.Is(err, ErrAuth) || !errors.Is(err, blob.ErrCorrupt) {
		t.Fatalf("err = %q", err)
	}
}
