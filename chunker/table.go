package chunker

import (
	"encoding/binary"

	"github.com/minio/sha256-simd"
)

// tableDomain separates gear table derivation from any other use of the
// repository seed. Changing it changes every cut point.
const tableDomain = "cairn gear v1"

// Table is the gear table: one pseudo-random 64-bit word per byte value.
// Nothing in this package writes to a Table after [NewTable] returns it,
// so one Table may be shared by any number of [Chunker] values in any
// number of goroutines, as long as the caller does not modify it either.
type Table [256]uint64

// NewTable derives the gear table for seed. Block k (k = 0, 1, …, 63) is
// SHA-256(seed || "cairn gear v1" || k as a big-endian uint32); each
// 32-byte block gives four big-endian uint64 words, so block k fills
// words 4k to 4k+3. The result depends only on seed.
func NewTable(seed [32]byte) *Table {
	var msg [len(seed) + len(tableDomain) + 4]byte
	copy(msg[:], seed[:])
	copy(msg[len(seed):], tableDomain)
	ctr := msg[len(seed)+len(tableDomain):]

	t := new(Table)
	for k := range len(t) / 4 {
		binary.BigEndian.PutUint32(ctr, uint32(k))
		sum := sha256.Sum256(msg[:])
		for j := range 4 {
			t[4*k+j] = binary.BigEndian.Uint64(sum[8*j:])
		}
	}
	return t
}
