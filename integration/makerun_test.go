package integration

import (
	"bufio"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"syscall"
	"testing"

	"github.com/cairnbackup/cairn/integration/apptest"
	"github.com/cairnbackup/cairn/integration/testenv"
)

// make run printed 127.0.0.1:2222 and :9100 whatever the configuration
// said (issue 13): it prints the addresses DIR.yaml gives, and the push
// command it prints reaches the appliance it starts.
func TestMakeRunPrintsConfiguredAddresses(t *testing.T) {
	mk := testenv.RequireProgram(t, "make", "make")
	dir := t.TempDir()
	vardir, bin := filepath.Join(dir, "var"), filepath.Join(dir, "bin", "cairn")
	repo, key := filepath.Join(vardir, "repo"), filepath.Join(vardir, "demo_key")
	os.MkdirAll(vardir, 0o755)
	for _, args := range [][]string{{"--repo", repo, "init"}, {"keygen", key}} {
		if out, err := exec.Command(cairnBin, args...).CombinedOutput(); err != nil {
			t.Fatalf("cairn %v: %v\n%s", args, err, out)
		}
	}
	pub, err := os.ReadFile(key + ".pub")
	if err != nil {
		t.Fatal(err)
	}
	listen, metrics := fmt.Sprintf("127.0.0.1:%d", apptest.FreePort(t)), fmt.Sprintf("127.0.0.1:%d", apptest.FreePort(t))
	config := fmt.Sprintf("listen: %s\nmetrics: %s\nnodes:\n  demo:\n    keys: [%q]\n    permissions: [push, read]\n", listen, metrics, strings.TrimSpace(string(pub)))
	if err := os.WriteFile(repo+".yaml", []byte(config), 0o600); err != nil {
		t.Fatal(err)
	}
	cmd := exec.Command(mk, "--no-print-directory", "-C", "..", "run", "VAR="+vardir, "BIN="+bin)
	cmd.Env = cleanEnviron()
	cmd.SysProcAttr = &syscall.SysProcAttr{Setpgid: true}
	out, err := cmd.StdoutPipe()
	if err != nil {
		t.Fatal(err)
	}
	cmd.Stderr = cmd.Stdout
	if err := cmd.Start(); err != nil {
		t.Fatal(err)
	}
	defer func() {
		syscall.Kill(-cmd.Process.Pid, syscall.SIGTERM)
		cmd.Wait()
	}()
	var printed strings.Builder
	sc := bufio.NewScanner(out)
	for sc.Scan() {
		printed.WriteString(sc.Text() + "\n")
		if strings.Contains(sc.Text(), "msg=serving") {
			break
		}
	}
	got := printed.String()
	for _, want := range []string{
		"The appliance serves " + repo + " on " + listen + ". From another terminal, push this source tree:\n",
		"  " + bin + " push ssh://demo@" + listen + " ",
		"  curl -s http://" + metrics + "/metrics | grep ^cairn_\n",
	} {
		if !strings.Contains(got, want) {
			t.Errorf("make run does not print %q:\n%s", want, got)
		}
	}
	if strings.Contains(got, ":2222") || strings.Contains(got, ":9100") {
		t.Errorf("make run prints a default port:\n%s", got)
	}
	for line := range strings.Lines(got) {
		if args, ok := strings.CutPrefix(strings.TrimSpace(line), bin+" push "); ok {
			push := exec.Command(bin, append([]string{"push"}, strings.Fields(args)...)...)
			push.Env = cleanEnviron()
			if out, err := push.CombinedOutput(); err != nil || !strings.Contains(string(out), " saved") {
				t.Errorf("the push make run prints: %v\n%s", err, out)
			}
			return
		}
	}
	t.Errorf("no push command in\n%s", got)
}
