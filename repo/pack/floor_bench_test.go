package pack

import (
	"testing"

	"github.com/cairnbackup/cairn/repo/blob"
	simd "github.com/minio/sha256-simd"
)

// The floor of check --read-data: what each byte of a pack must cost at
// least, per core (docs/benchmarks.md "What bounds each phase"). Each
// works on 1 MiB, the size of a typical chunk.

// BenchmarkFloorSHA256 is blob.Hash (sha256-simd), which hashes every
// pack file and every blob's plaintext.
func BenchmarkFloorSHA256(b *testing.B) {
	data := benchData(1 << 20)
	b.SetBytes(int64(len(data)))
	for b.Loop() {
		blob.Hash(data)
	}
}

// BenchmarkFloorSHA256Stream is the streaming hash of a pack file.
func BenchmarkFloorSHA256Stream(b *testing.B) {
	data := benchData(1 << 20)
	h := simd.New()
	b.SetBytes(int64(len(data)))
	for b.Loop() {
		h.Write(data)
	}
}

// BenchmarkFloorZstdDecode decodes a 1 MiB half-compressible chunk with
// the decoder OpenBlob uses; MB/s of plaintext.
func BenchmarkFloorZstdDecode(b *testing.B) {
	data := benchData(1 << 20)
	payload, c := Compress(nil, data, LevelDefault)
	if c != Zstd {
		b.Fatal("not compressed")
	}
	out := make([]byte, 0, len(data))
	b.SetBytes(int64(len(data)))
	for b.Loop() {
		var err error
		if out, err = Decompress(out[:0], payload, c, len(data)); err != nil {
			b.Fatal(err)
		}
	}
}
