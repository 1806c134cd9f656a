package blob_test

import (
	"errors"
	"testing"

	"github.com/cairnbackup/cairn/repo/blob"
)

func TestMatchPrefix(t *testing.T) {
	ids := []blob.ID{blob.Hash([]byte("a")), blob.Hash([]byte("b")), blob.Hash([]byte("c"))}
	// ca978112…, 3e23e816…, 2e7d2c03…
	if i, err := blob.MatchPrefix("drill report", "CA97", ids); i != 0 || err != nil {
		t.Errorf("CA97: %d %v", i, err)
	}
	twins := append(ids, blob.ID{0x3e, 0x23, 0xff})
	for _, c := range []struct{ ref, err string }{
		{"ca9", `drill report "ca9": give at least 4 hex digits of its id, or latest`},
		{"ca97x", `drill report "ca97x": not a hex id`},
		{"ffff", "drill report ffff: not found"},
		{"3e23", "drill report 3e23 is ambiguous: 2 drill reports start with it"},
	} {
		_, err := blob.MatchPrefix("drill report", c.ref, twins)
		if err == nil || err.Error() != c.err {
			t.Errorf("%s: %v, want %s", c.ref, err, c.err)
		}
	}
	if _, err := blob.MatchPrefix("snapshot", "ffff", ids); !errors.Is(err, blob.ErrNotFound) {
		t.Errorf("not found: %v", err)
	}
}
