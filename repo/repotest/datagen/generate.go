package datagen

import (
	"errors"
	"fmt"
	"io/fs"
	"os"
	"path"
	"path/filepath"
	"runtime"
	"slices"
	"strings"
	"sync"
	"sync/atomic"

	"golang.org/x/sys/unix"
)

// bufSize is the size of each writer's buffer, the unit of writes.
const bufSize = 1 << 20

// maxWriters bounds the files written at once.
const maxWriters = 4

// Generate creates the tree described by s in dir, which must be empty
// or not exist, and returns what it created. The same s and seed give
// the same tree on every machine; see the package documentation for
// what "the same" covers.
func Generate(dir string, s Spec, seed uint64) (Stats, error) {
	if err := s.validate(); err != nil {
		return Stats{}, fmt.Errorf("generate: %w", err)
	}
	if err := prepareRoot(dir); err != nil {
		return Stats{}, fmt.Errorf("generate: %w", err)
	}
	p := newPlan(s, seed)
	if err := p.apply(dir); err != nil {
		return Stats{}, fmt.Errorf("generate %s: %w", dir, err)
	}
	return p.stats(), nil
}

// prepareRoot creates dir or checks that it is an empty directory, and
// gives it mode 0755.
func prepareRoot(dir string) error {
	entries, err := os.ReadDir(dir)
	switch {
	case errors.Is(err, fs.ErrNotExist):
		if err := os.MkdirAll(dir, 0o755); err != nil {
			return err
		}
	case err != nil:
		return err
	case len(entries) > 0:
		return fmt.Errorf("%s is not empty", dir)
	}
	return os.Chmod(dir, 0o755)
}

// apply creates the planned tree under root: directories, then file
// contents (in parallel), then links, FIFOs and xattrs, then modes that
// writing would clear, and last the times.
func (p *plan) apply(root string) error {
	full := func(rel string) string { return filepath.Join(root, filepath.FromSlash(rel)) }
	for _, d := range p.dirs {
		if err := os.Mkdir(full(d.path), 0o700); err != nil {
			return err
		}
		if err := os.Chmod(full(d.path), d.mode); err != nil {
			return err
		}
	}
	if err := p.writeFiles(root); err != nil {
		return err
	}
	for _, l := range p.hardlinks {
		if err := os.Link(full(l.target), full(l.path)); err != nil {
			return err
		}
	}
	for _, l := range p.symlinks {
		if err := os.Symlink(l.target, full(l.path)); err != nil {
			return err
		}
	}
	for _, f := range p.fifos {
		if err := unix.Mkfifo(full(f.path), 0o600); err != nil {
			return &fs.PathError{Op: "mkfifo", Path: full(f.path), Err: err}
		}
		if err := os.Chmod(full(f.path), f.mode); err != nil {
			return err
		}
	}
	for _, x := range p.xattrs {
		err := unix.Lsetxattr(full(x.path), x.name, []byte(x.value), 0)
		if err != nil && !errors.Is(err, unix.ENOTSUP) {
			return &fs.PathError{Op: "setxattr " + x.name, Path: full(x.path), Err: err}
		}
	}
	return p.setTimes(root)
}

// setTimes gives every entry its mtime (and the same atime): files,
// links and FIFOs first, then directories deepest first, the root last,
// so that no later step moves a directory's mtime.
func (p *plan) setTimes(root string) error {
	set := func(rel string) error {
		ts := unix.NsecToTimespec(mtime(p.seed, "mtime", rel))
		name := filepath.Join(root, filepath.FromSlash(rel))
		if err := unix.UtimesNanoAt(unix.AT_FDCWD, name, []unix.Timespec{ts, ts}, unix.AT_SYMLINK_NOFOLLOW); err != nil {
			return &fs.PathError{Op: "utimensat", Path: name, Err: err}
		}
		return nil
	}
	for i := range p.files {
		if err := set(p.files[i].path); err != nil {
			return err
		}
	}
	for _, l := range p.symlinks {
		if err := set(l.path); err != nil {
			return err
		}
	}
	for _, f := range p.fifos {
		if err := set(f.path); err != nil {
			return err
		}
	}
	dirs := slices.Clone(p.dirs)
	slices.SortStableFunc(dirs, func(a, b dirSpec) int { return b.depth - a.depth })
	for _, d := range dirs {
		if err := set(d.path); err != nil {
			return err
		}
	}
	return set(".")
}

// Generated times lie in [genStart, genEnd), mutated ones in
// [genEnd, mutEnd): 2020 to 2025, and 2026.
const (
	genStart = int64(1577836800) * 1e9 // 2020-01-01T00:00:00Z
	genEnd   = int64(1767225600) * 1e9 // 2026-01-01T00:00:00Z
	mutEnd   = int64(1798761600) * 1e9 // 2027-01-01T00:00:00Z
)

