package backup_test

import (
	"context"
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"sync/atomic"
	"syscall"
	"testing"
	"time"

	"github.com/cairnbackup/cairn/repo/backup"
	"github.com/cairnbackup/cairn/repo/blob"
	"github.com/cairnbackup/cairn/repo/repotest"
)

// failingUploader stores nothing after its first n blobs: the disk is
// full, or the appliance refused a blob.
type failingUploader struct {
	n     int64
	saved atomic.Int64
}

func (u *failingUploader) SaveBlob(_ context.Context, _ blob.Type, data []byte) (blob.ID, bool, error) {
	if u.saved.Add(1) > u.n {
		return blob.ID{}, false, fmt.Errorf("pack 0123abcd: write: %w", syscall.ENOSPC)
	}
	return blob.Hash(data), true, nil
}

func (u *failingUploader) Known(blob.Handle) (bool, error) { return false, nil }

// When storing fails part-way (a full disk, a refused push), the blob
// workers stop, but the walker kept waiting on its caller's context to
// hand them more files: cairn backup and cairn push hung forever on a
// full disk (found by the torture suite's full-disk test). The backup now
// fails with the storing error.
func TestBackupFailsWhenStoringFails(t *testing.T) {
	r := repotest.New(t)
	src := filepath.Join(t.TempDir(), "src")
	files := map[string]string{}
	for i := range 300 {
		files[fmt.Sprintf("d%d/f%d.txt", i%7, i)] = fmt.Sprintf("file %d with its own contents", i)
	}
	repotest.WriteTree(t, src, files)
	for _, n := range []int64{0, 1, 10, 100} {
		fds := openFDs(t)
		done := make(chan error, 1)
		go func() {
			_, err := backup.Run(context.Background(), &failingUploader{n: n}, []string{src}, opts(r))
			done <- err
		}()
		select {
		case err := <-done:
			if !errors.Is(err, syscall.ENOSPC) {
				t.Errorf("after %d blobs: %v, want the storing error", n, err)
			}
		case <-time.After(30 * time.Second):
			t.Fatalf("the backup hangs when storing fails after %d blobs", n)
		}
		// The walker opens files ahead of the file workers; those
		// still queued when the backup failed are closed.
		if now := openFDs(t); now != fds {
			t.Errorf("after %d blobs: %d descriptors open, %d before the backup", n, now, fds)
		}
	}
}

// openFDs counts this process's open file descriptors.
func openFDs(t *testing.T) int {
	t.Helper()
	ents, err := os.ReadDir("/proc/self/fd")
	if err != nil {
		t.Fatal(err)
	}
	return len(ents)
}
