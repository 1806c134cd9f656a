package integration

import (
	"bufio"
	"fmt"
	"io"
	"os"
	"os/exec"
	"path/filepath"
	"regexp"
	"slices"
	"strings"
	"sync"
	"syscall"
	"testing"
	"time"

	"github.com/cairnbackup/cairn/integration/testenv"
	"golang.org/x/sys/unix"
)

// runAt runs cairn in the working directory dir with only the environment
// variables vars (besides the test's own, without CAIRN_*).
func (e *env) runAt(dir string, vars []string, args ...string) result {
	e.t.Helper()
	cmd := exec.Command(cairnBin, args...)
	cmd.Dir = dir
	cmd.Env = append(cleanEnviron(), vars...)
	var out, errb strings.Builder
	cmd.Stdout, cmd.Stderr = &out, &errb
	err := cmd.Run()
	res := result{stdout: out.String(), stderr: errb.String()}
	if ee, ok := err.(*exec.ExitError); ok {
		res.code = ee.ExitCode()
	} else if err != nil {
		e.t.Fatal(err)
	}
	return res
}

// The same forget and drill behave the same whether the repository is
// named with --repo or CAIRN_REPO, and whether the command runs here or
// in an appliance started with --repo (whose own environment names no
// repository): both read the appliance configuration beside the
// repository, so forget finds its policies and drill runs the probes
// configured for the plan, and records them.
func TestRepoFlagEnvAndSocketAgree(t *testing.T) {
	e := newEnv(t)
	e.ok("init")
	pw := e.vars[1] // CAIRN_PASSWORD_FILE=…
	src := filepath.Join(e.dir, "src")
	for i := range 3 {
		repotestWrite(t, src, map[string]string{"a.txt": fmt.Sprintf("version %d\n", i)})
		e.ok("backup", "--node", "lyra", "--plan", "srv", src)
	}
	conf := "retention:\n  policies:\n    default: {keep_last: 1}\njobs:\n  drill:\n    probes:\n      lyra/srv: \"echo probe-ran\"\n"

	type mode struct {
		name string
		dir  string
		vars []string
		args []string
	}
	modes := []mode{
		{"--repo", "/", []string{pw}, []string{"--repo", e.repo}},
		{"--repo relative", e.dir, []string{pw}, []string{"--repo", "repo"}},
		{"CAIRN_REPO", "/", []string{pw, "CAIRN_REPO=" + e.repo}, nil},
	}
	check := func(where string) {
		t.Helper()
		// Forget first (a passing drill makes forget keep its snapshot).
		want := ""
		for _, m := range modes {
			r := e.runAt(m.dir, m.vars, append(m.args, "forget", "--dry-run")...)
			if r.code != 0 {
				t.Errorf("%s, %s: forget --dry-run: exit %d\n%s%s", where, m.name, r.code, r.stdout, r.stderr)
				continue
			}
			if want == "" {
				want = r.stdout
				if !strings.Contains(want, "keep 1, would forget 2") {
					t.Fatalf("forget --dry-run:\n%s", want)
				}
			}
			if r.stdout != want {
				t.Errorf("%s, %s: forget --dry-run printed\n%s\nwant\n%s", where, m.name, r.stdout, want)
			}
		}
		for _, m := range modes {
			r := e.runAt(m.dir, m.vars, append(m.args, "drill", "latest", "--json")...)
			var rep struct {
				drillJSON
				Configured []string `json:"configured"`
			}
			if err := jsonUnmarshal(r.stdout, &rep); err != nil || r.code != 0 {
				t.Errorf("%s, %s: drill: exit %d %v\n%s%s", where, m.name, r.code, err, r.stdout, r.stderr)
				continue
			}
			if rep.Result != "ok" || len(rep.Probes) != 1 || rep.Probes[0].Target != "echo probe-ran" || rep.Probes[0].Output != "probe-ran" ||
				len(rep.Configured) != 1 || rep.Configured[0] != "echo probe-ran" {
				t.Errorf("%s, %s: drill report %+v", where, m.name, rep)
			}
		}
	}
	if err := os.WriteFile(e.repo+".yaml", []byte(conf), 0o600); err != nil {
		t.Fatal(err)
	}
	check("no appliance")
	e.serveCommand(conf, []string{pw}, []string{"--repo", e.repo, "serve"})
	check("through the appliance")
}

