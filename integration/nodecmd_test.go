package integration

import (
	"fmt"
	"os"
	"path/filepath"
	"strings"
	"testing"

	"github.com/cairnbackup/cairn/integration/fswatch"
	"github.com/cairnbackup/cairn/integration/sshtest"
)

const nodeForgetUsage = "usage: forget [--node NAME] [--plan NAME] [--tag TAG]... [--path PATH]" +
	" [--keep-last N] [--keep-hourly N] [--keep-daily N] [--keep-weekly N] [--keep-monthly N] [--keep-yearly N]" +
	" [--keep-within SPAN] [--keep-tag TAG]... [--keep-drilled N] [--group-by FIELDS]" +
	" [--dry-run] [--explain] [--prune] [--max-unused P%] [--max-repack SIZE] [--json]\n"

// An admin node's forget and prune used to run the whole command tree
// with the node's words: `forget --config /etc/shadow` printed the file
// in its errors, `--cpuprofile PATH` wrote files as the appliance's
// user. Through the real appliance over SSH, every global flag is
// refused with exit 2, and the files are neither opened nor created (a
// canary file stands for /etc/shadow; inotify sees every access).
func TestAdminNodeFlagAbuseRefused(t *testing.T) {
	e := newEnv(t)
	e.ok("init")
	lyra, boss := newNode(t, "lyra", "push"), newNode(t, "boss", "admin")
	a := e.serve(lyra, boss)
	src := filepath.Join(e.dir, "src")
	writeSource(t, src)
	for i := range 2 {
		if err := os.WriteFile(filepath.Join(src, "changing"), []byte(strings.Repeat("y", 100*(i+1))), 0o644); err != nil {
			t.Fatal(err)
		}
		if r := a.push(lyra, nil, src); r.code != 0 {
			t.Fatalf("push %d: %s", i, r.stderr)
		}
	}
	secret := "root:$6$canary-of-the-shadow-file$:19000:0:99999:7:::"
	canary := filepath.Join(e.dir, "shadow")
	if err := os.WriteFile(canary, []byte(secret+"\n"), 0o600); err != nil {
		t.Fatal(err)
	}
	profiles := filepath.Join(e.dir, "profiles")
	if err := os.Mkdir(profiles, 0o755); err != nil {
		t.Fatal(err)
	}
	w := fswatch.New(t, canary, profiles)
	var seen strings.Builder
	for _, c := range []struct {
		args   []string
		stderr string
	}{
		{[]string{"forget", "--config", canary}, "cairn: forget: unknown flag \"--config\"\n" + nodeForgetUsage},
		{[]string{"forget", "--config=" + canary, "--keep-last", "1"}, "cairn: forget: unknown flag \"--config\"\n" + nodeForgetUsage},
		{[]string{"forget", "--keep-last", "1", "--cpuprofile", filepath.Join(profiles, "cpu")}, "cairn: forget: unknown flag \"--cpuprofile\"\n" + nodeForgetUsage},
		{[]string{"forget", "--keep-last", "1", "--memprofile", filepath.Join(profiles, "mem")}, "cairn: forget: unknown flag \"--memprofile\"\n" + nodeForgetUsage},
		{[]string{"prune", "--cpuprofile=" + filepath.Join(profiles, "cpu2")}, "cairn: prune: unknown flag \"--cpuprofile\"\nusage: prune [--dry-run] [--max-unused P%] [--max-repack SIZE] [--json]\n"},
		{[]string{"forget", "--keep-last", "1", "--password-file", canary}, "cairn: forget: unknown flag \"--password-file\"\n" + nodeForgetUsage},
		{[]string{"forget", "--keep-last", "1", "--key-file", canary}, "cairn: forget: unknown flag \"--key-file\"\n" + nodeForgetUsage},
	} {
		r := runSSH(t, nil, append(a.SSHArgs(boss), c.args...)...)
		seen.WriteString(r.stdout + r.stderr)
		if r.code != 2 || r.stdout != "" || r.stderr != c.stderr {
			t.Errorf("%q: exit %d, stdout %q, stderr %q; want exit 2, %q", c.args, r.code, r.stdout, r.stderr, c.stderr)
		}
	}
	a.WaitFor(`msg="command refused" node=boss command=forget why="unknown flag \"--config\""`)
	// A value that looks like a flag stays a value: the operator's
	// command gets --keep-tag=--cpuprofile=…, a tag nothing has.
	r := runSSH(t, nil, append(a.SSHArgs(boss), "forget", "--dry-run", "--keep-last", "1", "--keep-tag=--cpuprofile="+filepath.Join(profiles, "cpu3"))...)
	seen.WriteString(r.stdout + r.stderr)
	if r.code != 0 || !strings.Contains(r.stdout, "lyra ["+src+"]: keep 1, would forget 1\n") {
		t.Errorf("dry run: exit %d, stdout %q, stderr %q", r.code, r.stdout, r.stderr)
	}
	a.WaitFor(`msg="admin command" node=boss`)
	if ev := w.Events(); len(ev) != 0 {
		t.Errorf("the canary or the profile directory was touched: %q", ev)
	}
	if entries, _ := os.ReadDir(profiles); len(entries) != 0 {
		t.Errorf("files written: %v", entries)
	}
	if strings.Contains(seen.String(), "canary-of-the-shadow") || strings.Contains(a.Log(), "canary-of-the-shadow") {
		t.Errorf("the canary's content leaked:\n%s\n%s", seen.String(), a.Log())
	}
	if n := len(e.snapshots()); n != 2 {
		t.Errorf("%d snapshots after the attempts, want 2", n)
	}
}

