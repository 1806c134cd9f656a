package integration

import (
	"bufio"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"
)

// serveRefused runs cairn serve with args, which must refuse to start:
// it returns the exit code and standard error. A serve that logs
// "serving" fails the test (and is killed): whatever it refused should
// have been refused before.
func (e *env) serveRefused(args ...string) (int, string) {
	t := e.t
	t.Helper()
	cmd := exec.Command(cairnBin, append([]string{"serve"}, args...)...)
	cmd.Env = append(cleanEnviron(), e.vars...)
	stderr, err := cmd.StderrPipe()
	if err != nil {
		t.Fatal(err)
	}
	if err := cmd.Start(); err != nil {
		t.Fatal(err)
	}
	var log strings.Builder
	sc := bufio.NewScanner(stderr)
	for sc.Scan() {
		log.WriteString(sc.Text() + "\n")
		if strings.Contains(sc.Text(), "msg=serving") {
			cmd.Process.Kill()
			cmd.Wait()
			t.Fatalf("cairn serve %s started serving:\n%s", strings.Join(args, " "), log.String())
		}
	}
	cmd.Wait()
	return cmd.ProcessState.ExitCode(), log.String()
}

// Issue 13 item 5: serve --config /nonexistent.yaml started with no
// nodes (and status said all well); a configuration file must exist,
// the default DIR.yaml too, for serve. A schedule typo failed only after
// "serving" was logged; every problem of the file is listed, each with
// FILE:LINE: KEY, before anything is served.
func TestServeRefusesBadConfig(t *testing.T) {
	e := newEnv(t)
	e.ok("init")
	missing := filepath.Join(e.dir, "nonexistent.yaml")
	code, log := e.serveRefused("--config", missing)
	if want := "cairn: " + missing + ": no such configuration file (cairn init writes one beside the repository)\n"; code != 1 || !strings.HasSuffix(log, want) {
		t.Errorf("serve --config %s: exit %d\n%s\nwant the last line %q", missing, code, log, want)
	}
	if err := os.Rename(e.repo+".yaml", e.repo+".yaml.off"); err != nil {
		t.Fatal(err)
	}
	code, log = e.serveRefused()
	if want := "cairn: " + e.repo + ".yaml: no such configuration file (cairn init writes one beside the repository)\n"; code != 1 || !strings.HasSuffix(log, want) {
		t.Errorf("serve without DIR.yaml: exit %d\n%s\nwant the last line %q", code, log, want)
	}
	bad := "listen: 127.0.0.1:2222\nmetrics: 19472\njobs:\n  drill: {schedule: \"@dialy\"}\nlimits:\n  sessions: -3\n  max_batch: 1000000\n"
	if err := os.WriteFile(e.repo+".yaml", []byte(bad), 0o600); err != nil {
		t.Fatal(err)
	}
	code, log = e.serveRefused()
	want := "cairn: " + e.repo + ".yaml:2: metrics: address 19472: missing port in address (give HOST:PORT, such as 127.0.0.1:9100)\n" +
		"cairn: " + e.repo + ".yaml:4: jobs.drill.schedule: \"@dialy\": unrecognized descriptor: @dialy\n" +
		"cairn: " + e.repo + ".yaml:6: limits.sessions: -3 is negative; give a number above 0, or leave it out for the default 32\n" +
		"cairn: " + e.repo + ".yaml:7: limits.max_batch: 1000000 is above the most allowed, 65536\n"
	if code != 1 || !strings.HasSuffix(log, want) {
		t.Errorf("serve with a bad DIR.yaml: exit %d\n%s\nwant it to end with\n%s", code, log, want)
	}
}

