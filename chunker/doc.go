// Package chunker splits a byte stream into content-defined chunks, so
// that an edit to a file changes only the chunks around the edit and the
// rest deduplicate against earlier snapshots.
//
// A [Chunker] reads from an [io.Reader] and appends each chunk to a
// buffer the caller owns; [Params] bounds the chunk sizes and a [Table],
// derived from the repository's seed by [NewTable], drives the hash.
//
//	c := chunker.New(r, chunker.DefaultParams, chunker.NewTable(seed))
//	buf := make([]byte, 0, chunker.DefaultParams.Max)
//	for {
//		chunk, err := c.Next(buf)
//		if err == io.EOF {
//			break
//		}
//		if err != nil {
//			return err
//		}
//		// use chunk; it is overwritten by the next call
//	}
//
// # Algorithm
//
// The chunker is FastCDC with normalised chunking at level 2 (Xia et al.,
// "FastCDC: a Fast and Efficient Content-Defined Chunking Approach for
// Data Deduplication", USENIX ATC 2016). Each chunk starts where the
// previous one ended, or at the start of the stream, and is cut as
// follows, with T the [Table], bytes numbered from 0 within the chunk
// and all arithmetic modulo 2^64:
//
//   - Bytes 0 to Min-1 are copied without hashing.
//   - From byte Min on, the gear fingerprint starts at fp = 0 and each
//     byte b updates it as fp = fp<<1 + T[b].
//   - After byte i, the chunk ends (length i+1) if fp&mask == 0, where
//     mask is the hard mask for Min <= i < Avg and the easy mask for
//     Avg <= i < Max. The hard mask has log2(Avg)+2 one-bits, the easy
//     mask log2(Avg)-2; both are the top bits of the 64-bit word, which
//     depend on the most history (the last 64 bytes).
//   - A chunk that reaches Max bytes without a cut ends there.
//   - At the end of the stream the chunk is whatever remains, which may
//     be shorter than Min.
//
// The hard mask makes cuts rare before Avg and the easy mask makes them
// common after it, so sizes cluster around Avg instead of spreading out
// geometrically. On random data with [DefaultParams] the mean chunk is
// about 1.2 MiB and Max is practically never reached; input with long
// runs of one byte (zeros) is cut at Max.
//
// # Determinism
//
// Cut points depend only on the bytes of the stream, the [Params] and
// the seed given to [NewTable]. They do not depend on how the reader
// splits the stream into reads, on the size of the read buffer, on the
// Go version or on the platform.
//
// Cut points are part of the repository format: deduplication against
// existing snapshots relies on the same bytes being cut at the same
// places forever. Changing the table derivation, the hash update, the
// masks or the rules above is a format change, and testdata/golden.json
// pins them; regenerating it is a format change too.
//
// # Memory
//
// [New] allocates one read buffer of 256 KiB, and [Chunker.Next] copies
// each input byte exactly once, from that buffer into the caller's dst.
// A Chunker therefore needs 256 KiB plus the caller's dst, which is at
// most Params.Max bytes; with cap(dst) >= Params.Max, Next does not
// allocate. A [Table] is 2 KiB.
//
// # Concurrency
//
// A [Chunker] is not safe for concurrent use; use one per stream (and
// reuse it with [Chunker.Reset]). A [Table] is read-only after
// [NewTable] returns and may be shared by any number of Chunkers in any
// number of goroutines. [Params] and [DefaultParams] are plain values.
package chunker
