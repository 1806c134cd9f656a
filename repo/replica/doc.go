// Package replica copies a repository to its replicas: other places (a
// directory on another disk, a bucket of an object store) that hold the
// same repository, byte for byte, so that it survives losing the
// appliance.
//
// # What a run copies, and in which order
//
// [Run] copies the sealed objects the replica lacks, verbatim: nothing
// is opened and sealed again. The replica is opened for copying first
// (repo.Repository.OpenReplica): its lock is taken, what an interrupted
// run left there (temporary files, incomplete multipart uploads) is
// removed, and the primary's keys and then its config are written when
// missing. Then, in order:
//
//  1. The primary's snapshot files are listed (the list this run works
//     from), then the replica is listed, once.
//  2. The trees of every snapshot the replica lacks are walked
//     (prune.Reach, the walk prune's mark uses), and every blob's pack is
//     looked up and held (repo.PackHold): a prune running meanwhile keeps
//     those packs until a later prune.
//  3. Packs: every pack of the primary's index the replica lacks (or holds
//     damaged), several at once, each streamed from the primary and
//     hashed on the way; a pack whose bytes do not hash to its name is
//     not stored under it (the upload is abandoned before the store makes
//     it visible), so a damaged pack of the primary never reaches a
//     replica.
//  4. Drill reports, then snapshots: each is read whole (they are small),
//     authenticated and checked against its name before it is copied. A
//     snapshot is copied only when every pack holding a blob of its
//     trees is on the replica; one whose file is gone meanwhile was
//     forgotten and is skipped; one committed after the list is the next
//     run's.
//  5. Deletions, only with Options.DeleteAfter: objects of the replica
//     that the primary no longer has, once they were first seen missing
//     longer ago than the delay (snapshots before packs), and only in a
//     run that copied everything.
//
// So a replica never holds a snapshot whose data it lacks, whenever the
// run is killed, and every object on it is complete (a Put never leaves
// a partial object under its name).
//
// # Verified on the replica
//
// Every object is named by its contents (packs by the SHA-256 of their
// bytes, snapshots and drill reports by the SHA-256 of their sealed
// plaintext, keys by the SHA-256 of their encoding). A pack is verified
// while it is sent: the bytes handed to the replica's storage are hashed
// and the write is abandoned unless they hash to the pack's name; the
// storage then stores exactly those bytes (a directory: written, synced
// and linked; an object store: every part carries the Content-MD5 of
// the bytes hashed, which the store checks before it accepts them). So a
// pack is on the replica only if the replica accepted the exact bytes
// that hash to its name. Damage that happens on the replica later is
// the replica's verification's to find (check --read-data against the
// replica, on its own rotation), which marks the object; the next run
// copies it again (Replace).
//
// # Memory
//
// Listings of the replica and of the primary's packs and snapshots
// (names and sizes, about 100 bytes per object), the set of trees walked
// (about 40 bytes per distinct tree), the packs to copy, and per transfer
// at most two part buffers of the object store's part size (8 MiB), or a
// 1 MiB copy buffer for a directory. Objects are streamed; small objects
// (snapshots, drill reports, keys) are read whole, one per transfer.
//
// # Concurrency
//
// A Run owns its replica (the replica's lock); the primary keeps
// serving pushes, forgets and prunes meanwhile.
package replica
