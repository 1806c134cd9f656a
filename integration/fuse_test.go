package integration

import (
	"bufio"
	"bytes"
	"crypto/sha256"
	"encoding/hex"
	"encoding/json"
	"errors"
	"fmt"
	"io/fs"
	"os"
	"os/exec"
	"path/filepath"
	"regexp"
	"slices"
	"strconv"
	"strings"
	"sync"
	"syscall"
	"testing"
	"time"

	"github.com/cairnbackup/cairn/integration/testenv"
	"github.com/cairnbackup/cairn/repo/repotest/datagen"
	"golang.org/x/sys/unix"
)

// requireFUSE skips a test that mounts unless it runs as root on a
// machine with /dev/fuse; under CI=true it fails instead.
func requireFUSE(t testing.TB) {
	t.Helper()
	testenv.RequireRoot(t, "FUSE tests mount with mount(2)")
	if _, err := os.Stat("/dev/fuse"); err != nil {
		testenv.Missing(t, "FUSE tests need /dev/fuse: %v", err)
	}
}

// lockedBuffer collects a child's output while the test reads it.
type lockedBuffer struct {
	mu sync.Mutex
	b  bytes.Buffer
}

func (l *lockedBuffer) Write(p []byte) (int, error) {
	l.mu.Lock()
	defer l.mu.Unlock()
	return l.b.Write(p)
}

func (l *lockedBuffer) String() string {
	l.mu.Lock()
	defer l.mu.Unlock()
	return l.b.String()
}

// mountProc is a `cairn mount` child process serving a mount (or, with
// an appliance running, the client whose command runs inside it).
type mountProc struct {
	t      testing.TB
	dir    string
	cmd    *exec.Cmd
	ready  string // the ready line
	stdout lockedBuffer
	stderr lockedBuffer
	exited chan struct{}
	once   sync.Once
}

// mount starts `cairn mount DIR args...` and returns once it printed
// its ready line. At cleanup the process gets SIGTERM (a stuck mount is
// killed and detached with umount -l), must exit 0, and DIR must no
// longer be mounted.
func (e *env) mount(dir string, args ...string) *mountProc {
	t := e.t
	t.Helper()
	return startMount(t, append(cleanEnviron(), e.vars...), dir, args...)
}

func startMount(t testing.TB, environ []string, dir string, args ...string) *mountProc {
	t.Helper()
	cmd := exec.Command(cairnBin, append([]string{"mount", dir}, args...)...)
	cmd.Env = environ
	return startMountCmd(t, cmd, dir)
}

// startMountCmd is startMount for a command that runs cairn mount DIR.
func startMountCmd(t testing.TB, cmd *exec.Cmd, dir string) *mountProc {
	t.Helper()
	m := &mountProc{t: t, dir: dir, exited: make(chan struct{}), cmd: cmd}
	m.cmd.Stderr = &m.stderr
	// Should the test binary die, the mount goes with it.
	m.cmd.SysProcAttr = &syscall.SysProcAttr{Pdeathsig: syscall.SIGTERM}
	out, err := m.cmd.StdoutPipe()
	if err != nil {
		t.Fatal(err)
	}
	if err := m.cmd.Start(); err != nil {
		t.Fatal(err)
	}
	lines := make(chan string, 16)
	go func() {
		sc := bufio.NewScanner(out)
		for sc.Scan() {
			m.stdout.Write([]byte(sc.Text() + "\n"))
			select {
			case lines <- sc.Text():
			default:
			}
		}
		close(lines)
		m.cmd.Wait()
		close(m.exited)
	}()
	t.Cleanup(func() { m.stop() })
	timeout := time.After(60 * time.Second)
	for {
		select {
		case line, ok := <-lines:
			if !ok {
				<-m.exited
				t.Fatalf("cairn mount exited (%v) before it was ready:\n%s", m.cmd.ProcessState, m.stderr.String())
			}
			if strings.HasPrefix(line, "mounted ") {
				m.ready = line
				return m
			}
		case <-timeout:
			t.Fatalf("cairn mount not ready after 60 s:\n%s", m.stderr.String())
		}
	}
}

// signal sends sig to the mount process and waits for it to exit, at
// most 30 s; then it must have exited 0 and DIR must be unmounted.
func (m *mountProc) signal(sig os.Signal) {
	m.t.Helper()
	m.once.Do(func() {
		m.cmd.Process.Signal(sig)
		select {
		case <-m.exited:
		case <-time.After(30 * time.Second):
			m.cmd.Process.Kill()
			<-m.exited
			exec.Command("umount", "-l", m.dir).Run()
			m.t.Errorf("cairn mount did not stop on %v:\n%s", sig, m.stderr.String())
			return
		}
		if code := m.cmd.ProcessState.ExitCode(); code != 0 {
			m.t.Errorf("cairn mount exited %d on %v:\n%s", code, sig, m.stderr.String())
		}
		if isMounted(m.dir) {
			exec.Command("umount", "-l", m.dir).Run()
			m.t.Errorf("%s still mounted after cairn mount exited", m.dir)
		}
	})
}

func (m *mountProc) stop() { m.signal(syscall.SIGTERM) }

// isMounted reports whether dir is a mount point in /proc/mounts.
func isMounted(dir string) bool {
	b, err := os.ReadFile("/proc/mounts")
	if err != nil {
		return false
	}
	for _, line := range strings.Split(string(b), "\n") {
		if f := strings.Fields(line); len(f) > 2 && unescapeMount(f[1]) == dir {
			return true
		}
	}
	return false
}

// snapshotInfo is what the tests need of snapshots --json.
type snapshotInfo struct {
	ID   string    `json:"id"`
	Time time.Time `json:"time"`
	Node string    `json:"node"`
	Plan string    `json:"plan"`
	Tags []string  `json:"tags"`
}

func (e *env) snapshotInfos() []snapshotInfo {
	e.t.Helper()
	var list []snapshotInfo
	if err := json.Unmarshal([]byte(e.ok("snapshots", "--json")), &list); err != nil {
		e.t.Fatal(err)
	}
	return list
}

