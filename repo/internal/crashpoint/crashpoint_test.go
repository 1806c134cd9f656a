package crashpoint

import (
	"errors"
	"os"
	"os/exec"
	"path/filepath"
	"syscall"
	"testing"
)

// The child process of TestTraceAndKill: it passes a, a, b, a, b.
func TestMain(m *testing.M) {
	if os.Getenv("CRASHPOINT_TEST_CHILD") == "1" {
		for _, p := range []string{"a", "a", "b", "a", "b"} {
			Hit(p)
		}
		os.Exit(0)
	}
	os.Exit(m.Run())
}

func runChild(t *testing.T, env ...string) (killed bool) {
	t.Helper()
	cmd := exec.Command(os.Args[0], "-test.run", "^$")
	cmd.Env = append(os.Environ(), append(env, "CRASHPOINT_TEST_CHILD=1")...)
	err := cmd.Run()
	var ee *exec.ExitError
	if errors.As(err, &ee) {
		ws := ee.Sys().(syscall.WaitStatus)
		return ws.Signaled() && ws.Signal() == syscall.SIGKILL
	}
	if err != nil {
		t.Fatal(err)
	}
	return false
}

// The trace lists every point reached, in order, up to and including
// the one that kills; a count beyond the hits leaves the process alive.
func TestTraceAndKill(t *testing.T) {
	for _, c := range []struct {
		crash  string
		killed bool
		trace  string
	}{
		{"", false, "a\na\nb\na\nb\n"},
		{"b", true, "a\na\nb\n"},
		{"a:3", true, "a\na\nb\na\n"},
		{"b:2", true, "a\na\nb\na\nb\n"},
		{"b:3", false, "a\na\nb\na\nb\n"},
		{"c", false, "a\na\nb\na\nb\n"},
	} {
		tr := filepath.Join(t.TempDir(), "trace")
		env := []string{TraceEnv + "=" + tr}
		if c.crash != "" {
			env = append(env, Env+"="+c.crash)
		}
		if killed := runChild(t, env...); killed != c.killed {
			t.Errorf("%q: killed %v, want %v", c.crash, killed, c.killed)
		}
		b, err := os.ReadFile(tr)
		if err != nil {
			t.Fatal(err)
		}
		if string(b) != c.trace {
			t.Errorf("%q: trace %q, want %q", c.crash, b, c.trace)
		}
	}
	// Without a trace, a kill still happens at the counted hit.
	if !runChild(t, Env+"=a:2") {
		t.Errorf("a:2 without a trace: not killed")
	}
}
