package backup

import (
	"context"
	"os"
	"path/filepath"
	"sync/atomic"

	"golang.org/x/sys/unix"
)

// Totals are what Scan has counted so far: the regular files a backup
// of the same paths and options would visit, and their bytes. Read them
// with the atomic loads while Scan runs; Done is set when it has
// finished (an interrupted scan never sets it).
type Totals struct {
	Files atomic.Uint64
	Bytes atomic.Uint64
	Done  atomic.Bool
}

// scanBatch is how many names Scan reads from a directory at a time,
// and scanDepth how deep it goes: it holds one open directory and one
// batch of names per level, whatever the number of files.
const (
	scanBatch = 256
	scanDepth = 128
)

// Scan counts what a backup of paths with o would read, for a progress
// total when there is no parent snapshot to take one from (as restic's
// scanner does): it walks the paths as [Run] does (the same names,
// exclude rules, CACHEDIR.TAG and one-file-system decisions, through the
// same admit) and adds each regular file to t. It keeps nothing per
// file: a file with N hard links adds size/N for each name, so an inode
// whose names are all backed up counts once, as the backup reads it once.
// Directories deeper than scanDepth below a path are not counted, and
// entries that cannot be read are skipped: the total is an estimate.
// Memory: scanDepth directory handles and batches of scanBatch names.
func Scan(ctx context.Context, paths []string, o Options, t *Totals) error {
	root := &pathNode{}
	for _, p := range paths {
		abs, err := filepath.Abs(p)
		if err != nil {
			return err
		}
		root.add(abs)
	}
	d, err := openRoot()
	if err != nil {
		return err
	}
	defer d.Close()
	if err := scanLeaves(ctx, root, d, "/", o, t); err != nil {
		return err
	}
	t.Done.Store(true)
	return nil
}

// scanLeaves scans every path pn leads to below directory abs, open as
// d. Entries that cannot be reached are skipped: the backup says why.
func scanLeaves(ctx context.Context, pn *pathNode, d *os.File, abs string, o Options, t *Totals) error {
	if pn.leaf {
		// "/" itself is backed up.
		st, err := fstat(d)
		if err != nil {
			return nil
		}
		return scanDir(ctx, d, abs, st.Dev, o, t, 0)
	}
	dir := int(d.Fd())
	for name, child := range pn.children {
		p := filepath.Join(abs, name)
		st, err := lstatAt(dir, name, p)
		if err != nil {
			continue
		}
		if child.leaf {
			if err := scanEntry(ctx, dir, name, p, st, st.Dev, o, t, 0); err != nil {
				return err
			}
			continue
		}
		if st.Mode&unix.S_IFMT != unix.S_IFDIR {
			continue
		}
		sub, err := openDirAt(dir, name, p, st.Dev, st.Ino)
		if err != nil {
			continue
		}
		err = scanLeaves(ctx, child, sub, p, o, t)
		sub.Close()
		if err != nil {
			return err
		}
	}
	return nil
}

// scanEntry counts entry name of directory dir (path p, lstat st) and,
// for a directory, what is below it; dev is the device of the path being
// backed up.
func scanEntry(ctx context.Context, dir int, name, p string, st *unix.Stat_t, dev uint64, o Options, t *Totals, depth int) error {
	switch {
	case st.Mode&unix.S_IFMT == unix.S_IFREG:
		size := uint64(st.Size)
		if st.Nlink > 1 {
			size /= uint64(st.Nlink)
		}
		t.Files.Add(1)
		t.Bytes.Add(size)
		return nil
	case st.Mode&unix.S_IFMT != unix.S_IFDIR || depth >= scanDepth || o.OneFileSystem && st.Dev != dev:
		return nil
	}
	sub, err := openDirAt(dir, name, p, st.Dev, st.Ino)
	if err != nil {
		return nil
	}
	defer sub.Close()
	return scanDir(ctx, sub, p, dev, o, t, depth)
}

// scanDir counts what directory abs, open as d, holds.
func scanDir(ctx context.Context, d *os.File, abs string, dev uint64, o Options, t *Totals, depth int) error {
	if err := ctx.Err(); err != nil {
		return err
	}
	dir := int(d.Fd())
	cacheDir := o.ExcludeCaches && isCacheDir(dir)
	for {
		names, err := d.Readdirnames(scanBatch)
		for _, name := range names {
			p, st, rule, aerr := o.admit(dir, abs, name, cacheDir)
			if rule != "" || aerr != nil {
				continue
			}
			if err := scanEntry(ctx, dir, name, p, st, dev, o, t, depth+1); err != nil {
				return err
			}
		}
		if err != nil {
			return nil // io.EOF: the end; another error: skipped, as the backup warns
		}
	}
}
