package integration

import (
	"os"
	"path/filepath"
	"strings"
	"syscall"
	"testing"

	"github.com/cairnbackup/cairn/repo/repotest/datagen"
	"golang.org/x/sys/unix"
)

// A generated tree with every file type and metadata kind restores
// identically, compared field by field; restore --verify-only agrees and
// then names a difference.
func TestRoundTripEveryKind(t *testing.T) {
	e := newEnv(t)
	e.ok("init")
	src := filepath.Join(e.dir, "src")
	if _, err := datagen.Generate(src, datagen.Small, 42); err != nil {
		t.Fatal(err)
	}
	if os.Geteuid() == 0 {
		if err := unix.Mknod(filepath.Join(src, "null"), unix.S_IFCHR|0o640, int(unix.Mkdev(1, 3))); err != nil {
			t.Fatal(err)
		}
		if err := unix.Mknod(filepath.Join(src, "loop"), unix.S_IFBLK|0o600, int(unix.Mkdev(7, 200))); err != nil {
			t.Fatal(err)
		}
		os.Lchown(filepath.Join(src, "null"), 123, 456)
	}
	want, err := datagen.Walk(src)
	if err != nil {
		t.Fatal(err)
	}
	bk := e.backupJSON("--node", "lyra", src)
	if len(bk.Summary.Warnings) != 0 {
		t.Fatalf("warnings: %v", bk.Summary.Warnings)
	}
	dst := filepath.Join(e.dir, "dst")
	e.ok("restore", "latest:"+src, "--target", dst)
	got, err := datagen.Walk(filepath.Join(dst, "src"))
	if err != nil {
		t.Fatal(err)
	}
	if d := datagen.Diff(want, got, true); len(d) != 0 {
		t.Fatalf("restored tree differs:\n%s", strings.Join(d, "\n"))
	}
	// Sparse files come back sparse.
	for _, w := range want {
		if w.Type != "file" || w.Size < 32<<20 {
			continue
		}
		var a, b syscall.Stat_t
		syscall.Stat(filepath.Join(src, w.Path), &a)
		syscall.Stat(filepath.Join(dst, "src", w.Path), &b)
		if a.Blocks*512 < w.Size/2 && b.Blocks > 2*a.Blocks+64 {
			t.Errorf("%s: restored with %d blocks, the source has %d", w.Path, b.Blocks, a.Blocks)
		}
	}
	if out := e.ok("restore", "--verify-only", "latest:"+src, "--target", dst); !strings.HasSuffix(out, "matches snapshot "+bk.Snapshot[:8]+"\n") {
		t.Fatalf("verify-only: %q", out)
	}
	// Change one file: verify-only names it, exit code 4.
	var victim string
	for _, w := range want {
		if w.Type == "file" && w.Size > 0 && w.Nlink == 1 {
			victim = w.Path
			break
		}
	}
	p := filepath.Join(dst, "src", victim)
	fi, _ := os.Stat(p)
	f, _ := os.OpenFile(p, os.O_WRONLY, 0)
	f.WriteAt([]byte{'#'}, 0)
	f.Close()
	os.Chtimes(p, fi.ModTime(), fi.ModTime())
	r := e.run(nil, "restore", "--verify-only", "latest:"+src, "--target", dst)
	changed, _ := os.ReadFile(p)
	var recorded string
	for _, w := range want {
		if w.Path == victim {
			recorded = w.SHA256
		}
	}
	wantOut := "src/" + victim + ": contents hash to " + repoHash(changed) + ", the snapshot recorded " + recorded + "\n" +
		"1 difference between " + dst + " and snapshot " + bk.Snapshot[:8] + "\n"
	if r.code != 4 || r.stdout != wantOut {
		t.Fatalf("verify-only after a change: exit %d\n%q\nwant %q\n%s", r.code, r.stdout, wantOut, r.stderr)
	}
}

// A second backup of an unchanged tree of about 1 GiB stores under 1 MiB
// and reads no file contents.
func TestDedupUnchangedGiB(t *testing.T) {
	if testing.Short() {
		t.Skip("writes 1 GiB")
	}
	e := newEnv(t)
	e.ok("init")
	src := filepath.Join(e.dir, "src")
	spec := datagen.Spec{SmallFiles: 3000, Dumps: []int64{100 << 20}, RandomFiles: []int64{400 << 20, 300 << 20, 150 << 20, 64 << 20}, Symlinks: 10, Hardlinks: 2}
	st, err := datagen.Generate(src, spec, 7)
	if err != nil {
		t.Fatal(err)
	}
	if st.Bytes < 1<<30 {
		t.Fatalf("generated %d bytes, want at least 1 GiB", st.Bytes)
	}
	first := e.backupJSON("--node", "lyra", src)
	if first.Summary.BytesRead != uint64(st.Bytes) {
		t.Fatalf("first backup read %d of %d bytes", first.Summary.BytesRead, st.Bytes)
	}
	second := e.backupJSON("--node", "lyra", src)
	if second.Summary.BytesRead != 0 || second.Summary.FilesUnchanged != first.Summary.Files {
		t.Fatalf("unchanged backup: %+v", second.Summary)
	}
	if second.Summary.BytesAdded >= 1<<20 {
		t.Fatalf("unchanged backup added %d bytes", second.Summary.BytesAdded)
	}
}
