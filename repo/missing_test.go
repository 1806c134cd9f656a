package repo_test

import (
	"bytes"
	"os"
	"path/filepath"
	"testing"

	"github.com/cairnbackup/cairn/repo"
	"github.com/cairnbackup/cairn/repo/check"
	"github.com/cairnbackup/cairn/repo/repotest"
	"github.com/cairnbackup/cairn/repo/snapshot"
	"github.com/cairnbackup/cairn/repo/storage"
)

func snapshotPath(dir string, id interface{ String() string }) string {
	return storage.NewLocal(dir).Path(storage.Handle{Kind: storage.Snapshot, Name: id.String()})
}

// A snapshot file deleted while the index's copy of its record is damaged
// too is lost: check says so, the listing leaves it out (rather than
// fail), and repair index names it and drops it.
func TestDeletedSnapshotFileDamagedCopy(t *testing.T) {
	dir := repotest.Init(t, repotest.Options())
	r := repotest.Open(t, dir)
	src := sampleTree(t)
	keep := backupDir(t, r, src)
	lost := backupDir(t, r, src)
	sn, err := r.LoadSnapshot(t.Context(), lost)
	if err != nil {
		t.Fatal(err)
	}
	plain, _, _ := snapshot.Encode(sn)
	if err := r.CacheSnapshotRecord(lost, bytes.Replace(plain, []byte(`"lyra"`), []byte(`"lyrb"`), 1)); err != nil {
		t.Fatal(err)
	}
	if err := os.Remove(snapshotPath(dir, lost)); err != nil {
		t.Fatal(err)
	}
	rep, err := check.Run(t.Context(), r, check.Options{})
	if err != nil {
		t.Fatal(err)
	}
	msg := "snapshot " + lost.String() + " is in the index, but its file snapshots/" + lost.String() +
		" is missing, and the index's copy of its record is damaged: the snapshot is lost"
	if len(rep.Findings) != 1 || rep.Findings[0].Kind != check.SnapshotMissing || rep.Findings[0].Message != msg {
		t.Fatalf("findings %v\nwant %s", rep.Findings, msg)
	}
	if list, err := r.Snapshots(t.Context(), snapshot.Filter{}); err != nil || len(list) != 1 || list[0].ID != keep {
		t.Fatalf("snapshots %v %v", list, err)
	}
	r.Close()
	r, err = repo.Open(t.Context(), dir, repotest.Credentials(), repo.Options{SkipIndex: true})
	if err != nil {
		t.Fatal(err)
	}
	rb, err := r.RebuildIndex(t.Context())
	if err != nil || rb.Snapshots != 1 || len(rb.UnreadableSnapshots) != 1 || rb.UnreadableSnapshots[0].ID != lost ||
		rb.UnreadableSnapshots[0].Err.Error() != "its file is missing, and the index has no intact copy of it" {
		t.Fatalf("rebuild: %+v %v", rb, err)
	}
	r.Close()
	r = repotest.Open(t, dir)
	if rep, err := check.Run(t.Context(), r, check.Options{}); err != nil || !rep.Clean() {
		t.Fatalf("check after repair: %v %v", err, rep.Findings)
	}
}

// Forget deletes a snapshot's file, then its index entry. A crash between
// the two left an entry without a file, which the next open dropped —
// exactly what it also did to a snapshot whose file was lost. Forget now
// marks the entry first: an interrupted forget is finished (or, before
// the file went, undone) at the next open and is never reported as
// damage; only an unmarked entry without a file is.
func TestInterruptedForgetIsNotDamage(t *testing.T) {
	dir := repotest.Init(t, repotest.Options())
	r := repotest.Open(t, dir)
	src := sampleTree(t)
	a := backupDir(t, r, src)
	b := backupDir(t, r, src)
	c := backupDir(t, r, src)
	if err := r.ForgetUntilIndex(t.Context(), a); err != nil { // killed at forget-before-index
		t.Fatal(err)
	}
	if err := r.ForgetUntilDelete(b); err != nil { // killed at forget-before-delete
		t.Fatal(err)
	}
	// Meanwhile (same process), check does not take the forget for damage.
	if rep, err := check.Run(t.Context(), r, check.Options{}); err != nil || !rep.Clean() {
		t.Fatalf("check during the forget: %v %v", err, rep.Findings)
	}
	r.Close()
	r = repotest.Open(t, dir)
	list, err := r.Snapshots(t.Context(), snapshot.Filter{})
	if err != nil || len(list) != 2 || list[0].ID != b || list[1].ID != c {
		t.Fatalf("after the open: %v %v", list, err)
	}
	if rep, err := check.Run(t.Context(), r, check.Options{ReadData: true}); err != nil || !rep.Clean() || rep.Snapshots != 2 {
		t.Fatalf("check after the open: %v %v", err, rep)
	}
	// b's mark is gone: losing its file now is damage.
	if err := os.Remove(snapshotPath(dir, b)); err != nil {
		t.Fatal(err)
	}
	rep, err := check.Run(t.Context(), r, check.Options{})
	if err != nil || len(rep.Findings) != 1 || rep.Findings[0].Kind != check.SnapshotMissing || *rep.Findings[0].Snapshot != b {
		t.Fatalf("findings %v %v", rep.Findings, err)
	}
	// A forget of a snapshot whose file is lost removes it cleanly.
	if err := r.DeleteSnapshot(t.Context(), b); err != nil {
		t.Fatal(err)
	}
	if rep, err := check.Run(t.Context(), r, check.Options{}); err != nil || !rep.Clean() {
		t.Fatalf("check after forgetting the lost snapshot: %v %v", err, rep.Findings)
	}
	if _, err := os.Stat(filepath.Join(dir, "snapshots", c.String())); err != nil {
		t.Fatal(err)
	}
}