// A command that names a key file or password file proves it opens the
// repository before anything else, whether or not the appliance runs
// (which would otherwise run the command with its own key: a wrong
// off-site key copy passed check). cairn key test does only that.
func TestNamedKeyMustOpenRepository(t *testing.T) {
	e := newEnv(t)
	e.vars = []string{"CAIRN_REPO=" + e.repo} // key file mode
	e.ok("init")
	e.ok("backup", "--node", "rhea", e.dir+"/password")
	keyName := func(path string) string {
		var kf struct{ Key string }
		if err := jsonUnmarshal(string(mustRead(t, path)), &kf); err != nil {
			t.Fatal(err)
		}
		return kf.Key
	}
	offsite := filepath.Join(e.dir, "offsite.key")
	if err := os.WriteFile(offsite, mustRead(t, e.repo+".key"), 0o600); err != nil {
		t.Fatal(err)
	}
	garbage := filepath.Join(e.dir, "garbage.key")
	if err := os.WriteFile(garbage, []byte("garbage\n"), 0o600); err != nil {
		t.Fatal(err)
	}
	other := newEnv(t)
	other.vars = []string{"CAIRN_REPO=" + other.repo}
	other.ok("init")
	key, otherKey := keyName(e.repo+".key"), keyName(other.repo+".key")

	notGarbage := "cairn: the key file " + garbage + " does not open repository " + e.repo + ": it is not a cairn key file\n"
	cases := []struct {
		extra  []string
		args   []string
		code   int
		stdout string
		stderr string
	}{
		{nil, []string{"--key-file", garbage, "check"}, 1, "", notGarbage},
		{[]string{"CAIRN_KEY_FILE=" + garbage}, []string{"snapshots"}, 1, "", notGarbage},
		{nil, []string{"--key-file", other.repo + ".key", "check"}, 1, "",
			"cairn: the key file " + other.repo + ".key does not open repository " + e.repo + ": it names key " + otherKey + ", which this repository does not have\n"},
		{nil, []string{"--key-file", garbage, "key", "test"}, 1, "", notGarbage},
		{nil, []string{"--key-file", offsite, "key", "test"}, 0, "the key file " + offsite + " opens repository " + e.repo + " (key " + key + ")\n", ""},
		{nil, []string{"key", "test"}, 0, "the key file " + e.repo + ".key opens repository " + e.repo + " (key " + key + ")\n", ""},
		{nil, []string{"--key-file", offsite, "check"}, 0, "checked 1 snapshots, 4 trees, 2 packs: no problems found\n", ""},
	}
	try := func(where string) {
		t.Helper()
		for _, c := range cases {
			r := e.run(c.extra, c.args...)
			if r.code != c.code || r.stdout != c.stdout || r.stderr != c.stderr {
				t.Errorf("%s: %v %v: exit %d\nstdout %q\nstderr %q\nwant %d %q %q", where, c.extra, c.args, r.code, r.stdout, r.stderr, c.code, c.stdout, c.stderr)
			}
		}
	}
	try("no appliance")
	e.serve()
	try("appliance running")

	// A caller who cannot read the repository cannot prove the key: the
	// command is refused, never run with the appliance's key instead.
	t.Run("caller cannot read keys", func(t *testing.T) {
		testenv.RequireRoot(t, "cairn runs as nobody")
		dir, err := os.MkdirTemp("", "cairn-key-")
		if err != nil {
			t.Fatal(err)
		}
		t.Cleanup(func() { os.RemoveAll(dir) })
		copyFor := filepath.Join(dir, "offsite.key")
		if err := os.WriteFile(copyFor, mustRead(t, e.repo+".key"), 0o644); err != nil {
			t.Fatal(err)
		}
		os.Chmod(dir, 0o755)
		want := "cairn: the key file " + copyFor + " could not be checked against repository " + e.repo +
			": storage: open " + filepath.Join(e.repo, "config") + ": permission denied\n"
		for _, args := range [][]string{{"key", "test"}, {"check"}} {
			cmd := exec.Command(cairnBin, append([]string{"--repo", e.repo, "--key-file", copyFor}, args...)...)
			cmd.Env = cleanEnviron()
			cmd.SysProcAttr = &syscall.SysProcAttr{Credential: &syscall.Credential{Uid: 65534, Gid: 65534}}
			var out, errb strings.Builder
			cmd.Stdout, cmd.Stderr = &out, &errb
			err := cmd.Run()
			if ee, ok := err.(*exec.ExitError); !ok || ee.ExitCode() != 1 || out.String() != "" || errb.String() != want {
				t.Errorf("%v as nobody: %v\nstdout %q\nstderr %q\nwant %q", args, err, out.String(), errb.String(), want)
			}
		}
	})

	// A passphrase repository, with its appliance running.
	p := newEnv(t)
	p.ok("init")
	p.serve()
	bad := filepath.Join(p.dir, "bad")
	if err := os.WriteFile(bad, []byte("not it\n"), 0o600); err != nil {
		t.Fatal(err)
	}
	r := p.run([]string{"CAIRN_PASSWORD_FILE=" + bad}, "check")
	want := "cairn: the password file " + bad + " does not open repository " + p.repo + ": the passphrase opens none of the 1 passphrase keys in " + filepath.Join(p.repo, "keys") + "\n"
	if r.code != 1 || r.stdout != "" || r.stderr != want {
		t.Errorf("wrong passphrase through the appliance: exit %d, %q %q\nwant %q", r.code, r.stdout, r.stderr, want)
	}
	keys, _ := os.ReadDir(filepath.Join(p.repo, "keys"))
	if r := p.run(nil, "key", "test"); r.code != 0 || r.stdout != "the password file "+filepath.Join(p.dir, "password")+" opens repository "+p.repo+" (key "+keys[0].Name()+")\n" {
		t.Errorf("key test: exit %d %q %q", r.code, r.stdout, r.stderr)
	}
}

