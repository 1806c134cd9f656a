package datagen

import (
	"bytes"
	"errors"
	"fmt"
	"io"
	"io/fs"
	"os"
	"path"
	"path/filepath"
	"slices"
	"strings"

	"golang.org/x/sys/unix"
)

// What one call of [Mutate] changes.
const (
	appendSize   = 1 << 20 // bytes appended to one dump
	insertSize   = 4 << 10 // bytes inserted into the middle of another
	addedFiles   = 50
	deletedFiles = 20
)

// Mutate changes the tree at dir, made by [Generate], the way a day of
// use might, and returns what it changed. The same tree and seed give
// the same result. It
//
//   - appends 1 MiB of INSERT lines to one dump under db/;
//   - inserts 4 KiB of INSERT lines at a line boundary in the middle of
//     another dump (the same one if there is only one), by writing a new
//     file and renaming it over the old one;
//   - changes one to four bytes in 1 % of the small files (at least
//     one), keeping their sizes;
//   - deletes 20 small files and adds 50 new ones in existing
//     directories under src/, never reusing a name that existed;
//   - gives 1 % of the small files (at least one) a new mtime without
//     changing their contents.
//
// Every file it writes or touches gets a pseudo-random mtime in 2026,
// and so does every directory whose entries changed; other entries keep
// their times. Small files are the regular files under src/, and the
// ones changed are disjoint sets drawn from them in path order.
func Mutate(dir string, seed uint64) (MutateStats, error) {
	ms, err := mutate(dir, seed)
	if err != nil {
		return ms, fmt.Errorf("mutate %s: %w", dir, err)
	}
	return ms, nil
}

func mutate(root string, seed uint64) (MutateStats, error) {
	var ms MutateStats
	w := walker{root: root}
	if err := w.walk("."); err != nil {
		return ms, err
	}
	slices.SortFunc(w.out, func(a, b Entry) int { return strings.Compare(a.Path, b.Path) })
	var small, srcDirs, dumps []string
	taken := map[string]bool{}
	for _, e := range w.out {
		taken[e.Path] = true
		inSrc := strings.HasPrefix(e.Path, srcDir+"/")
		switch {
		case e.Type == "file" && inSrc:
			small = append(small, e.Path)
		case e.Type == "dir" && (inSrc || e.Path == srcDir):
			srcDirs = append(srcDirs, e.Path)
		case e.Type == "file" && strings.HasPrefix(e.Path, dbDir+"/") && strings.HasSuffix(e.Path, ".sql"):
			dumps = append(dumps, e.Path)
		}
	}
	full := func(rel string) string { return filepath.Join(root, filepath.FromSlash(rel)) }
	r := newRNG(derive(seed, "mutate", 0))
	buf := make([]byte, bufSize)
	var changedDirs []string // directories whose entries changed
	var stamped []string     // entries to give a mutation mtime

	if len(dumps) > 0 {
		a := r.intn(len(dumps))
		in := a
		if len(dumps) > 1 {
			in = (a + 1 + r.intn(len(dumps)-1)) % len(dumps)
		}
		if err := appendDump(full(dumps[a]), r.uint64(), buf); err != nil {
			return ms, err
		}
		ms.Appended++
		if err := insertDump(full(dumps[in]), r.uint64(), buf); err != nil {
			return ms, err
		}
		ms.Inserted++
		stamped = append(stamped, dumps[a], dumps[in])
		changedDirs = append(changedDirs, path.Dir(dumps[in]))
	}

	// Disjoint random subsets, in path order within each.
	perm := make([]int, len(small))
	for i := range perm {
		perm[i] = i
	}
	for i := len(perm) - 1; i > 0; i-- {
		j := r.intn(i + 1)
		perm[i], perm[j] = perm[j], perm[i]
	}
	take := func(n int) []string {
		n = min(n, len(perm))
		idx := slices.Clone(perm[:n])
		perm = perm[n:]
		slices.Sort(idx)
		out := make([]string, n)
		for i, k := range idx {
			out[i] = small[k]
		}
		return out
	}
	onePercent := 0
	if len(small) > 0 {
		onePercent = max(len(small)/100, 1)
	}
	deleted, modified, touched := take(deletedFiles), take(onePercent), take(onePercent)

	for _, rel := range modified {
		if err := modifyBytes(full(rel), r); err != nil {
			return ms, err
		}
		ms.Modified++
	}
	stamped = append(stamped, modified...)
	stamped = append(stamped, touched...)
	ms.Touched = len(touched)
	for _, rel := range deleted {
		if err := os.Remove(full(rel)); err != nil {
			return ms, err
		}
		ms.Deleted++
		changedDirs = append(changedDirs, path.Dir(rel))
	}
	if len(srcDirs) > 0 {
		p := &plan{taken: taken}
		for range addedFiles {
			d := pick(r, srcDirs)
			name, style := sourceName(r)
			f := fileSpec{
				path: p.unique(d, name), mode: sourceMode(style), kind: kindText,
				size: smallSize(r), seed: r.uint64(), style: style,
			}
			if err := writeFile(full(f.path), &f, buf); err != nil {
				return ms, err
			}
			ms.Added++
			stamped = append(stamped, f.path)
			changedDirs = append(changedDirs, d)
		}
	}

	slices.Sort(changedDirs)
	for _, rel := range append(stamped, slices.Compact(changedDirs)...) {
		ts := unix.NsecToTimespec(mtime(seed, "mutate", rel))
		if err := unix.UtimesNanoAt(unix.AT_FDCWD, full(rel), []unix.Timespec{ts, ts}, unix.AT_SYMLINK_NOFOLLOW); err != nil {
			return ms, &fs.PathError{Op: "utimensat", Path: full(rel), Err: err}
		}
	}
	return ms, nil
}

