package integration

import (
	"fmt"
	"io"
	"os"
	"os/exec"
	"path/filepath"
	"regexp"
	"strings"
	"sync"
	"syscall"
	"testing"

	"github.com/cairnbackup/cairn/integration/apptest"
	"github.com/cairnbackup/cairn/integration/sshtest"
	"github.com/cairnbackup/cairn/integration/testenv"
)

// appliance is a running `cairn serve` child process of a test's env.
type appliance struct {
	*apptest.Appliance
	e *env
}

// node is a machine with its own key.
type node = apptest.Node

func newNode(t *testing.T, name, perms string) *node { return apptest.NewNode(t, name, perms) }

// writeConfig writes the appliance configuration for nodes.
func (e *env) writeConfig(port int, nodes ...*node) { e.writeConfigExtra(port, "", nodes...) }

// writeConfigExtra writes the appliance configuration for nodes with
// extra YAML appended (apptest.Config).
func (e *env) writeConfigExtra(port int, extra string, nodes ...*node) {
	e.t.Helper()
	apptest.WriteConfig(e.t, e.beside(".yaml"), port, extra, nodes...)
}

// serve starts `cairn serve` for the env's repository with nodes and waits
// for its "serving" log line. It is stopped with SIGTERM at cleanup, and
// must then exit 0 and remove its socket.
func (e *env) serve(nodes ...*node) *appliance { return e.serveWith("", nodes...) }

// serveWith is serve with extra configuration YAML.
func (e *env) serveWith(extra string, nodes ...*node) *appliance {
	e.t.Helper()
	return e.serveCommand(extra, e.vars, []string{"serve"}, nodes...)
}

// serveCommand is serveWith running cairn with args (which must start
// the appliance) and the environment variables vars.
func (e *env) serveCommand(extra string, vars, args []string, nodes ...*node) *appliance {
	e.t.Helper()
	return &appliance{e: e, Appliance: apptest.Start(e.t, apptest.Options{
		Bin: cairnBin, Args: args, Env: append(cleanEnviron(), vars...),
		Beside: e.beside(""), Extra: extra, Nodes: nodes, CheckSocket: true,
	})}
}

func mustRead(t *testing.T, p string) []byte {
	b, err := os.ReadFile(p)
	if err != nil {
		t.Fatal(err)
	}
	return b
}

// push runs cairn push as node n with extra arguments.
func (a *appliance) push(n *node, stdin io.Reader, args ...string) result {
	a.e.t.Helper()
	return a.e.runIn(stdin, nil, a.PushArgs(n, args...)...)
}