// cairn config check runs serve's validation on a file, without the
// repository, its key or a running appliance: "FILE: ok (N nodes, M
// jobs)", or every problem on standard output, exit 1.
func TestConfigCheck(t *testing.T) {
	e := newEnv(t)
	noKey := []string{"CAIRN_PASSWORD_FILE=", "CAIRN_REPO=" + filepath.Join(e.dir, "no-repository")}
	good := filepath.Join(e.dir, "good.yaml")
	lyra := newNode(t, "lyra", "push")
	os.WriteFile(good, []byte(fmt.Sprintf("nodes:\n  lyra:\n    keys: [%q]\n    permissions: [push]\njobs:\n  drill: {schedule: \"@daily\"}\n  verify: {schedule: \"@daily\"}\n", lyra.Key.PublicLine)), 0o600)
	r := e.run(noKey, "config", "check", good)
	if r.code != 0 || r.stdout != good+": ok (1 node, 2 jobs)\n" || r.stderr != "" {
		t.Errorf("good: exit %d\n%s%s", r.code, r.stdout, r.stderr)
	}
	bad := filepath.Join(e.dir, "bad.yaml")
	os.WriteFile(bad, []byte("nodes:\n  lyra:\n    keys: [\"ssh-ed25519 garbage\"]\n    permissions: [push, write]\nexpect:\n  lyra: 1w\nretention:\n  timezone: Europe/Berln\n  policies:\n    default: {keep_drilled: 2}\n"), 0o600)
	r = e.run(noKey, "config", "check", bad)
	want := bad + ":3: nodes.lyra.keys[0]: not a public key: ssh: no key found; last parsing error for ignored line: illegal base64 data at input byte 4\n" +
		bad + `:4: nodes.lyra.permissions[1]: unknown permission "write" (use push, read, admin)` + "\n" +
		bad + `:6: expect.lyra: span "1w": unknown unit 'w' (use y, m, d, h)` + "\n" +
		bad + ":8: retention.timezone: unknown time zone Europe/Berln\n" +
		bad + ":10: retention.policies.default: keeps nothing; give at least one keep_* rule (keep_drilled alone keeps nothing until a drill passes)\n"
	if r.code != 1 || r.stdout != want || r.stderr != "cairn: "+bad+": 5 problems\n" {
		t.Errorf("bad: exit %d\nstdout:\n%s\nwant:\n%s\nstderr: %s", r.code, r.stdout, want, r.stderr)
	}
	r = e.run(noKey, "config", "check", filepath.Join(e.dir, "none.yaml"))
	if r.code != 1 || r.stderr != "cairn: "+filepath.Join(e.dir, "none.yaml")+": no such configuration file (cairn init writes one beside the repository)\n" {
		t.Errorf("missing: exit %d %s", r.code, r.stderr)
	}
	r = e.run([]string{"CAIRN_REPO="}, "config", "check")
	if r.code != 2 || r.stderr != "cairn: config check: give FILE, or --repo DIR (or CAIRN_REPO) for DIR.yaml\n" {
		t.Errorf("no file, no repository: exit %d %s", r.code, r.stderr)
	}
	// The default is DIR.yaml, also while the appliance runs.
	e.ok("init")
	e.serve(lyra)
	r = e.run([]string{"CAIRN_PASSWORD_FILE="}, "config", "check")
	if r.code != 0 || r.stdout != e.repo+".yaml: ok (1 node, 0 jobs)\n" {
		t.Errorf("DIR.yaml: exit %d\n%s%s", r.code, r.stdout, r.stderr)
	}
}

// Issue 13 item 5: status --config X was ignored while the appliance
// ran (the command, relayed to it, used the appliance's own
// configuration). It uses X now, checked whole; jobs run refuses a
// configuration other than the one the appliance runs its jobs with.
func TestStatusConfigWhileServing(t *testing.T) {
	e := newEnv(t)
	e.ok("init")
	lyra := newNode(t, "lyra", "push")
	e.serve()
	if out := e.ok("status"); !strings.HasSuffix(out, "\nall well\n") {
		t.Fatalf("status with the appliance's configuration:\n%s", out)
	}
	other := filepath.Join(e.dir, "other.yaml")
	os.WriteFile(other, []byte(fmt.Sprintf("nodes:\n  lyra:\n    keys: [%q]\n    permissions: [push]\n", lyra.Key.PublicLine)), 0o600)
	r := e.run(nil, "status", "--config", other)
	if r.code != 5 || !strings.HasSuffix(r.stdout, "\nneeds attention:\n  - lyra: never backed up (a node in the configuration)\n") {
		t.Errorf("status --config %s: exit %d\n%s%s", other, r.code, r.stdout, r.stderr)
	}
	bad := filepath.Join(e.dir, "bad.yaml")
	os.WriteFile(bad, []byte("jobs:\n  drill: {schedule: \"@dialy\"}\nlimits: {sessions: -3}\n"), 0o600)
	r = e.run(nil, "status", "--config", bad)
	want := "cairn: " + bad + `:2: jobs.drill.schedule: "@dialy": unrecognized descriptor: @dialy` + "\n" +
		"cairn: " + bad + ":3: limits.sessions: -3 is negative; give a number above 0, or leave it out for the default 32\n"
	if r.code != 1 || r.stderr != want || r.stdout != "" {
		t.Errorf("status --config %s: exit %d\nstdout: %s\nstderr:\n%s\nwant:\n%s", bad, r.code, r.stdout, r.stderr, want)
	}
	r = e.run(nil, "status", "--config", filepath.Join(e.dir, "none.yaml"))
	if r.code != 1 || r.stderr != "cairn: "+filepath.Join(e.dir, "none.yaml")+": no such configuration file (cairn init writes one beside the repository)\n" {
		t.Errorf("status --config none.yaml: exit %d %s", r.code, r.stderr)
	}
	r = e.run(nil, "jobs", "run", "staleness", "--config", other)
	if want := "cairn: jobs run: the running appliance runs jobs with its configuration " + e.repo + ".yaml, not " + other + ": stop it to run a job with --config, or change " + e.repo + ".yaml and send it SIGHUP\n"; r.code != 2 || r.stderr != want {
		t.Errorf("jobs run --config: exit %d %q\nwant %q", r.code, r.stderr, want)
	}
}

// Without the appliance and without DIR.yaml, status works on the
// defaults but says that no configuration file exists: an appliance
// without one serves no node and runs no job.
func TestStatusWithoutConfigFile(t *testing.T) {
	e := newEnv(t)
	e.ok("init")
	if err := os.Remove(e.repo + ".yaml"); err != nil {
		t.Fatal(err)
	}
	r := e.run(nil, "status")
	want := "\nneeds attention:\n  - no configuration file " + e.repo + ".yaml: no node may connect and no job runs (cairn init writes one; cairn config check checks one)\n"
	if r.code != 5 || !strings.HasSuffix(r.stdout, want) {
		t.Errorf("status: exit %d\n%s%s", r.code, r.stdout, r.stderr)
	}
}
