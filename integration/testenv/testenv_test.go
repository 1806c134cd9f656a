package testenv_test

import (
	"os"
	"os/exec"
	"strings"
	"testing"

	"github.com/cairnbackup/cairn/integration/testenv"
)

// TestChild is run by the tests below in a child process: it needs a
// program that does not exist.
func TestChild(t *testing.T) {
	if os.Getenv("TESTENV_CHILD") != "1" {
		t.Skip("run by TestMissing in a child process")
	}
	testenv.RequireProgram(t, "cairn-no-such-program", "cairn-none")
	t.Error("RequireProgram returned without the program")
}

// A test that misses something skips, and under CI=true fails, with a
// message naming what is missing.
func TestMissing(t *testing.T) {
	for _, c := range []struct {
		ci, want, verdict string
		failed            bool
	}{
		{ci: "", want: "testenv_test.go:18: cairn-no-such-program is not installed (Debian package cairn-none)\n", verdict: "--- SKIP: TestChild"},
		{ci: "false", want: "testenv_test.go:18: cairn-no-such-program is not installed (Debian package cairn-none)\n", verdict: "--- SKIP: TestChild"},
		{ci: "true", want: "testenv_test.go:18: CI=true but cairn-no-such-program is not installed (Debian package cairn-none)\n", verdict: "--- FAIL: TestChild", failed: true},
	} {
		cmd := exec.Command(os.Args[0], "-test.run=^TestChild$", "-test.v")
		cmd.Env = append(os.Environ(), "TESTENV_CHILD=1", "CI="+c.ci)
		out, err := cmd.CombinedOutput()
		if failed := err != nil; failed != c.failed || !strings.Contains(string(out), c.want) || !strings.Contains(string(out), c.verdict) ||
			strings.Contains(string(out), "without the program") {
			t.Errorf("CI=%q: exit %v\n%s", c.ci, err, out)
		}
	}
}
