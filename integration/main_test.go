// Package integration tests the real cairn binary end to end: it is built
// once in TestMain and run as a child process against real repositories
// in temporary directories.
package integration

import (
	"bytes"
	"errors"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"

	"github.com/cairnbackup/cairn/integration/s3test"
)

var cairnBin string

func TestMain(m *testing.M) {
	dir, err := os.MkdirTemp("", "cairn-integration-")
	if err != nil {
		fmt.Fprintln(os.Stderr, err)
		os.Exit(1)
	}
	os.Chmod(dir, 0o755) // tests run the binary as other users too
	cairnBin = filepath.Join(dir, "cairn")
	build := exec.Command("go", "build", "-o", cairnBin, "../cmd/cairn")
	build.Stdout, build.Stderr = os.Stdout, os.Stderr
	if err := build.Run(); err != nil {
		fmt.Fprintln(os.Stderr, "building cairn:", err)
		os.Exit(1)
	}
	code := m.Run()
	s3test.StopShared()
	os.RemoveAll(dir)
	os.Exit(code)
}

// result is one finished run of the binary.
type result struct {
	stdout, stderr string
	code           int
}

// env is a repository for one test plus the environment to reach it.
type env struct {
	t     *testing.T
	dir   string // the test's scratch directory
	repo  string
	state string // an object-store repository's state directory ("" for a directory)
	vars  []string
}

// beside is the path of a file beside the repository (".yaml",
// ".host_key", ".sock", ".key"): DIR.yaml, or STATE/cairn.yaml for an
// object store.
func (e *env) beside(suffix string) string {
	if e.state != "" {
		return filepath.Join(e.state, "cairn"+suffix)
	}
	return e.repo + suffix
}

// newEnv prepares (but does not init) a repository path with a
// passphrase file.
func newEnv(t *testing.T) *env {
	dir := t.TempDir()
	pw := filepath.Join(dir, "password")
	if err := os.WriteFile(pw, []byte("integration secret\n"), 0o600); err != nil {
		t.Fatal(err)
	}
	e := &env{t: t, dir: dir, repo: filepath.Join(dir, "repo")}
	e.vars = []string{"CAIRN_REPO=" + e.repo, "CAIRN_PASSWORD_FILE=" + pw}
	return e
}

// run runs cairn with args and the env's variables plus extra ones.
func (e *env) run(extra []string, args ...string) result {
	e.t.Helper()
	cmd := exec.Command(cairnBin, args...)
	cmd.Env = append(append(cleanEnviron(), e.vars...), extra...)
	var out, errb bytes.Buffer
	cmd.Stdout, cmd.Stderr = &out, &errb
	err := cmd.Run()
	res := result{stdout: out.String(), stderr: errb.String()}
	var ee *exec.ExitError
	switch {
	case errors.As(err, &ee):
		res.code = ee.ExitCode()
	case err != nil:
		e.t.Fatalf("run cairn %v: %v", args, err)
	}
	return res
}

// ok runs cairn and fails the test unless it exits 0.
func (e *env) ok(args ...string) string {
	e.t.Helper()
	r := e.run(nil, args...)
	if r.code != 0 {
		e.t.Fatalf("cairn %s: exit %d\nstdout: %s\nstderr: %s", strings.Join(args, " "), r.code, r.stdout, r.stderr)
	}
	return r.stdout
}

// cleanEnviron drops CAIRN_* variables of the developer's shell.
func cleanEnviron() []string {
	var out []string
	for _, kv := range os.Environ() {
		if !strings.HasPrefix(kv, "CAIRN_") {
			out = append(out, kv)
		}
	}
	return out
}
