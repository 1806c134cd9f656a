package backup

import (
	"context"
	"os"
	"path/filepath"
	"sync/atomic"
	"syscall"
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
	if err := scanLeaves(ctx, root, "/", o, t); err != nil {
		return err
	}
	t.Done.Store(true)
	return nil
}

// scanLeaves scans every path pn leads to below abs.
func scanLeaves(ctx context.Context, pn *pathNode, abs string, o Options, t *Totals) error {
	if pn.leaf {
		fi, err := os.Lstat(abs)
		if err != nil {
			return nil // the backup says why
		}
		return scanEntry(ctx, abs, fi, statDev(fi), o, t, 0)
	}
	for name, child := range pn.children {
		if err := scanLeaves(ctx, child, filepath.Join(abs, name), o, t); err != nil {
			return err
		}
	}
	return nil
}

// scanEntry counts the entry at p (lstat fi) and, for a directory,
// what is below it; dev is the device of the path being backed up.
func scanEntry(ctx context.Context, p string, fi os.FileInfo, dev uint64, o Options, t *Totals, depth int) error {
	switch {
	case fi.Mode().IsRegular():
		size := uint64(fi.Size())
		if st, ok := fi.Sys().(*syscall.Stat_t); ok && st.Nlink > 1 {
			size /= st.Nlink
		}
		t.Files.Add(1)
		t.Bytes.Add(size)
		return nil
	case !fi.IsDir() || depth >= scanDepth || o.OneFileSystem && statDev(fi) != dev:
		return nil
	}
	if err := ctx.Err(); err != nil {
		return err
	}
	f, err := openNoAtime(p, syscall.O_DIRECTORY)
	if err != nil {
		return nil
	}
	defer f.Close()
	cacheDir := o.ExcludeCaches && isCacheDir(p)
	for {
		names, err := f.Readdirnames(scanBatch)
		for _, name := range names {
			q, qi, rule, aerr := o.admit(p, name, cacheDir)
			if rule != "" || aerr != nil {
				continue
			}
			if err := scanEntry(ctx, q, qi, dev, o, t, depth+1); err != nil {
				return err
			}
		}
		if err != nil {
			return nil // io.EOF: the end; another error: skipped, as the backup warns
		}
	}
}

// statDev is the device of an lstat result.
func statDev(fi os.FileInfo) uint64 {
	if st, ok := fi.Sys().(*syscall.Stat_t); ok {
		return st.Dev
	}
	return 0
}
