package datagen

import (
	"errors"
	"fmt"
)

// Spec says what [Generate] puts into a tree. The zero Spec makes an
// empty tree; each field adds one kind of content independently of the
// others, so turning one on or off does not change what the rest look
// like for the same seed.
type Spec struct {
	// SmallFiles is the number of source-code-like text files,
	// 200 B to 16 KiB each, spread over nested directories under src/
	// (depth up to 6, 20 to 60 files a directory). About one in 25 is
	// an identical copy of an earlier one.
	SmallFiles int
	// Dumps are the sizes of SQL-dump-like text files under db/:
	// CREATE TABLE blocks and one INSERT line per row, which zstd and
	// gzip shrink about 6 to 7 times.
	Dumps []int64
	// RandomFiles are the sizes of incompressible files: videos from
	// 64 MiB, git packs above 16 MiB, and photos or (one in four) git
	// packs below, under media/ and git/.
	RandomFiles []int64
	// SparseImages are the apparent sizes of sparse disk images under
	// vm/: about 4 % random data in extents of 64 KiB to 4 MiB, aligned
	// to 4 KiB, the rest holes. Every image begins with data and ends
	// with data, except the last of two or more, which ends in a hole.
	SparseImages []int64
	// Symlinks is the number of symbolic links: relative ones to files,
	// directories and other links, absolute ones to fixed paths outside
	// the tree, and dangling ones of both kinds.
	Symlinks int
	// Hardlinks is the number of extra names for files of the tree,
	// some in the same directory, some elsewhere, some adding a third
	// name to an inode.
	Hardlinks int
	// OddNames adds odd/ with names that break careless code: spaces,
	// precomposed and decomposed é, Japanese, emoji, leading dashes,
	// quotes, a newline, and a name of exactly 255 bytes.
	OddNames bool
	// Specials adds special/: an empty file, an empty directory, a FIFO,
	// files with modes 0600, 0755 and 04755, directories with modes
	// 0700, 02775 and 01777, a small sparse file that starts and ends in
	// holes, and the extended attribute user.cairn.test on a file and a
	// directory when the filesystem supports user xattrs.
	Specials bool
}

const (
	kib = int64(1) << 10
	mib = int64(1) << 20
)

// Small is a tree of about 18 MiB of data (84 MiB apparent) for tests:
// 300 small files, two 4 MiB dumps, two 3 MiB random files, one 64 MiB
// sparse image with about 2.6 MiB of data, 10 symlinks, 3 hardlinks,
// odd names and specials.
var Small = Spec{
	SmallFiles:   300,
	Dumps:        []int64{4 * mib, 4 * mib},
	RandomFiles:  []int64{3 * mib, 3 * mib},
	SparseImages: []int64{64 * mib},
	Symlinks:     10,
	Hardlinks:    3,
	OddNames:     true,
	Specials:     true,
}

// Bench is a tree of about 0.8 GiB of data (1.1 GiB apparent) for
// benchmarks: 20 000 small files, three 100 MiB dumps, 404 MiB of
// random files (128, 64 and 32 MiB and forty of 1 to 8 MiB), one
// 300 MiB sparse image with 12 MiB of data, 50 symlinks, 10 hardlinks,
// odd names and specials.
var Bench = Spec{
	SmallFiles:   20000,
	Dumps:        []int64{100 * mib, 100 * mib, 100 * mib},
	RandomFiles:  append([]int64{128 * mib, 64 * mib, 32 * mib}, cycleSizes(40, 1, 8)...),
	SparseImages: []int64{300 * mib},
	Symlinks:     50,
	Hardlinks:    10,
	OddNames:     true,
	Specials:     true,
}

// Homelab is a tree shaped like a home server's data, about 1.5 GiB of
// data (1.8 GiB apparent): 40 000 small files, dumps of 160, 240 and
// 300 MiB, 680 MiB of videos, photos and git packs, a 300 MiB sparse
// volume image with 12 MiB of data, 40 symlinks, one hardlink and odd
// names.
var Homelab = Spec{
	SmallFiles: 40000,
	Dumps:      []int64{160 * mib, 240 * mib, 300 * mib},
	RandomFiles: append(append([]int64{180 * mib, 120 * mib, 90 * mib}, cycleSizes(60, 2, 5)...),
		48*mib, 24*mib, 8*mib, 2*mib),
	SparseImages: []int64{300 * mib},
	Symlinks:     40,
	Hardlinks:    1,
	OddNames:     true,
}

// cycleSizes returns n sizes of lo, lo+1, … hi MiB, repeated.
func cycleSizes(n int, lo, hi int64) []int64 {
	out := make([]int64, n)
	for i := range out {
		out[i] = (lo + int64(i)%(hi-lo+1)) * mib
	}
	return out
}

// validate rejects negative counts and sizes.
func (s Spec) validate() error {
	var errs []error
	if s.SmallFiles < 0 || s.Symlinks < 0 || s.Hardlinks < 0 {
		errs = append(errs, errors.New("negative count"))
	}
	lists := []struct {
		name  string
		sizes []int64
	}{{"dump", s.Dumps}, {"random file", s.RandomFiles}, {"sparse image", s.SparseImages}}
	for _, l := range lists {
		for _, n := range l.sizes {
			if n < 0 {
				errs = append(errs, fmt.Errorf("negative %s size %d", l.name, n))
			}
		}
	}
	return errors.Join(errs...)
}

// Stats counts what [Generate] created. Hardlinked files count once in
// Files and Bytes; their extra names count in Hardlinks. The root
// directory is not counted in Dirs.
type Stats struct {
	Files     int   // regular files (distinct inodes)
	Dirs      int   // directories below the root
	Symlinks  int   // symbolic links
	Hardlinks int   // extra names of regular files
	Specials  int   // FIFOs
	Bytes     int64 // apparent size of the regular files
	DataBytes int64 // bytes written to the regular files (holes excluded)
}

// MutateStats counts what [Mutate] changed.
type MutateStats struct {
	Appended int // dumps with about 1 MiB appended
	Inserted int // dumps rewritten with 4 KiB inserted in the middle
	Modified int // small files with a few bytes changed, size kept
	Added    int // new small files
	Deleted  int // small files removed
	Touched  int // small files with a new mtime and the same contents
}