// runIn runs cairn with stdin and extra environment.
func (e *env) runIn(stdin io.Reader, extra []string, args ...string) result {
	e.t.Helper()
	cmd := exec.Command(cairnBin, args...)
	cmd.Env = append(append(cleanEnviron(), e.vars...), extra...)
	cmd.Stdin = stdin
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

func runSSH(t *testing.T, stdin io.Reader, args ...string) result {
	t.Helper()
	cmd := exec.Command(sshtest.SSHBinary(t), args...)
	cmd.Stdin = stdin
	var out, errb strings.Builder
	cmd.Stdout, cmd.Stderr = &out, &errb
	err := cmd.Run()
	res := result{stdout: out.String(), stderr: errb.String()}
	if ee, ok := err.(*exec.ExitError); ok {
		res.code = ee.ExitCode()
	} else if err != nil {
		t.Fatal(err)
	}
	return res
}

func TestPushEmbeddedAndRestore(t *testing.T) {
	e := newEnv(t)
	e.ok("init")
	lyra := newNode(t, "lyra", "push, read")
	a := e.serve(lyra)
	src := filepath.Join(e.dir, "src")
	writeSource(t, src)
	r := a.push(lyra, nil, "--json", "--plan", "files", src)
	if r.code != 0 {
		t.Fatalf("push: %d %s %s", r.code, r.stdout, r.stderr)
	}
	first := parseBackupJSON(t, r.stdout)
	if first.Summary.FilesNew != 4 || first.Summary.BlobsAdded == 0 {
		t.Fatalf("first push %+v", first.Summary)
	}
	a.WaitFor("msg=push node=lyra kind=cairn-wire")
	// Operator commands go through the appliance's socket.
	list := e.snapshots()
	if len(list) != 1 || list[0].ID != first.Snapshot || list[0].Node != "lyra" || list[0].Plan != "files" {
		t.Fatalf("snapshots %+v", list)
	}
	// An unchanged re-push reads and sends nothing. The directories
	// above the test's own (/tmp) are recorded too, and other processes
	// change their times meanwhile: then only their new listings go up,
	// and the diff must show nothing else.
	r = a.push(lyra, nil, "--json", "--plan", "files", src)
	second := parseBackupJSON(t, r.stdout)
	if r.code != 0 || second.Parent != first.Snapshot || second.Summary.BytesRead != 0 || second.Summary.FilesUnchanged != 4 {
		t.Fatalf("unchanged re-push: %d %+v %s", r.code, second, r.stderr)
	}
	line := a.WaitFor("msg=push node=lyra kind=cairn-wire")
	if second.Summary.BlobsAdded != 0 {
		d := e.run(nil, "diff", first.Snapshot, second.Snapshot)
		for _, l := range strings.Split(strings.TrimSpace(d.stdout), "\n") {
			p, isMeta := strings.CutPrefix(l, "m ")
			if strings.HasPrefix(l, "0 added, 0 removed, 0 modified, ") || isMeta && strings.HasPrefix(e.dir, p+"/") && p != filepath.Dir(e.dir) {
				continue
			}
			t.Fatalf("unchanged re-push added %d blobs; diff:\n%s%s", second.Summary.BlobsAdded, d.stdout, d.stderr)
		}
	} else if !strings.Contains(line, "blobs_sent=0 bytes_sent=0") {
		t.Fatalf("log line %q", line)
	}
	dst := filepath.Join(e.dir, "dst")
	e.ok("restore", "latest:"+src, "--target", dst)
	repotestAssertSame(t, src, filepath.Join(dst, "src"))
	e.ok("check", "--read-data")
}

// Nodes without cairn stream a tar or a dump through the ssh client.
func TestPushStreamsWithSSHClient(t *testing.T) {
	e := newEnv(t)
	e.ok("init")
	vol := newNode(t, "docker", "push")
	a := e.serve(vol)
	src := filepath.Join(e.dir, "volume")
	writeSource(t, src)
	tarCmd := exec.Command(testenv.RequireProgram(t, "tar", "tar"), "--format=posix", "-C", src, "-c", ".")
	tarOut, _ := tarCmd.StdoutPipe()
	tarCmd.Start()
	r := runSSH(t, tarOut, append(a.SSHArgs(vol), "push", "--tar", "--name", "app-volume", "--plan", "volumes")...)
	tarCmd.Wait()
	if r.code != 0 || !strings.HasPrefix(r.stdout, "snapshot ") {
		t.Fatalf("tar push: %d %q %q", r.code, r.stdout, r.stderr)
	}
	dump := strings.Repeat("INSERT INTO t VALUES (1);\n", 10000)
	r = runSSH(t, strings.NewReader(dump), append(a.SSHArgs(vol), "push", "--stdin", "--name", "db.sql", "--plan", "postgres")...)
	if r.code != 0 {
		t.Fatalf("stdin push: %d %q %q", r.code, r.stdout, r.stderr)
	}
	dst := filepath.Join(e.dir, "dst")
	e.ok("restore", "latest:/app-volume", "--plan", "volumes", "--target", dst)
	repotestAssertSame(t, src, filepath.Join(dst, "app-volume"))
	out := e.ok("dump", "latest:/db.sql", "--plan", "postgres")
	if out != dump {
		t.Fatalf("dump gave %d bytes, want %d", len(out), len(dump))
	}
	// A push-only node may run nothing else.
	r = runSSH(t, nil, append(a.SSHArgs(vol), "forget", "--prune")...)
	if r.code != 2 || !strings.Contains(r.stderr, `node docker may not run "forget"`) {
		t.Fatalf("forget: %d %q", r.code, r.stderr)
	}
	r = runSSH(t, nil, append(a.SSHArgs(vol), "sh", "-c", "id")...)
	if r.code != 2 || r.stdout != "" {
		t.Fatalf("shell: %d %q %q", r.code, r.stdout, r.stderr)
	}
}

func TestUnknownKeyAndWrongUserRefused(t *testing.T) {
	e := newEnv(t)
	e.ok("init")
	lyra, vega := newNode(t, "lyra", "push"), newNode(t, "vega", "push")
	stranger := newNode(t, "stranger", "push")
	a := e.serve(lyra, vega)
	src := filepath.Join(e.dir, "src")
	writeSource(t, src)
	if r := a.push(stranger, nil, src); r.code != 1 || !strings.Contains(r.stderr, "unable to authenticate") {
		t.Fatalf("unknown key: %d %q", r.code, r.stderr)
	}
	// lyra's key cannot act as vega.
	impostor := &node{Name: "vega", Key: lyra.Key}
	if r := a.push(impostor, nil, src); r.code != 1 || !strings.Contains(r.stderr, "unable to authenticate") {
		t.Fatalf("impostor: %d %q", r.code, r.stderr)
	}
	// The server logs the refusal after the client has given up, so wait
	// for the line rather than reading the log once.
	a.WaitFor(`key of node lyra used as user \"vega\"`)
	// vega lists only its own snapshots.
	if r := a.push(lyra, nil, src); r.code != 0 {
		t.Fatalf("push: %s", r.stderr)
	}
	r := runSSH(t, nil, append(a.SSHArgs(vega), "snapshots")...)
	if r.code != 0 || strings.TrimSpace(r.stdout) != "[]" {
		t.Fatalf("vega's snapshots: %d %q %q", r.code, r.stdout, r.stderr)
	}
	r = runSSH(t, nil, append(a.SSHArgs(lyra), "snapshots")...)
	var listed []struct {
		ID     string `json:"id"`
		Record struct {
			Node string `json:"node"`
		} `json:"record"`
	}
	if err := jsonUnmarshal(r.stdout, &listed); r.code != 0 || err != nil || len(listed) != 1 || listed[0].Record.Node != "lyra" {
		t.Fatalf("lyra's snapshots: %d %v %q", r.code, err, r.stdout)
	}
}

// Three nodes push at once: every snapshot is there, the data they share
// is stored once, and the repository checks clean.
func TestThreeNodesAtOnce(t *testing.T) {
	e := newEnv(t)
	e.ok("init")
	nodes := []*node{newNode(t, "lyra", "push"), newNode(t, "vega", "push"), newNode(t, "rhea", "push")}
	a := e.serve(nodes...)
	shared := make([]byte, 8<<20)
	for i := range shared {
		shared[i] = byte(i*7>>3 ^ i>>11)
	}
	var srcs []string
	for i, n := range nodes {
		src := filepath.Join(e.dir, n.Name)
		writeSource(t, src)
		os.WriteFile(filepath.Join(src, "shared.img"), shared, 0o644)
		os.WriteFile(filepath.Join(src, "own"), []byte(strings.Repeat(n.Name, 1000+i)), 0o644)
		srcs = append(srcs, src)
	}
	var wg sync.WaitGroup
	results := make([]result, len(nodes))
	for i, n := range nodes {
		wg.Add(1)
		go func() {
			defer wg.Done()
			results[i] = a.push(n, nil, "--json", srcs[i])
		}()
	}
	wg.Wait()
	for i, r := range results {
		if r.code != 0 {
			t.Fatalf("%s: %d %s", nodes[i].Name, r.code, r.stderr)
		}
	}
	list := e.snapshots()
	if len(list) != 3 {
		t.Fatalf("%d snapshots", len(list))
	}
	var st struct {
		UniqueBytes uint64 `json:"unique_bytes"`
	}
	if err := jsonUnmarshal(e.ok("stats", "--json"), &st); err != nil {
		t.Fatal(err)
	}
	// The shared 8 MiB (and the source files, identical on all three)
	// are stored once: the unique data is far below three copies.
	if st.UniqueBytes > uint64(len(shared))+(6<<20) {
		t.Fatalf("unique data %d bytes for three copies of %d shared bytes", st.UniqueBytes, len(shared))
	}
	e.ok("check", "--read-data")
}

// A push killed mid-stream leaves no snapshot and the appliance healthy;
// the next push reuses what reached the appliance.
func TestPushKilledMidStream(t *testing.T) {
	e := newEnv(t)
	e.ok("init")
	lyra := newNode(t, "lyra", "push")
	a := e.serve(lyra)
	src := filepath.Join(e.dir, "src")
	os.MkdirAll(src, 0o755)
	f, _ := os.Create(filepath.Join(src, "big.bin"))
	x := uint64(1)
	buf := make([]byte, 1<<20)
	for range 96 {
		for i := range buf {
			x ^= x << 13
			x ^= x >> 7
			x ^= x << 17
			buf[i] = byte(x)
		}
		f.Write(buf)
	}
	f.Close()
	r := a.e.runIn(nil, []string{"CAIRN_CRASHPOINT=wire-put-blob:60"}, "push", fmt.Sprintf("ssh://lyra@127.0.0.1:%d", a.Port), "-i", lyra.Key.PrivatePath, "--host-key", a.HostKey, src)
	if r.code != -1 {
		t.Fatalf("push was not killed: %d %s", r.code, r.stderr)
	}
	if line := a.WaitFor("node=lyra kind=cairn-wire"); !strings.Contains(line, "msg=\"push failed\"") {
		t.Fatalf("log line %q", line)
	}
	if list := e.snapshots(); len(list) != 0 {
		t.Fatalf("snapshots after the kill: %+v", list)
	}
	r = a.push(lyra, nil, "--json", src)
	if r.code != 0 {
		t.Fatalf("second push: %s", r.stderr)
	}
	sum := parseBackupJSON(t, r.stdout).Summary
	if sum.BytesAdded >= 96<<20 {
		t.Fatalf("the second push sent everything again (%d bytes): nothing was reused", sum.BytesAdded)
	}
	dst := filepath.Join(e.dir, "dst")
	e.ok("restore", "latest:"+src, "--target", dst)
	repotestAssertSame(t, src, filepath.Join(dst, "src"))
}

// SIGHUP reloads the nodes: a node added to the configuration can push
// without a restart.
func TestReloadOnSIGHUP(t *testing.T) {
	e := newEnv(t)
	e.ok("init")
	lyra, vega := newNode(t, "lyra", "push"), newNode(t, "vega", "push")
	a := e.serve(lyra)
	src := filepath.Join(e.dir, "src")
	writeSource(t, src)
	if r := a.push(vega, nil, src); r.code == 0 {
		t.Fatal("vega pushed before it was configured")
	}
	e.writeConfig(a.Port, lyra, vega)
	a.Cmd.Process.Signal(syscall.SIGHUP)
	a.WaitFor("configuration reloaded")
	if r := a.push(vega, nil, src); r.code != 0 {
		t.Fatalf("vega after reload: %s", r.stderr)
	}
}

// A real OpenSSH sshd with the forced command `cairn serve --stdio --node
// lyra`: pushes through the ssh client and through cairn push
// --ssh-command, first with no appliance running (the forced command
// opens the repository itself), then relayed to a running appliance.
func TestOpenSSHForcedCommand(t *testing.T) {
	e := newEnv(t)
	e.ok("init")
	key := sshtest.NewKey(t, "", "lyra")
	// The forced command's node must be in the configuration.
	lyra := &node{Name: "lyra", Key: key, Perms: "push"}
	e.writeConfig(apptest.FreePort(t), lyra)
	pw := strings.TrimPrefix(e.vars[1], "CAIRN_PASSWORD_FILE=")
	forced := fmt.Sprintf(`command="%s --repo %s --password-file %s serve --stdio --node lyra",restrict %s`, cairnBin, e.repo, pw, key.PublicLine)
	sshd := sshtest.Start(t, sshtest.Config{AuthorizedKeys: []string{forced}})
	login := currentLogin(t)
	args := sshd.SSHArgs(t, login, key)
	// The same flags without port and destination, for --ssh-command.
	var sshCmd []string
	for i := 0; i < len(args)-1; i++ {
		if args[i] == "-p" {
			i++
			continue
		}
		sshCmd = append(sshCmd, args[i])
	}
	sshCommand := sshtest.SSHBinary(t) + " -l " + login + " " + strings.Join(sshCmd, " ")
	src := filepath.Join(e.dir, "src")
	writeSource(t, src)

	pushBoth := func(label string) {
		t.Helper()
		dump := "dump of " + label + "\n"
		r := runSSH(t, strings.NewReader(dump), append(args, "push", "--stdin", "--name", label+".sql", "--plan", label+"-db")...)
		if r.code != 0 {
			t.Fatalf("%s: ssh push --stdin: %d %q %q\n%s", label, r.code, r.stdout, r.stderr, sshd.Log())
		}
		r = e.runIn(nil, nil, "push", fmt.Sprintf("ssh://lyra@127.0.0.1:%d", sshd.Port), "--ssh-command", sshCommand, "--json", "--plan", label, src)
		if r.code != 0 {
			t.Fatalf("%s: cairn push --ssh-command: %d %q %q\n%s", label, r.code, r.stdout, r.stderr, sshd.Log())
		}
		if got := e.ok("dump", "latest:/"+label+".sql", "--plan", label+"-db"); got != dump {
			t.Fatalf("%s: dump %q", label, got)
		}
	}
	pushBoth("direct")
	a := e.serve(lyra)
	pushBoth("relayed")
	a.WaitFor("node=lyra kind=push")
	var list []snapshotJSON
	if err := jsonUnmarshal(e.ok("snapshots", "--json", "--node", "lyra"), &list); err != nil || len(list) != 4 {
		t.Fatalf("snapshots: %v %+v", err, list)
	}
	dst := filepath.Join(e.dir, "dst")
	e.ok("restore", "latest:"+src, "--plan", "relayed", "--target", dst)
	repotestAssertSame(t, src, filepath.Join(dst, "src"))
	// The forced command decides the node: claiming another fails.
	r := e.runIn(nil, nil, "push", fmt.Sprintf("ssh://vega@127.0.0.1:%d", sshd.Port), "--ssh-command", sshCommand, src)
	if r.code != 1 || !strings.Contains(r.stderr, "this key belongs to node lyra, not vega") {
		t.Fatalf("claiming vega: %d %q", r.code, r.stderr)
	}
}

func currentLogin(t *testing.T) string {
	u, err := userCurrent()
	if err != nil {
		t.Fatal(err)
	}
	return u
}

// A plan file pushes each source as its own snapshot with its class and
// reason recorded; disposable data is left out; a failing dump command
// saves nothing for that source and fails the push.
func TestPushPlanFile(t *testing.T) {
	e := newEnv(t)
	e.ok("init")
	lyra := newNode(t, "lyra", "push")
	a := e.serve(lyra)
	src := filepath.Join(e.dir, "git")
	repotestWrite(t, src, map[string]string{"repo.git/HEAD": "ref: refs/heads/main\n", "repo.git/node_modules/x.js": "junk", "work/a.tmp": "t"})
	planFile := filepath.Join(e.dir, "plan.yaml")
	os.WriteFile(planFile, []byte(fmt.Sprintf(`sources:
  - name: code
    class: git
    why: the source of truth for our code
    paths: [%s]
  - name: db
    class: database
    why: all application data
    command: printf 'CREATE TABLE t;\n'
    file: db.sql
  - name: broken
    class: database
    why: shows that a failed dump is not saved
    command: echo partial; exit 3
    file: broken.sql
`, src)), 0o644)
	r := a.push(lyra, nil, "--plan", planFile)
	if r.code != 1 || !strings.Contains(r.stderr, `source broken: command "echo partial; exit 3" failed: exit status 3; nothing saved`) ||
		!strings.Contains(r.stderr, "push: 1 of 3 sources failed") {
		t.Fatalf("push: %d %q %q", r.code, r.stdout, r.stderr)
	}
	// Each snapshot's summary names its source (issue 13).
	for _, src := range []string{"code", "db"} {
		if !regexp.MustCompile(`(?m)^snapshot [0-9a-f]{8} \(plan ` + src + `\) saved\n`).MatchString(r.stdout) {
			t.Errorf("no summary naming source %s:\n%s", src, r.stdout)
		}
	}
	var list []struct {
		Plan  string   `json:"plan"`
		Paths []string `json:"paths"`
		Scope struct {
			PlanFile      string   `json:"plan_file"`
			Class         string   `json:"class"`
			Why           string   `json:"why"`
			Command       string   `json:"command"`
			Excludes      []string `json:"excludes"`
			ExcludeCaches bool     `json:"exclude_caches"`
		} `json:"scope"`
	}
	if err := jsonUnmarshal(e.ok("snapshots", "--json"), &list); err != nil {
		t.Fatal(err)
	}
	if len(list) != 2 || list[0].Plan != "code" || list[1].Plan != "db" {
		t.Fatalf("snapshots %+v", list)
	}
	if sc := list[0].Scope; sc.Class != "git" || sc.Why != "the source of truth for our code" || sc.PlanFile != planFile || !sc.ExcludeCaches || len(sc.Excludes) == 0 {
		t.Fatalf("code scope %+v", sc)
	}
	if sc := list[1].Scope; sc.Class != "database" || sc.Command != `printf 'CREATE TABLE t;\n'` || !slicesEqual(list[1].Paths, []string{"/db.sql"}) {
		t.Fatalf("db scope %+v %v", sc, list[1].Paths)
	}
	if out := e.ok("dump", "latest:/db.sql", "--plan", "db"); out != "CREATE TABLE t;\n" {
		t.Fatalf("db.sql %q", out)
	}
	out := e.ok("ls", "latest:"+src, "--plan", "code")
	if strings.Contains(out, "node_modules") || strings.Contains(out, "a.tmp") || !strings.Contains(out, "HEAD") {
		t.Fatalf("disposable data backed up:\n%s", out)
	}
	// A plan without reasons is refused before anything is sent.
	os.WriteFile(planFile, []byte("sources:\n  - {name: x, class: files, paths: [/etc]}\n"), 0o644)
	r = a.push(lyra, nil, "--plan", planFile)
	if want := "cairn: " + planFile + ":2: sources[0].why: none: say why this source is backed up (scope must be explicit and justified)\n"; r.code != 1 || r.stderr != want {
		t.Fatalf("plan without why: %d %q", r.code, r.stderr)
	}
}

// SIGTERM during a push lets it finish: the snapshot is saved, then the
// appliance exits 0 (checked by the cleanup).
func TestGracefulShutdownFinishesPush(t *testing.T) {
	e := newEnv(t)
	e.ok("init")
	lyra := newNode(t, "lyra", "push")
	a := e.serve(lyra)
	cmd := exec.Command(cairnBin, "push", fmt.Sprintf("ssh://lyra@127.0.0.1:%d", a.Port), "-i", lyra.Key.PrivatePath,
		"--host-key", a.HostKey, "--json", "--stdin", "--name", "dump.sql")
	cmd.Env = append(cleanEnviron(), e.vars...)
	var out strings.Builder
	cmd.Stdout = &out
	// A --stdin push is in its session until its input ends: the
	// test's hold on it.
	in, _ := cmd.StdinPipe()
	if err := cmd.Start(); err != nil {
		t.Fatal(err)
	}
	io.WriteString(in, "first half\n")
	a.WaitFor("node session started")
	a.Cmd.Process.Signal(syscall.SIGTERM)
	a.WaitFor("shutting down: no new sessions")
	io.WriteString(in, "second half\n")
	in.Close()
	if err := cmd.Wait(); err != nil {
		t.Fatalf("push during shutdown: %v\n%s", err, a.Log())
	}
	sum := parseBackupJSON(t, out.String())
	<-a.Exited()
	if !strings.Contains(a.Log(), "snapshot="+sum.Snapshot) {
		t.Fatalf("the push's snapshot is not in the log:\n%s", a.Log())
	}
	if got := e.ok("dump", "latest:/dump.sql"); got != "first half\nsecond half\n" {
		t.Fatalf("dump %q", got)
	}
}

// A node with the admin permission can run forget and prune over SSH; a
// node with push is append-only and is refused.
func TestAdminNodeForgetsAndPrunes(t *testing.T) {
	e := newEnv(t)
	e.ok("init")
	lyra, boss := newNode(t, "lyra", "push, read"), newNode(t, "boss", "admin")
	a := e.serve(lyra, boss)
	src := filepath.Join(e.dir, "src")
	writeSource(t, src)
	for i := range 3 {
		if err := os.WriteFile(filepath.Join(src, "changing"), []byte(strings.Repeat("x", 1000*(i+1))), 0o644); err != nil {
			t.Fatal(err)
		}
		if r := a.push(lyra, nil, src); r.code != 0 {
			t.Fatalf("push %d: %s", i, r.stderr)
		}
	}
	r := runSSH(t, nil, append(a.SSHArgs(lyra), "forget", "--keep-last", "1")...)
	if r.code != 2 || r.stderr != "cairn: node lyra may not run \"forget\": it needs the admin permission (push and read are append-only)\n" {
		t.Fatalf("lyra's forget: %d %q", r.code, r.stderr)
	}
	a.WaitFor(`msg="command refused" node=lyra command=forget`)
	if n := len(e.snapshots()); n != 3 {
		t.Fatalf("%d snapshots after the refused forget", n)
	}
	r = runSSH(t, nil, append(a.SSHArgs(boss), "forget", "--keep-last", "1", "--prune")...)
	if r.code != 0 {
		t.Fatalf("boss's forget: %d %q %q", r.code, r.stdout, r.stderr)
	}
	a.WaitFor(`msg="admin command" node=boss command="forget --keep-last 1 --prune" exit=0`)
	list := e.snapshots()
	if len(list) != 1 || list[0].Node != "lyra" {
		t.Fatalf("after forget: %+v", list)
	}
	if r := runSSH(t, nil, append(a.SSHArgs(boss), "prune", "--dry-run")...); r.code != 0 {
		t.Fatalf("boss's prune: %d %q", r.code, r.stderr)
	}
	e.ok("check", "--read-data")
}

// A node with read restores its own snapshots from the appliance over
// SSH (restore --from): bit-identical, every blob re-hashed. A node
// without read is refused its data, and nobody gets another node's
// snapshots.
func TestRestoreFromAppliance(t *testing.T) {
	e := newEnv(t)
	e.ok("init")
	lyra, vega := newNode(t, "lyra", "push, read"), newNode(t, "vega", "push")
	a := e.serve(lyra, vega)
	src := filepath.Join(e.dir, "src")
	writeSource(t, src)
	if r := a.push(lyra, nil, src); r.code != 0 {
		t.Fatalf("push: %s", r.stderr)
	}
	from := func(n *node, args ...string) result {
		full := append([]string{"restore", "--from", fmt.Sprintf("ssh://%s@127.0.0.1:%d", n.Name, a.Port), "-i", n.Key.PrivatePath, "--host-key", a.HostKey}, args...)
		return e.runIn(nil, nil, full...)
	}
	dst := filepath.Join(e.dir, "dst")
	if r := from(lyra, "latest", "--target", dst); r.code != 0 || !strings.Contains(r.stdout, "(all file hashes verified)") {
		t.Fatalf("restore --from: %d %q %q", r.code, r.stdout, r.stderr)
	}
	repotestAssertSame(t, src, filepath.Join(dst, src))
	if r := from(lyra, "latest", "--target", dst, "--verify-only"); r.code != 0 {
		t.Fatalf("restore --from --verify-only: %d %q %q", r.code, r.stdout, r.stderr)
	}
	// vega has no read, and no snapshot of its own.
	if r := from(vega, "latest", "--target", filepath.Join(e.dir, "vega")); r.code == 0 || !strings.Contains(r.stderr, "no snapshot matches") {
		t.Fatalf("vega's restore: %d %q %q", r.code, r.stdout, r.stderr)
	}
	if r := a.push(vega, nil, src); r.code != 0 {
		t.Fatalf("vega's push: %s", r.stderr)
	}
	r := from(vega, "latest", "--target", filepath.Join(e.dir, "vega"))
	if r.code != 1 || !strings.Contains(r.stderr, "wire: remote error (permission denied): node vega may not load data blobs: it needs the read permission") {
		t.Fatalf("vega's restore without read: %d %q %q", r.code, r.stdout, r.stderr)
	}
	// lyra cannot name vega's snapshot.
	vegaID := strings.Fields(strings.TrimSpace(strings.Split(e.ok("snapshots", "--node", "vega"), "\n")[1]))[0]
	if r := from(lyra, vegaID, "--target", filepath.Join(e.dir, "x")); r.code == 0 || !strings.Contains(r.stderr, "snapshot "+vegaID+": not found") {
		t.Fatalf("lyra restoring vega's snapshot: %d %q %q", r.code, r.stdout, r.stderr)
	}
}
