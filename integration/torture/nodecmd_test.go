package torture

import (
	"bytes"
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"strings"
	"testing"

	"github.com/cairnbackup/cairn/integration/fswatch"
	"golang.org/x/crypto/ssh"
)

// runNode runs command in a session of its own as node n and returns
// the exit status and what the node saw.
func (a *appliance) runNode(n *node, command string) (code int, stdout, stderr string, err error) {
	c, err := a.Dial(n)
	if err != nil {
		return 0, "", "", err
	}
	defer c.Close()
	s, err := c.NewSession()
	if err != nil {
		return 0, "", "", err
	}
	var out, errb bytes.Buffer
	s.Stdout, s.Stderr = &out, &errb
	err = s.Run(command)
	var ee *ssh.ExitError
	if errors.As(err, &ee) {
		return ee.ExitStatus(), out.String(), errb.String(), nil
	}
	return 0, out.String(), errb.String(), err
}

// Admin flag abuse: an admin node (a stolen admin key) hands the
// appliance's command tree the flags only an operator may give: another
// configuration (a file it wants printed), profiles (files written as
// the appliance's user), another repository, key and password files,
// the socket, the log level; hides them behind "--", a value without
// "=", a doubled flag, an over-long line; and a push-only node tries
// the same. Every attempt must be refused with exit 2 and a log line,
// the canary file must be neither opened nor changed, no file may
// appear, and every acknowledged snapshot must still restore.
func TestAdminFlagAbuse(t *testing.T) {
	e := newEnv(t)
	e.initRepo()
	lyra, boss := newNode(t, "lyra", "push, read"), newNode(t, "boss", "admin")
	a := e.serve(nil, "", lyra, boss)
	src := newSource(t, filepath.Join(e.dir, "src"), seed^0xab05e, smallSpec, 256<<10)
	acked := map[string]string{}
	for i := range 2 {
		cp := src.keep(filepath.Join(e.dir, fmt.Sprintf("copy%d", i)))
		r := a.push(lyra, nil, nil, "--json", "--plan", "files", src.dir)
		s, ok := summaryOf(r.stdout)
		if r.code != 0 || !ok {
			t.Fatalf("push %d: %s", i, r)
		}
		acked[s.Snapshot] = cp
		src.next()
	}
	canary := filepath.Join(e.dir, "shadow")
	secret := "root:$6$canary-for-admin-flag-abuse$:19000:0:99999:7:::"
	if err := os.WriteFile(canary, []byte(secret+"\n"), 0o600); err != nil {
		t.Fatal(err)
	}
	drop := filepath.Join(e.dir, "drop")
	if err := os.Mkdir(drop, 0o755); err != nil {
		t.Fatal(err)
	}
	other := filepath.Join(e.dir, "other-repo")
	w := fswatch.New(t, canary, drop)

	attacks := []struct {
		n       *node
		command string
	}{
		{boss, "forget --config " + canary},
		{boss, "forget --config=" + canary + " --keep-last 1"},
		{boss, "forget --keep-last 1 --cpuprofile " + drop + "/cpu"},
		{boss, "forget --keep-last 1 --memprofile=" + drop + "/mem"},
		{boss, "prune --cpuprofile " + drop + "/cpu"},
		{boss, "prune --max-unused 100% --memprofile " + drop + "/mem"},
		{boss, "forget --keep-last 1 --repo " + other},
		{boss, "forget -r " + other + " --keep-last 1"},
		{boss, "forget --keep-last 1 --password-file " + canary},
		{boss, "forget --keep-last 1 --key-file " + canary},
		{boss, "forget --keep-last 1 --socket " + drop + "/x.sock"},
		{boss, "forget --keep-last 1 --log-level debug"},
		{boss, "forget --keep-last 1 -- --config " + canary},
		{boss, "forget --keep-tag --config " + canary},
		{boss, "forget --keep-last 1 --keep-last=0"},
		{boss, "forget --keep-last=1 --help"},
		{boss, "cairn --config " + canary + " forget --keep-last 1"},
		{boss, "forget" + strings.Repeat(" --keep-last=1", 400)},
		{lyra, "forget --config " + canary},
		{lyra, "prune --cpuprofile " + drop + "/cpu"},
	}
	refused, lost := 0, 0
	var seen strings.Builder
	for _, at := range attacks {
		code, out, errs, err := a.runNode(at.n, at.command)
		if err != nil {
			t.Fatalf("%s: %v", at.command, err)
		}
		seen.WriteString(out + errs)
		if code == 2 && out == "" && strings.HasPrefix(errs, "cairn: ") {
			refused++
		} else {
			t.Errorf("%s %q: exit %d, stdout %q, stderr %q: not refused", at.n.Name, at.command, code, out, errs)
		}
	}
	// The log is read as the appliance writes it: once a line logged
	// after the attacks is in, so is every refusal.
	if code, _, errs, err := a.runNode(lyra, "snapshots"); code != 0 || err != nil {
		t.Fatalf("snapshots: %d %v %s", code, err, errs)
	}
	a.WaitFor(`msg="node session started" node=lyra command=snapshots`)
	if n := a.logCount(`msg="command refused"`); n != len(attacks) {
		t.Errorf("%d refusals logged for %d attempts", n, len(attacks))
	}
	if ev := w.Events(); len(ev) != 0 {
		t.Errorf("files touched: %q", ev)
	}
	if entries, _ := os.ReadDir(drop); len(entries) != 0 {
		t.Errorf("files written: %v", entries)
	}
	if _, err := os.Stat(other); !os.IsNotExist(err) {
		t.Errorf("%s: %v", other, err)
	}
	if strings.Contains(seen.String(), "canary-for-admin") || strings.Contains(a.Log(), "canary-for-admin") {
		t.Errorf("the canary's content leaked")
	}
	list, err := parseSnapshots(e.ok("snapshots", "--json"))
	if err != nil {
		t.Fatal(err)
	}
	for id, cp := range acked {
		if _, ok := list[id]; !ok {
			t.Errorf("snapshot %s is gone", id[:8])
			lost++
			continue
		}
		if d := e.restoreCompare(id, src.dir, cp); len(d) > 0 {
			t.Errorf("%s", strings.Join(d, "\n"))
			lost++
		}
	}
	record("admin flag abuse", len(attacks), refused, lost, fmt.Sprintf("%d command lines with global flags, hidden flags and over-long lines; canary and drop directory untouched (inotify)", len(attacks)))
}
