package integration

import (
	"io"
	"os"
	"os/exec"
	"path/filepath"
	"slices"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/cairnbackup/cairn/integration/sshtest"
	gossh "golang.org/x/crypto/ssh"
)

// An appliance whose repository directory is deleted under it (rm -rf
// of the whole repository) used to ignore SIGTERM for ever: closing the
// index, badger retried once a second to flush into the missing
// directory. It now stops at once with the reason and exit 1.
func TestServeStopsWhenRepositoryDeleted(t *testing.T) {
	e := newEnv(t)
	e.ok("init")
	a := e.serve()
	// Something for the index to flush: a backup run inside the
	// appliance.
	if r := e.runIn(strings.NewReader("hello\n"), nil, "backup", "--stdin", "--name", "hello.txt"); r.code != 0 {
		t.Fatalf("backup: %d %s", r.code, r.stderr)
	}
	if err := os.RemoveAll(e.repo); err != nil {
		t.Fatal(err)
	}
	a.Cmd.Process.Signal(syscall.SIGTERM)
	select {
	case <-a.Exited():
	case <-time.After(time.Minute):
		a.Cmd.Process.Kill()
		<-a.Exited()
		t.Fatalf("the appliance did not stop within a minute of SIGTERM:\n%s", a.Log())
	}
	a.Stopped = true
	if code := a.Cmd.ProcessState.ExitCode(); code != 1 {
		t.Errorf("exit code %d, want 1", code)
	}
	want := "cairn: closing the repository " + e.repo + ": index: close " + e.repo + "/index: the directory was removed while the index was open; its unflushed updates are lost"
	if !slices.Contains(strings.Split(a.Log(), "\n"), want) {
		t.Errorf("the appliance did not say %q:\n%s", want, a.Log())
	}
}

// A key revoked while an OpenSSH ControlMaster connection is open: the
// master used to keep pushing after the key was replaced in the
// configuration and the appliance reloaded. Now the running session ends
// at its next read, a new session over the master is refused, and a new
// connection with the old key is refused too.
func TestRevokedKeyClosesControlMaster(t *testing.T) {
	ssh := sshtest.SSHBinary(t)
	e := newEnv(t)
	e.ok("init")
	lyra := newNode(t, "lyra", "push")
	a := e.serve(lyra)
	// The control socket's path must be short (sun_path).
	dir, err := os.MkdirTemp("", "cm-")
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { os.RemoveAll(dir) })
	sock := filepath.Join(dir, "s")
	args := a.SSHArgs(lyra)
	mux := append([]string{"-o", "ControlPath=" + sock}, args...)
	t.Cleanup(func() { exec.Command(ssh, append([]string{"-O", "exit"}, mux...)...).Run() })

	// The master: its first command runs, then it stays (ControlPersist;
	// for two minutes at most if the test dies).
	master := append([]string{"-o", "ControlMaster=yes", "-o", "ControlPersist=120"}, mux...)
	if r := runSSH(t, strings.NewReader("before\n"), append(master, "push", "--stdin", "--name", "a.txt")...); r.code != 0 {
		t.Fatalf("push through the new master: %d %q", r.code, r.stderr)
	}
	// A session over the master, in the middle of its stream.
	long := exec.Command(ssh, append(mux, "push", "--stdin", "--name", "b.txt")...)
	in, _ := long.StdinPipe()
	var stderr strings.Builder
	long.Stderr = &stderr
	if err := long.Start(); err != nil {
		t.Fatal(err)
	}
	io.WriteString(in, "the first half\n")
	a.WaitFor(`msg="node session started" node=lyra command="push --stdin --name b.txt"`)
	// A wire session over the master that sends nothing: revoked, it
	// ends only at its next request, so the master's connection stays
	// open for the new session below (the stream above ends at once,
	// and a revoked connection closes after its last session).
	hold := exec.Command(ssh, append(mux, "cairn-wire")...)
	holdIn, _ := hold.StdinPipe()
	if err := hold.Start(); err != nil {
		t.Fatal(err)
	}
	a.WaitFor(`msg="node session started" node=lyra command=cairn-wire`)

	// lyra's key is replaced.
	lyra2 := &node{Name: "lyra", Key: sshtest.NewKey(t, "", "lyra2"), Perms: "push"}
	e.writeConfig(a.Port, lyra2)
	a.Cmd.Process.Signal(syscall.SIGHUP)
	a.WaitFor("configuration reloaded")
	why := "the key " + gossh.FingerprintSHA256(lyra.Key.Signer.PublicKey()) + " of node lyra was revoked"

	// OpenSSH does not show the reason the appliance gives; it then
	// tries a connection of its own, which the old key cannot open.
	r := runSSH(t, strings.NewReader("after\n"), append(mux, "push", "--stdin", "--name", "c.txt")...)
	if r.code != 255 || !strings.Contains(r.stderr, "mux_client_request_session: session request failed: Session open refused by peer") {
		t.Errorf("a new session over the master: exit %d, stderr %q", r.code, r.stderr)
	}
	a.WaitFor(`msg="session channel refused" node=lyra key=` + gossh.FingerprintSHA256(lyra.Key.Signer.PublicKey()) + ` why="` + why + `"`)
	if r := runSSH(t, strings.NewReader("after\n"), append(args, "push", "--stdin", "--name", "d.txt")...); r.code != 255 || !strings.Contains(r.stderr, "Permission denied (publickey)") {
		t.Errorf("a new connection with the old key: exit %d, stderr %q", r.code, r.stderr)
	}
	holdIn.Close()
	hold.Wait()
	io.WriteString(in, "the second half\n")
	in.Close()
	err = long.Wait()
	if code := long.ProcessState.ExitCode(); code != 1 || stderr.String() != "cairn: "+why+"\n" {
		t.Errorf("the running session: exit %d (%v), stderr %q; want 1 and %q", code, err, stderr.String(), why)
	}
	var list []snapshotJSON
	if err := jsonUnmarshal(e.ok("snapshots", "--json"), &list); err != nil || len(list) != 1 || list[0].Paths[0] != "/a.txt" {
		t.Errorf("snapshots after the revocation: %v %+v", err, list)
	}
	if !strings.Contains(a.Log(), `msg="ssh connection revoked" node=lyra`) {
		t.Errorf("the revocation is not logged")
	}
}