// appendDump appends appendSize bytes of a new table's rows to a dump.
func appendDump(name string, seed uint64, buf []byte) error {
	f, err := os.OpenFile(name, os.O_WRONLY|os.O_APPEND, 0)
	if err != nil {
		return err
	}
	g := newDumpGen(seed, "", 50_000_000)
	g.began = true // no file header in the middle of a file
	if err := writeText(f, appendSize, buf, g.line); err != nil {
		f.Close()
		return err
	}
	return f.Close()
}

// insertDump rewrites a dump with insertSize bytes of rows inserted
// after the first line break at or after the middle, through a
// temporary file renamed over the original.
func insertDump(name string, seed uint64, buf []byte) (err error) {
	in, err := os.Open(name)
	if err != nil {
		return err
	}
	defer in.Close()
	fi, err := in.Stat()
	if err != nil {
		return err
	}
	at := fi.Size() / 2
	n, err := in.ReadAt(buf[:min(len(buf), 64<<10)], at)
	if err != nil && !errors.Is(err, io.EOF) {
		return err
	}
	if i := bytes.IndexByte(buf[:n], '\n'); i >= 0 {
		at += int64(i) + 1
	}
	tmp := filepath.Join(filepath.Dir(name), ".cairn-mutate.tmp")
	out, err := os.OpenFile(tmp, os.O_WRONLY|os.O_CREATE|os.O_TRUNC, 0o600)
	if err != nil {
		return err
	}
	defer func() {
		if err != nil {
			out.Close()
			os.Remove(tmp)
		}
	}()
	if _, err = io.Copy(out, io.NewSectionReader(in, 0, at)); err != nil {
		return err
	}
	g := newDumpGen(seed, "", 90_000_000)
	g.began = true
	g.nextTable(nil) // start inside a table: rows only
	if err = writeText(out, insertSize, buf, g.line); err != nil {
		return err
	}
	if _, err = io.Copy(out, io.NewSectionReader(in, at, fi.Size()-at)); err != nil {
		return err
	}
	if err = out.Chmod(fi.Mode()); err != nil {
		return err
	}
	if err = out.Close(); err != nil {
		return err
	}
	return os.Rename(tmp, name)
}

// modifyBytes replaces one to four bytes at distinct offsets of a file
// with different lower-case letters; an empty file gets one letter.
func modifyBytes(name string, r *rng) (err error) {
	f, err := os.OpenFile(name, os.O_RDWR, 0)
	if err != nil {
		return err
	}
	defer func() {
		if cerr := f.Close(); err == nil {
			err = cerr
		}
	}()
	fi, err := f.Stat()
	if err != nil {
		return err
	}
	if fi.Size() == 0 {
		_, err = f.Write([]byte{byte('a' + r.intn(26))})
		return err
	}
	var offsets []int64
	for range r.between(1, 4) {
		if at := r.int63n(fi.Size()); !slices.Contains(offsets, at) {
			offsets = append(offsets, at)
		}
	}
	for _, at := range offsets {
		var b [1]byte
		if _, err := f.ReadAt(b[:], at); err != nil {
			return err
		}
		c := byte('a' + r.intn(26))
		if c == b[0] {
			c = 'a' + (c-'a'+1)%26
		}
		if _, err := f.WriteAt([]byte{c}, at); err != nil {
			return err
		}
	}
	return nil
}
