package restore_test

import (
	"fmt"
	"os"
	"path/filepath"
	"testing"

	"github.com/cairnbackup/cairn/repo"
	"github.com/cairnbackup/cairn/repo/backup"
	"github.com/cairnbackup/cairn/repo/repotest"
	"github.com/cairnbackup/cairn/repo/repotest/datagen"
	"github.com/cairnbackup/cairn/repo/restore"
)

// BenchmarkRestore measures the restore writer in process with the page
// cache warm: load and open blobs (with read-ahead), decompress, write
// files, punch holes, set metadata and verify every whole-file hash.
// The tree is about 200 MiB of data: small text files, compressible
// dumps, incompressible files and a sparse image. MB/s is of the tree's
// apparent size.
func BenchmarkRestore(b *testing.B) {
	dir := b.TempDir()
	src := filepath.Join(dir, "src")
	st, err := datagen.Generate(src, datagen.Spec{
		SmallFiles:   4000,
		Dumps:        []int64{40 << 20, 40 << 20},
		RandomFiles:  []int64{64 << 20, 16 << 20, 8 << 20, 4 << 20, 2 << 20, 1 << 20},
		SparseImages: []int64{64 << 20},
		Symlinks:     10,
		Hardlinks:    2,
	}, 1)
	if err != nil {
		b.Fatal(err)
	}
	r := repotest.Open(b, repotest.Init(b, repo.InitOptions{}))
	s := r.NewSession()
	res, err := backup.Run(b.Context(), s, []string{src}, backup.Options{Params: r.ChunkerParams(), Table: r.ChunkerTable()})
	if err != nil {
		b.Fatal(err)
	}
	if err := s.Flush(b.Context()); err != nil {
		b.Fatal(err)
	}
	target := filepath.Join(dir, "target")
	b.SetBytes(st.Bytes)
	b.ResetTimer()
	for b.Loop() {
		if _, err := restore.Run(b.Context(), r, res.Tree, src, target, restore.Options{}); err != nil {
			b.Fatal(err)
		}
		b.StopTimer()
		if err := os.RemoveAll(target); err != nil {
			b.Fatal(err)
		}
		b.StartTimer()
	}
}

// BenchmarkRestoreSmallFiles measures what a restore costs per file:
// 5000 small files six directories deep (create, write, owner, mode,
// times, close), with the page cache warm. MB/s is of the files' bytes;
// ns/op divided by 5000 is the cost of one file.
func BenchmarkRestoreSmallFiles(b *testing.B) {
	dir := b.TempDir()
	src := filepath.Join(dir, "src")
	files := map[string]string{}
	size := int64(0)
	for i := range 5000 {
		data := fmt.Sprintf("small file %d\n", i)
		files[fmt.Sprintf("a/b/c/d/e/d%d/f%04d", i%10, i)] = data
		size += int64(len(data))
	}
	repotest.WriteTree(b, src, files)
	r := repotest.Open(b, repotest.Init(b, repo.InitOptions{}))
	s := r.NewSession()
	res, err := backup.Run(b.Context(), s, []string{src}, backup.Options{Params: r.ChunkerParams(), Table: r.ChunkerTable()})
	if err != nil {
		b.Fatal(err)
	}
	if err := s.Flush(b.Context()); err != nil {
		b.Fatal(err)
	}
	// A new target each time, removed at the end: on ext4 without a
	// journal, creating files just after thousands were deleted costs
	// far more (the inode allocator skips inodes freed in the last
	// minute, scanning them for every file).
	b.SetBytes(size)
	n := 0
	for b.Loop() {
		n++
		target := filepath.Join(dir, fmt.Sprintf("target%d", n))
		if _, err := restore.Run(b.Context(), r, res.Tree, src, target, restore.Options{}); err != nil {
			b.Fatal(err)
		}
	}
}
