package integration

import (
	"bufio"
	"encoding/json"
	"fmt"
	"os/exec"
	"syscall"
	"testing"

	"github.com/cairnbackup/cairn/integration/apptest"
)

// --log-format json: every line of the appliance's log is one JSON
// object (slog's JSON handler), numbers as numbers.
func TestServeLogFormatJSON(t *testing.T) {
	e := newEnv(t)
	e.ok("init")
	port := apptest.FreePort(t)
	e.writeConfig(port, newNode(t, "lyra", "push"))
	cmd := exec.Command(cairnBin, "serve", "--log-format", "json")
	cmd.Env = append(cleanEnviron(), e.vars...)
	stderr, err := cmd.StderrPipe()
	if err != nil {
		t.Fatal(err)
	}
	if err := cmd.Start(); err != nil {
		t.Fatal(err)
	}
	defer cmd.Process.Kill()
	sc := bufio.NewScanner(stderr)
	var lines []map[string]any
	signalled := false
	for sc.Scan() {
		var m map[string]any
		if err := json.Unmarshal(sc.Bytes(), &m); err != nil {
			t.Fatalf("a log line that is not JSON: %q: %v", sc.Text(), err)
		}
		if _, ok := m["time"]; !ok || m["level"] != "INFO" {
			t.Fatalf("log line %q: want time and level INFO", sc.Text())
		}
		lines = append(lines, m)
		if m["msg"] == "serving" && !signalled {
			if m["ssh"] != fmt.Sprintf("127.0.0.1:%d", port) || m["nodes"] != 1.0 {
				t.Fatalf("serving line %q", sc.Text())
			}
			cmd.Process.Signal(syscall.SIGTERM)
			signalled = true
		}
	}
	if err := cmd.Wait(); err != nil || !signalled {
		t.Fatalf("cairn serve: %v (served: %v)", err, signalled)
	}
	if last := lines[len(lines)-1]; last["msg"] != "stopped" {
		t.Fatalf("last line %v, want stopped", last)
	}

	r := e.run(nil, "--log-format", "xml", "snapshots")
	if r.code != 2 || r.stderr != "cairn: invalid argument \"xml\" for \"--log-format\" flag: give text or json\n" {
		t.Fatalf("--log-format xml: exit %d, %q", r.code, r.stderr)
	}
}
