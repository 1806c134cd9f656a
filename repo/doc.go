// Package repo is the repository: the one owner of its objects (the
// config, wrapped keys, packs, snapshot records and drill reports, kept
// through a [storage.Backend]: a directory or an S3-compatible object
// store) and of its index. Everything else reads and writes a repository
// through a [*Repository] or a [*Session], or through the small
// interfaces of its consumers that a [*Repository] satisfies (the
// snapfs.BlobLoader of readers, the backup.Uploader that a [*Session]
// is).
//
// # Opening
//
// [Init] creates a repository at a [Place] (a directory, or an s3:// or
// s3+http:// URL with a local state directory) with a new master key,
// wrapped by a passphrase or a key file ([Credentials]). [Open] unwraps
// the key, takes the lock (flock(2) on a lock file, which the kernel
// drops whatever ends the process; for an object store also a lock
// object in the bucket with a heartbeat, whose loss stops every write),
// removes what interrupted writes left and reconciles the index with
// the packs and snapshot files. A second process gets [ErrLocked].
// [ProveKey], [OpenKeyring] and [Unlock] check a credential, change the
// keys, and free an object store's lock without opening the repository.
//
// # Writing
//
// A [Session] stores the blobs of one backup or push: blobs go into
// packs in memory (repo/pack's format); a full pack is stored (for a
// directory through repo/internal/durable: temporary file, fsync, link,
// directory fsync) and only then indexed; [Session.Commit] stores the
// rest, syncs the index, and only then writes the sealed snapshot
// record. A snapshot is acknowledged after that, so a snapshot record
// never names data that is not durable. Forget and prune change the
// repository in steps a crash at any point leaves consistent (see
// prune.go and docs/ARCHITECTURE.md "Write order and crash safety").
//
// # Reading
//
// [Repository.LoadBlob] returns a blob's verified plaintext: the
// envelope is authenticated (AES-256-GCM with the data key, for that
// blob's type and ID), decompressed within bounds and re-hashed against
// its ID; damage is an error matching blob.ErrCorrupt, never wrong
// bytes. Snapshots are listed from the index ([Repository.Snapshots]),
// and [Repository.FindSnapshot] resolves what an operator types.
//
// # The index
//
// The index (repo/internal/index, badger; nothing outside this package
// sees it) is a cache: what it holds is rebuilt from the packs' headers
// and the snapshot files by [Repository.RebuildIndex], or is disposable
// bookkeeping (verification times, job history, size samples). For an
// object store it lives in a local cache directory.
//
// # Concurrency
//
// A [*Repository] and a [*Session] are safe for concurrent use; one
// process owns a repository at a time.
//
// # Package map
//
// The module's packages in layers. A package imports only packages of
// lower layers (its own files: tests may import more). Layer 0 imports
// no package of cairn: the chunker, blob IDs, the scheduler's engine
// and small helpers. Layer 1 holds the formats and places: sealing,
// trees, snapshot records, storage backends, the index schema. Layer 2
// builds on them: packs, plans, the one extended-attribute reader
// (backup's and restore's verifier), and snapfs, the read-only view of
// snapshot trees. Layer 3 reads and writes through small interfaces and
// never sees a [*Repository]: backup, restore, the wire protocol, FUSE,
// the stats walk. Layer 4 is this package, and repo/wire/dial, which
// reaches an appliance over SSH for a node's cairn; layers 5 to 7 work
// on a repository (check, drills, prune, status, replication to
// replicas); layer 8 is the appliance and layer 9 the binary, which only
// wires the rest together. Besides the layers:
//
//   - only this package imports repo/internal/index (badger);
//   - only tests import repo/repotest, repo/repotest/datagen (the
//     generated file trees of tests and benchmarks) and the packages
//     under integration/ (the end-to-end tests and their helpers, which
//     may import anything);
//   - SHA-256 is github.com/minio/sha256-simd, never crypto/sha256.
//
// TestLayering (layering_test.go) reads this map from this comment and
// fails when an import crosses it or a package is missing from it: a new
// package gets its row here.
//
//	layer  packages
//	9      cmd/cairn
//	8      repo/appliance
//	7      repo/replica repo/status
//	6      repo/prune
//	5      repo/check repo/drill repo/repotest
//	4      repo repo/wire/dial
//	3      fuse repo/backup repo/restore repo/stats repo/wire
//	2      repo/internal/xattr repo/pack repo/plan repo/snapfs
//	1      repo/internal/index repo/seal repo/snapshot repo/storage repo/tree
//	0      chunker scheduler repo/blob repo/caps repo/chart repo/filter repo/internal/crashpoint repo/internal/durable repo/internal/yamldoc repo/output repo/repotest/datagen
package repo
