package integration

import (
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"syscall"
	"testing"
)

// cairn snapshots --from on a node lists its own snapshots on the
// appliance (an admin node's: all), in the operator's table and JSON,
// with the operator's filters; push permission is enough, as for the
// node command snapshots.
func TestSnapshotsFromNode(t *testing.T) {
	e := newEnv(t)
	e.vars = append(e.vars, "TZ=UTC")
	e.ok("init")
	lyra, vega, boss := newNode(t, "lyra", "push"), newNode(t, "vega", "push, read"), newNode(t, "boss", "admin")
	a := e.serve(lyra, vega, boss)
	src := filepath.Join(e.dir, "src")
	writeSource(t, src)
	for _, push := range []struct {
		n    *node
		args []string
	}{{lyra, []string{"--plan", "files", src}}, {lyra, []string{"--plan", "etc", filepath.Join(src, "etc")}}, {vega, []string{src}}} {
		if r := a.push(push.n, nil, push.args...); r.code != 0 {
			t.Fatalf("push: %s", r.stderr)
		}
	}
	from := func(n *node, args ...string) result {
		full := append([]string{"snapshots", "--from", fmt.Sprintf("ssh://%s@127.0.0.1:%d", n.Name, a.Port), "-i", n.Key.PrivatePath, "--host-key", a.HostKey}, args...)
		return e.runIn(nil, nil, full...)
	}
	for _, c := range []struct {
		n        *node
		args     []string
		operator []string
	}{
		{lyra, []string{"--json"}, []string{"--json", "--node", "lyra"}},
		{lyra, nil, []string{"--node", "lyra"}},
		{lyra, []string{"--json", "--plan", "etc"}, []string{"--json", "--node", "lyra", "--plan", "etc"}},
		{vega, nil, []string{"--node", "vega"}},
		{boss, []string{"--json"}, []string{"--json"}},
		{boss, []string{"--node", "lyra", "--path", filepath.Join(src, "etc")}, []string{"--node", "lyra", "--path", filepath.Join(src, "etc")}},
	} {
		want := e.ok(append([]string{"snapshots"}, c.operator...)...)
		r := from(c.n, c.args...)
		if r.code != 0 || r.stdout != want || r.stderr != "" {
			t.Errorf("%s %v: exit %d\nstdout %s\nstderr %q\nwant the operator's %v:\n%s", c.n.Name, c.args, r.code, r.stdout, r.stderr, c.operator, want)
		}
	}
	if got := strings.Count(e.ok("snapshots", "--node", "lyra"), "\n"); got != 3 {
		t.Fatalf("the operator lists %d lines for lyra", got)
	}
	// A wrong address is a usage error; a wrong host key is refused.
	if r := e.runIn(nil, nil, "snapshots", "--from", "lyra@127.0.0.1"); r.code != 2 || r.stderr != "cairn: snapshots --from: \"lyra@127.0.0.1\" is not ssh://NODE@HOST[:PORT]\n" {
		t.Errorf("bad address: %d %q", r.code, r.stderr)
	}
	r := e.runIn(nil, nil, "snapshots", "--from", fmt.Sprintf("ssh://lyra@127.0.0.1:%d", a.Port), "-i", lyra.Key.PrivatePath, "--host-key", "SHA256:wrong")
	if r.code != 1 || !strings.Contains(r.stderr, "not SHA256:wrong as --host-key says") {
		t.Errorf("wrong host key: %d %q", r.code, r.stderr)
	}
}

// hookPlan writes a plan whose sources exercise before and after
// commands, in dir (where the commands run and leave their markers).
func hookPlan(t *testing.T, dir, src string) string {
	t.Helper()
	p := filepath.Join(dir, "plan.yaml")
	doc := fmt.Sprintf(`sources:
  - name: app
    class: files
    why: what the app serves
    paths: [%s]
    before: echo "$CAIRN_SOURCE $CAIRN_NODE $CAIRN_PHASE" > app.marker
    after: ['echo "$CAIRN_SOURCE $CAIRN_NODE $CAIRN_PHASE" >> app.marker']
  - name: db
    class: database
    why: all data
    command: printf 'CREATE TABLE t;\n'
    file: db.sql
    before: [echo flushing, "echo 'error: the database would not flush' >&2; exit 5", touch never.marker]
    after: touch db-after.marker
  - name: slow
    class: config
    why: shows a before command that hangs
    paths: [%s]
    before: sleep 600
    timeout: 1s
  - name: broken
    class: database
    why: shows that after runs when the backup fails
    command: exit 3
    file: broken.sql
    after: touch broken-after.marker
  - name: warn
    class: config
    why: shows an after command that fails
    paths: [%s]
    after: echo cannot restart; exit 7
`, src, src, src)
	if err := os.WriteFile(p, []byte(doc), 0o644); err != nil {
		t.Fatal(err)
	}
	return p
}

// hookedSnapshot is what a snapshot records of a plan source's commands.
type hookedSnapshot struct {
	Plan  string `json:"plan"`
	Scope struct {
		Hooks []struct {
			Phase    string `json:"phase"`
			Command  string `json:"command"`
			Exit     *int   `json:"exit"`
			Error    string `json:"error"`
			Output   string `json:"output"`
			Duration int64  `json:"duration_ns"`
		} `json:"hooks"`
	} `json:"scope"`
	Summary struct {
		Warnings []string `json:"warnings"`
	} `json:"summary"`
}