// An unknown command, subcommand or job is a usage error (exit 2) that
// says what there is.
func TestUnknownCommandsAreUsageErrors(t *testing.T) {
	e := newEnv(t)
	e.ok("init")
	for _, c := range []struct {
		args   []string
		stderr string
	}{
		{[]string{"drll"}, "cairn: unknown command \"drll\" for \"cairn\"; did you mean drill or drills?\n"},
		{[]string{"nosuch", "latest"}, "cairn: unknown command \"nosuch\" for \"cairn\"\n"},
		{[]string{"key", "tset"}, "cairn: unknown command \"tset\" for \"cairn key\"; did you mean test?\n"},
		{[]string{"repair", "indx"}, "cairn: unknown command \"indx\" for \"cairn repair\"; did you mean index?\n"},
		{[]string{"jobs", "run", "drll"}, "cairn: jobs run: job \"drll\": no such job (the jobs are verify, drill, prune, staleness)\n"},
	} {
		r := e.run(nil, c.args...)
		if r.code != 2 || r.stdout != "" || r.stderr != c.stderr {
			t.Errorf("cairn %v: exit %d\nstdout %q\nstderr %q\nwant 2, %q", c.args, r.code, r.stdout, r.stderr, c.stderr)
		}
	}
}

// interruptBackup runs backup --stdin on a stream that never ends (so the
// backup can only end by the signal), sends sig once it has read some
// of it, and returns how cairn ended.
func (e *env) interruptBackup(sig syscall.Signal) result {
	t := e.t
	t.Helper()
	cmd := exec.Command(cairnBin, "backup", "--stdin", "--name", "endless", "--json")
	cmd.Env = append(cleanEnviron(), e.vars...)
	stdin, err := cmd.StdinPipe()
	if err != nil {
		t.Fatal(err)
	}
	stdout, err := cmd.StdoutPipe()
	if err != nil {
		t.Fatal(err)
	}
	var errb strings.Builder
	cmd.Stderr = &errb
	if err := cmd.Start(); err != nil {
		t.Fatal(err)
	}
	go func() {
		buf := make([]byte, 1<<20)
		for {
			if _, err := stdin.Write(buf); err != nil {
				return // cairn is gone
			}
		}
	}()
	sc := bufio.NewScanner(stdout)
	for sc.Scan() {
		var ev struct {
			Type      string `json:"type"`
			BytesRead uint64 `json:"bytes_read"`
		}
		if jsonUnmarshal(sc.Text(), &ev) == nil && ev.Type == "progress" && ev.BytesRead > 0 {
			cmd.Process.Signal(sig)
			break
		}
	}
	io.Copy(io.Discard, stdout)
	err = cmd.Wait()
	stdin.Close()
	res := result{stderr: errb.String()}
	if ee, ok := err.(*exec.ExitError); ok {
		res.code = ee.ExitCode()
	}
	return res
}

