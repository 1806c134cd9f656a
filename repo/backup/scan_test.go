package backup_test

import (
	"context"
	"os"
	"path/filepath"
	"strings"
	"testing"

	"github.com/cairnbackup/cairn/repo/backup"
	"github.com/cairnbackup/cairn/repo/filter"
	"github.com/cairnbackup/cairn/repo/repotest"
)

// Scan counts what the backup reads, for the progress total of a first
// backup (issue 13: it showed no percentage or ETA): the same files the
// same exclude rules and CACHEDIR.TAG leave, each hard-linked inode
// once; its bytes are what the backup's progress ends at.
func TestScanCountsWhatTheBackupReads(t *testing.T) {
	r := repotest.New(t)
	dir := t.TempDir()
	src := filepath.Join(dir, "src")
	repotest.WriteTree(t, src, map[string]string{
		"a.txt": "alpha", "big": strings.Repeat("x", 300_000), "d/e/f": "deep file",
		"x.tmp": "left out by a rule", "cache/CACHEDIR.TAG": backup.CacheDirTagSignature + "\n", "cache/blob": "left out: a cache",
		"linked": "two names!", // 10 bytes, two names below
	})
	if err := os.Link(filepath.Join(src, "linked"), filepath.Join(src, "d", "also-linked")); err != nil {
		t.Fatal(err)
	}
	if err := os.Symlink("a.txt", filepath.Join(src, "sym")); err != nil {
		t.Fatal(err)
	}
	other := filepath.Join(dir, "other")
	repotest.WriteTree(t, other, map[string]string{"o": "other path"})
	m, err := filter.New(filter.FromFlags([]string{"*.tmp"}, "--exclude"))
	if err != nil {
		t.Fatal(err)
	}
	o := opts(r)
	o.Exclude, o.ExcludeCaches, o.Progress = m, true, &backup.Progress{}
	var tot backup.Totals
	paths := []string{src, filepath.Join(src, "d"), other} // src/d is inside src: counted once
	if err := backup.Scan(t.Context(), paths, o, &tot); err != nil {
		t.Fatal(err)
	}
	res := run(t, r, o, paths...)
	wantBytes := uint64(5 + 300_000 + 9 + len(backup.CacheDirTagSignature) + 1 + 10 + 10)
	if !tot.Done.Load() || tot.Files.Load() != 7 || tot.Bytes.Load() != wantBytes {
		t.Errorf("scan: done %v, %d files, %d bytes; want 7 files, %d bytes", tot.Done.Load(), tot.Files.Load(), tot.Bytes.Load(), wantBytes)
	}
	if got := o.Progress.Bytes.Load(); got != tot.Bytes.Load() || res.Summary.Files != tot.Files.Load() {
		t.Errorf("the backup's progress ended at %d bytes, its summary has %d files; the scan counted %d bytes, %d files", got, res.Summary.Files, tot.Bytes.Load(), tot.Files.Load())
	}
	// An interrupted scan is not done.
	var cut backup.Totals
	ctx, cancel := context.WithCancel(t.Context())
	cancel()
	if err := backup.Scan(ctx, paths, o, &cut); err == nil || cut.Done.Load() {
		t.Errorf("cancelled scan: %v, done %v", err, cut.Done.Load())
	}
}
