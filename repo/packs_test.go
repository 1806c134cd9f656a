package repo_test

import (
	"bytes"
	"maps"
	"os"
	"path/filepath"
	"slices"
	"testing"

	"github.com/cairnbackup/cairn/repo"
	"github.com/cairnbackup/cairn/repo/blob"
	"github.com/cairnbackup/cairn/repo/repotest"
)

// packFiles lists the pack files under dir/packs with their sizes.
func packFiles(t *testing.T, dir string) map[blob.ID]int64 {
	t.Helper()
	paths, err := filepath.Glob(filepath.Join(dir, "packs", "*", "*"))
	if err != nil {
		t.Fatal(err)
	}
	out := map[blob.ID]int64{}
	for _, p := range paths {
		id, err := blob.ParseID(filepath.Base(p))
		if err != nil {
			t.Fatalf("%s: %v", p, err)
		}
		fi, err := os.Stat(p)
		if err != nil {
			t.Fatal(err)
		}
		out[id] = fi.Size()
	}
	return out
}

func compareIDs(a, b blob.ID) int { return bytes.Compare(a[:], b[:]) }

// The two pack listings answer different questions, and differ after a
// crash or a loss: PackRecords is what the index holds (a pack whose file
// is gone is still listed, a pack not yet indexed is not), StoredPacks is
// what packs/ holds, with the files' sizes.
func TestPackListingsIndexAndStorage(t *testing.T) {
	dir := repotest.Init(t, repotest.Options())
	r := repotest.Open(t, dir)
	backupDir(t, r, sampleTree(t))
	files := packFiles(t, dir)
	if len(files) < 2 {
		t.Fatalf("%d packs written, want at least 2", len(files))
	}
	ids := slices.SortedFunc(maps.Keys(files), compareIDs)
	blobs := map[blob.ID]int{}
	for _, id := range ids {
		entries, _, err := r.ReadPackHeader(t.Context(), id)
		if err != nil {
			t.Fatal(err)
		}
		blobs[id] = len(entries)
	}
	r.Close()

	// unindexed: on disk, not in the index (forgotten at an open while
	// it was away, then back). missing: in the index, its file gone.
	unindexed, missing := ids[0], ids[1]
	path := func(id blob.ID) string { return filepath.Join(dir, "packs", id.String()[:2], id.String()) }
	aside := filepath.Join(t.TempDir(), "pack")
	if err := os.Rename(path(unindexed), aside); err != nil {
		t.Fatal(err)
	}
	r = repotest.Open(t, dir)
	if err := os.Rename(aside, path(unindexed)); err != nil {
		t.Fatal(err)
	}
	if err := os.Remove(path(missing)); err != nil {
		t.Fatal(err)
	}

	var got []repo.PackRecord
	err := r.PackRecords(func(p repo.PackRecord) error {
		if p.Created.IsZero() {
			t.Errorf("pack %s: no creation time", p.ID.Short())
		}
		got = append(got, repo.PackRecord{ID: p.ID, Size: p.Size, Blobs: p.Blobs})
		return nil
	})
	if err != nil {
		t.Fatal(err)
	}
	slices.SortFunc(got, func(a, b repo.PackRecord) int { return compareIDs(a.ID, b.ID) })
	var want []repo.PackRecord
	for _, id := range ids {
		if id != unindexed {
			want = append(want, repo.PackRecord{ID: id, Size: files[id], Blobs: blobs[id]})
		}
	}
	if !slices.Equal(got, want) {
		t.Errorf("PackRecords:\n got %v\nwant %v", got, want)
	}

	stored, err := r.StoredPacks(t.Context())
	if err != nil {
		t.Fatal(err)
	}
	wantStored := maps.Clone(files)
	delete(wantStored, missing)
	if !maps.Equal(stored, wantStored) {
		t.Errorf("StoredPacks:\n got %v\nwant %v", stored, wantStored)
	}
}

// SnapshotFiles lists snapshots/ (what check walks), not the index: a
// snapshot whose file is gone is not listed, one whose file has not
// reached the index yet is; a file not named like a snapshot is skipped.
func TestSnapshotFilesListStorage(t *testing.T) {
	dir := repotest.Init(t, repotest.Options())
	r := repotest.Open(t, dir)
	src := sampleTree(t)
	var ids []blob.ID
	for range 3 {
		ids = append(ids, backupDir(t, r, src))
	}
	slices.SortFunc(ids, compareIDs)
	r.Close()
	// ids[0]'s file leaves before the open (the index no longer lists
	// it) and comes back after; ids[1]'s file goes while open.
	path := func(id blob.ID) string { return filepath.Join(dir, "snapshots", id.String()) }
	aside := filepath.Join(t.TempDir(), "snapshot")
	if err := os.Rename(path(ids[0]), aside); err != nil {
		t.Fatal(err)
	}
	r = repotest.Open(t, dir)
	if err := os.Rename(aside, path(ids[0])); err != nil {
		t.Fatal(err)
	}
	if err := os.Remove(path(ids[1])); err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(filepath.Join(dir, "snapshots", "stray"), []byte("x"), 0o600); err != nil {
		t.Fatal(err)
	}
	got, err := r.SnapshotFiles(t.Context())
	if err != nil {
		t.Fatal(err)
	}
	if want := []blob.ID{ids[0], ids[2]}; !slices.Equal(got, want) {
		t.Errorf("SnapshotFiles = %v, want %v", got, want)
	}
}
