package integration

import (
	"bufio"
	"bytes"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/cairnbackup/cairn/integration/apptest"
	"github.com/cairnbackup/cairn/integration/testenv"
)

// An appliance in a mount namespace of its own, as cairn.service runs
// (ProtectSystem=, PrivateTmp= make one, with mounts propagating into it
// but not out): cairn mount, run by root outside it, mounts in its own
// namespace and hands the appliance the /dev/fuse connection to serve,
// so the snapshots are readable where the operator (or
// cairn-mount.service) asked for them. SIGTERM unmounts; an appliance
// that dies takes the mount with it, and nothing stale is left.
func TestMountServedByApplianceInItsOwnNamespace(t *testing.T) {
	requireFUSE(t)
	unshare := testenv.RequireProgram(t, "unshare", "util-linux")
	e := newEnv(t)
	e.ok("init")
	src := filepath.Join(e.dir, "src")
	writeSource(t, src)
	e.ok("backup", "--node", "lyra", "--plan", "files", src)
	e.writeConfig(apptest.FreePort(t))

	cmd := exec.Command(unshare, "--mount", "--propagation", "slave", cairnBin, "serve")
	cmd.Env = append(cleanEnviron(), e.vars...)
	cmd.SysProcAttr = &syscall.SysProcAttr{Pdeathsig: syscall.SIGKILL}
	stderr, err := cmd.StderrPipe()
	if err != nil {
		t.Fatal(err)
	}
	if err := cmd.Start(); err != nil {
		t.Fatal(err)
	}
	var log lockedBuffer
	serving := make(chan bool, 1)
	exited := make(chan struct{})
	go func() {
		sc := bufio.NewScanner(stderr)
		for sc.Scan() {
			log.Write([]byte(sc.Text() + "\n"))
			if strings.Contains(sc.Text(), "msg=serving") {
				serving <- true
			}
		}
		cmd.Wait()
		close(exited)
	}()
	t.Cleanup(func() {
		cmd.Process.Kill()
		<-exited
		if t.Failed() {
			t.Logf("appliance log:\n%s", log.String())
		}
	})
	select {
	case <-serving:
	case <-exited:
		t.Fatalf("the appliance exited:\n%s", log.String())
	case <-time.After(time.Minute):
		t.Fatalf("the appliance is not serving:\n%s", log.String())
	}

	mnt := t.TempDir()
	m := e.mount(mnt)
	if !strings.HasPrefix(m.ready, "mounted 1 snapshots at "+mnt) {
		t.Fatalf("ready line %q", m.ready)
	}
	b, err := os.ReadFile(filepath.Join(mnt, "nodes", "lyra", "files", "latest", src, "etc", "service.yaml"))
	want, _ := os.ReadFile(filepath.Join(src, "etc", "service.yaml"))
	if err != nil || !bytes.Equal(b, want) {
		t.Fatalf("reading through the mount outside the appliance's namespace: %v", err)
	}
	m.stop() // SIGTERM: exit 0, nothing mounted (checked by stop)

	// The appliance dies under a mount: the client says so, exits 1,
	// and leaves no stale mount behind.
	m = e.mount(mnt)
	cmd.Process.Signal(syscall.SIGKILL)
	select {
	case <-m.exited:
	case <-time.After(time.Minute):
		t.Fatal("cairn mount did not end when the appliance died")
	}
	m.once.Do(func() {}) // checked here, not by the cleanup
	if code := m.cmd.ProcessState.ExitCode(); code != 1 || !strings.Contains(m.stderr.String(), "the appliance closed the connection before the command finished") {
		t.Fatalf("cairn mount after the appliance died: exit %d\n%s", code, m.stderr.String())
	}
	if isMounted(mnt) {
		exec.Command("umount", "-l", mnt).Run()
		t.Fatal("a stale mount was left behind")
	}
}
