package stats_test

import (
	"path/filepath"
	"testing"

	"github.com/cairnbackup/cairn/repo/backup"
	"github.com/cairnbackup/cairn/repo/repotest"
	"github.com/cairnbackup/cairn/repo/snapshot"
	"github.com/cairnbackup/cairn/repo/stats"
)

// Usage sums a snapshot's files (its summary's figure when it has one)
// and counts each distinct chunk once, across snapshots and across
// subtrees with the same contents.
func TestUsage(t *testing.T) {
	r := repotest.New(t)
	src := filepath.Join(t.TempDir(), "src")
	repotest.WriteTree(t, src, map[string]string{"a/x.txt": "same", "b/x.txt": "same", "c.txt": "other!"})
	snap := func() snapshot.Entry {
		s := r.NewSession()
		res, err := backup.Run(t.Context(), s, []string{src}, backup.Options{Params: r.ChunkerParams(), Table: r.ChunkerTable(), Loader: r})
		if err != nil {
			t.Fatal(err)
		}
		if err := s.Flush(t.Context()); err != nil {
			t.Fatal(err)
		}
		return snapshot.Entry{Snapshot: &snapshot.Snapshot{Tree: res.Tree}}
	}
	first, second := snap(), snap()

	u := stats.NewUsage(r, true)
	for _, sn := range []snapshot.Entry{first, second} {
		size, err := u.Logical(t.Context(), sn, true)
		if err != nil || size != 14 {
			t.Fatalf("logical size %d, %v; want 14", size, err)
		}
	}
	if chunks, bytes := u.Unique(); chunks != 2 || bytes != 10 {
		t.Fatalf("unique: %d chunks, %d bytes; want 2, 10", chunks, bytes)
	}
	// A summary's figure is taken as it is, without reading the tree.
	first.Summary.Bytes = 99
	if size, err := stats.NewUsage(nil, false).Logical(t.Context(), first, false); err != nil || size != 99 {
		t.Fatalf("from the summary: %d, %v", size, err)
	}
}
