package repo

import (
	"fmt"
	"os"
	"path/filepath"

	"golang.org/x/sys/unix"
)

// IndexReserve is the free space, beyond the size of the index itself,
// that pack writes leave on the repository's file system for the index.
// badger writes its log and tables through memory maps: a write to a
// mapped page the file system has no room for kills the process with
// SIGBUS instead of returning an error. So the appliance stops storing
// packs (with "no space left on device") while the index can still grow
// by two memtables, a flush and a compaction of everything it holds.
const IndexReserve = 32 << 20

// Space returns the free space of the repository's file system (for
// this user) and the reserve pack writes leave free for the index
// ([IndexReserve] plus the index's own size). Pack writes are refused
// while free is below reserve.
func (r *Repository) Space() (free, reserve int64, err error) {
	var st unix.Statfs_t
	if err := unix.Statfs(r.indexDir(), &st); err != nil {
		return 0, 0, fmt.Errorf("%s: %w", r.cache, err)
	}
	return int64(st.Bavail) * int64(st.Bsize), IndexReserve + dirSize(r.indexDir()), nil
}

// checkSpace refuses to store n more bytes of pack when that would leave
// less than the index's reserve free.
func (r *Repository) checkSpace(n int64) error {
	if r.local == nil {
		n = 0 // packs go to the object store; the index stays in the cache directory
	}
	free, reserve, err := r.Space()
	if err != nil {
		return nil // cannot tell: the write itself finds out
	}
	if free-n < reserve {
		return fmt.Errorf("%s: %d MiB free, and %d MiB stay free for the index: %w", r.cache, free>>20, reserve>>20, unix.ENOSPC)
	}
	return nil
}

// dirSize is the space the files directly in dir take.
func dirSize(dir string) int64 {
	entries, err := os.ReadDir(dir)
	if err != nil {
		return 0
	}
	var n int64
	for _, e := range entries {
		var st unix.Stat_t
		if e.Type().IsRegular() && unix.Stat(filepath.Join(dir, e.Name()), &st) == nil {
			n += st.Blocks * 512 // allocated, not apparent: badger's files are sparse
		}
	}
	return n
}