// ^C (or SIGTERM) during a backup or a restore ends it with 128 + the
// signal and says what was done; through the appliance the same.
func TestInterruptedBackupAndRestore(t *testing.T) {
	e := newEnv(t)
	e.ok("init")
	stored := regexp.MustCompile(`^cairn: backup interrupted by (SIGINT|SIGTERM): no snapshot was saved \(0 files, [0-9.]+ [KMG]?i?B read in [0-9.]+m?s; the data already stored is reused by the next backup\)\n$`)
	snaps := 0
	check := func(where string, sig syscall.Signal, code int) {
		t.Helper()
		r := e.interruptBackup(sig)
		if r.code != code || !stored.MatchString(r.stderr) || !strings.Contains(r.stderr, "by "+map[syscall.Signal]string{syscall.SIGINT: "SIGINT", syscall.SIGTERM: "SIGTERM"}[sig]) {
			t.Errorf("%s: backup stopped by %v: exit %d, stderr %q", where, sig, r.code, r.stderr)
		}
		if n := len(e.snapshots()); n != snaps {
			t.Errorf("%s: %d snapshots after interrupted backups", where, n)
		}
	}
	check("no appliance", syscall.SIGINT, 130)

	// A local restore: CAIRN_CRASHPOINT_TRACE is a FIFO whose buffer holds
	// a few hundred "restore-file-done" lines, so the restore of 1000
	// files waits on it; it goes on only once the signal was seen
	// (cairn logs it at debug), and then stops.
	src := filepath.Join(e.dir, "many")
	files := map[string]string{}
	for i := range 1000 {
		files[fmt.Sprintf("d%d/f%04d", i%10, i)] = fmt.Sprintf("file %d\n", i)
	}
	repotestWrite(t, src, files)
	e.ok("backup", "--node", "lyra", src)
	snaps++
	fifo := filepath.Join(e.dir, "trace")
	if err := syscall.Mkfifo(fifo, 0o600); err != nil {
		t.Fatal(err)
	}
	trace, err := os.OpenFile(fifo, os.O_RDWR, 0)
	if err != nil {
		t.Fatal(err)
	}
	defer trace.Close()
	if _, err := unix.FcntlInt(trace.Fd(), unix.F_SETPIPE_SZ, 4096); err != nil {
		t.Fatal(err)
	}
	target := filepath.Join(e.dir, "target")
	cmd := exec.Command(cairnBin, "--log-level", "debug", "restore", "latest", "--target", target)
	cmd.Env = append(append(cleanEnviron(), e.vars...), "CAIRN_CRASHPOINT_TRACE="+fifo)
	stderr, err := cmd.StderrPipe()
	if err != nil {
		t.Fatal(err)
	}
	if err := cmd.Start(); err != nil {
		t.Fatal(err)
	}
	lines := bufio.NewReader(trace)
	if l, err := lines.ReadString('\n'); err != nil || l != "restore-file-done\n" {
		t.Fatalf("trace: %q %v", l, err)
	}
	cmd.Process.Signal(syscall.SIGINT)
	sc := bufio.NewScanner(stderr)
	var last string
	// A cairn that never logs the signal would wait on the trace for
	// ever: after a minute the trace is drained anyway, and the test fails.
	drain := sync.OnceFunc(func() { go io.Copy(io.Discard, lines) })
	never := time.AfterFunc(time.Minute, func() {
		t.Errorf("no debug line about the signal within a minute")
		drain()
	})
	for sc.Scan() {
		if strings.Contains(sc.Text(), `msg="stopping: signal received" signal=SIGINT`) {
			break
		}
	}
	never.Stop()
	drain() // now let the restore go on, until trace is closed
	for sc.Scan() {
		if !strings.HasPrefix(sc.Text(), "time=") {
			last = sc.Text()
		}
	}
	err = cmd.Wait()
	ee, ok := err.(*exec.ExitError)
	m := regexp.MustCompile(`^cairn: restore interrupted by SIGINT: the files in ` + regexp.QuoteMeta(target) +
		` are incomplete \((\d+) files restored and verified, [0-9.]+ [KMG]?i?B written in [0-9.]+m?s\)$`).FindStringSubmatch(last)
	if !ok || ee.ExitCode() != 130 || m == nil || m[1] == "1000" {
		t.Errorf("restore stopped by SIGINT: %v, last line %q", err, last)
	}

	// Through the appliance: the signal goes with the cancel frame, the
	// command stops in the appliance and says so, and cairn exits with
	// the signal's code once (not twice).
	e.serve()
	check("appliance", syscall.SIGINT, 130)
	check("appliance", syscall.SIGTERM, 143)
}

