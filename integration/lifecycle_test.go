package integration

import (
	"os"
	"slices"
	"strings"
	"syscall"
	"testing"
	"time"
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
	a.cmd.Process.Signal(syscall.SIGTERM)
	select {
	case <-a.exited:
	case <-time.After(time.Minute):
		a.cmd.Process.Kill()
		<-a.exited
		t.Fatalf("the appliance did not stop within a minute of SIGTERM:\n%s", a.Log())
	}
	a.stopped = true
	if code := a.cmd.ProcessState.ExitCode(); code != 1 {
		t.Errorf("exit code %d, want 1", code)
	}
	want := "cairn: closing the repository " + e.repo + ": index: close " + e.repo + "/index: the directory was removed while the index was open; its unflushed updates are lost"
	if !slices.Contains(strings.Split(a.Log(), "\n"), want) {
		t.Errorf("the appliance did not say %q:\n%s", want, a.Log())
	}
}
