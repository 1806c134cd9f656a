// Package tree is the codec of tree blobs: the listing of one directory
// as a [Tree], a list of [Node] values sorted by name. A node names a
// file (with the [Chunk] list of its data blobs and its whole-file
// SHA-256), a directory (with the [blob.ID] of its own tree blob), a
// symlink or a special file, together with its metadata.
//
// [Encode] writes a tree and [Decode] reads one; [CheckName] and
// [Node.Validate] expose the rules both apply, for code that builds nodes
// (backup, tar ingest) or creates files from them (restore).
//
// # Format
//
// A tree blob is a version byte (1), a node count and the nodes in order,
// each a fixed sequence of varints, length-prefixed strings and 32-byte
// IDs; FORMAT.md beside this file draws the layout field by field. The
// encoding is canonical: every varint is minimal, the nodes and each
// node's xattrs are strictly sorted, nothing may follow the last node and
// fields a node's type does not use are not written at all. Each tree
// therefore has exactly one encoding, so its blob ID depends only on its
// contents, and Decode followed by Encode gives back the input byte for
// byte. An unknown version byte is reported as [ErrVersion].
//
// # Invariants
//
// Hostile input is rejected here, once, at decode, so that the readers of
// trees (snapfs, FUSE, restore, the wire server) can rely on what they
// get without checking it again. Every tree Decode returns satisfies:
//
//   - every name passes [CheckName]: it is not "", "." or "..", holds no
//     '/' and no NUL byte, and is at most [MaxNameLen] bytes, so joining
//     it to a directory path never leaves that directory;
//   - names are strictly increasing in byte order: no duplicates, and a
//     lookup may binary search;
//   - every node passes [Node.Validate]: a known type, mode within 07777,
//     bounded strings, sorted unique xattrs, a symlink target only on
//     symlinks, and for a file, chunks of non-zero size that add up to
//     its Size exactly, so a reader finds the chunk holding any offset by
//     binary search over the running sum;
//   - every directory names a non-zero subtree.
//
// [Encode] checks the same rules and refuses a tree that breaks them, so
// a tree blob cairn writes is always one it can read back. Restore still
// creates files through os.Root as a second wall.
//
// Failures are reported as a *[DecodeError] carrying the offset and node
// index of the fault and wrapping [blob.ErrCorrupt]. Decode never panics.
//
// # Memory
//
// Decode refuses input longer than [blob.MaxSize]. Before allocating for a
// node, chunk or xattr count read from the input, it checks that the
// remaining bytes could hold that many items at their smallest encoding
// (19 bytes a node, 33 a chunk, 3 an xattr), so a short hostile input
// cannot make it allocate more than the input could describe. What it
// allocates is the decoded tree itself: about 264 bytes a node, 40 a
// chunk and 40 an xattr, plus copies of the strings and values, so at
// most about 15 times the input length in the worst case (a dense tree
// of minimal nodes) and 2 to 4 times for a typical tree. The returned
// tree shares no memory with the input, so the caller may reuse the
// input buffer at once.
//
// [Encode] computes the exact encoded length first and grows dst at most
// once; on success it allocates nothing else.
//
// # Concurrency
//
// The package has no state. Encode, Decode, CheckName and Validate may run
// concurrently; Encode and Validate only read the tree they are given.
package tree
