package torture

import (
	"bufio"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/cairnbackup/cairn/integration/testenv"
)

// errEIO is what a read of damaged data through FUSE must fail with.
var errEIO = syscall.EIO

// mounted is a `cairn mount` child process serving the env's repository.
// The mount is served by its own process, never by the test process (the
// deadlocks go-fuse documents).
type mounted struct {
	cmd  *exec.Cmd
	dir  string
	done chan struct{}
}

// requireFUSE skips without /dev/fuse, or fails under CI=true.
func requireFUSE(t testing.TB) {
	t.Helper()
	if _, err := os.Stat("/dev/fuse"); err != nil {
		testenv.Missing(t, "no /dev/fuse: %v", err)
	}
}

// mount mounts every snapshot at a new directory and waits for the ready
// line; it is unmounted at cleanup.
func (e *env) mount(t testing.TB) *mounted {
	t.Helper()
	requireFUSE(t)
	dir, err := os.MkdirTemp(e.dir, "mnt-")
	if err != nil {
		t.Fatal(err)
	}
	m := &mounted{dir: dir, done: make(chan struct{})}
	m.cmd = cairnCommand("mount", dir)
	m.cmd.Env = append(cleanEnviron(), e.vars...)
	out, err := m.cmd.StdoutPipe()
	if err != nil {
		t.Fatal(err)
	}
	var errb strings.Builder
	m.cmd.Stderr = &errb
	if err := m.cmd.Start(); err != nil {
		t.Fatal(err)
	}
	ready := make(chan bool, 1)
	go func() {
		sc := bufio.NewScanner(out)
		ok := false
		for sc.Scan() {
			if !ok && strings.HasPrefix(sc.Text(), "mounted ") {
				ok = true
				ready <- true
			}
		}
		if !ok {
			ready <- false
		}
	}()
	go func() { m.cmd.Wait(); close(m.done) }()
	t.Cleanup(m.unmount)
	select {
	case ok := <-ready:
		if !ok {
			<-m.done
			t.Fatalf("cairn mount ended before it was ready: %s", errb.String())
		}
	case <-time.After(60 * time.Second):
		t.Fatalf("cairn mount not ready after 60 s: %s", errb.String())
	}
	return m
}

func (m *mounted) unmount() {
	select {
	case <-m.done:
	default:
		m.cmd.Process.Signal(syscall.SIGTERM)
		select {
		case <-m.done:
		case <-time.After(20 * time.Second):
			m.cmd.Process.Kill()
			<-m.done
		}
	}
	exec.Command("umount", "-l", m.dir).Run()
}

// snapshotPath is the path of src (an absolute path backed up) in
// snapshot id inside the mount.
func (m *mounted) snapshotPath(id, src string) string {
	return filepath.Join(m.dir, "snapshots", id[:8], strings.TrimPrefix(src, "/"))
}
