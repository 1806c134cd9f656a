package integration

import (
	"bufio"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"strings"
	"testing"

	"github.com/cairnbackup/cairn/integration/testenv"
)

// A restore costs a handful of system calls per file, whatever the
// depth of the tree: the file is created by name in its directory's
// descriptor, its metadata set through its own descriptor, and the packs
// it is read from stay open. Restoring 2000 files six directories deep
// once made about 40 calls per file that walked paths or reopened packs
// (an openat and a close per directory of the path for each of create,
// chown, chmod and chtimes; an open, fstat, fcntl, epoll_ctl and close
// per chunk). Counted with strace -f -c on the real binary.
func TestRestoreSyscallsPerFile(t *testing.T) {
	strace := testenv.RequireProgram(t, "strace", "strace")
	e := newEnv(t)
	e.ok("init")
	src := filepath.Join(e.dir, "src")
	deep := filepath.Join(src, "a", "b", "c", "d", "e", "f")
	const files = 2000
	for i := range files {
		dir := deep
		if i%2 == 1 {
			dir = filepath.Join(src, "a", "b", "c")
		}
		if err := os.MkdirAll(dir, 0o755); err != nil {
			t.Fatal(err)
		}
		if err := os.WriteFile(filepath.Join(dir, fmt.Sprintf("file%04d", i)), []byte(fmt.Sprintf("contents of file %d\n", i)), 0o644); err != nil {
			t.Fatal(err)
		}
	}
	e.ok("backup", src)
	dst := filepath.Join(e.dir, "dst")
	out := filepath.Join(e.dir, "strace.txt")
	cmd := exec.Command(strace, "-f", "-c", "-o", out, cairnBin, "restore", "latest:"+src, "--target", dst)
	cmd.Env = append(cleanEnviron(), e.vars...)
	if b, err := cmd.CombinedOutput(); err != nil {
		t.Fatalf("strace cairn restore: %v\n%s", err, b)
	}
	calls := straceCounts(t, out)
	// The calls that walk paths, open packs or set metadata by name.
	perPath := []string{"openat", "close", "newfstatat", "fstat", "fcntl", "epoll_ctl", "readlinkat",
		"fchownat", "fchmodat", "fchmodat2", "utimensat", "fchown", "fchmod", "ftruncate", "mkdirat", "unlinkat"}
	total := 0
	var seen []string
	for _, name := range perPath {
		total += calls[name]
		if calls[name] > 0 {
			seen = append(seen, fmt.Sprintf("%s %d", name, calls[name]))
		}
	}
	// Per file: openat, fchown (as root), fchmod, utimensat, close. The
	// repository's own files (config, keys, index) take a few hundred.
	const perFile, opening = 5, 600
	t.Logf("restoring %d files: %s", files, strings.Join(seen, ", "))
	if total > perFile*files+opening {
		t.Errorf("restoring %d files made %d calls that walk paths, open packs or set metadata (more than %d per file and %d to open the repository): %s",
			files, total, perFile, opening, strings.Join(seen, ", "))
	}
	if got := calls["openat"]; got > files+opening/2 {
		t.Errorf("restoring %d files made %d openat calls, more than one per file and %d to open the repository", files, got, opening/2)
	}
	e.ok("restore", "--verify-only", "latest:"+src, "--target", dst)
}

// straceCounts reads the table of strace -c: calls per system call.
func straceCounts(t *testing.T, file string) map[string]int {
	t.Helper()
	f, err := os.Open(file)
	if err != nil {
		t.Fatal(err)
	}
	defer f.Close()
	calls := map[string]int{}
	sc := bufio.NewScanner(f)
	for sc.Scan() {
		fields := strings.Fields(sc.Text())
		if len(fields) < 5 || fields[len(fields)-1] == "total" {
			continue
		}
		n, err := strconv.Atoi(fields[3])
		if err != nil {
			continue
		}
		calls[fields[len(fields)-1]] = n
	}
	if len(calls) == 0 {
		t.Fatalf("no system calls counted in %s", file)
	}
	return calls
}