// snapDir is the mounted directory of a snapshot (the first of its
// second: the tests make their snapshots at least a second apart or
// expect the suffix explicitly).
func snapDir(mnt string, s snapshotInfo) string {
	plan := s.Plan
	if plan == "" {
		plan = "@none"
	}
	return filepath.Join(mnt, "nodes", s.Node, plan, s.Time.UTC().Format(time.RFC3339))
}

// addDatabaseAndGit puts a SQLite database made by the sqlite3 program
// and a git repository with two commits into dir.
func addDatabaseAndGit(t *testing.T, dir string) {
	sqlite := testenv.RequireProgram(t, "sqlite3", "sqlite3")
	git := testenv.RequireProgram(t, "git", "git")
	app := filepath.Join(dir, "app")
	os.MkdirAll(app, 0o755)
	run := func(name string, args ...string) {
		t.Helper()
		cmd := exec.Command(name, args...)
		cmd.Env = append(cleanEnviron(), "GIT_CONFIG_NOSYSTEM=1", "HOME="+t.TempDir(),
			"GIT_AUTHOR_NAME=t", "GIT_AUTHOR_EMAIL=t@example.org", "GIT_COMMITTER_NAME=t", "GIT_COMMITTER_EMAIL=t@example.org")
		if out, err := cmd.CombinedOutput(); err != nil {
			t.Fatalf("%s %v: %v\n%s", name, args, err, out)
		}
	}
	run(sqlite, filepath.Join(app, "app.db"), `CREATE TABLE readings(id INTEGER PRIMARY KEY, sensor TEXT, value REAL, at TEXT);
WITH RECURSIVE n(i) AS (SELECT 1 UNION ALL SELECT i+1 FROM n WHERE i < 20000)
INSERT INTO readings(sensor, value, at) SELECT 'sensor-' || (i % 17), i * 0.25, datetime(1700000000 + i * 60, 'unixepoch') FROM n;
CREATE INDEX readings_sensor ON readings(sensor);`)
	repo := filepath.Join(dir, "repo")
	run(git, "init", "-q", "-b", "main", repo)
	repotestWrite(t, repo, map[string]string{"README.md": "# demo\n", "src/main.go": "package main\n\nfunc main() {}\n"})
	run(git, "-C", repo, "add", ".")
	run(git, "-C", repo, "commit", "-q", "-m", "first")
	repotestWrite(t, repo, map[string]string{"src/util.go": "package main\n\nfunc util() int { return 42 }\n"})
	run(git, "-C", repo, "add", ".")
	run(git, "-C", repo, "commit", "-q", "-m", "second")
	run(git, "-C", repo, "gc", "-q") // a pack and an index, as real repositories have
}

