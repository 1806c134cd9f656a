package backup_test

import (
	"path/filepath"
	"testing"

	"github.com/cairnbackup/cairn/repo"
	"github.com/cairnbackup/cairn/repo/backup"
	"github.com/cairnbackup/cairn/repo/repotest"
	"github.com/cairnbackup/cairn/repo/repotest/datagen"
)

// pipelineSpec is about 200 MiB of data shaped like datagen.Bench: small
// text files, compressible dumps and incompressible files, in the
// proportions the peers benchmark uses.
var pipelineSpec = datagen.Spec{
	SmallFiles:  4000,
	Dumps:       []int64{40 << 20, 40 << 20},
	RandomFiles: []int64{64 << 20, 16 << 20, 8 << 20, 4 << 20, 2 << 20, 1 << 20},
	Symlinks:    10,
	Hardlinks:   2,
}

// BenchmarkPipeline measures the backup pipeline in process with the
// page cache warm: read, chunk, hash (chunk IDs and whole-file hashes),
// compress, seal and write packs into a fresh repository. MB/s is of the
// tree's data; it is the CPU-bound half of a first backup, without the
// disk's cold read.
func BenchmarkPipeline(b *testing.B) {
	src := filepath.Join(b.TempDir(), "src")
	st, err := datagen.Generate(src, pipelineSpec, 1)
	if err != nil {
		b.Fatal(err)
	}
	b.SetBytes(st.Bytes)
	b.ReportAllocs()
	for b.Loop() {
		b.StopTimer()
		// Default chunk and pack sizes, unlike repotest.Options.
		r := repotest.Open(b, repotest.Init(b, repo.InitOptions{}))
		b.StartTimer()
		s := r.NewSession()
		if _, err := backup.Run(b.Context(), s, []string{src}, opts(r)); err != nil {
			b.Fatal(err)
		}
		if err := s.Flush(b.Context()); err != nil {
			b.Fatal(err)
		}
	}
}

// BenchmarkPipelineUnchanged measures a backup of the same tree with the
// first backup as its parent, page cache warm: listing directories,
// lstat of every entry, comparing it with the parent's node (its
// extended attributes are taken from the parent when ctime and inode
// match), checking that the parent's chunks are indexed, and saving the
// trees again. Files/s is of the tree's entries.
func BenchmarkPipelineUnchanged(b *testing.B) {
	src := filepath.Join(b.TempDir(), "src")
	if _, err := datagen.Generate(src, pipelineSpec, 1); err != nil {
		b.Fatal(err)
	}
	r := repotest.Open(b, repotest.Init(b, repo.InitOptions{}))
	s := r.NewSession()
	first, err := backup.Run(b.Context(), s, []string{src}, opts(r))
	if err != nil {
		b.Fatal(err)
	}
	if err := s.Flush(b.Context()); err != nil {
		b.Fatal(err)
	}
	o := opts(r)
	o.Parent = first.Tree
	b.ReportAllocs()
	var entries uint64
	for b.Loop() {
		s := r.NewSession()
		res, err := backup.Run(b.Context(), s, []string{src}, o)
		if err != nil {
			b.Fatal(err)
		}
		s.Abort()
		entries = res.Summary.Files + res.Summary.Dirs + res.Summary.Others
	}
	b.ReportMetric(float64(entries)*float64(b.N)/b.Elapsed().Seconds(), "entries/s")
}