// Times are shown in the caller's zone (TZ) and name it, whether the
// command runs here or in an appliance that runs in another zone; a
// snapshot without a plan shows @none everywhere, and --plan @none
// selects it.
func TestTimesAndNoPlanSpelledOnce(t *testing.T) {
	e := newEnv(t)
	e.ok("init")
	src := filepath.Join(e.dir, "src")
	repotestWrite(t, src, map[string]string{"a.txt": "a\n"})
	e.ok("backup", "--node", "lyra", src)
	e.ok("backup", "--node", "lyra", "--plan", "etc", src)
	tokyo := []string{"TZ=Asia/Tokyo"}
	list := func(where string, args ...string) string {
		t.Helper()
		r := e.run(tokyo, append([]string{"snapshots"}, args...)...)
		if r.code != 0 {
			t.Fatalf("%s: snapshots %v: exit %d %s", where, args, r.code, r.stderr)
		}
		return r.stdout
	}
	here := list("no appliance")
	rows := strings.Split(strings.TrimSpace(here), "\n")
	row := regexp.MustCompile(`^[0-9a-f]{8}  \d{4}-\d\d-\d\d \d\d:\d\d:\d\d JST  lyra  (@none|etc )  `)
	if len(rows) != 3 || !row.MatchString(rows[1]) || !row.MatchString(rows[2]) || !strings.Contains(rows[1]+rows[2], " @none ") {
		t.Fatalf("snapshots:\n%s", here)
	}
	none := list("no appliance", "--plan", "@none")
	if n := strings.Count(none, "\n"); n != 2 || !strings.Contains(none, " @none ") {
		t.Errorf("snapshots --plan @none:\n%s", none)
	}
	if rb := e.ok("runbook"); !strings.Contains(rb, "lyra / @none") || strings.Contains(rb, "(no plan)") {
		t.Errorf("runbook does not call the plan @none:\n%s", rb)
	}

	e.serveCommand("", append(slices.Clone(e.vars), "TZ=UTC"), []string{"serve"})
	if got := list("appliance in UTC"); got != here {
		t.Errorf("through the appliance:\n%s\nwant, as without it:\n%s", got, here)
	}
	if got := list("appliance in UTC", "--plan", "@none"); got != none {
		t.Errorf("through the appliance, --plan @none:\n%s\nwant:\n%s", got, none)
	}
}
