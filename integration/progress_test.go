package integration

import (
	"bytes"
	"fmt"
	"io"
	"os"
	"os/exec"
	"path/filepath"
	"regexp"
	"syscall"
	"testing"

	"github.com/cairnbackup/cairn/integration/testenv"
	"golang.org/x/sys/unix"
	"golang.org/x/term"
)

// runOnTerminal runs cairn with its standard error on a new
// pseudo-terminal in raw mode (so the bytes arrive as written) and
// returns what it wrote there, its standard output and its exit code.
func (e *env) runOnTerminal(args ...string) (tty, stdout string, code int) {
	t := e.t
	t.Helper()
	master, err := os.OpenFile("/dev/ptmx", os.O_RDWR|syscall.O_NOCTTY, 0)
	if err != nil {
		testenv.Missing(t, "no pseudo-terminal: %v", err)
	}
	defer master.Close()
	if err := unix.IoctlSetPointerInt(int(master.Fd()), unix.TIOCSPTLCK, 0); err != nil {
		t.Fatal(err)
	}
	n, err := unix.IoctlGetInt(int(master.Fd()), unix.TIOCGPTN)
	if err != nil {
		t.Fatal(err)
	}
	slave, err := os.OpenFile(fmt.Sprintf("/dev/pts/%d", n), os.O_RDWR|syscall.O_NOCTTY, 0)
	if err != nil {
		t.Fatal(err)
	}
	if _, err := term.MakeRaw(int(slave.Fd())); err != nil {
		t.Fatal(err)
	}
	var out bytes.Buffer
	cmd := exec.Command(cairnBin, args...)
	cmd.Env = append(cleanEnviron(), e.vars...)
	cmd.Stdout, cmd.Stderr = &out, slave
	read := make(chan []byte)
	go func() {
		b, _ := io.ReadAll(master) // ends with EIO once the last writer closed
		read <- b
	}()
	err = cmd.Start()
	slave.Close()
	if err != nil {
		t.Fatal(err)
	}
	err = cmd.Wait()
	if ee, ok := err.(*exec.ExitError); ok {
		code = ee.ExitCode()
	} else if err != nil {
		t.Fatal(err)
	}
	return string(<-read), out.String(), code
}

// check --read-data and jobs run drill show progress on a terminal, and
// only there (issue 13): a line redrawn in place, ending with the
// totals.
func TestProgressOnTerminal(t *testing.T) {
	e := newEnv(t)
	e.ok("init")
	src := filepath.Join(e.dir, "src")
	writeSource(t, src)
	e.ok("backup", "--node", "lyra", "--plan", "files", src)
	redrawn := `^(\r[^\r\n]*\x1b\[K)*\r`
	rate := `, [0-9.]+ [KMG]?i?B/s, \d+s\x1b\[K\n$`

	tty, stdout, code := e.runOnTerminal("check", "--read-data")
	if code != 0 || !regexp.MustCompile(redrawn+`read 2 of 2 packs, 3\.0 MiB of 3\.0 MiB`+rate).MatchString(tty) ||
		!regexp.MustCompile(`: no problems found\n$`).MatchString(stdout) {
		t.Errorf("check --read-data: exit %d, terminal %q, stdout %q", code, tty, stdout)
	}
	if r := e.run(nil, "check", "--read-data"); r.code != 0 || r.stderr != "" {
		t.Errorf("check --read-data without a terminal: exit %d, stderr %q", r.code, r.stderr)
	}

	// Through the running appliance: the command runs there, its
	// standard error comes back to this terminal.
	e.serveWith("jobs:\n  drill: {schedule: \"0 4 * * *\"}\n")
	tty, stdout, code = e.runOnTerminal("jobs", "run", "drill")
	if code != 0 || !regexp.MustCompile(redrawn+`drill 1 of 1: lyra/files \[`+regexp.QuoteMeta(src)+`\]: 3\.6 MiB of 3\.6 MiB`+rate).MatchString(tty) ||
		!regexp.MustCompile(`^drill: ok \(.*\) 1 drills, 0 failed, `).MatchString(stdout) {
		t.Errorf("jobs run drill: exit %d, terminal %q, stdout %q", code, tty, stdout)
	}
	if r := e.run(nil, "jobs", "run", "drill"); r.code != 0 || r.stderr != "" {
		t.Errorf("jobs run drill without a terminal: exit %d, stderr %q", r.code, r.stderr)
	}
}
