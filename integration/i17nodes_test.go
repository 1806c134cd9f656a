package integration

import (
	"fmt"
	"path/filepath"
	"strings"
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
		full := append([]string{"snapshots", "--from", fmt.Sprintf("ssh://%s@127.0.0.1:%d", n.name, a.port), "-i", n.key.PrivatePath, "--host-key", a.hostKey}, args...)
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
			t.Errorf("%s %v: exit %d\nstdout %s\nstderr %q\nwant the operator's %v:\n%s", c.n.name, c.args, r.code, r.stdout, r.stderr, c.operator, want)
		}
	}
	if got := strings.Count(e.ok("snapshots", "--node", "lyra"), "\n"); got != 3 {
		t.Fatalf("the operator lists %d lines for lyra", got)
	}
	// A wrong address is a usage error; a wrong host key is refused.
	if r := e.runIn(nil, nil, "snapshots", "--from", "lyra@127.0.0.1"); r.code != 2 || r.stderr != "cairn: snapshots --from: \"lyra@127.0.0.1\" is not ssh://NODE@HOST[:PORT]\n" {
		t.Errorf("bad address: %d %q", r.code, r.stderr)
	}
	r := e.runIn(nil, nil, "snapshots", "--from", fmt.Sprintf("ssh://lyra@127.0.0.1:%d", a.port), "-i", lyra.key.PrivatePath, "--host-key", "SHA256:wrong")
	if r.code != 1 || !strings.Contains(r.stderr, "not SHA256:wrong as --host-key says") {
		t.Errorf("wrong host key: %d %q", r.code, r.stderr)
	}
}
