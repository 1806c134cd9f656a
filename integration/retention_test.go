package integration

import (
	"encoding/json"
	"fmt"
	"os"
	"path/filepath"
	"regexp"
	"slices"
	"strings"
	"testing"
)

// Retention groups snapshots by node, plan and paths (issue 12, item 2):
// a node's push of two directories and its plan-less stream push are two
// sources, and keep-last 1 keeps one of each.
func TestForgetGroupsBySource(t *testing.T) {
	e := newEnv(t)
	e.ok("init")
	lyra := newNode(t, "lyra", "push")
	a := e.serveWith("jobs:\n  drill: {schedule: \"0 4 * * *\"}\n", lyra)
	etc := filepath.Join(e.dir, "etc")
	git := filepath.Join(e.dir, "srv", "git")
	repotestWrite(t, etc, map[string]string{"hosts": "127.0.0.1 localhost\n"})
	repotestWrite(t, git, map[string]string{"HEAD": "ref: refs/heads/main\n"})
	r := a.push(lyra, nil, "--json", etc, git)
	if r.code != 0 {
		t.Fatalf("push: %d %s %s", r.code, r.stdout, r.stderr)
	}
	dirs := parseBackupJSON(t, r.stdout).Snapshot
	r = runSSH(t, strings.NewReader("hello\n"), append(a.SSHArgs(lyra), "push", "--stdin", "--name", "hello.txt")...)
	if r.code != 0 {
		t.Fatalf("stdin push: %d %q %q", r.code, r.stdout, r.stderr)
	}
	// Grouped by node alone, the two are one group, as before.
	out := e.ok("forget", "--keep-last", "1", "--group-by", "node", "--dry-run")
	if !strings.HasPrefix(out, "lyra: keep 1, would forget 1\n  forget "+dirs[:8]+" ") {
		t.Fatalf("forget --group-by node:\n%s", out)
	}
	out = e.ok("forget", "--keep-last", "1", "--prune")
	want := fmt.Sprintf("lyra [/hello.txt]: keep 1, forgot 0\nlyra [%s %s]: keep 1, forgot 0\npruned: 2 snapshots kept; ", etc, git)
	if !strings.HasPrefix(out, want) {
		t.Fatalf("forget --keep-last 1 --prune:\n%s\nwant it to start with:\n%s", out, want)
	}
	if n := len(e.snapshots()); n != 2 {
		t.Fatalf("%d snapshots after forget, want 2", n)
	}
	dst := filepath.Join(e.dir, "dst")
	e.ok("restore", dirs[:12]+":"+etc, "--target", dst)
	repotestAssertSame(t, etc, filepath.Join(dst, "etc"))
	if got := e.ok("dump", "latest:/hello.txt"); got != "hello\n" {
		t.Fatalf("dump hello.txt: %q", got)
	}

	// Status and the drill job see the same two groups.
	var st struct {
		Groups []struct {
			Node  string   `json:"node"`
			Paths []string `json:"paths"`
		} `json:"groups"`
	}
	if err := jsonUnmarshal(e.run(nil, "status", "--json").stdout, &st); err != nil {
		t.Fatal(err)
	}
	if len(st.Groups) != 2 || !slices.Equal(st.Groups[0].Paths, []string{"/hello.txt"}) || !slices.Equal(st.Groups[1].Paths, []string{etc, git}) {
		t.Fatalf("status groups %+v", st.Groups)
	}
	if out := e.ok("jobs", "run", "drill"); !strings.Contains(out, "2 drills, 0 failed") {
		t.Fatalf("drill job: %s", out)
	}
}

// The newest snapshot of a group that passed a drill is never forgotten
// by default (issue 19), and still restores and drills after prune.
func TestForgetKeepsProvenSnapshot(t *testing.T) {
	e := newEnv(t)
	e.ok("init")
	ids, copies := backupVersions(t, e, 4)
	src := filepath.Join(e.dir, "src")
	r := e.run([]string{"TMPDIR=" + t.TempDir()}, "drill", ids[0][:12])
	m := regexp.MustCompile(`report ([0-9a-f]{8}) saved`).FindStringSubmatch(r.stdout)
	if r.code != 0 || m == nil {
		t.Fatalf("drill: %d %s %s", r.code, r.stdout, r.stderr)
	}
	report := m[1]
	group := "lyra/data [" + src + "]"

	// keep_drilled: 0 turns the rule off.
	out := e.ok("forget", "--keep-last", "2", "--keep-drilled", "0", "--dry-run")
	if !strings.HasPrefix(out, group+": keep 2, would forget 2\n") {
		t.Fatalf("--keep-drilled 0:\n%s", out)
	}
	out = e.ok("forget", "--keep-last", "2", "--dry-run", "--explain")
	line := `  %s %s \d{4}-\d\d-\d\d \d\d:\d\d:\d\d \S+`
	want := regexp.MustCompile("^" + regexp.QuoteMeta(group) + `: keep 3, would forget 1\n` +
		fmt.Sprintf(line, "proven", ids[0][:8]) + `  \(drilled-ok ` + report + `\)\n` +
		fmt.Sprintf(line, "keep  ", ids[3][:8]) + `  \(last 1\)\n` +
		fmt.Sprintf(line, "keep  ", ids[2][:8]) + `  \(last 2\)\n` +
		fmt.Sprintf(line, "forget", ids[1][:8]) + `\n` +
		fmt.Sprintf(line, "keep  ", ids[0][:8]) + `  \(drilled-ok ` + report + `\)\n$`)
	if !want.MatchString(out) {
		t.Fatalf("forget --dry-run --explain:\n%s", out)
	}
	var res []struct {
		Paths []string
		Keep  []struct {
			ID      string
			Reasons []string
		}
	}
	if err := json.Unmarshal([]byte(e.ok("forget", "--keep-last", "2", "--dry-run", "--json")), &res); err != nil {
		t.Fatal(err)
	}
	if len(res) != 1 || !slices.Equal(res[0].Paths, []string{src}) || len(res[0].Keep) != 3 || res[0].Keep[2].ID != ids[0] ||
		!slices.Equal(res[0].Keep[2].Reasons, []string{"drilled-ok " + report}) {
		t.Fatalf("forget --json: %+v", res)
	}

	e.ok("forget", "--keep-last", "2", "--prune")
	var left []string
	for _, s := range e.snapshots() {
		left = append(left, s.ID)
	}
	if !slices.Equal(left, []string{ids[0], ids[2], ids[3]}) {
		t.Fatalf("left %v, want %v", left, []string{ids[0], ids[2], ids[3]})
	}
	dst := filepath.Join(e.dir, "proven")
	e.ok("restore", ids[0][:12], "--target", dst)
	repotestAssertSame(t, copies[0], filepath.Join(dst, strings.TrimPrefix(src, "/")))
	if r := e.run([]string{"TMPDIR=" + t.TempDir()}, "drill", ids[0][:12]); r.code != 0 || !strings.Contains(r.stdout, ": ok\n") {
		t.Fatalf("drill after prune: %d %s %s", r.code, r.stdout, r.stderr)
	}
	e.ok("check", "--read-data")
	if err := os.RemoveAll(dst); err != nil {
		t.Fatal(err)
	}
}
