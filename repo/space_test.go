package repo_test

import (
	"errors"
	"math/rand/v2"
	"os"
	"os/exec"
	"path/filepath"
	"runtime"
	"syscall"
	"testing"

	"github.com/cairnbackup/cairn/integration/testenv"
	"github.com/cairnbackup/cairn/repo"
	"github.com/cairnbackup/cairn/repo/blob"
	"github.com/cairnbackup/cairn/repo/pack"
	"github.com/cairnbackup/cairn/repo/repotest"
	"golang.org/x/sys/unix"
)

// Filling the repository's file system to the last byte killed the
// appliance with SIGBUS: badger writes through memory maps, and a mapped
// page with no room behind it is a fault, not an error (found by the
// torture suite's full-disk test). Pack writes now stop with "no space
// left on device" while the index's reserve is still free, and the
// repository keeps working: its snapshots list and load, and a commit of
// data already stored still succeeds.
func TestPacksLeaveRoomForTheIndex(t *testing.T) {
	testenv.RequireRoot(t, "the test mounts a tmpfs")
	disk := filepath.Join(t.TempDir(), "disk")
	os.Mkdir(disk, 0o700)
	if out, err := exec.Command("mount", "-t", "tmpfs", "-o", "size=48m", "tmpfs", disk).CombinedOutput(); err != nil {
		testenv.Missing(t, "mount tmpfs: %v %s", err, out)
	}
	t.Cleanup(func() { exec.Command("umount", "-l", disk).Run() })
	dir := filepath.Join(disk, "repo")
	if _, err := repo.Init(t.Context(), dir, repotest.Credentials(), repotest.Options()); err != nil {
		t.Fatal(err)
	}
	r := repotest.Open(t, dir)
	src := sampleTree(t)
	id := backupDir(t, r, src)
	s := r.NewSession()
	rng := rand.New(rand.NewPCG(1, 1))
	buf := make([]byte, 256<<10)
	var err error
	for i := 0; i < 1000 && err == nil; i++ {
		for j := range buf {
			buf[j] = byte(rng.Uint32())
		}
		_, _, err = s.SaveBlob(t.Context(), blob.Data, buf)
	}
	s.Abort()
	if !errors.Is(err, syscall.ENOSPC) {
		t.Fatalf("filling the disk: %v", err)
	}
	var st unix.Statfs_t
	unix.Statfs(dir, &st)
	if free := int64(st.Bavail) * int64(st.Bsize); free < repo.IndexReserve {
		t.Fatalf("%d bytes free after packs stopped, want at least %d", free, repo.IndexReserve)
	}
	t.Logf("packs stopped: %v", err)
	// The index still takes writes: a snapshot of data already stored.
	again := backupDir(t, r, src)
	restoreAndCompare(t, r, again, src)
	restoreAndCompare(t, r, id, src)
}

// Packs are recycled to spare the garbage collector, and a pack's buffers
// (and its writer's) grow to the largest blob it held: after a node sent
// the largest blobs the protocol allows, the appliance kept hundreds of
// MiB for good (found by the torture suite's hostile nodes, which measure
// its peak RSS). A pack that grew past the usual size is not recycled.
func TestLargeBlobBuffersAreNotKept(t *testing.T) {
	r := repotest.New(t)
	heap := func() uint64 {
		runtime.GC()
		runtime.GC()
		var ms runtime.MemStats
		runtime.ReadMemStats(&ms)
		return ms.HeapAlloc
	}
	before := heap()
	for i := range 3 {
		s := r.NewSession()
		big := make([]byte, 48<<20)
		big[0] = byte(i)
		h := blob.Handle{ID: blob.Hash(big), Type: blob.Data}
		if _, _, err := s.SavePrepared(t.Context(), h, pack.Raw, big, len(big), nil); err != nil {
			t.Fatal(err)
		}
		s.Abort()
	}
	if after := heap(); after > before+32<<20 {
		t.Fatalf("the heap grew from %d MiB to %d MiB after three 48 MiB blobs were stored", before>>20, after>>20)
	}
}
