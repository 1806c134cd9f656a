package index

import (
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"slices"
	"testing"

	"github.com/cairnbackup/cairn/repo/blob"
)

// dirState lists every file of dir with its size and modification time.
func dirState(t *testing.T, dir string) []string {
	t.Helper()
	entries, err := os.ReadDir(dir)
	if err != nil {
		t.Fatal(err)
	}
	var out []string
	for _, e := range entries {
		fi, err := e.Info()
		if err != nil {
			t.Fatal(err)
		}
		out = append(out, fmt.Sprintf("%s %d %d", e.Name(), fi.Size(), fi.ModTime().UnixNano()))
	}
	return out
}

// fillClosed writes packs of 1000 blobs each, numbered from to to, and
// closes the index, so dir holds several tables.
func fillClosed(t testing.TB, dir string, from, to int) (blob.Handle, blob.ID) {
	t.Helper()
	x, err := Open(dir, Options{EncryptionKey: make([]byte, 32)})
	if err != nil {
		t.Fatal(err)
	}
	var last blob.Handle
	var lastPack blob.ID
	for p := from; p < to; p++ {
		lastPack = blob.Hash(fmt.Appendf(nil, "pack %d", p))
		entries := make([]BlobEntry, 1000)
		for i := range entries {
			h := blob.Handle{ID: blob.Hash(fmt.Appendf(nil, "blob %d %d", p, i)), Type: blob.Data}
			entries[i] = BlobEntry{h, Location{Pack: lastPack, Offset: uint64(i), Length: 40, RawLength: 30, Type: blob.Data}}
			last = h
		}
		if err := x.AddPack(lastPack, PackInfo{Size: 1000, Blobs: len(entries)}, entries); err != nil {
			t.Fatal(err)
		}
	}
	if err := x.Close(); err != nil {
		t.Fatal(err)
	}
	return last, lastPack
}

// A read-only open reads what was written and changes no file of the
// index: no log, no table, no manifest; writes are refused.
func TestReadOnlyOpenChangesNothing(t *testing.T) {
	dir := filepath.Join(t.TempDir(), "index")
	last, lastPack := fillClosed(t, dir, 0, 200)
	before := dirState(t, dir)

	x, err := Open(dir, Options{EncryptionKey: make([]byte, 32), ReadOnly: true})
	if err != nil {
		t.Fatal(err)
	}
	if !x.ReadOnly() {
		t.Fatal("ReadOnly() is false after a read-only open")
	}
	loc, ok, err := x.Lookup(last)
	if err != nil || !ok || loc.Pack != lastPack || loc.Offset != 999 {
		t.Fatalf("Lookup after a read-only open: %+v %v %v", loc, ok, err)
	}
	n := 0
	if err := x.Blobs(func(blob.Handle, Location) error { n++; return nil }); err != nil || n != 200*1000 {
		t.Fatalf("Blobs: %d, %v; want 200000", n, err)
	}
	err = x.AddSnapshot(blob.Hash([]byte("s")), []byte("record"))
	if !errors.Is(err, ErrReadOnly) || err.Error() != "index: "+dir+": the index is open read-only" {
		t.Fatalf("AddSnapshot on a read-only index: %v", err)
	}
	if err := x.DeleteReplicaMarks("r", 'x', nil); !errors.Is(err, ErrReadOnly) {
		t.Fatalf("DeleteReplicaMarks on a read-only index: %v", err)
	}
	if err := x.Close(); err != nil {
		t.Fatal(err)
	}
	if after := dirState(t, dir); !slices.Equal(before, after) {
		t.Fatalf("a read-only open changed the index directory:\nbefore %q\nafter  %q", before, after)
	}
}

// A directory without an index cannot be opened read-only: it says a
// writer must open it first, and creates nothing.
func TestReadOnlyOpenNeedsAnIndex(t *testing.T) {
	dir := filepath.Join(t.TempDir(), "index")
	_, err := Open(dir, Options{ReadOnly: true})
	if !errors.Is(err, ErrNeedsWriter) {
		t.Fatalf("read-only open of a missing index: %v", err)
	}
	if _, serr := os.Stat(dir); !errors.Is(serr, os.ErrNotExist) {
		t.Fatalf("a read-only open created %s: %v", dir, serr)
	}
}

// A writer pays for the compactions its writes made due before it
// closes: the next process to open the index (a reader, or a small
// backup) finds none due. Before, a large write left level 0 full, and
// the next writer compacted it (and the levels below) on open.
func TestCloseLeavesNoCompactionDue(t *testing.T) {
	dir := filepath.Join(t.TempDir(), "index")
	// Writes of several sizes: each leaves a memtable of another size
	// for badger's close to flush.
	n := 0
	for _, packs := range []int{300, 90, 35, 170} {
		fillClosed(t, dir, n, n+packs)
		n += packs
		x, err := Open(dir, Options{EncryptionKey: make([]byte, 32), ReadOnly: true})
		if err != nil {
			t.Fatal(err)
		}
		due, levels := compactionDue(x.db.Levels()), x.db.LevelsToString()
		if err := x.Close(); err != nil {
			t.Fatal(err)
		}
		if due {
			t.Fatalf("a compaction is due after a writer added %d packs and closed:\n%s", packs, levels)
		}
	}
}
