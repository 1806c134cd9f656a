package integration

import (
	"bytes"
	"os"
	"os/exec"
	"path/filepath"
	"slices"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/cairnbackup/cairn/integration/testenv"
	"github.com/cairnbackup/cairn/repo/repotest"
)

func TestStdinAndDump(t *testing.T) {
	e := newEnv(t)
	e.ok("init")
	data := strings.Repeat("INSERT INTO t VALUES (42, 'x');\n", 50000)
	cmd := exec.Command(cairnBin, "backup", "--json", "--node", "db", "--plan", "postgres", "--stdin", "--name", "db.sql")
	cmd.Env = append(cleanEnviron(), e.vars...)
	cmd.Stdin = strings.NewReader(data)
	out, err := cmd.Output()
	if err != nil {
		t.Fatalf("%v: %s", err, out)
	}
	bk := parseBackupJSON(t, string(out))
	if bk.Summary.Bytes != uint64(len(data)) || bk.Summary.Files != 1 {
		t.Fatalf("summary %+v", bk.Summary)
	}
	list := e.snapshots()
	if !slices.Equal(list[0].Paths, []string{"/db.sql"}) {
		t.Fatalf("paths %v", list[0].Paths)
	}
	dst := filepath.Join(e.dir, "dst")
	e.ok("restore", "latest", "--target", dst)
	if b, _ := os.ReadFile(filepath.Join(dst, "db.sql")); string(b) != data {
		t.Fatalf("restored %d bytes, want %d", len(b), len(data))
	}
}

// A tar stream from GNU tar (PAX format, so times keep nanoseconds) comes
// back identical.
func TestTarIngest(t *testing.T) {
	tarBin := testenv.RequireProgram(t, "tar", "tar")
	e := newEnv(t)
	e.ok("init")
	src := filepath.Join(e.dir, "src")
	writeSource(t, src)
	os.Link(filepath.Join(src, "etc", "service.yaml"), filepath.Join(src, "etc", "service.hardlink"))
	tarCmd := exec.Command(tarBin, "--format=posix", "-C", src, "-c", ".")
	back := exec.Command(cairnBin, "backup", "--node", "vol", "--tar")
	back.Env = append(cleanEnviron(), e.vars...)
	pipe, _ := tarCmd.StdoutPipe()
	back.Stdin = pipe
	var backOut strings.Builder
	back.Stdout, back.Stderr = &backOut, &backOut
	if err := tarCmd.Start(); err != nil {
		t.Fatal(err)
	}
	if err := back.Run(); err != nil {
		t.Fatalf("backup --tar: %v\n%s", err, backOut.String())
	}
	tarCmd.Wait()
	dst := filepath.Join(e.dir, "dst")
	e.ok("restore", "latest", "--target", dst)
	// The root directory itself is not in the stream's tree.
	os.Chtimes(dst, time0(src), time0(src))
	os.Chmod(dst, mode0(src))
	repotest.AssertSameTree(t, src, dst)
	var a, b syscall.Stat_t
	syscall.Stat(filepath.Join(dst, "etc", "service.yaml"), &a)
	syscall.Stat(filepath.Join(dst, "etc", "service.hardlink"), &b)
	if a.Ino != b.Ino {
		t.Fatal("the hardlink was not restored as a link")
	}
}

func TestExcludeFlagsRecorded(t *testing.T) {
	e := newEnv(t)
	e.ok("init")
	src := filepath.Join(e.dir, "src")
	repotest.WriteTree(t, src, map[string]string{"a.log": "x", "b.txt": "y", "tmp/c": "z"})
	ef := filepath.Join(e.dir, "excludes")
	os.WriteFile(ef, []byte("# build output\ntmp/\n"), 0o644)
	bk := e.backupJSON("--node", "n", "--exclude", "*.log", "--exclude-file", ef, src)
	var got []string
	for _, x := range bk.Excludes {
		got = append(got, x.Rule)
	}
	want := []string{`--exclude "*.log"`, "exclude-file " + ef + `:2 "tmp/"`}
	if !slices.Equal(got, want) {
		t.Fatalf("excludes %v, want %v", got, want)
	}
	out := e.ok("ls", "latest:"+src)
	if strings.Contains(out, "a.log") || strings.Contains(out, src+"/tmp") || !strings.Contains(out, "b.txt") {
		t.Fatalf("ls:\n%s", out)
	}
}

