// Package wire is the protocol between a node and the appliance: frames
// over any byte stream (an SSH channel, stdio, a unix socket), the
// messages they carry, and their limits. PROTOCOL.md beside this file is
// the specification; this package and that file change together.
//
// # Frames
//
// A frame is a uint32 big-endian length L, a type byte and L-1 bytes of
// body. [Reader.Next] reads one frame, [Writer.WriteFrame] writes one.
// Every frame type has a body limit, [MaxBody]: [MaxBlobBody] for
// [TypePutBlob], [TypeBlob] and [TypeStoredBlob], [MaxSnapshotsBody] for [TypeSnapshots],
// [MaxControlBody] for the rest. The reader checks the length and the
// type before it reads or allocates anything for the body, and refuses a
// zero length, an unknown type or an oversized body with a [*FrameError].
//
// # Messages
//
// Each frame type has a message struct ([Hello], [Welcome], [ErrorMsg],
// [ListSnapshots], [Snapshots], [LoadBlob], [Blob], [StoredBlob],
// [HaveBlobs], [Have], [PutBlob], [Commit], [Committed], [Bye]) with an Append method that
// appends the body to a buffer, and a Decode function ([DecodeHello] and
// so on) that checks the body completely: every length against what
// remains and against its limit, counts before allocating, no trailing
// bytes, the magic and version range of Hello, known blob types, known
// flag and permission bits, bitmap padding, strings of at most
// [MaxString] bytes of valid UTF-8.
//
// Append does not check: a message that Decode would refuse (an unknown
// blob type, too many handles) is written as it is, for the peer to
// refuse, and a frame too large for its type is refused by
// [Writer.WriteFrame]. The one exception is a string longer than
// [MaxString], which Append cuts at a character boundary so that its
// length prefix stays true.
//
// Messages whose body ends in a payload ([Blob], [StoredBlob], [PutBlob],
// [Commit])
// give their fixed header alone when that payload is nil, so a sender can
// pass header and payload to [Writer.WriteFrame] as two parts and never
// copy a blob.
//
// # Versions
//
// A client offers versions [MinVersion] to [Version] (1 to 2) and the
// server picks the highest both speak. In version 2 the server may answer
// a [LoadBlob] with a [StoredBlob]: the blob as stored, compressed, which
// the server authenticated but did not decompress or re-hash; the client
// decompresses it (bounded by its RawLength, at most [blob.MaxSize]) and
// re-hashes it ([StoredBlob.Plaintext]). A peer of version 1 gets and
// sends what it always did.
//
// # Invariants
//
// Every encoding is canonical: for any body a Decode function accepts,
// Append of the decoded message gives back that body byte for byte.
// Byte slice fields that are empty decode as nil.
//
// Every refusal of the peer's bytes (a [*FrameError], any Decode error)
// matches [ErrProtocol] with [errors.Is]; a stream cut inside a frame is
// [io.ErrUnexpectedEOF]. A Decode error names the message and the
// reason, as in
// "wire: have-blobs: count 70000 exceeds 65536". An [*ErrorMsg] received
// from the peer is an error too: "wire: remote error (not found): …".
// Nothing in this package panics on input.
//
// # Memory
//
// A [Reader] holds a 64 KiB buffer and reads bodies into the caller's
// buffer, which grows to at most [MaxBlobBody] bytes; it grows in steps
// (doubling from 64 KiB) as body bytes arrive, so a peer that announces a
// large frame and then stalls costs about twice what it really sent. A
// [Client] reads replies of up to 8 MiB ([Reader.NextWhole]) into one
// buffer allocated from the header, so a stalled appliance costs it at
// most that. A
// [Writer] holds a 64 KiB buffer. Decode functions allocate at most the
// message they return: [DecodeBlob], [DecodeStoredBlob] and
// [DecodePutBlob] alias the body,
// [DecodeSnapshots] and [DecodeCommit] copy their records, a decoded
// [Have] costs one byte per bit ([MaxHandles] at most).
//
// # Concurrency
//
// Message values and Decode functions are safe for concurrent use on
// distinct values. A [Reader] or a [Writer] is not: one goroutine reads,
// and writers serialise their calls (a session usually has one reader and
// one writer goroutine). A Reader or Writer that failed stays failed.
package wire