// A generated tree with every kind of entry, a SQLite database and a git
// repository is, through the mount, exactly what was backed up: types,
// modes, sizes, times, symlink targets, contents, link counts, xattrs
// and hardlink groups; each file answers getxattr user.cairn.sha256
// with its SHA-256, which listxattr leaves out (so copies do not get
// it); inode numbers are stable and shared by hardlinks; diff -r,
// sqlite3, git fsck, tar, rsync and cp -a work on it.
func TestFUSESnapshotMatchesSource(t *testing.T) {
	requireFUSE(t)
	e := newEnv(t)
	e.ok("init")
	src := filepath.Join(e.dir, "src")
	if _, err := datagen.Generate(src, datagen.Small, 42); err != nil {
		t.Fatal(err)
	}
	addDatabaseAndGit(t, src)
	if err := unix.Mknod(filepath.Join(src, "null"), unix.S_IFCHR|0o640, int(unix.Mkdev(1, 3))); err != nil {
		t.Fatal(err)
	}
	if err := unix.Mknod(filepath.Join(src, "loop"), unix.S_IFBLK|0o600, int(unix.Mkdev(7, 200))); err != nil {
		t.Fatal(err)
	}
	// Mode 0000, as /etc/shadow has on some systems.
	if err := os.WriteFile(filepath.Join(src, "shadow"), []byte("root:*:19000::::::\n"), 0); err != nil {
		t.Fatal(err)
	}
	os.Chmod(filepath.Join(src, "shadow"), 0)
	os.Lchown(filepath.Join(src, "null"), 123, 456)
	os.Lchown(filepath.Join(src, "app", "app.db"), 1000, 1000)
	want, err := datagen.Walk(src)
	if err != nil {
		t.Fatal(err)
	}
	e.ok("backup", "--node", "lyra", "--plan", "files", "--tag", "daily", src)
	sn := e.snapshotInfos()[0]

	mnt := t.TempDir()
	m := e.mount(mnt)
	if wantLine := "mounted 1 snapshots at " + mnt + " (read-only); unmount with cairn umount " + mnt + " or ^C"; m.ready != wantLine {
		t.Fatalf("ready line %q\nwant %q", m.ready, wantLine)
	}
	root := filepath.Join(snapDir(mnt, sn), src)
	got, err := datagen.Walk(root)
	if err != nil {
		t.Fatal(err)
	}
	files := 0
	for i := range got {
		g := &got[i]
		if g.Type == "file" {
			files++
			buf := make([]byte, 64)
			n, err := unix.Lgetxattr(filepath.Join(root, g.Path), "user.cairn.sha256", buf)
			if err != nil || string(buf[:n]) != g.SHA256 {
				t.Errorf("%s: user.cairn.sha256 %q (%v), contents hash to %s", g.Path, buf[:max(n, 0)], err, g.SHA256)
			}
		}
		if _, listed := g.Xattrs["user.cairn.sha256"]; listed {
			t.Errorf("%s: listxattr lists user.cairn.sha256", g.Path)
		}
	}
	if files < 300 {
		t.Fatalf("only %d files in the mount", files)
	}
	if d := datagen.Diff(want, got, true); len(d) != 0 {
		t.Fatalf("the mounted snapshot differs from the source:\n%s", strings.Join(d, "\n"))
	}

	// Owners and device numbers (Walk does not compare them).
	for _, p := range []string{"null", "loop", "app/app.db", "special", "shadow"} {
		var a, b unix.Stat_t
		unix.Lstat(filepath.Join(src, p), &a)
		unix.Lstat(filepath.Join(root, p), &b)
		if a.Uid != b.Uid || a.Gid != b.Gid || a.Rdev != b.Rdev || a.Mode != b.Mode {
			t.Errorf("%s: uid %d gid %d rdev %#x mode %o, the source has %d %d %#x %o", p, b.Uid, b.Gid, b.Rdev, b.Mode, a.Uid, a.Gid, a.Rdev, a.Mode)
		}
	}

	// Hardlinks share an inode; other files do not; inodes are stable.
	byInode := map[uint64][]string{}
	for _, g := range got {
		if g.Type == "file" {
			byInode[g.Inode] = append(byInode[g.Inode], g.Path)
		}
	}
	groups := 0
	for _, w := range want {
		if w.Type != "file" || w.Nlink < 2 {
			continue
		}
		var st unix.Stat_t
		unix.Lstat(filepath.Join(root, w.Path), &st)
		if len(byInode[st.Ino]) < 2 {
			t.Errorf("%s: hardlinked in the source, alone with inode %d in the mount", w.Path, st.Ino)
		}
		groups++
	}
	if groups == 0 {
		t.Fatal("no hardlinks in the generated tree")
	}
	for _, g := range got {
		var st unix.Stat_t
		if err := unix.Lstat(filepath.Join(root, g.Path), &st); err != nil || st.Ino != g.Inode {
			t.Fatalf("%s: inode %d, earlier %d (%v)", g.Path, st.Ino, g.Inode, err)
		}
	}
	// The same snapshot through its snapshots/<id> link: the same inodes.
	var viaLink, direct unix.Stat_t
	unix.Stat(filepath.Join(mnt, "snapshots", sn.ID[:8], src, "app", "app.db"), &viaLink)
	unix.Stat(filepath.Join(root, "app", "app.db"), &direct)
	if viaLink.Ino != direct.Ino || direct.Ino == 0 {
		t.Errorf("inode through snapshots/: %d, directly: %d", viaLink.Ino, direct.Ino)
	}
	// Sparse files are sparse: du counts only the stored bytes.
	for _, w := range want {
		if w.Type != "file" || w.Size < 32<<20 {
			continue
		}
		var a, b unix.Stat_t
		unix.Stat(filepath.Join(src, w.Path), &a)
		unix.Stat(filepath.Join(root, w.Path), &b)
		if a.Blocks*512 < w.Size/2 && b.Blocks*512 > w.Size/2 {
			t.Errorf("%s: %d blocks in the mount, %d in the source", w.Path, b.Blocks, a.Blocks)
		}
	}

	t.Run("pread-and-holes", func(t *testing.T) {
		// Reads anywhere, without reading from the start; holes found
		// by SEEK_HOLE and read as zeros.
		for _, w := range want {
			if w.Type != "file" || w.Size < 1<<20 {
				continue
			}
			a, _ := os.Open(filepath.Join(src, w.Path))
			b, _ := os.Open(filepath.Join(root, w.Path))
			for _, off := range []int64{w.Size - 1, w.Size - 5000, w.Size / 2, w.Size/3 + 7, 1 << 19, 0} {
				x, y := make([]byte, 4096), make([]byte, 4096)
				n1, _ := a.ReadAt(x, off)
				n2, err := b.ReadAt(y, off)
				if n1 != n2 || !bytes.Equal(x[:n1], y[:n2]) {
					t.Errorf("%s: pread at %d: %d bytes (%v), the source gives %d", w.Path, off, n2, err, n1)
				}
			}
			hole, err := unix.Seek(int(b.Fd()), 0, unix.SEEK_HOLE)
			var st unix.Stat_t
			unix.Fstat(int(a.Fd()), &st)
			if sparse := st.Blocks*512 < w.Size/2; err != nil || sparse != (hole < w.Size) {
				t.Errorf("%s: SEEK_HOLE at %d (%v) of %d; the source has %d blocks", w.Path, hole, err, w.Size, st.Blocks)
			}
			a.Close()
			b.Close()
		}
	})
	t.Run("diff", func(t *testing.T) {
		out, err := exec.Command(testenv.RequireProgram(t, "diff", "diffutils"), "-r", "--no-dereference", src, root).CombinedOutput()
		if err != nil {
			// diff compares symlinks by target and reads no FIFOs: it only
			// names them.
			for _, line := range strings.Split(strings.TrimSpace(string(out)), "\n") {
				if !regexp.MustCompile(`^File .* is a fifo while file .* is a fifo$`).MatchString(line) {
					t.Fatalf("diff -r: %v\n%s", err, out)
				}
			}
		}
	})
	t.Run("sha256sum", func(t *testing.T) {
		var paths []string
		for _, g := range got {
			if g.Type == "file" {
				paths = append(paths, filepath.Join(root, g.Path))
			}
		}
		out, err := exec.Command(testenv.RequireProgram(t, "sha256sum", "coreutils"), paths...).Output()
		if err != nil {
			t.Fatal(err)
		}
		sums := strings.Split(strings.TrimSpace(string(out)), "\n")
		if len(sums) != len(paths) {
			t.Fatalf("%d sums for %d files", len(sums), len(paths))
		}
		i := 0
		for _, g := range got {
			if g.Type == "file" {
				if sum, _, _ := strings.Cut(strings.TrimPrefix(sums[i], `\`), " "); sum != g.SHA256 {
					t.Errorf("%s: sha256sum says %s", g.Path, sum)
				}
				i++
			}
		}
	})
	t.Run("sqlite", func(t *testing.T) {
		out, err := exec.Command(testenv.RequireProgram(t, "sqlite3", "sqlite3"), filepath.Join(root, "app", "app.db"), "PRAGMA integrity_check; SELECT count(*) FROM readings;").CombinedOutput()
		if err != nil || string(out) != "ok\n20000\n" {
			t.Fatalf("sqlite3: %v\n%s", err, out)
		}
	})
	t.Run("git", func(t *testing.T) {
		cmd := exec.Command(testenv.RequireProgram(t, "git", "git"), "-c", "safe.directory=*", "-C", filepath.Join(root, "repo"), "fsck", "--full", "--strict")
		cmd.Env = append(cleanEnviron(), "GIT_CONFIG_NOSYSTEM=1", "HOME="+t.TempDir())
		if out, err := cmd.CombinedOutput(); err != nil {
			t.Fatalf("git fsck: %v\n%s", err, out)
		}
		cmd = exec.Command("git", "-c", "safe.directory=*", "-C", filepath.Join(root, "repo"), "log", "--format=%s")
		cmd.Env = append(cleanEnviron(), "GIT_CONFIG_NOSYSTEM=1", "HOME="+t.TempDir())
		if out, err := cmd.Output(); err != nil || string(out) != "second\nfirst\n" {
			t.Fatalf("git log: %v %q", err, out)
		}
	})
	t.Run("tar", func(t *testing.T) {
		archive := filepath.Join(t.TempDir(), "snap.tar")
		if out, err := exec.Command(testenv.RequireProgram(t, "tar", "tar"), "--format=posix", "--xattrs", "--sparse", "-C", root, "-cf", archive, ".").CombinedOutput(); err != nil {
			t.Fatalf("tar c: %v\n%s", err, out)
		}
		dst := t.TempDir()
		if out, err := exec.Command("tar", "--xattrs", "--xattrs-include=user.*", "-C", dst, "-xpf", archive).CombinedOutput(); err != nil {
			t.Fatalf("tar x: %v\n%s", err, out)
		}
		back := walk(t, dst)
		// tar keeps contents, modes, targets, mtimes, xattrs and
		// hardlinks; the root directory is restored by tar -C as is.
		if d := datagen.Diff(want[1:], back[1:], true); len(d) != 0 {
			t.Fatalf("tar of the mount differs from the source:\n%s", strings.Join(d, "\n"))
		}
	})
	t.Run("rsync", func(t *testing.T) {
		rsync := testenv.RequireProgram(t, "rsync", "rsync")
		dst := t.TempDir()
		if out, err := exec.Command(rsync, "-aHX", root+"/", dst+"/").CombinedOutput(); err != nil {
			t.Fatalf("rsync -a: %v\n%s", err, out)
		}
		back := walk(t, dst)
		if d := datagen.Diff(want, back, true); len(d) != 0 {
			t.Fatalf("rsync of the mount differs from the source:\n%s", strings.Join(d, "\n"))
		}
	})
	// cp -a copied user.cairn.sha256 onto every file (issue 13): a copy
	// has the source's attributes, no more.
	t.Run("cp -a", func(t *testing.T) {
		dst := t.TempDir()
		if out, err := exec.Command(testenv.RequireProgram(t, "cp", "coreutils"), "-a", root+"/.", dst+"/").CombinedOutput(); err != nil {
			t.Fatalf("cp -a: %v\n%s", err, out)
		}
		back := walk(t, dst)
		if d := datagen.Diff(want[1:], back[1:], true); len(d) != 0 {
			t.Fatalf("cp -a of the mount differs from the source:\n%s", strings.Join(d, "\n"))
		}
	})
	m.stop()
	if isMounted(mnt) {
		t.Fatal("still mounted")
	}
}

// walk walks a tree copied out of a mount.
func walk(t *testing.T, dir string) []datagen.Entry {
	t.Helper()
	back, err := datagen.Walk(dir)
	if err != nil {
		t.Fatal(err)
	}
	return back
}

// Every call that would change something fails with EROFS, in snapshot
// contents and in the synthetic directories, and changes nothing.
func TestFUSEReadOnly(t *testing.T) {
	requireFUSE(t)
	e := newEnv(t)
	e.ok("init")
	src := filepath.Join(e.dir, "src")
	writeSource(t, src)
	e.ok("backup", "--node", "lyra", src)
	sn := e.snapshotInfos()[0]
	mnt := t.TempDir()
	m := e.mount(mnt)
	if opts := mountOptions(t, mnt); !slices.Contains(opts, "ro") || !slices.Contains(opts, "nosuid") || !slices.Contains(opts, "nodev") {
		t.Fatalf("mount options %v", opts)
	}
	root := filepath.Join(snapDir(mnt, sn), src)
	before, err := datagen.Walk(root)
	if err != nil {
		t.Fatal(err)
	}
	file := filepath.Join(root, "etc", "service.yaml")
	dir := filepath.Join(root, "var", "lib")
	link := filepath.Join(root, "etc", "current")
	openErr := func(p string, flags int) error {
		fd, err := unix.Open(p, flags|unix.O_CLOEXEC, 0o644)
		if err == nil {
			unix.Close(fd)
		}
		return err
	}
	for _, c := range []struct {
		name string
		op   func() error
	}{
		{"create", func() error { return openErr(filepath.Join(root, "new"), unix.O_CREAT|unix.O_WRONLY) }},
		{"create exclusive", func() error { return openErr(filepath.Join(root, "new"), unix.O_CREAT|unix.O_EXCL|unix.O_RDWR) }},
		{"open for writing", func() error { return openErr(file, unix.O_WRONLY) }},
		{"open read-write", func() error { return openErr(file, unix.O_RDWR) }},
		{"open to append", func() error { return openErr(file, unix.O_WRONLY|unix.O_APPEND) }},
		{"open with O_TRUNC", func() error { return openErr(file, unix.O_RDONLY|unix.O_TRUNC) }},
		{"touch (utimensat now)", func() error { return unix.UtimesNanoAt(unix.AT_FDCWD, file, nil, 0) }},
		{"utimes", func() error {
			return unix.UtimesNano(file, []unix.Timespec{unix.NsecToTimespec(1e9), unix.NsecToTimespec(2e9)})
		}},
		{"mkdir", func() error { return unix.Mkdir(filepath.Join(root, "newdir"), 0o755) }},
		{"rmdir", func() error { return unix.Rmdir(filepath.Join(root, "home")) }},
		{"unlink", func() error { return unix.Unlink(file) }},
		{"unlink symlink", func() error { return unix.Unlink(link) }},
		{"rename", func() error { return unix.Rename(file, filepath.Join(root, "renamed")) }},
		{"rename dir", func() error { return unix.Rename(dir, filepath.Join(root, "lib2")) }},
		{"chmod", func() error { return unix.Chmod(file, 0o600) }},
		{"chmod dir", func() error { return unix.Chmod(dir, 0o700) }},
		{"chown", func() error { return unix.Chown(file, 1, 1) }},
		{"lchown symlink", func() error { return unix.Lchown(link, 1, 1) }},
		{"setxattr", func() error { return unix.Setxattr(file, "user.new", []byte("x"), 0) }},
		{"replace user.cairn.sha256", func() error { return unix.Setxattr(file, "user.cairn.sha256", []byte("x"), 0) }},
		{"removexattr", func() error { return unix.Removexattr(file, "user.cairn.sha256") }},
		{"truncate", func() error { return unix.Truncate(file, 0) }},
		{"link", func() error { return unix.Link(file, filepath.Join(root, "newlink")) }},
		{"symlink", func() error { return unix.Symlink("etc", filepath.Join(root, "newsym")) }},
		{"mknod fifo", func() error { return unix.Mknod(filepath.Join(root, "newfifo"), unix.S_IFIFO|0o644, 0) }},
		{"mknod device", func() error {
			return unix.Mknod(filepath.Join(root, "newdev"), unix.S_IFCHR|0o644, int(unix.Mkdev(1, 3)))
		}},
		{"mkdir in nodes/", func() error { return unix.Mkdir(filepath.Join(mnt, "nodes", "vega"), 0o755) }},
		{"create at the root", func() error { return openErr(filepath.Join(mnt, "file"), unix.O_CREAT|unix.O_WRONLY) }},
		{"unlink snapshots/<id>", func() error { return unix.Unlink(filepath.Join(mnt, "snapshots", sn.ID[:8])) }},
		{"rename nodes/", func() error { return unix.Rename(filepath.Join(mnt, "nodes"), filepath.Join(mnt, "n")) }},
		{"rmdir a snapshot", func() error { return unix.Rmdir(snapDir(mnt, sn)) }},
		{"chmod the root", func() error { return unix.Chmod(mnt, 0o700) }},
		{"symlink in tags/", func() error { return unix.Symlink("x", filepath.Join(mnt, "tags", "x")) }},
	} {
		if err := c.op(); !errors.Is(err, unix.EROFS) {
			t.Errorf("%s: %v, want EROFS", c.name, err)
		}
	}
	after, err := datagen.Walk(root)
	if err != nil {
		t.Fatal(err)
	}
	if d := datagen.Diff(before, after, false); len(d) != 0 {
		t.Fatalf("the snapshot changed:\n%s", strings.Join(d, "\n"))
	}
	m.stop()
}

// mountOptions returns the options /proc/mounts shows for dir.
func mountOptions(t *testing.T, dir string) []string {
	b, _ := os.ReadFile("/proc/mounts")
	for _, line := range strings.Split(string(b), "\n") {
		if f := strings.Fields(line); len(f) > 3 && unescapeMount(f[1]) == dir {
			if f[0] != "cairn" || f[2] != "fuse.cairn" {
				t.Errorf("mounted as %q type %q", f[0], f[2])
			}
			return strings.Split(f[3], ",")
		}
	}
	t.Fatalf("%s is not in /proc/mounts", dir)
	return nil
}

// readlink fails the test if p is not a symlink.
func readlink(t *testing.T, p string) string {
	t.Helper()
	s, err := os.Readlink(p)
	if err != nil {
		t.Fatal(err)
	}
	return s
}

func names(t *testing.T, dir string) []string {
	t.Helper()
	entries, err := os.ReadDir(dir)
	if err != nil {
		t.Fatal(err)
	}
	var out []string
	for _, e := range entries {
		out = append(out, e.Name())
	}
	return out
}

// The layout: nodes/<node>/<plan>/<time> with latest, snapshots/<id8>
// and tags/<tag>/…; every link leads to its snapshot, and a snapshot's
// directory has the snapshot's time.
func TestFUSELayout(t *testing.T) {
	requireFUSE(t)
	e := newEnv(t)
	e.ok("init")
	src := filepath.Join(e.dir, "src")
	writeSource(t, src)
	other := filepath.Join(e.dir, "other")
	repotestWrite(t, other, map[string]string{"x": "y"})
	e.ok("backup", "--node", "lyra", "--plan", "files", "--tag", "daily", src)
	e.ok("backup", "--node", "lyra", "--plan", "files", "--tag", "daily", "--tag", "weekly", src)
	e.ok("backup", "--node", "lyra", other)
	e.ok("backup", "--node", "rhea", "--plan", "git", "--tag", "daily", other)
	list := e.snapshotInfos() // oldest first
	mnt := t.TempDir()
	m := e.mount(mnt)
	if !strings.HasPrefix(m.ready, "mounted 4 snapshots at ") {
		t.Fatalf("ready line %q", m.ready)
	}
	if got := names(t, mnt); !slices.Equal(got, []string{"nodes", "snapshots", "tags"}) {
		t.Fatalf("root: %v", got)
	}
	if got := names(t, filepath.Join(mnt, "nodes")); !slices.Equal(got, []string{"lyra", "rhea"}) {
		t.Fatalf("nodes: %v", got)
	}
	if got := names(t, filepath.Join(mnt, "nodes", "lyra")); !slices.Equal(got, []string{"@none", "files"}) {
		t.Fatalf("nodes/lyra: %v", got)
	}
	// Time names; the second snapshot of lyra/files may fall in the
	// same second as the first.
	timeName := func(s snapshotInfo) string { return s.Time.UTC().Format(time.RFC3339) }
	first, second := timeName(list[0]), timeName(list[1])
	if second == first {
		second += "_" + list[1].ID[:8]
	}
	if got := names(t, filepath.Join(mnt, "nodes", "lyra", "files")); !slices.Equal(got, []string{first, second, "latest"}) {
		t.Fatalf("nodes/lyra/files: %v, want %v", got, []string{first, second, "latest"})
	}
	if got := readlink(t, filepath.Join(mnt, "nodes", "lyra", "files", "latest")); got != second {
		t.Fatalf("latest -> %s, want %s", got, second)
	}
	canon := []string{
		filepath.Join("nodes", "lyra", "files", first),
		filepath.Join("nodes", "lyra", "files", second),
		filepath.Join("nodes", "lyra", "@none", timeName(list[2])),
		filepath.Join("nodes", "rhea", "git", timeName(list[3])),
	}
	var ids []string
	for i, s := range list {
		ids = append(ids, s.ID[:8])
		if got := readlink(t, filepath.Join(mnt, "snapshots", s.ID[:8])); got != "../"+canon[i] {
			t.Errorf("snapshots/%s -> %s, want ../%s", s.ID[:8], got, canon[i])
		}
		// The directory: the snapshot's time, and the same inode
		// through every link.
		var direct, viaID unix.Stat_t
		if err := unix.Stat(filepath.Join(mnt, canon[i]), &direct); err != nil {
			t.Fatal(err)
		}
		unix.Stat(filepath.Join(mnt, "snapshots", s.ID[:8]), &viaID)
		if direct.Ino != viaID.Ino || direct.Mode&unix.S_IFMT != unix.S_IFDIR {
			t.Errorf("%s: inode %d, through snapshots/: %d", canon[i], direct.Ino, viaID.Ino)
		}
		if got := time.Unix(direct.Mtim.Unix()).UTC(); !got.Equal(s.Time) {
			t.Errorf("%s: mtime %s, want the snapshot's time %s", canon[i], got, s.Time)
		}
	}
	slices.Sort(ids)
	if got := names(t, filepath.Join(mnt, "snapshots")); !slices.Equal(got, ids) {
		t.Errorf("snapshots/: %v, want %v", got, ids)
	}
	if got := names(t, filepath.Join(mnt, "tags")); !slices.Equal(got, []string{"daily", "weekly"}) {
		t.Errorf("tags: %v", got)
	}
	for p, want := range map[string]string{
		filepath.Join("tags", "daily", "lyra", "files", first):           "../../../../" + canon[0],
		filepath.Join("tags", "daily", "lyra", "files", second):          "../../../../" + canon[1],
		filepath.Join("tags", "weekly", "lyra", "files", second):         "../../../../" + canon[1],
		filepath.Join("tags", "daily", "rhea", "git", timeName(list[3])): "../../../../" + canon[3],
	} {
		if got := readlink(t, filepath.Join(mnt, p)); got != want {
			t.Errorf("%s -> %s, want %s", p, got, want)
		}
	}
	if got := names(t, filepath.Join(mnt, "tags", "daily", "lyra")); !slices.Equal(got, []string{"files"}) {
		t.Errorf("tags/daily/lyra: %v", got)
	}
	// Following the links reaches the files.
	b, err := os.ReadFile(filepath.Join(mnt, "tags", "weekly", "lyra", "files", second, src, "etc", "service.yaml"))
	if err != nil || string(b) != "port: 8080\n" {
		t.Fatalf("through tags/: %q %v", b, err)
	}
	b, err = os.ReadFile(filepath.Join(mnt, "nodes", "rhea", "git", "latest", other, "x"))
	if err != nil || string(b) != "y" {
		t.Fatalf("through latest: %q %v", b, err)
	}
	// A name that is not there.
	if _, err := os.Lstat(filepath.Join(mnt, "nodes", "vega")); !errors.Is(err, fs.ErrNotExist) {
		t.Errorf("nodes/vega: %v", err)
	}
	m.stop()
}

// A flipped byte in a pack: reading the files that use the damaged chunk
// fails with EIO (the same files cairn check names), every other file
// reads correctly, the mount stays up, and its log names pack and blob.
func TestFUSEDamagedPack(t *testing.T) {
	requireFUSE(t)
	e := newEnv(t)
	e.ok("init")
	src := filepath.Join(e.dir, "src")
	writeSource(t, src)
	want, err := datagen.Walk(src)
	if err != nil {
		t.Fatal(err)
	}
	e.ok("backup", "--node", "lyra", src)
	sn := e.snapshotInfos()[0]
	var biggest string
	var size int64
	filepath.Walk(filepath.Join(e.repo, "packs"), func(p string, fi os.FileInfo, err error) error {
		if err == nil && fi.Mode().IsRegular() && fi.Size() > size {
			biggest, size = p, fi.Size()
		}
		return nil
	})
	f, _ := os.OpenFile(biggest, os.O_RDWR, 0)
	f.WriteAt([]byte{0xff, 0xff, 0xff, 0xff}, size/2)
	f.Close()
	r := e.run(nil, "check", "--read-data")
	if r.code != 4 {
		t.Fatalf("check: exit %d\n%s%s", r.code, r.stdout, r.stderr)
	}
	affected := map[string]bool{}
	for _, m := range regexp.MustCompile(`affects snapshot [0-9a-f]{8} \([^)]*\): (\S+)`).FindAllStringSubmatch(r.stdout, -1) {
		affected[m[1]] = true
	}
	if len(affected) == 0 {
		t.Fatalf("check names no file:\n%s", r.stdout)
	}

	mnt := t.TempDir()
	m := e.mount(mnt)
	root := filepath.Join(snapDir(mnt, sn), src)
	failed := map[string]bool{}
	for round := range 2 { // the second round: still failing, still fine
		for _, w := range want {
			if w.Type != "file" {
				continue
			}
			b, err := os.ReadFile(filepath.Join(root, w.Path))
			abs := filepath.Join(src, w.Path)
			switch {
			case errors.Is(err, syscall.EIO):
				failed[abs] = true
			case err != nil:
				t.Fatalf("%s: %v", w.Path, err)
			case hex.EncodeToString(sha256Sum(b)) != w.SHA256:
				t.Fatalf("round %d: %s read without error but with wrong contents", round, w.Path)
			case failed[abs]:
				t.Fatalf("%s failed once, then read fine", w.Path)
			}
		}
	}
	if !mapsEqual(failed, affected) {
		t.Fatalf("reads failed for %v; check names %v", keys(failed), keys(affected))
	}
	t.Logf("reads failed, as check says, for %v", keys(failed))
	if _, err := os.Stat(filepath.Join(root, "etc", "service.yaml")); err != nil {
		t.Fatalf("the mount is down: %v", err)
	}
	packID := filepath.Base(biggest)[:8]
	log := m.stderr.String()
	if !strings.Contains(log, "read failed") || !strings.Contains(log, "pack "+packID) || !regexp.MustCompile(`blob data/[0-9a-f]{8}`).MatchString(log) {
		t.Fatalf("the log names neither pack %s nor the blob:\n%s", packID, log)
	}
	m.stop()
}

func sha256Sum(b []byte) []byte {
	s := sha256.Sum256(b)
	return s[:]
}

func mapsEqual(a, b map[string]bool) bool {
	return slices.Equal(keys(a), keys(b))
}

func keys(m map[string]bool) []string {
	var out []string
	for k := range m {
		out = append(out, k)
	}
	slices.Sort(out)
	return out
}

// With the appliance running, cairn mount runs inside it: the ready
// line comes through the socket, snapshots made meanwhile appear
// without remounting, and ^C (SIGINT to the client) unmounts while the
// appliance goes on.
func TestFUSEInAppliance(t *testing.T) {
	requireFUSE(t)
	e := newEnv(t)
	e.ok("init")
	a := e.serve()
	src := filepath.Join(e.dir, "src")
	writeSource(t, src)
	e.ok("backup", "--node", "lyra", "--plan", "files", src) // through the appliance
	mnt := t.TempDir()
	m := e.mount(mnt)
	if !strings.HasPrefix(m.ready, "mounted 1 snapshots at "+mnt) {
		t.Fatalf("ready line %q", m.ready)
	}
	plan := filepath.Join(mnt, "nodes", "lyra", "files")
	b, err := os.ReadFile(filepath.Join(plan, "latest", src, "var", "lib", "media.bin"))
	want, _ := os.ReadFile(filepath.Join(src, "var", "lib", "media.bin"))
	if err != nil || !bytes.Equal(b, want) {
		t.Fatalf("read through the appliance's mount: %v", err)
	}
	before := names(t, plan)

	// A new snapshot while mounted (the appliance takes the backup).
	os.WriteFile(filepath.Join(src, "etc", "service.yaml"), []byte("port: 9090\n"), 0o644)
	e.ok("backup", "--node", "lyra", "--plan", "files", src)
	list := e.snapshotInfos()
	newest := list[len(list)-1]
	name := newest.Time.UTC().Format(time.RFC3339)
	if name == list[0].Time.UTC().Format(time.RFC3339) {
		name += "_" + newest.ID[:8]
	}
	// The list is re-read at most a second after it was last read:
	// wait for that condition, bounded.
	deadline := time.Now().Add(10 * time.Second)
	for !slices.Contains(names(t, plan), name) {
		if time.Now().After(deadline) {
			t.Fatalf("%s did not appear in %v (before: %v)", name, names(t, plan), before)
		}
		time.Sleep(100 * time.Millisecond)
	}
	for readlink(t, filepath.Join(plan, "latest")) != name {
		if time.Now().After(deadline) {
			t.Fatalf("latest -> %s, want %s", readlink(t, filepath.Join(plan, "latest")), name)
		}
		time.Sleep(100 * time.Millisecond)
	}
	b, err = os.ReadFile(filepath.Join(plan, "latest", src, "etc", "service.yaml"))
	if err != nil || string(b) != "port: 9090\n" {
		t.Fatalf("new snapshot: %q %v", b, err)
	}
	if _, err := os.Stat(filepath.Join(mnt, "snapshots", newest.ID[:8])); err != nil {
		t.Fatalf("snapshots/%s: %v", newest.ID[:8], err)
	}

	// ^C on the client: unmounted, exit 0, the appliance still serves.
	m.signal(syscall.SIGINT)
	if isMounted(mnt) {
		t.Fatal("still mounted after ^C")
	}
	if n := len(e.snapshotInfos()); n != 2 {
		t.Fatalf("the appliance lists %d snapshots after the mount ended", n)
	}
	select {
	case <-a.Exited():
		t.Fatalf("the appliance exited:\n%s", a.Log())
	default:
	}
}

// cairn mount --daemon returns once the mount is ready and prints the
// server's PID; cairn umount unmounts it and the server exits. cairn
// umount also cleans a mount whose server was killed.
func TestFUSEDaemonAndUmount(t *testing.T) {
	requireFUSE(t)
	e := newEnv(t)
	e.ok("init")
	src := filepath.Join(e.dir, "src")
	writeSource(t, src)
	e.ok("backup", "--node", "lyra", src)
	sn := e.snapshotInfos()[0]
	mnt := t.TempDir()
	logFile := filepath.Join(e.dir, "mount.log")
	out := e.ok("mount", "--daemon", "--log", logFile, mnt)
	match := regexp.MustCompile(`^mounted 1 snapshots at (\S+) \(read-only\); unmount with cairn umount \S+ or \^C\npid (\d+)\n$`).FindStringSubmatch(out)
	if match == nil || match[1] != mnt {
		t.Fatalf("mount --daemon printed %q", out)
	}
	pid, _ := strconv.Atoi(match[2])
	t.Cleanup(func() {
		if processAlive(pid) {
			syscall.Kill(pid, syscall.SIGKILL)
		}
		if isMounted(mnt) {
			exec.Command("umount", "-l", mnt).Run()
		}
	})
	if !isMounted(mnt) || !processAlive(pid) {
		t.Fatalf("after mount --daemon: mounted %v, pid %d alive %v", isMounted(mnt), pid, processAlive(pid))
	}
	b, err := os.ReadFile(filepath.Join(snapDir(mnt, sn), src, "etc", "service.yaml"))
	if err != nil || string(b) != "port: 8080\n" {
		t.Fatalf("read: %q %v", b, err)
	}
	if got := e.ok("umount", mnt); got != "unmounted "+mnt+"\n" {
		t.Fatalf("umount printed %q", got)
	}
	if isMounted(mnt) {
		t.Fatal("still mounted after cairn umount")
	}
	waitExit(t, pid)
	if log, _ := os.ReadFile(logFile); !strings.Contains(string(log), "msg=unmounted") {
		t.Errorf("daemon log:\n%s", log)
	}
	r := e.run(nil, "umount", mnt)
	if r.code != 1 || r.stderr != "cairn: "+mnt+" is not mounted\n" {
		t.Fatalf("umount of nothing: %d %q", r.code, r.stderr)
	}

	// A server killed with SIGKILL leaves a stale mount; umount cleans it.
	m := e.mount(mnt)
	m.once.Do(func() {
		m.cmd.Process.Kill()
		<-m.exited
	})
	var st unix.Stat_t
	if err := unix.Stat(mnt, &st); !errors.Is(err, unix.ENOTCONN) {
		t.Fatalf("stat of a dead mount: %v", err)
	}
	if got := e.ok("umount", mnt); got != "cleaned up "+mnt+" (its server had died)\n" {
		t.Fatalf("umount of a dead mount printed %q", got)
	}
	if isMounted(mnt) {
		t.Fatal("the dead mount is still there")
	}
	// And a directory that is no mount at all, or mounted by something
	// else, is refused.
	r = e.run(nil, "umount", "/proc")
	if r.code != 1 || !strings.Contains(r.stderr, "is not a cairn mount (it is proc)") {
		t.Fatalf("umount /proc: %d %q", r.code, r.stderr)
	}
}

// processAlive reports whether pid runs (a zombie does not count).
func processAlive(pid int) bool {
	b, err := os.ReadFile(fmt.Sprintf("/proc/%d/stat", pid))
	if err != nil {
		return false
	}
	// pid (comm) STATE …; comm may contain spaces and parentheses.
	s := string(b)
	i := strings.LastIndexByte(s, ')')
	return i < 0 || i+2 >= len(s) || s[i+2] != 'Z'
}

// waitExit waits (bounded) for a process that is not our child to exit.
func waitExit(t *testing.T, pid int) {
	t.Helper()
	deadline := time.Now().Add(10 * time.Second)
	for processAlive(pid) {
		if time.Now().After(deadline) {
			t.Fatalf("process %d still runs", pid)
		}
		time.Sleep(50 * time.Millisecond)
	}
}

// Without --allow-other only the user who mounted gets in; with it,
// other users get in and the kernel enforces the recorded owners and
// modes, so nobody reads through the mount what they could not read on
// the original machine.
func TestFUSEAllowOther(t *testing.T) {
	requireFUSE(t)
	e := newEnv(t)
	e.ok("init")
	src := filepath.Join(e.dir, "src")
	repotestWrite(t, src, map[string]string{"public.txt": "for everyone\n", "secret.txt": "root only\n", "private/note.txt": "in a 0700 directory\n"})
	os.Chmod(filepath.Join(src, "secret.txt"), 0o600)
	os.Chmod(filepath.Join(src, "private"), 0o700)
	// The directories above src are recorded too: let nobody through.
	os.Chmod(filepath.Dir(e.dir), 0o755)
	os.Chmod(e.dir, 0o755)
	e.ok("backup", "--node", "lyra", src)
	sn := e.snapshotInfos()[0]
	mnt := t.TempDir()
	// nobody must reach the mount point itself.
	for _, d := range []string{filepath.Dir(mnt), mnt} {
		os.Chmod(d, 0o755)
	}
	const nobody = 65534
	readAs := func(p string) error {
		cmd := exec.Command(testenv.RequireProgram(t, "cat", "coreutils"), p)
		cmd.SysProcAttr = &syscall.SysProcAttr{Credential: &syscall.Credential{Uid: nobody, Gid: nobody}}
		out, err := cmd.CombinedOutput()
		if err != nil {
			return fmt.Errorf("%v: %s", err, bytes.TrimSpace(out))
		}
		return nil
	}
	root := func() string { return filepath.Join(snapDir(mnt, sn), src) }

	m := e.mount(mnt)
	if err := readAs(filepath.Join(root(), "public.txt")); err == nil || !strings.Contains(err.Error(), "Permission denied") {
		t.Fatalf("another user read through a mount without --allow-other: %v", err)
	}
	m.stop()

	m = e.mount(mnt, "--allow-other")
	if opts := mountOptions(t, mnt); !slices.Contains(opts, "allow_other") || !slices.Contains(opts, "default_permissions") {
		t.Fatalf("options %v", opts)
	}
	if err := readAs(filepath.Join(root(), "public.txt")); err != nil {
		t.Fatalf("nobody cannot read a 0644 file: %v", err)
	}
	for _, p := range []string{"secret.txt", "private/note.txt"} {
		if err := readAs(filepath.Join(root(), p)); err == nil || !strings.Contains(err.Error(), "Permission denied") {
			t.Errorf("nobody read %s: %v", p, err)
		}
	}
	m.stop()
}
