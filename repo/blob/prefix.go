package blob

import (
	"encoding/hex"
	"fmt"
	"strings"
)

// MinPrefix is the fewest hex digits an ID prefix given by a person may
// have.
const MinPrefix = 4

// MatchPrefix returns the index in ids of the one ID whose hex form
// starts with ref (at least [MinPrefix] hex digits, any case). what names
// the kind of object in errors ("snapshot", "drill report"); no match
// wraps [ErrNotFound], and a prefix several IDs share is ambiguous.
func MatchPrefix(what, ref string, ids []ID) (int, error) {
	ref = strings.ToLower(ref)
	if len(ref) < MinPrefix || len(ref) > 2*IDSize {
		return -1, fmt.Errorf("%s %q: give at least %d hex digits of its id, or latest", what, ref, MinPrefix)
	}
	if _, err := hex.DecodeString(ref[:len(ref)&^1]); err != nil || strings.Trim(ref[len(ref)&^1:], "0123456789abcdef") != "" {
		return -1, fmt.Errorf("%s %q: not a hex id", what, ref)
	}
	found, n := -1, 0
	for i, id := range ids {
		if strings.HasPrefix(id.String(), ref) {
			found, n = i, n+1
		}
	}
	switch n {
	case 0:
		return -1, fmt.Errorf("%s %s: %w", what, ref, ErrNotFound)
	case 1:
		return found, nil
	}
	return -1, fmt.Errorf("%s %s is ambiguous: %d %ss start with it", what, ref, n, what)
}