// --one-file-system stops at a mount point inside the tree (a tmpfs the
// test mounts).
func TestOneFileSystem(t *testing.T) {
	testenv.RequireRoot(t, "mounts a tmpfs")
	e := newEnv(t)
	e.ok("init")
	src := filepath.Join(e.dir, "src")
	repotest.WriteTree(t, src, map[string]string{"keep": "k", "mnt/": ""})
	mnt := filepath.Join(src, "mnt")
	if err := syscall.Mount("tmpfs", mnt, "tmpfs", 0, "size=1m"); err != nil {
		t.Fatalf("mount tmpfs: %v", err)
	}
	t.Cleanup(func() { syscall.Unmount(mnt, syscall.MNT_DETACH) })
	os.WriteFile(filepath.Join(mnt, "other-fs"), []byte("x"), 0o644)
	bk := e.backupJSON("--node", "n", "-x", src)
	if len(bk.Excludes) != 1 || bk.Excludes[0].Rule != "--one-file-system" || bk.Excludes[0].Count != 1 {
		t.Fatalf("excludes %+v", bk.Excludes)
	}
	out := e.ok("ls", "latest:"+src)
	if strings.Contains(out, "other-fs") || !strings.Contains(out, src+"/mnt\n") {
		t.Fatalf("ls:\n%s", out)
	}
}

func TestRestoreIncludeExclude(t *testing.T) {
	e := newEnv(t)
	e.ok("init")
	src := filepath.Join(e.dir, "src")
	repotest.WriteTree(t, src, map[string]string{"db/a.sql": "a", "db/b.sql": "b", "db/notes.txt": "n", "etc/x.conf": "c"})
	e.ok("backup", "--node", "n", src)
	dst := filepath.Join(e.dir, "dst")
	e.ok("restore", "latest:"+src, "--target", dst, "--include", "*.sql", "--exclude", "b.sql")
	var got []string
	filepath.Walk(dst, func(p string, fi os.FileInfo, err error) error {
		if err == nil && !fi.IsDir() {
			rel, _ := filepath.Rel(dst, p)
			got = append(got, rel)
		}
		return nil
	})
	if !slices.Equal(got, []string{"src/db/a.sql"}) {
		t.Fatalf("restored %v", got)
	}
}

func time0(p string) time.Time {
	fi, _ := os.Stat(p)
	return fi.ModTime()
}

func mode0(p string) os.FileMode {
	fi, _ := os.Stat(p)
	return fi.Mode().Perm()
}

// backup --tar --name NAME stores the archive's tree under /NAME, as
// push --tar --name does.
func TestTarIngestName(t *testing.T) {
	tarBin := testenv.RequireProgram(t, "tar", "tar")
	e := newEnv(t)
	e.ok("init")
	src := filepath.Join(e.dir, "src")
	repotest.WriteTree(t, src, map[string]string{"data/app.db": "rows\n"})
	tarOut, err := exec.Command(tarBin, "-C", src, "-c", ".").Output()
	if err != nil {
		t.Fatal(err)
	}
	back := exec.Command(cairnBin, "backup", "--node", "vol", "--tar", "--name", "app-volume")
	back.Env = append(cleanEnviron(), e.vars...)
	back.Stdin = bytes.NewReader(tarOut)
	if out, err := back.CombinedOutput(); err != nil {
		t.Fatalf("backup --tar --name: %v\n%s", err, out)
	}
	list := e.snapshots()
	if len(list) != 1 || !slices.Equal(list[0].Paths, []string{"/app-volume"}) {
		t.Fatalf("snapshots: %+v", list)
	}
	if got := e.ok("dump", "latest:/app-volume/data/app.db"); got != "rows\n" {
		t.Fatalf("dump: %q", got)
	}
}
