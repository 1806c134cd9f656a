package drill

import (
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"regexp"

	"golang.org/x/sys/unix"
)

// scratchPrefix starts the name of every scratch directory a drill makes,
// followed by the snapshot's short ID, a dash and random digits.
const scratchPrefix = "cairn-drill-"

// scratchName matches the scratch directories drills make.
var scratchName = regexp.MustCompile(`^` + scratchPrefix + `[0-9a-f]{8}-[0-9]+$`)

// scratch is a drill's scratch directory, held with flock(2) while the
// drill runs: a directory whose lock is free belongs to no running drill.
type scratch struct {
	dir  string
	lock *os.File
}

// newScratch makes and locks a fresh scratch directory in parent for
// snapshot short ID short.
func newScratch(parent, short string) (*scratch, error) {
	dir, err := os.MkdirTemp(parent, scratchPrefix+short+"-")
	if err != nil {
		return nil, err
	}
	f, err := os.Open(dir)
	if err == nil {
		err = unix.Flock(int(f.Fd()), unix.LOCK_EX|unix.LOCK_NB)
		if err != nil {
			f.Close()
		}
	}
	if err != nil {
		// Only a sweep in another drill that found it in the moment
		// between making and locking holds the lock; it removes it.
		return nil, fmt.Errorf("lock %s: %w", dir, err)
	}
	return &scratch{dir: dir, lock: f}, nil
}

// release unlocks the directory (after it was removed).
func (s *scratch) release() { s.lock.Close() }

// sweepScratch removes the scratch directories in parent that no running
// drill holds: those of drills that were killed (the kernel drops a
// dead process's lock). It returns what it removed and what it could not.
func sweepScratch(parent string) (removed []string, errs []error) {
	entries, err := os.ReadDir(parent)
	if err != nil {
		return nil, nil // a missing scratch directory fails the drill later, with a clear message
	}
	for _, e := range entries {
		if !e.IsDir() || !scratchName.MatchString(e.Name()) {
			continue
		}
		dir := filepath.Join(parent, e.Name())
		f, err := os.Open(dir)
		if err != nil {
			continue
		}
		if err := unix.Flock(int(f.Fd()), unix.LOCK_EX|unix.LOCK_NB); err != nil {
			f.Close()
			if !errors.Is(err, unix.EWOULDBLOCK) {
				errs = append(errs, fmt.Errorf("lock %s: %w", dir, err))
			}
			continue // a drill in progress
		}
		err = removeAll(dir)
		f.Close()
		if err != nil {
			errs = append(errs, err)
			continue
		}
		removed = append(removed, dir)
	}
	return removed, errs
}
