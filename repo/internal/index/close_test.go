package index

import (
	"errors"
	"os"
	"os/exec"
	"testing"
	"time"

	"github.com/cairnbackup/cairn/integration/testenv"
	"github.com/cairnbackup/cairn/repo/blob"
)

// addOne writes one pack to x, so its memtable has something to flush.
func addOne(t *testing.T, x *Index) {
	t.Helper()
	p := blob.Hash([]byte("pack"))
	h := blob.Handle{ID: blob.Hash([]byte("blob")), Type: blob.Data}
	if err := x.AddPack(p, PackInfo{Size: 100, Blobs: 1}, []BlobEntry{{h, Location{Pack: p, Offset: 12, Length: 40, RawLength: 30, Type: blob.Data}}}); err != nil {
		t.Fatal(err)
	}
}

// closeWithin runs x.Close and fails the test if it has not returned
// within a minute (badger's own flush retries once a second for ever).
func closeWithin(t *testing.T, x *Index) error {
	t.Helper()
	done := make(chan error, 1)
	go func() { done <- x.Close() }()
	select {
	case err := <-done:
		return err
	case <-time.After(time.Minute):
		t.Fatal("Close has not returned after a minute")
		return nil
	}
}

// An index whose directory was deleted under it (rm -rf of the whole
// repository) used to hang in Close for ever: badger retried flushing its
// memtable into the missing directory once a second. Close now says so
// at once.
func TestCloseAfterDirectoryRemoved(t *testing.T) {
	for _, replaced := range []bool{false, true} {
		dir := t.TempDir()
		x := open(t, dir)
		addOne(t, x)
		if err := os.RemoveAll(dir); err != nil {
			t.Fatal(err)
		}
		what := "removed"
		if replaced {
			// A new, empty directory of the same name is not the
			// index's directory either.
			if err := os.Mkdir(dir, 0o700); err != nil {
				t.Fatal(err)
			}
			what = "replaced by another"
		}
		err := closeWithin(t, x)
		want := "index: close " + dir + ": the directory was " + what + " while the index was open; its unflushed updates are lost"
		if err == nil || err.Error() != want {
			t.Fatalf("Close = %v, want %q", err, want)
		}
	}
}

// Close is bounded whatever keeps badger from flushing: here the
// directory is made immutable (chattr +i), which even root cannot write.
func TestCloseIsBounded(t *testing.T) {
	dir := t.TempDir()
	x := open(t, dir)
	addOne(t, x)
	if out, err := exec.Command("chattr", "+i", dir).CombinedOutput(); err != nil {
		testenv.Missing(t, "chattr +i is not available here (needs root and a file system with the immutable flag): %v %s", err, out)
	}
	immutable := true
	unlock := func() {
		if immutable {
			immutable = false
			if out, err := exec.Command("chattr", "-i", dir).CombinedOutput(); err != nil {
				t.Errorf("chattr -i: %v %s", err, out)
			}
		}
	}
	t.Cleanup(unlock)
	defer func(d time.Duration) { closeTimeout = d }(closeTimeout)
	closeTimeout = 100 * time.Millisecond
	err := closeWithin(t, x)
	want := "index: close " + dir + ": the database did not finish closing within 100ms (badger's errors are in the log); its unflushed updates are lost"
	if err == nil || err.Error() != want {
		t.Fatalf("Close = %v, want %q", err, want)
	}
	// Once the directory can be written again, the abandoned close
	// finishes: it is not left running when the test ends.
	unlock()
	select {
	case err := <-x.closing:
		if err != nil && !errors.Is(err, os.ErrClosed) {
			t.Logf("the abandoned close ended with %v", err)
		}
	case <-time.After(time.Minute):
		t.Fatal("the abandoned close did not finish once the directory was writable")
	}
}
