package torture

import (
	"bufio"
	"bytes"
	"errors"
	"fmt"
	"io"
	"net"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"sync"
	"syscall"
	"testing"
	"time"

	"github.com/cairnbackup/cairn/integration/sshtest"
	"golang.org/x/crypto/ssh"
)

// result is one finished run of the binary.
type result struct {
	args           []string
	stdout, stderr string
	code           int  // exit code; -1 when a signal ended it
	killed         bool // ended by SIGKILL
}

func (r result) String() string {
	return fmt.Sprintf("cairn %s: exit %d (killed %v)\nstdout: %s\nstderr: %s", strings.Join(r.args, " "), r.code, r.killed, r.stdout, r.stderr)
}

// env is one repository, in key file mode (no argon2id at every open),
// with the environment every cairn process of the test gets. tmp is the
// TMPDIR of those processes: whatever they leave there is a leak.
type env struct {
	t    testing.TB
	dir  string // the test's scratch directory
	repo string
	tmp  string
	vars []string
	// files, if not zero, is the open file limit (soft and hard) of the
	// appliances serve starts.
	files int
	// s3, if not nil, is the object store the repository is in (repo is
	// then its URL; see s3repo_test.go).
	s3 *s3Store
}

// newEnv prepares a repository path (not initialised) under t.TempDir().
func newEnv(t testing.TB) *env {
	dir := t.TempDir()
	e := &env{t: t, dir: dir, repo: filepath.Join(dir, "repo"), tmp: filepath.Join(dir, "tmp")}
	if err := os.Mkdir(e.tmp, 0o700); err != nil {
		t.Fatal(err)
	}
	e.vars = []string{"CAIRN_REPO=" + e.repo, "TMPDIR=" + e.tmp}
	return e
}

// initRepo runs cairn init with small packs and chunks, so small test
// trees still make many packs and many crash point hits.
func (e *env) initRepo() {
	e.t.Helper()
	e.ok("init", "--pack-size", "1MiB", "--chunk-min", "16KiB", "--chunk-avg", "64KiB", "--chunk-max", "256KiB")
}

// run runs cairn with args, extra environment and stdin (may be nil).
func (e *env) run(extra []string, stdin io.Reader, args ...string) result {
	e.t.Helper()
	cmd := cairnCommand(args...)
	cmd.Env = append(append(cleanEnviron(), e.vars...), extra...)
	cmd.Stdin = stdin
	var out, errb bytes.Buffer
	cmd.Stdout, cmd.Stderr = &out, &errb
	return finish(e.t, cmd, cmd.Run(), args, &out, &errb)
}

// cairnCommand is exec.Command for the binary under test, which the
// kernel kills when the test process dies (a test binary killed at its
// timeout must not leave appliances and mounts running).
func cairnCommand(args ...string) *exec.Cmd {
	cmd := exec.Command(cairnBin, args...)
	cmd.SysProcAttr = &syscall.SysProcAttr{Pdeathsig: syscall.SIGKILL}
	return cmd
}

func finish(t testing.TB, cmd *exec.Cmd, err error, args []string, out, errb *bytes.Buffer) result {
	t.Helper()
	res := result{args: args, stdout: out.String(), stderr: errb.String()}
	var ee *exec.ExitError
	switch {
	case errors.As(err, &ee):
		res.code = ee.ExitCode()
		if ws, ok := ee.Sys().(syscall.WaitStatus); ok && ws.Signaled() && ws.Signal() == syscall.SIGKILL {
			res.killed = true
		}
	case err != nil:
		t.Fatalf("run cairn %v: %v", args, err)
	}
	return res
}

// ok runs cairn and fails the test unless it exits 0.
func (e *env) ok(args ...string) string {
	e.t.Helper()
	r := e.run(nil, nil, args...)
	if r.code != 0 {
		e.t.Fatalf("%s", r)
	}
	return r.stdout
}

// cleanEnviron drops CAIRN_* variables of the developer's shell.
func cleanEnviron() []string {
	var out []string
	for _, kv := range os.Environ() {
		if !strings.HasPrefix(kv, "CAIRN_") && !strings.HasPrefix(kv, "TMPDIR=") {
			out = append(out, kv)
		}
	}
	return out
}

