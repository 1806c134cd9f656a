// Package pack is the pack format: immutable files of many sealed blobs
// followed by a sealed header listing them and a fixed footer, so one
// read of a pack's tail finds its header. FORMAT.md beside this file
// draws the layout; it and this package change together, and the
// packs in testdata/v1 are never regenerated, so old repositories stay
// readable.
//
// # Writing
//
// [Compress] chooses zstd or raw for a blob's plaintext; [Writer.Add]
// seals the payload into an envelope (AES-256-GCM, the blob's type and
// ID as associated data, so an envelope opens only as the blob it was
// sealed for) and appends it; [Writer.Finish] writes the sealed header
// and footer and returns the pack's ID, the SHA-256 of its bytes, which
// is also its name. A Writer builds its pack in a buffer the caller
// gives it and may reuse (the envelope is sealed where it lies in that
// buffer: the payload is copied once, into the pack); it is not safe for
// concurrent use.
//
// # Reading
//
// [ReadHeader] reads and checks the footer (magic, version, entry count,
// header length, CRC-32C of the sealed header) before allocating, then
// authenticates and decodes the header; each entry must start where the
// one before it ends, and the last end where the header starts, so the
// entries tile the pack. [OpenBlob] authenticates one
// envelope, decompresses it (never beyond the recorded plaintext length
// or [blob.MaxSize]) and re-hashes the plaintext against the blob's ID.
// [VerifyPayload] and [OpenEnvelope] check what a node sends and what a
// repack copies. Failures are a *[FormatError] or wrap [blob.ErrCorrupt];
// nothing here panics on input.
//
// # Memory
//
// A header is at most [MaxEntries] entries of [EntrySize] bytes, refused
// from the footer's count before it is read; a blob is at most
// [blob.MaxSize]. The zstd encoders and the one decoder are shared by the
// process and safe for concurrent use; callers pass their own buffers.
package pack
