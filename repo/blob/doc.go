// Package blob defines the identifiers shared by every layer of the
// repository: the content hash [ID], the blob [Type], the [Handle] that
// combines both, the marker errors [ErrNotFound] and [ErrCorrupt], and
// [IDSet], a compact set of IDs.
//
// # Invariants
//
// An ID is the SHA-256 of the blob's plaintext. Every reader re-hashes
// what it loads and compares it with the ID it asked for; a mismatch is
// reported as an error wrapping [ErrCorrupt], never returned as data.
//
// The package allocates nothing beyond the values it returns and is safe
// for concurrent use, except [IDSet], a compact set of IDs that its owner
// guards.
package blob