// CAIRN_SOCKET (or --socket) used to win over --repo: with the socket of
// another repository's appliance, forget ran against that repository.
// Two repositories, two appliances: a command for one sent to the
// other's socket is refused with exit 2, naming both, and changes
// nothing.
func TestSocketOfAnotherRepositoryRefused(t *testing.T) {
	e1, e2 := newEnv(t), newEnv(t)
	e1.ok("init")
	e2.ok("init")
	e1.serve()
	a2 := e2.serve()
	src := filepath.Join(e2.dir, "src")
	writeSource(t, src)
	e2.ok("backup", "--node", "rhea", src)
	e2.ok("backup", "--node", "rhea", "--tag", "second", src)
	sock := e2.repo + ".sock"
	want := "cairn: this appliance serves the repository " + e2.repo + ", not " + e1.repo + "; check --socket and CAIRN_SOCKET\n"
	for _, c := range []struct {
		env  []string
		args []string
	}{
		{[]string{"CAIRN_SOCKET=" + sock}, []string{"forget", "--keep-last", "1"}},
		{nil, []string{"--socket", sock, "forget", "--keep-last", "1", "--prune"}},
		{[]string{"CAIRN_SOCKET=" + sock}, []string{"snapshots"}},
	} {
		r := e1.run(c.env, c.args...)
		if r.code != 2 || r.stdout != "" || r.stderr != want {
			t.Errorf("%v %q: exit %d, stdout %q, stderr %q; want exit 2, %q", c.env, c.args, r.code, r.stdout, r.stderr, want)
		}
	}
	a2.WaitFor(`msg="request refused" kind=operator`)
	if n := len(e2.snapshots()); n != 2 {
		t.Fatalf("%d snapshots in the other repository, want 2", n)
	}
	// The socket of the repository named, by any path, still works.
	link := filepath.Join(e1.dir, "link")
	if err := os.Symlink(e2.repo, link); err != nil {
		t.Fatal(err)
	}
	if r := e2.run([]string{"CAIRN_SOCKET=" + sock, "CAIRN_REPO=" + link}, "forget", "--keep-last", "1"); r.code != 0 {
		t.Fatalf("forget through the right socket: %d %q", r.code, r.stderr)
	}
	if n := len(e2.snapshots()); n != 1 {
		t.Fatalf("%d snapshots after forget, want 1", n)
	}
	if n := len(e1.snapshots()); n != 0 {
		t.Fatalf("%d snapshots in the first repository", n)
	}
}

// A forced command naming a node that is not in the configuration used
// to push with the push permission; it is refused, relayed to a running
// appliance (with a log line there) and when none runs.
func TestForcedCommandUnknownNodeRefused(t *testing.T) {
	e := newEnv(t)
	e.ok("init")
	key := sshtest.NewKey(t, "", "ghost")
	pw := strings.TrimPrefix(e.vars[1], "CAIRN_PASSWORD_FILE=")
	forced := fmt.Sprintf(`command="%s --repo %s --password-file %s serve --stdio --node ghost",restrict %s`, cairnBin, e.repo, pw, key.PublicLine)
	sshd := sshtest.Start(t, sshtest.Config{AuthorizedKeys: []string{forced}})
	args := append(sshd.SSHArgs(t, currentLogin(t), key), "push", "--stdin", "--name", "x.sql")
	msg := "cairn: node ghost is not in the appliance's configuration; the forced command names a node the operator has not added\n"

	// No appliance: the forced command opens the repository itself (its
	// log goes to the same standard error).
	r := runSSH(t, strings.NewReader("data\n"), args...)
	if r.code != 1 || r.stdout != "" || !strings.HasSuffix(r.stderr, msg) || !strings.Contains(r.stderr, `msg="session refused" node=ghost why="not in the configuration"`) {
		t.Fatalf("direct: exit %d, stdout %q, stderr %q\n%s", r.code, r.stdout, r.stderr, sshd.Log())
	}
	a := e.serve()
	r = runSSH(t, strings.NewReader("data\n"), args...)
	if r.code != 1 || r.stdout != "" || r.stderr != msg {
		t.Fatalf("relayed: exit %d, stdout %q, stderr %q\n%s", r.code, r.stdout, r.stderr, sshd.Log())
	}
	a.WaitFor(`msg="session refused" node=ghost why="not in the configuration" config=` + e.repo + ".yaml")
	if n := len(e.snapshots()); n != 0 {
		t.Fatalf("%d snapshots after ghost's pushes", n)
	}
}
