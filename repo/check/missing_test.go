package check_test

import (
	"bytes"
	"os"
	"path/filepath"
	"testing"

	"github.com/cairnbackup/cairn/repo"
	"github.com/cairnbackup/cairn/repo/check"
	"github.com/cairnbackup/cairn/repo/repotest"
	"github.com/cairnbackup/cairn/repo/restore"
	"github.com/cairnbackup/cairn/repo/snapshot"
	"github.com/cairnbackup/cairn/repo/storage"
)

// A deleted snapshots/<id> vanished silently: the open dropped the
// index's copy of the record ("the snapshot list follows snapshots/"),
// check --read-data found no problem and repair index had nothing to
// restore it from. A snapshot the index knows and the store lacks is now
// a finding (kept across opens), and repair index writes the file back
// from the index's copy, which hashes to its ID; then check is clean.
func TestDeletedSnapshotFile(t *testing.T) {
	f := setup(t)
	lost := f.snaps[1]
	p := storage.NewLocal(f.dir).Path(storage.Handle{Kind: storage.Snapshot, Name: lost.String()})
	if err := os.Remove(p); err != nil {
		t.Fatal(err)
	}
	msg := "snapshot " + lost.String() + " (lyra, 2001-09-09T01:46:41Z) is in the index, but its file snapshots/" + lost.String() +
		" is missing; cairn repair index writes it back from the index's copy of its record"
	for round := range 2 { // a second open must not drop it either
		r := repotest.Open(t, f.dir)
		for _, readData := range []bool{false, true} {
			rep := runCheck(t, r, readData)
			assertFindings(t, rep, []want{{kind: check.SnapshotMissing}})
			if fd := rep.Findings[0]; fd.Message != msg || fd.Snapshot == nil || *fd.Snapshot != lost {
				t.Fatalf("round %d: finding %s\nwant message %s", round, fd, msg)
			}
			if rep.Snapshots != 2 {
				t.Fatalf("round %d: %d snapshots walked, want 2", round, rep.Snapshots)
			}
		}
		// It is still listed, so prune keeps its data.
		if list, err := r.Snapshots(t.Context(), snapshot.Filter{}); err != nil || len(list) != 2 {
			t.Fatalf("round %d: snapshots %v %v", round, list, err)
		}
		r.Close()
	}

	r, err := repo.Open(t.Context(), f.dir, repotest.Credentials(), repo.Options{SkipIndex: true})
	if err != nil {
		t.Fatal(err)
	}
	rb, err := r.RebuildIndex(t.Context())
	if err != nil {
		t.Fatal(err)
	}
	if rb.Snapshots != 2 || len(rb.UnreadableSnapshots) != 0 || len(rb.RecoveredSnapshots) != 1 || rb.RecoveredSnapshots[0].ID != lost ||
		rb.RecoveredSnapshots[0].Err.Error() != "its file was missing" {
		t.Fatalf("rebuild: %+v", rb)
	}
	r.Close()
	r = repotest.Open(t, f.dir)
	if rep := runCheck(t, r, true); !rep.Clean() || rep.Snapshots != 2 {
		t.Fatalf("check after repair: %v", rep.Findings)
	}
	// The record is the one saved (it hashes to its ID), and the
	// snapshot restores bit-identical to its source.
	sn, err := r.LoadSnapshot(t.Context(), lost)
	if err != nil {
		t.Fatal(err)
	}
	if _, id, err := snapshot.Encode(sn); err != nil || id != lost {
		t.Fatalf("rewritten record %s, %v", id, err)
	}
	dst := t.TempDir()
	if _, err := restore.Run(t.Context(), r, sn.Tree, f.rel, dst, restore.Options{}); err != nil {
		t.Fatal(err)
	}
	for _, name := range []string{"a.txt", "c.txt", "sub/b.bin"} {
		want, _ := os.ReadFile(filepath.Join(f.src, name))
		got, err := os.ReadFile(filepath.Join(dst, filepath.Base(f.src), name))
		if err != nil || !bytes.Equal(got, want) {
			t.Fatalf("%s: %v", name, err)
		}
	}
}
