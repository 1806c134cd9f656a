package repo_test

import (
	"errors"
	"os"
	"path/filepath"
	"testing"

	"github.com/cairnbackup/cairn/repo"
	"github.com/cairnbackup/cairn/repo/repotest"
	"github.com/cairnbackup/cairn/repo/snapshot"
)

func openReadOnly(t *testing.T, dir string) *repo.Repository {
	t.Helper()
	r, err := repo.Open(t.Context(), dir, repotest.Credentials(), repo.Options{ReadOnly: true})
	if err != nil {
		t.Fatalf("open read-only: %v", err)
	}
	t.Cleanup(func() { r.Close() })
	return r
}

// A read-only open of an index that must be written before it can be
// read (here: none at all, so every pack and snapshot is to be
// indexed) opens it read-write once, reconciles, and reopens it
// read-only; the snapshot restores, and writes are refused.
func TestReadOnlyOpenReconcilesFirst(t *testing.T) {
	dir := repotest.Init(t, repotest.Options())
	r := repotest.Open(t, dir)
	src := sampleTree(t)
	id := backupDir(t, r, src)
	r.Close()
	if err := os.RemoveAll(filepath.Join(dir, "index")); err != nil {
		t.Fatal(err)
	}

	r = openReadOnly(t, dir)
	if !r.IndexReadOnly() {
		t.Fatal("the index is not open read-only after a read-only open")
	}
	list, err := r.Snapshots(t.Context(), snapshot.Filter{})
	if err != nil || len(list) != 1 || list[0].ID != id {
		t.Fatalf("snapshots after a read-only open: %v %v", list, err)
	}
	restoreAndCompare(t, r, id, src)
	err = r.PutSizeSample(repo.SizeSample{Time: list[0].Time})
	if !errors.Is(err, repo.ErrIndexReadOnly) {
		t.Fatalf("a write to a read-only repository: %v", err)
	}
	r.Close()

	// What it indexed stayed: a writer finds nothing to reconcile.
	r = repotest.Open(t, dir)
	if got, err := r.Snapshots(t.Context(), snapshot.Filter{}); err != nil || len(got) != 1 {
		t.Fatalf("snapshots after reopening for writing: %v %v", got, err)
	}
}

// Drill notes the index has not got are kept in memory by a read-only
// open: noting them gives the same answers, and the index on disk still
// says they are not noted (the next writer notes them).
func TestReadOnlyNotesDrillsInMemory(t *testing.T) {
	dir := repotest.Init(t, repotest.Options())
	repotest.Open(t, dir).Close()
	r := openReadOnly(t, dir)
	if ok, err := r.DrillsNoted(); err != nil || ok {
		t.Fatalf("DrillsNoted of a new index: %v %v", ok, err)
	}
	if err := r.NoteDrills(nil, true); err != nil {
		t.Fatal(err)
	}
	if ok, err := r.DrillsNoted(); err != nil || !ok {
		t.Fatalf("DrillsNoted after noting in memory: %v %v", ok, err)
	}
	r.Close()
	r = openReadOnly(t, dir)
	if ok, err := r.DrillsNoted(); err != nil || ok {
		t.Fatalf("DrillsNoted after a read-only process noted: %v %v", ok, err)
	}
}
