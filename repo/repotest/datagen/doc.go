// Package datagen generates deterministic, homelab-like file trees for
// tests and benchmarks of cairn, changes them the way a day of use
// would, and describes and compares trees.
//
//	st, err := datagen.Generate(dir, datagen.Small, 1)
//	before, err := datagen.Walk(dir)
//	// back up dir …
//	ms, err := datagen.Mutate(dir, 2)
//	// back up again, restore both snapshots elsewhere …
//	restored, err := datagen.Walk(restoreDir)
//	if d := datagen.Diff(before, restored, true); d != nil {
//		t.Fatal(strings.Join(d, "\n"))
//	}
//
// # Layout
//
// [Generate] fills an empty directory according to a [Spec]; [Small],
// [Bench] and [Homelab] are ready-made ones. Each part of the Spec has
// its own place:
//
//	src/<project>/…      small source-like files, up to 6 directories deep
//	db/<name>-<date>.sql SQL dumps
//	media/video, media/photos/<year>, git/<project>.git/objects/pack
//	                     incompressible files
//	vm/images/*.img      sparse disk images
//	links/               symlinks and hardlinks (others are scattered)
//	odd/                 odd names
//	special/             empty file and directory, FIFO, unusual modes,
//	                     xattrs, a sparse file with a hole at each end
//
// Directories get mode 0755 and files 0644 unless a Spec field says
// otherwise (shell scripts 0755, dumps 0640, images 0600), whatever the
// process umask; the root gets 0755 too.
//
// # Determinism
//
// The same Spec and seed give the same tree: names, contents, sizes,
// modes, mtimes, symlink targets, hardlink groups, the placement of
// holes and the xattrs, on any machine, architecture and Go version. The
// generator is our own xoshiro256** seeded by splitmix64 (never
// math/rand), with integer arithmetic only; each part of a tree draws
// from its own stream, derived from the seed and a label, so that a file
// does not change when an unrelated part of the Spec does, and writing
// files in parallel cannot change what they contain. Absolute symlinks
// point at fixed paths outside the tree, never into it.
//
// Times are set after everything is written: files, symlinks (their own
// mtime, not the target's) and the FIFO first, then directories deepest
// first and the root last. Each is a pseudo-random instant of 2020 to
// 2025 with nanoseconds, from the seed and the path; the atime is set
// equal to the mtime. On a filesystem with coarser timestamps two trees
// are still equal to each other.
//
// What is not reproduced: inode numbers, ctimes, atimes after anything
// reads the tree, directory sizes and link counts (which depend on the
// filesystem), the owner (the running user), and xattrs on a filesystem
// without user xattrs, where they are skipped silently.
// testdata/golden.txt pins a small tree and its mutation; it changes
// only with a deliberate change to the generators.
//
// # Contents
//
// Small files look like Go, C, JavaScript, Python, shell, YAML, JSON,
// Markdown and config files: keywords and a per-file pool of identifiers
// arranged into nested blocks, compressing about 4 times. About
// one in 25 is an identical copy of an earlier one. Dumps are MariaDB
// dumps of a few tables with ascending ids, moving timestamps, a random
// walk per sensor and some random tokens; they compress about 6 to 7
// times with gzip or zstd. Random files and the data of sparse images
// are raw generator output, which does not compress.
//
// # Mutation
//
// [Mutate] appends to one dump, inserts into the middle of another,
// modifies, touches, deletes and adds small files, stamping what it
// changed with times of 2026 (after every generated time) and leaving
// every other time alone. It finds its targets by listing the tree, so
// it works on a tree generated earlier, or already mutated, by another
// process.
//
// # Comparing trees
//
// [Walk] returns an [Entry] per path, sorted, with contents hashed;
// [Diff] lists the differing fields of two such lists. With ignoreInode
// it compares hardlink groups by their paths, which is what a restore
// can reproduce.
//
// # Speed, memory and concurrency
//
// Generate writes files with up to 4 goroutines (at most GOMAXPROCS),
// each with one 1 MiB buffer that the generators fill in place (random
// bytes eight at a time) and that is written with one write call, so
// memory stays a few MiB whatever the Spec; sparse extents are written
// with pwrite and holes are never written. On a 2-CPU machine random
// files are written at several GB/s into the page cache, dumps at about
// 1 GB/s and small files at the rate the filesystem creates files.
// Walk hashes each inode once with one 1 MiB buffer.
//
// The functions keep no global state; calls on different directories may
// run concurrently. Nothing else may change a tree while Generate,
// Mutate or Walk works on it.
package datagen