// mtime returns the pseudo-random time of rel, in nanoseconds since
// 1970: in 2020 to 2025 for label "mtime", in 2026 for others (the ones
// of [Mutate]).
func mtime(seed uint64, label, rel string) int64 {
	r := newRNG(derive(seed, label+":"+rel, 0))
	if label == "mtime" {
		return genStart + r.int63n(genEnd-genStart)
	}
	return genEnd + r.int63n(mutEnd-genEnd)
}

// writeFiles writes the contents of all planned files with up to
// maxWriters goroutines, the largest files first. Each writer owns one
// buffer of bufSize bytes.
func (p *plan) writeFiles(root string) error {
	order := make([]int, len(p.files))
	for i := range order {
		order[i] = i
	}
	slices.SortStableFunc(order, func(a, b int) int {
		return int(min(max(p.files[b].size-p.files[a].size, -1), 1))
	})
	var (
		next   atomic.Int64
		failed atomic.Bool
		mu     sync.Mutex
		errs   []error
		wg     sync.WaitGroup
	)
	for range min(runtime.GOMAXPROCS(0), maxWriters) {
		wg.Go(func() {
			buf := make([]byte, bufSize)
			for !failed.Load() {
				i := next.Add(1) - 1
				if i >= int64(len(order)) {
					return
				}
				f := &p.files[order[i]]
				if err := writeFile(filepath.Join(root, filepath.FromSlash(f.path)), f, buf); err != nil {
					failed.Store(true)
					mu.Lock()
					errs = append(errs, err)
					mu.Unlock()
					return
				}
			}
		})
	}
	wg.Wait()
	return errors.Join(errs...)
}

// writeFile creates name with the contents and mode of f.
func writeFile(name string, f *fileSpec, buf []byte) (err error) {
	out, err := os.OpenFile(name, os.O_WRONLY|os.O_CREATE|os.O_EXCL, 0o600)
	if err != nil {
		return err
	}
	defer func() {
		if cerr := out.Close(); err == nil {
			err = cerr
		}
	}()
	switch f.kind {
	case kindText:
		g := newTextGen(f.seed, f.style)
		err = writeText(out, f.size, buf, g.line)
	case kindDump:
		g := newDumpGen(f.seed, dbName(f.path), 0)
		err = writeText(out, f.size, buf, g.line)
	case kindRandom:
		err = writeRandom(out, f.size, newRNG(f.seed), buf)
	case kindSparse:
		err = writeSparse(out, f, buf)
	}
	if err != nil {
		return err
	}
	return out.Chmod(f.mode) // after writing, which clears setuid
}

// dbName returns the database name of a dump: "gitea" for
// "db/gitea-2024-05-01.sql".
func dbName(rel string) string {
	name, _, _ := strings.Cut(path.Base(rel), "-")
	return strings.TrimSuffix(name, ".sql")
}

// writeText writes exactly size bytes of the lines that line appends,
// in writes of up to len(buf) bytes; a file that does not end between
// two lines is cut, and its last byte made a newline.
func writeText(w *os.File, size int64, buf []byte, line func([]byte) []byte) error {
	for done := int64(0); done < size; {
		b := buf[:0]
		for len(b) < len(buf)-maxLine && int64(len(b)) < size-done {
			b = line(b)
		}
		n := min(int64(len(b)), size-done)
		b = b[:n]
		if done+n == size {
			b[n-1] = '\n'
		}
		if _, err := w.Write(b); err != nil {
			return err
		}
		done += n
	}
	return nil
}

// writeRandom writes size bytes from r.
func writeRandom(w *os.File, size int64, r *rng, buf []byte) error {
	for done := int64(0); done < size; {
		b := buf[:min(int64(len(buf)), size-done)]
		r.fill(b)
		if _, err := w.Write(b); err != nil {
			return err
		}
		done += int64(len(b))
	}
	return nil
}

// writeSparse writes the extents of f from its random stream, in order,
// and sets the size, leaving the rest holes.
func writeSparse(w *os.File, f *fileSpec, buf []byte) error {
	r := newRNG(f.seed)
	for _, e := range f.extents {
		for done := int64(0); done < e.len; {
			b := buf[:min(int64(len(buf)), e.len-done)]
			r.fill(b)
			if _, err := w.WriteAt(b, e.off+done); err != nil {
				return err
			}
			done += int64(len(b))
		}
	}
	return w.Truncate(f.size)
}