// checkHookRun checks what push --plan or backup --plan did with the
// hook plan: the exit code, every message, the markers, and the hooks
// the snapshots record.
func checkHookRun(t *testing.T, e *env, r result, dir, verb, node string) {
	t.Helper()
	want := `cairn: source db: before command "echo 'error: the database would not flush' >&2; exit 5" failed: exit status 5: error: the database would not flush; the source was skipped, nothing saved
cairn: source slow: before command "sleep 600" failed: timed out after 1s; the source was skipped, nothing saved
cairn: source broken: command "exit 3" failed: exit status 3; nothing saved
warning: source warn: after command "echo cannot restart; exit 7" failed: exit status 7: cannot restart
cairn: ` + verb + `: 3 of 5 sources failed
`
	if r.code != 1 || r.stderr != want {
		t.Errorf("%s --plan: exit %d\nstderr %s\nwant %s", verb, r.code, r.stderr, want)
	}
	for name, content := range map[string]string{
		"app.marker":          "app " + node + " before\napp " + node + " after\n",
		"db-after.marker":     "",
		"broken-after.marker": "",
	} {
		if got, err := os.ReadFile(filepath.Join(dir, name)); err != nil || string(got) != content {
			t.Errorf("%s: %q %v, want %q", name, got, err, content)
		}
		os.Remove(filepath.Join(dir, name))
	}
	if _, err := os.Stat(filepath.Join(dir, "never.marker")); !os.IsNotExist(err) {
		t.Errorf("a before command after the failing one ran: %v", err)
	}
	var list []hookedSnapshot
	if err := jsonUnmarshal(e.ok("snapshots", "--json", "--node", node), &list); err != nil {
		t.Fatal(err)
	}
	if len(list) != 2 || list[0].Plan != "app" || list[1].Plan != "warn" {
		t.Fatalf("snapshots: %+v", list)
	}
	app, warn := list[0].Scope.Hooks, list[1].Scope.Hooks
	if len(app) != 2 || app[0].Phase != "before" || app[0].Command != `echo "$CAIRN_SOURCE $CAIRN_NODE $CAIRN_PHASE" > app.marker` ||
		app[0].Exit == nil || *app[0].Exit != 0 || app[0].Error != "" || app[1].Phase != "after" || app[1].Duration <= 0 {
		t.Errorf("app's hooks: %+v", app)
	}
	if len(warn) != 1 || warn[0].Phase != "after" || warn[0].Exit == nil || *warn[0].Exit != 7 || warn[0].Error != "exit status 7" || warn[0].Output != "cannot restart" {
		t.Errorf("warn's hooks: %+v", warn)
	}
	if w := list[1].Summary.Warnings; len(w) != 1 || w[0] != `source warn: after command "echo cannot restart; exit 7" failed: exit status 7: cannot restart` {
		t.Errorf("warn's warnings: %q", w)
	}
}

// A plan's before and after commands, on a node (push --plan) and on the
// appliance (backup --plan): run in the plan's directory with the
// source, node and phase in the environment; a failing or hanging before
// skips its source, after runs whatever happened, a failing after is a
// warning; the snapshot records each command with its exit status and
// output.
func TestPlanBeforeAfter(t *testing.T) {
	e := newEnv(t)
	e.ok("init")
	src := filepath.Join(e.dir, "src")
	writeSource(t, src)
	dir := filepath.Join(e.dir, "plans")
	os.Mkdir(dir, 0o755)
	planFile := hookPlan(t, dir, src)

	r := e.runIn(nil, nil, "backup", "--node", "rhea", "--plan", planFile)
	checkHookRun(t, e, r, dir, "backup", "rhea")

	lyra := newNode(t, "lyra", "push")
	a := e.serve(lyra)
	r = a.push(lyra, nil, "--plan", planFile)
	checkHookRun(t, e, r, dir, "push", "lyra")
}

// SIGINT while a before command runs: the command is stopped, the
// source's after commands still run, and push exits 130.
func TestPlanAfterRunsOnSignal(t *testing.T) {
	e := newEnv(t)
	e.ok("init")
	lyra := newNode(t, "lyra", "push")
	a := e.serve(lyra)
	dir := t.TempDir()
	fifo := filepath.Join(dir, "started")
	if err := syscall.Mkfifo(fifo, 0o600); err != nil {
		t.Fatal(err)
	}
	planFile := filepath.Join(dir, "plan.yaml")
	os.WriteFile(planFile, []byte(`sources:
  - name: app
    class: files
    why: x
    paths: [/etc/hostname]
    before: echo started > started; sleep 600
    after: echo "$CAIRN_PHASE" > after.marker
`), 0o644)
	cmd := exec.Command(cairnBin, "push", fmt.Sprintf("ssh://lyra@127.0.0.1:%d", a.Port), "-i", lyra.Key.PrivatePath, "--host-key", a.HostKey, "--plan", planFile)
	cmd.Env = append(cleanEnviron(), e.vars...)
	var errb strings.Builder
	cmd.Stderr = &errb
	if err := cmd.Start(); err != nil {
		t.Fatal(err)
	}
	// The before command has started once it opens the FIFO.
	if _, err := os.ReadFile(fifo); err != nil {
		t.Fatal(err)
	}
	cmd.Process.Signal(syscall.SIGINT)
	err := cmd.Wait()
	ee, _ := err.(*exec.ExitError)
	want := fmt.Sprintf("cairn: push interrupted by SIGINT while running the before commands of source app (appliance 127.0.0.1:%d): nothing of this push was acknowledged\n", a.Port)
	if ee == nil || ee.ExitCode() != 130 || errb.String() != want {
		t.Fatalf("push: %v\n%s", err, errb.String())
	}
	if got, err := os.ReadFile(filepath.Join(dir, "after.marker")); err != nil || string(got) != "after\n" {
		t.Fatalf("after.marker: %q %v\nstderr %s", got, err, errb.String())
	}
	if out := e.ok("snapshots", "--json"); out != "[]\n" {
		t.Fatalf("a snapshot was saved: %s", out)
	}
}
