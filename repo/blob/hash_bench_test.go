package blob

import "testing"

// BenchmarkHash measures SHA-256 of a 1 MiB chunk (blob IDs; the
// whole-file hash and the pack ID run the same code): a first backup
// hashes every byte twice and every stored byte once more.
func BenchmarkHash(b *testing.B) {
	data := make([]byte, 1<<20)
	for i := range data {
		data[i] = byte(i * 7)
	}
	b.SetBytes(int64(len(data)))
	for b.Loop() {
		Hash(data)
	}
}