// leftovers lists what an interrupted operation may leave behind and
// the next open must have removed: temporary files in the repository
// (incomplete uploads in an object store), index.new and index.old, and
// (with tmp) anything in the processes' TMPDIR.
func (e *env) leftovers(tmp bool) []string {
	var out []string
	index := e.repo
	if e.s3 != nil {
		out = append(out, e.s3.incompleteUploads(e.t)...)
		index = e.s3.cache
	} else {
		filepath.Walk(e.repo, func(p string, fi os.FileInfo, err error) error {
			if err == nil && strings.HasPrefix(fi.Name(), ".tmp-") {
				out = append(out, p)
			}
			return nil
		})
	}
	for _, d := range []string{"index.new", "index.old"} {
		if _, err := os.Stat(filepath.Join(index, d)); err == nil {
			out = append(out, filepath.Join(index, d))
		}
	}
	var entries []os.DirEntry
	if tmp {
		entries, _ = os.ReadDir(e.tmp)
	}
	for _, en := range entries {
		out = append(out, filepath.Join(e.tmp, en.Name()))
	}
	return out
}

// node is a machine with its own key.
type node struct {
	name  string
	key   *sshtest.Key
	perms string
	extra string // more YAML for the node (indented by 4)
}

func newNode(t testing.TB, name, perms string) *node {
	return &node{name: name, key: sshtest.NewKey(t, "", name), perms: perms}
}

// appliance is a running `cairn serve`.
type appliance struct {
	e       *env
	cmd     *exec.Cmd
	port    int
	hostKey string // SHA256 fingerprint
	mu      sync.Mutex
	log     strings.Builder
	lines   chan string
	exited  chan struct{}
	stopped bool
}

func freePort(t testing.TB) int {
	l, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	defer l.Close()
	return l.Addr().(*net.TCPAddr).Port
}

// writeConfig writes DIR.yaml for nodes listening on port, with extra
// YAML appended (limits: has the short idle timeout of the tests unless
// extra gives its own limits).
func (e *env) writeConfig(port int, extra string, nodes ...*node) {
	var b strings.Builder
	fmt.Fprintf(&b, "listen: 127.0.0.1:%d\nnodes:\n", port)
	if len(nodes) == 0 {
		b.WriteString("  {}\n")
	}
	for _, n := range nodes {
		fmt.Fprintf(&b, "  %s:\n    keys: [%q]\n    permissions: [%s]\n%s", n.name, n.key.PublicLine, n.perms, n.extra)
	}
	if !strings.Contains(extra, "limits:") {
		b.WriteString("limits:\n  idle_timeout: 1m\n")
	}
	b.WriteString(extra)
	if err := os.WriteFile(e.beside(".yaml"), []byte(b.String()), 0o600); err != nil {
		e.t.Fatal(err)
	}
}

// serve starts `cairn serve` with extra environment (crash points) and
// configuration and waits until it serves. At cleanup it gets SIGTERM
// unless it died or was stopped.
func (e *env) serve(extraEnv []string, extraConfig string, nodes ...*node) *appliance {
	t := e.t
	t.Helper()
	port := freePort(t)
	e.writeConfig(port, extraConfig, nodes...)
	a := &appliance{e: e, port: port, lines: make(chan string, 4096), exited: make(chan struct{})}
	a.cmd = cairnCommand("serve")
	if e.files > 0 {
		// The shell sets the limit and becomes the appliance.
		a.cmd.Path, a.cmd.Args = "/bin/sh", []string{"sh", "-c", fmt.Sprintf(`ulimit -n %d && exec "$0" serve`, e.files), cairnBin}
	}
	a.cmd.Env = append(append(cleanEnviron(), e.vars...), extraEnv...)
	stderr, err := a.cmd.StderrPipe()
	if err != nil {
		t.Fatal(err)
	}
	if err := a.cmd.Start(); err != nil {
		t.Fatal(err)
	}
	// The log is read to its end before Wait, which closes the pipe
	// (reading after it could lose the last lines).
	readAll := make(chan struct{})
	go func() {
		defer close(readAll)
		sc := bufio.NewScanner(stderr)
		sc.Buffer(nil, 1<<20)
		dbg, _ := os.OpenFile(os.Getenv("TORTURE_DEBUG_LOG"), os.O_WRONLY|os.O_CREATE|os.O_APPEND, 0o644)
		for sc.Scan() {
			if dbg != nil {
				dbg.WriteString(sc.Text() + "\n")
			}
			a.mu.Lock()
			a.log.WriteString(sc.Text() + "\n")
			a.mu.Unlock()
			select {
			case a.lines <- sc.Text():
			default:
			}
		}
		close(a.lines)
	}()
	go func() { <-readAll; a.cmd.Wait(); close(a.exited) }()
	t.Cleanup(func() {
		if !a.stopped && !a.dead() {
			a.stop()
		}
		if t.Failed() {
			t.Logf("appliance log (tail):\n%s", tail(a.Log(), 60))
		}
	})
	line := a.waitFor("msg=serving")
	for _, f := range strings.Fields(line) {
		if v, ok := strings.CutPrefix(f, "host_key="); ok {
			a.hostKey = v
		}
	}
	return a
}

