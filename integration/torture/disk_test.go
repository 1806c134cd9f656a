package torture

import (
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"syscall"
	"testing"

	"github.com/cairnbackup/cairn/integration/apptest"
	"github.com/cairnbackup/cairn/integration/testenv"
)

// Full disk: the repository lives on a 64 MiB tmpfs. A node pushes ever
// more new data until the disk is full: that push must fail with a clear
// "no space left" error and leave no snapshot; the appliance must keep
// running and serving reads (listing, restores); another node's push
// must succeed once space is freed; every snapshot made before must
// restore bit-identical, before and after the appliance restarts; and
// no temporary file may be left behind.

// smallDisk mounts a tmpfs of size MiB at a new directory and unmounts
// it at cleanup. It needs root: without it the test is skipped, or fails
// under CI=true.
func smallDisk(t *testing.T, size int) string {
	t.Helper()
	testenv.RequireRoot(t, "the full-disk test mounts a tmpfs")
	dir := filepath.Join(t.TempDir(), "disk")
	if err := os.Mkdir(dir, 0o700); err != nil {
		t.Fatal(err)
	}
	if out, err := exec.Command("mount", "-t", "tmpfs", "-o", fmt.Sprintf("size=%dm,mode=0700", size), "tmpfs", dir).CombinedOutput(); err != nil {
		t.Fatalf("mount tmpfs: %v\n%s", err, out)
	}
	t.Cleanup(func() {
		if out, err := exec.Command("umount", "-l", dir).CombinedOutput(); err != nil {
			t.Errorf("umount %s: %v\n%s", dir, err, out)
		}
	})
	return dir
}

func freeBytes(dir string) int64 {
	var st syscall.Statfs_t
	syscall.Statfs(dir, &st)
	return int64(st.Bavail) * st.Bsize
}

