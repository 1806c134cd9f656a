package integration

import (
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"syscall"
	"testing"

	"github.com/cairnbackup/cairn/integration/apptest"
	"github.com/cairnbackup/cairn/integration/testenv"
)

// complete runs `cairn __complete ARGS...` as the shells' scripts do and
// returns its standard output (candidates, then the directive line).
func (e *env) complete(args ...string) string {
	e.t.Helper()
	r := e.run([]string{"TZ=UTC"}, append([]string{"__complete"}, args...)...)
	if r.code != 0 {
		e.t.Fatalf("cairn __complete %s: exit %d: %s", strings.Join(args, " "), r.code, r.stderr)
	}
	return r.stdout
}

// Completion of snapshot IDs, nodes, plans and jobs from the
// repository: opened here when no appliance runs, through the
// appliance's socket when one does (it holds the repository), nothing
// (and at once) when the appliance does not answer; and through bash
// with the script cairn completion bash writes.
func TestCompletion(t *testing.T) {
	e := newEnv(t)
	e.ok("init")
	src := filepath.Join(e.dir, "src")
	writeSource(t, src)
	e.ok("backup", "--node", "lyra", "--plan", "etc", src)
	e.ok("backup", "--node", "vega", src)
	list := e.snapshotInfos()
	lyraSnap, vegaSnap := list[0], list[1]
	lyra, vega, deneb := newNode(t, "lyra", "push"), newNode(t, "vega", "push"), newNode(t, "deneb", "push")
	e.writeConfigExtra(apptest.FreePort(t), "jobs:\n  drill: {schedule: \"0 4 * * *\"}\n", lyra, vega, deneb)

	when := func(s snapshotInfo) string { return s.Time.UTC().Format("2006-01-02 15:04:05 UTC") }
	wantIDs := "latest\tthe newest snapshot\n" +
		vegaSnap.ID[:8] + "\tvega/@none " + when(vegaSnap) + " " + src + "\n" +
		lyraSnap.ID[:8] + "\tlyra/etc " + when(lyraSnap) + " " + src + "\n" +
		":36\n"
	wantNodes := "deneb\nlyra\nvega\n:4\n"
	wantPlans := "@none\netc\n:4\n"
	wantJobs := "drill\tscheduled 0 4 * * *\nprune\tnot scheduled\nstaleness\tnot scheduled\nverify\tnot scheduled\n:4\n"
	check := func(how string) {
		t.Helper()
		for _, c := range []struct {
			args []string
			want string
		}{
			{[]string{"ls", ""}, wantIDs},
			{[]string{"restore", "--target", "/tmp/x", ""}, wantIDs},
			{[]string{"diff", lyraSnap.ID[:8], ""}, wantIDs},
			{[]string{"ls", lyraSnap.ID[:3]}, lyraSnap.ID[:8] + "\tlyra/etc " + when(lyraSnap) + " " + src + "\n:36\n"},
			{[]string{"ls", "latest:/"}, ":4\n"},
			{[]string{"dump", lyraSnap.ID[:8], ""}, ":4\n"},
			{[]string{"find", "x", "--snapshot", ""}, wantIDs},
			{[]string{"snapshots", "--node", ""}, wantNodes},
			{[]string{"forget", "--node", "l"}, "lyra\n:4\n"},
			{[]string{"snapshots", "--plan", ""}, wantPlans},
			{[]string{"jobs", ""}, "run\trun a job now\n:4\n"},
			{[]string{"jobs", "run", ""}, wantJobs},
			{[]string{"jobs", "run", "d"}, "drill\tscheduled 0 4 * * *\n:4\n"},
		} {
			if got := e.complete(c.args...); got != c.want {
				t.Errorf("%s: cairn __complete %q:\n%s\nwant:\n%s", how, c.args, got, c.want)
			}
		}
	}
	check("no appliance")

	a := e.serveWith("jobs:\n  drill: {schedule: \"0 4 * * *\"}\n", lyra, vega, deneb)
	check("through the appliance")

	// An appliance that does not answer: no candidates, and no hang.
	a.Cmd.Process.Signal(syscall.SIGSTOP)
	got := e.complete("ls", "")
	a.Cmd.Process.Signal(syscall.SIGCONT)
	if got != ":4\n" {
		t.Errorf("a stopped appliance: %q, want no candidates", got)
	}

	// bash (with bash-completion, which the script uses), with the
	// script cairn writes.
	bash := testenv.RequireProgram(t, "bash", "bash")
	requireBashCompletion(t)
	script := filepath.Join(e.dir, "cairn.bash")
	if err := os.WriteFile(script, []byte(e.ok("completion", "bash")), 0o644); err != nil {
		t.Fatal(err)
	}
	cmd := exec.Command(bash, "--norc", "--noprofile", "-c", `source /usr/share/bash-completion/bash_completion
source "$1"
COMP_WORDS=(cairn snapshots --node "")
COMP_CWORD=3
COMP_LINE="cairn snapshots --node "
COMP_POINT=${#COMP_LINE}
__start_cairn
printf '%s\n' "${COMPREPLY[@]}"`, "bash", script)
	cmd.Env = append(append(cleanEnviron(), e.vars...), "PATH="+filepath.Dir(cairnBin)+":"+os.Getenv("PATH"))
	// (bash says compopt works only inside a completion: not a failure.)
	var stderr strings.Builder
	cmd.Stderr = &stderr
	out, err := cmd.Output()
	if err != nil || string(out) != "deneb\nlyra\nvega\n" {
		t.Errorf("bash completion of --node: %v\n%s\n%s", err, out, stderr.String())
	}
}

// requireBashCompletion skips (fails under CI=true) without Debian's
// bash-completion, which cobra's bash scripts use.
func requireBashCompletion(t *testing.T) {
	t.Helper()
	if _, err := os.Stat("/usr/share/bash-completion/bash_completion"); err != nil {
		testenv.Missing(t, "bash-completion is not installed (Debian package bash-completion): %v", err)
	}
}