func tail(s string, n int) string {
	lines := strings.Split(strings.TrimRight(s, "\n"), "\n")
	if len(lines) > n {
		lines = lines[len(lines)-n:]
	}
	return strings.Join(lines, "\n")
}

// stop sends SIGTERM and requires a clean exit within a minute.
func (a *appliance) stop() {
	a.stopped = true
	a.cmd.Process.Signal(syscall.SIGTERM)
	select {
	case <-a.exited:
	case <-time.After(60 * time.Second):
		a.cmd.Process.Kill()
		<-a.exited
		a.e.t.Errorf("the appliance did not stop on SIGTERM")
		return
	}
	if code := a.cmd.ProcessState.ExitCode(); code != 0 {
		a.e.t.Errorf("the appliance exited %d:\n%s", code, tail(a.Log(), 30))
	}
}

// dead reports whether the appliance process has ended.
func (a *appliance) dead() bool {
	select {
	case <-a.exited:
		return true
	default:
		return false
	}
}

// killedBySIGKILL waits for the appliance to end and reports whether
// SIGKILL ended it.
func (a *appliance) killedBySIGKILL(timeout time.Duration) bool {
	select {
	case <-a.exited:
	case <-time.After(timeout):
		return false
	}
	ws, ok := a.cmd.ProcessState.Sys().(syscall.WaitStatus)
	return ok && ws.Signaled() && ws.Signal() == syscall.SIGKILL
}

// waitFor returns the first log line from now on that contains s.
func (a *appliance) waitFor(s string) string {
	a.e.t.Helper()
	timeout := time.After(60 * time.Second)
	for {
		select {
		case line, ok := <-a.lines:
			if !ok {
				a.e.t.Fatalf("the appliance exited before logging %q:\n%s", s, tail(a.Log(), 40))
			}
			if strings.Contains(line, s) {
				return line
			}
		case <-timeout:
			a.e.t.Fatalf("no log line %q:\n%s", s, tail(a.Log(), 40))
		}
	}
}

// Log returns everything the appliance logged so far.
func (a *appliance) Log() string {
	a.mu.Lock()
	defer a.mu.Unlock()
	return a.log.String()
}

// pid is the appliance's process ID.
func (a *appliance) pid() int { return a.cmd.Process.Pid }

// push runs cairn push as node n with extra environment and arguments.
func (a *appliance) push(n *node, extraEnv []string, stdin io.Reader, args ...string) result {
	a.e.t.Helper()
	full := append([]string{"push", fmt.Sprintf("ssh://%s@127.0.0.1:%d", n.name, a.port), "-i", n.key.PrivatePath, "--host-key", a.hostKey}, args...)
	return a.e.run(extraEnv, stdin, full...)
}

// dial opens an SSH connection to the appliance as node n (its name as
// the user, its key).
func (a *appliance) dial(n *node) (*ssh.Client, error) {
	return ssh.Dial("tcp", fmt.Sprintf("127.0.0.1:%d", a.port), &ssh.ClientConfig{
		User:            n.name,
		Auth:            []ssh.AuthMethod{ssh.PublicKeys(n.key.Signer)},
		HostKeyCallback: ssh.InsecureIgnoreHostKey(),
		Timeout:         30 * time.Second,
	})
}

// peakRSS returns the VmHWM (peak resident set) of process pid in bytes.
func peakRSS(pid int) int64 {
	b, err := os.ReadFile(fmt.Sprintf("/proc/%d/status", pid))
	if err != nil {
		return 0
	}
	for _, l := range strings.Split(string(b), "\n") {
		if v, ok := strings.CutPrefix(l, "VmHWM:"); ok {
			var kb int64
			fmt.Sscanf(strings.TrimSpace(v), "%d kB", &kb)
			return kb << 10
		}
	}
	return 0
}

// cleanStaleMounts detaches cairn FUSE mounts whose server died.
func cleanStaleMounts() {
	b, err := os.ReadFile("/proc/mounts")
	if err != nil {
		return
	}
	for _, l := range strings.Split(string(b), "\n") {
		f := strings.Fields(l)
		if len(f) >= 3 && strings.HasPrefix(f[2], "fuse.cairn") {
			var st syscall.Stat_t
			if err := syscall.Stat(f[1], &st); errors.Is(err, syscall.ENOTCONN) {
				exec.Command("umount", "-l", f[1]).Run()
			}
		}
	}
}

func mib(n int64) string { return fmt.Sprintf("%.1f MiB", float64(n)/(1<<20)) }