func TestFullDisk(t *testing.T) {
	disk := smallDisk(t, 64)
	e := newEnv(t)
	// The repository, its key file and configuration on the small disk.
	e.repo = filepath.Join(disk, "repo")
	e.vars = []string{"CAIRN_REPO=" + e.repo, "TMPDIR=" + e.tmp}
	e.initRepo()
	lyra, vega := newNode(t, "lyra", "push, read"), newNode(t, "vega", "push, read")
	a := e.serve(nil, "", lyra, vega)

	type snap struct{ id, src, cp string }
	var acked []snap
	push := func(n *node, src string) (result, bool) {
		cp := filepath.Join(e.dir, fmt.Sprintf("copy%d", len(acked)))
		if out, err := exec.Command("cp", "-a", src, cp).CombinedOutput(); err != nil {
			t.Fatalf("cp: %v %s", err, out)
		}
		r := a.push(n, nil, nil, "--json", src)
		s, ok := summaryOf(r.stdout)
		if r.code == 0 && ok {
			acked = append(acked, snap{s.Snapshot, src, cp})
			return r, true
		}
		os.RemoveAll(cp)
		return r, false
	}
	lyraSrc := filepath.Join(e.dir, "lyra")
	newSource(t, lyraSrc, seed^0xd15c, smallSpec, 1<<20)
	vegaSrc := filepath.Join(e.dir, "vega")
	newSource(t, vegaSrc, seed^0xd15d, smallSpec, 1<<20)
	if r, ok := push(lyra, lyraSrc); !ok {
		t.Fatalf("lyra's first push: %s", r)
	}
	if r, ok := push(vega, vegaSrc); !ok {
		t.Fatalf("vega's first push: %s", r)
	}
	// Ballast the operator can delete to free space.
	ballast := filepath.Join(disk, "ballast")
	if err := os.WriteFile(ballast, make([]byte, 12<<20), 0o600); err != nil {
		t.Fatal(err)
	}

	// lyra pushes 6 MiB of new data at a time until the disk is full.
	var full result
	for i := 0; ; i++ {
		if i > 20 {
			t.Fatalf("the disk never filled up (%s free)", mib(freeBytes(disk)))
		}
		os.WriteFile(filepath.Join(lyraSrc, fmt.Sprintf("fill%d.bin", i)), randomBytes(seed+uint64(i), 6<<20), 0o644)
		r, ok := push(lyra, lyraSrc)
		if !ok {
			full = r
			break
		}
	}
	detected := strings.Contains(full.stderr, "no space left on device")
	if !detected || full.code != 1 {
		t.Errorf("the push that filled the disk: %s", full)
	}
	if a.Dead() {
		t.Fatalf("the appliance died when the disk filled up:\n%s", apptest.Tail(a.Log(), 30))
	}
	notes := []string{fmt.Sprintf("the push that filled the disk failed: %q", firstLine(full.stderr))}
	lost := 0
	verify := func(when string) {
		t.Helper()
		list, err := parseSnapshots(e.ok("snapshots", "--json"))
		if err != nil {
			t.Fatal(err)
		}
		for _, s := range acked {
			if _, ok := list[s.id]; !ok {
				t.Errorf("%s: snapshot %s is gone", when, s.id[:8])
				lost++
				continue
			}
			if d := e.restoreCompare(s.id, s.src, s.cp); len(d) > 0 {
				t.Errorf("%s: %s", when, strings.Join(d, "\n"))
				lost++
			}
		}
		if len(list) != len(acked) {
			t.Errorf("%s: %d snapshots listed, %d acknowledged", when, len(list), len(acked))
			lost++
		}
	}
	// Now fill every last byte, and keep using the appliance: reads, a
	// check (which records verification times in the index), a push of
	// nothing new (only index and snapshot writes), a drill (which
	// writes a report).
	stuffing := filepath.Join(disk, "stuffing")
	if f, err := os.Create(stuffing); err == nil {
		chunk := make([]byte, 64<<10)
		for {
			if _, err := f.Write(chunk); err != nil {
				break
			}
		}
		for {
			if _, err := f.Write(chunk[:512]); err != nil {
				break
			}
		}
		f.Close()
	}
	notes = append(notes, fmt.Sprintf("then filled to the last byte (%d bytes free)", freeBytes(disk)))
	verify("with the disk full")
	for _, args := range [][]string{{"check", "--read-data"}, {"drill", acked[0].id}, {"snapshots"}} {
		r := e.run(nil, nil, args...)
		if a.Dead() {
			t.Fatalf("the appliance died running %v on a full disk:\n%s\n%s", args, r, apptest.Tail(a.Log(), 30))
		}
		if r.code != 0 && !strings.Contains(r.stdout+r.stderr, "no space left on device") {
			t.Errorf("%v on a full disk: %s", args, r)
		}
	}
	if r, _ := push(lyra, lyraSrc); a.Dead() {
		t.Fatalf("the appliance died on a push of nothing new to a full disk:\n%s\n%s", r, apptest.Tail(a.Log(), 30))
	} else if r.code != 0 && !strings.Contains(r.stderr, "no space left on device") {
		t.Errorf("a push of nothing new to a full disk: %s", r)
	}
	os.Remove(stuffing)
	verify("with the disk nearly full")
	// vega cannot push either while full...
	os.WriteFile(filepath.Join(vegaSrc, "more.bin"), randomBytes(seed^7, 4<<20), 0o644)
	if r, ok := push(vega, vegaSrc); ok {
		notes = append(notes, "vega's push still fit")
	} else if !strings.Contains(r.stderr, "no space left on device") {
		t.Errorf("vega's push on a full disk: %s", r)
	}
	// ... until space is freed.
	os.Remove(ballast)
	if r, ok := push(vega, vegaSrc); !ok {
		t.Errorf("vega's push after space was freed: %s", r)
		lost++
	} else {
		notes = append(notes, "vega's push succeeded after space was freed")
	}
	if r := e.run(nil, nil, "check", "--read-data"); r.code != 0 {
		t.Errorf("check with the appliance running: %s", r)
		lost++
	}
	a.Stop()
	if left := e.leftovers(true); len(left) > 0 {
		t.Errorf("left behind: %v", left)
	}
	verify("after a restart")
	if r := e.run(nil, nil, "check", "--read-data"); r.code != 0 {
		t.Errorf("check after a restart: %s", r)
		lost++
	}
	notes = append(notes, fmt.Sprintf("%d snapshots restored bit-identical with the disk full and after a restart", len(acked)))
	d := 0
	if detected {
		d = 1
	}
	record("full disk (64 MiB tmpfs)", 1, d, min(lost, 1), strings.Join(notes, "; "))
}
