// Package fuse is the read-only snapshot file system behind cairn mount:
// every snapshot of a repository as a directory tree, read chunk by
// chunk through a [Source] (blobs, already authenticated and re-hashed by
// the loader, and the snapshot list). It is built on go-fuse's fs
// package and sees the repository only through [Source]; [Mount] mounts
// it and [Mounted] unmounts it.
//
// # Layout
//
//	nodes/<node>/<plan>/<time>/…          a snapshot's root tree (it mirrors absolute paths: srv/git/…)
//	nodes/<node>/<plan>/latest            -> <time> of the newest snapshot of that node and plan (snapshot.Latest: never a future-dated one over another)
//	snapshots/<id8>                       -> ../nodes/<node>/<plan>/<time>
//	tags/<tag>/<node>/<plan>/<time>       -> ../../../../nodes/<node>/<plan>/<time>
//
// <plan> is "@none" for snapshots made without a plan ('@' cannot occur
// in plan names). <time> is the snapshot's time in UTC, RFC 3339, to the
// second (2026-11-26T13:20:37Z); snapshots of one node and plan in the
// same second get "_<id8>" appended to all but the first. A short ID
// shared by two snapshots is shown in full under snapshots/. Tags "."
// and ".." cannot be directory names and are not shown. A snapshot's
// directory has the snapshot's time; every synthetic directory has the
// time of the newest snapshot below it.
//
// The synthetic directories read the snapshot list again on lookup and
// listing once it is older than [Options.Refresh], so new snapshots
// appear without remounting; the kernel keeps their names and
// attributes for one second. Snapshot contents never change: the
// kernel keeps their names, attributes and pages for an hour
// (FOPEN_KEEP_CACHE).
//
// Every entry shows the metadata recorded at backup time: type, mode
// with setuid, setgid and sticky, owner, size, the three times to the
// nanosecond, device numbers, symlink targets, extended attributes, and
// the link count of files (directories report 1, which tells find not
// to count subdirectories from it). st_blocks counts only the stored
// (non-hole) bytes, so du shows sparse files as sparse, and SEEK_DATA
// and SEEK_HOLE find the recorded holes. Regular files with a recorded
// SHA-256 carry it as the extended attribute user.cairn.sha256 (64 hex
// digits), answered by getxattr but not listed by listxattr, so that
// cp -a, rsync -X and tar --xattrs do not copy it onto every file.
//
// Nothing can be changed: the mount is read-only ("ro", plus "nosuid"
// and "nodev", so a backed-up setuid program or device node grants
// nothing), the kernel answers EROFS, and every node answers EROFS as
// well should a request get through. Only the user who mounted can
// enter it unless [Options.AllowOther] is set; then the kernel checks
// every access against the recorded owners and modes
// (default_permissions).
//
// # Inodes
//
// Inode numbers are derived, not allocated, so they are stable for the
// life of a mount and the same in every mount: the first 8 bytes of a
// SHA-256 of (snapshot ID, path in the snapshot) for entries of a
// snapshot, of (snapshot ID, "hardlink", hardlink ID) for the names of
// a hardlinked file, which therefore share one inode as they did on the
// original file system, of ("cairn-meta", path) for the synthetic
// directories and of ("cairn-meta", path, target) for the synthetic
// symlinks: when latest moves on it becomes a new inode, so the kernel,
// which caches symlink targets, never shows the old target again. 0 and 1 (the root) never occur. go-fuse hands out the inode
// it already knows for a number it has seen, which is what makes the
// names of a hardlinked file one inode. Two different entries of one
// mount collide with a probability of about n²/2⁶⁵ for n entries.
//
// # Reads and caching
//
// Each open file gets a handle over a [snapfs.File]: a read finds its
// first chunk by binary search over the chunk sizes recorded in the
// tree, so reading anywhere (pread, mmap, a seek to the end) costs only
// the chunks it touches. Holes read as zeros without any load. Every
// chunk comes through one [snapfs.Cache] per mount, a bounded LRU that
// loads a blob wanted by several readers at once only once. A read that
// starts where the handle's previous read ended is sequential and
// starts loading the next [Options.ReadAhead] chunks in parallel,
// through the cache, so decompression and verification run ahead of the
// reader on every core. The handle keeps the chunks it fetched ahead and
// the one being read in a small window, so a chunk read in many
// requests is copied out of the cache once, and a read inside one chunk
// is answered from the window without another copy. As root, the
// mount's kernel read-ahead is raised from 128 KiB to 1 MiB (sysfs
// read_ahead_kb of its backing device), so sequential reads arrive as
// 1 MiB requests: eight times fewer round trips.
//
// A chunk that fails to load (authentication or hash failure, wrapping
// blob.ErrCorrupt, or a missing blob) fails that read with EIO and is
// logged with the error, which names the pack and the blob; never are
// wrong bytes returned, and everything else keeps working. The same
// holds for a directory whose listing cannot be loaded.
//
// # Memory
//
// The mount holds at most:
//
//   - the blob cache: [Options.CacheSize] bytes of plaintext (64 MiB by
//     default);
//   - per open file being read: a window of ReadAhead+2 chunks (about
//     6 MiB at the default 1 MiB average chunk, at most 48 MiB with 8 MiB
//     chunks);
//   - per directory inode the kernel keeps (it forgets them under
//     memory pressure): the decoded tree of that directory, about 270
//     bytes per entry plus its name and attributes, and 40 bytes per
//     chunk of its files; per inode, a few hundred bytes of bookkeeping
//     here and in go-fuse;
//   - the snapshot list and its layout: a few hundred bytes per
//     snapshot.
//
// # Concurrency
//
// The kernel sends requests in parallel and go-fuse serves each in its
// own goroutine. The layout is immutable and replaced as a whole under
// a mutex; a directory loads its tree once under its own mutex; a
// handle's window and sequential-read state are under the handle's
// mutex. Read-ahead runs in goroutines owned by the handle (at most
// ReadAhead at a time): Release waits for them, and at unmount the
// mount waits for those of handles the kernel never released. Loads
// use the mount's context, not the request's, so an interrupted read
// does not fail the same load for other readers.
//
// Never access a mount from the process that serves it in ways that
// fork or exec (go-fuse's fs package documents the deadlocks): tests
// serve the mount from a child process.
package fuse
