package torture

import (
	"bytes"
	"errors"
	"fmt"
	"io"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"syscall"
	"testing"

	"github.com/cairnbackup/cairn/integration/apptest"
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
type node = apptest.Node

func newNode(t testing.TB, name, perms string) *node { return apptest.NewNode(t, name, perms) }

// appliance is a running `cairn serve` of an env.
type appliance struct {
	*apptest.Appliance
	e *env
}

// writeConfig writes DIR.yaml for nodes listening on port, with extra
// YAML appended (limits: has the short idle timeout of the tests unless
// extra gives its own limits).
func (e *env) writeConfig(port int, extra string, nodes ...*node) {
	e.t.Helper()
	apptest.WriteConfig(e.t, e.beside(".yaml"), port, extra, nodes...)
}

// serve starts `cairn serve` with extra environment (crash points) and
// configuration and waits until it serves. At cleanup it gets SIGTERM
// unless it died or was stopped.
func (e *env) serve(extraEnv []string, extraConfig string, nodes ...*node) *appliance {
	e.t.Helper()
	return &appliance{e: e, Appliance: apptest.Start(e.t, apptest.Options{
		Bin: cairnBin, Env: append(append(cleanEnviron(), e.vars...), extraEnv...),
		Beside: e.beside(""), Extra: extraConfig, Nodes: nodes, Files: e.files,
		MayDie: true, LogLines: 60, DebugLog: os.Getenv("TORTURE_DEBUG_LOG"),
	})}
}

// push runs cairn push as node n with extra environment and arguments.
func (a *appliance) push(n *node, extraEnv []string, stdin io.Reader, args ...string) result {
	a.e.t.Helper()
	return a.e.run(extraEnv, stdin, a.PushArgs(n, args...)...)
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
