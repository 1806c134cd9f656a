package prune

import (
	"encoding/binary"
	"math"

	"github.com/cairnbackup/cairn/repo/blob"
)

// bloom is a Bloom filter over blob handles. A handle added always tests
// true; one not added tests true with probability about fp. Prune uses it
// for the set of used blobs, where a false positive only keeps a little
// garbage, never deletes anything in use.
type bloom struct {
	bits []uint64
	m    uint64 // number of bits
	k    int
}

// maxBloomBytes caps the filter: beyond about 40 million blobs (40 TiB in
// 1 MiB chunks) the false positive rate rises instead of the memory.
const maxBloomBytes = 64 << 20

func newBloom(n int, fp float64) *bloom {
	n = max(n, 1024)
	m := uint64(math.Ceil(-float64(n) * math.Log(fp) / (math.Ln2 * math.Ln2)))
	m = min(m, maxBloomBytes*8)
	m = (m + 63) &^ 63
	k := int(math.Round(float64(m) / float64(n) * math.Ln2))
	k = min(max(k, 1), 16)
	return &bloom{bits: make([]uint64, m/64), m: m, k: k}
}

// positions derives the k bit positions from the ID, which is already a
// uniform hash (double hashing with two independent 64-bit words).
func (b *bloom) positions(h blob.Handle, fn func(uint64)) {
	h1 := binary.LittleEndian.Uint64(h.ID[0:]) ^ uint64(h.Type)
	h2 := binary.LittleEndian.Uint64(h.ID[8:]) | 1
	for i := range b.k {
		fn((h1 + uint64(i)*h2) % b.m)
	}
}

func (b *bloom) add(h blob.Handle) {
	b.positions(h, func(p uint64) { b.bits[p/64] |= 1 << (p % 64) })
}

func (b *bloom) has(h blob.Handle) bool {
	ok := true
	b.positions(h, func(p uint64) {
		if b.bits[p/64]&(1<<(p%64)) == 0 {
			ok = false
		}
	})
	return ok
}

func (b *bloom) bytes() int { return len(b.bits) * 8 }
