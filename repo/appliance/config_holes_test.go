package appliance

import (
	"errors"
	"io/fs"
	"os"
	"path/filepath"
	"strings"
	"testing"

	"github.com/cairnbackup/cairn/repo/internal/yamldoc"
)

// Issue 13 item 5: invalid values were replaced by defaults (sessions:
// -3, max_batch: 1000000), an address without a port passed until the
// metrics server failed to listen, and spans, time zones and
// permissions named the file but not the line. Every message is now
// FILE:LINE: KEY: message.
func TestConfigValidationHoles(t *testing.T) {
	for _, c := range []struct{ doc, want string }{
		{"limits:\n  sessions: -3\n", "/etc/c.yaml:2: limits.sessions: -3 is negative; give a number above 0, or leave it out for the default 32"},
		{"limits:\n  max_batch: 1000000\n", "/etc/c.yaml:2: limits.max_batch: 1000000 is above the most allowed, 65536"},
		{"limits:\n  sessions_per_node: -1\n", "/etc/c.yaml:2: limits.sessions_per_node: -1 is negative; give a number above 0, or leave it out for the default 4"},
		{"limits:\n  unauthenticated: -1\n", "/etc/c.yaml:2: limits.unauthenticated: -1 is negative; give a number above 0, or leave it out for the default 64"},
		{"limits:\n  unauthenticated_per_address: -1\n", "/etc/c.yaml:2: limits.unauthenticated_per_address: -1 is negative; give a number above 0, or leave it out for the default 10"},
		{"limits:\n  idle_timeout: -5s\n", "/etc/c.yaml:2: limits.idle_timeout: -5s is negative; give a duration above 0, or leave it out for the default 10m0s"},
		{"limits:\n  handshake_timeout: -1s\n", "/etc/c.yaml:2: limits.handshake_timeout: -1s is negative; give a duration above 0, or leave it out for the default 20s"},
		{"limits:\n  idle_timeout: soon\n", "/etc/c.yaml:2: limits.idle_timeout: cannot unmarshal !!str `soon` into time.Duration"},
		{"nodes:\n  lyra:\n    keys: [\"" + keyA + "\"]\n    permissions: [push]\n    max_sessions: -2\n", "/etc/c.yaml:5: nodes.lyra.max_sessions: -2 is negative; give a number above 0, or leave it out for limits.sessions_per_node"},
		{"metrics: 19472\n", "/etc/c.yaml:1: metrics: address 19472: missing port in address (give HOST:PORT, such as 127.0.0.1:9100)"},
		{"listen: 127.0.0.1:2222\nexpect:\n  default: 26h\n  lyra/git: 3x\n", `/etc/c.yaml:4: expect.lyra/git: span "3x": unknown unit 'x' (use y, m, d, h)`},
		{"expect:\n  lyra: 0d\n", "/etc/c.yaml:2: expect.lyra: a span of zero: every backup would be late; give how often a backup must come, such as 26h"},
		{"expect:\n  lyra/git/x: 1d\n", `/etc/c.yaml:2: expect.lyra/git/x: plan name "git/x" has the character '/'; use letters, digits, '.', '_' and '-' (give default, NODE or NODE/PLAN)`},
		{"jobs:\n  verify: {schedule: \"@daily\", cycle: 30days}\n", `/etc/c.yaml:2: jobs.verify.cycle: span "30days": want numbers with units y, m, d, h (for example 7d or 1y6m)`},
		{"retention:\n  policies:\n    default:\n      keep_last: 3\n      keep_within: week\n", `/etc/c.yaml:5: retention.policies.default.keep_within: span "week": want numbers with units y, m, d, h (for example 7d or 1y6m)`},
		{"retention:\n  timezone: Europe/Berln\n", "/etc/c.yaml:2: retention.timezone: unknown time zone Europe/Berln"},
		{"retention:\n  group_by: [node]\n", "/etc/c.yaml:2: retention.group_by: want a comma list of node, plan, paths, not a list"},
		{"nodes:\n  lyra:\n    keys: [\"" + keyA + "\"]\n    permissions:\n      - push\n      - write\n", `/etc/c.yaml:6: nodes.lyra.permissions[1]: unknown permission "write" (use push, read, admin)`},
		{"jobs:\n  drill:\n    schedule: \"@dialy\"\n", `/etc/c.yaml:3: jobs.drill.schedule: "@dialy": unrecognized descriptor: @dialy`},
	} {
		_, err := ParseConfig([]byte(c.doc), "/etc/c.yaml")
		if err == nil || err.Error() != c.want {
			t.Errorf("%q:\n got %v\nwant %s", c.doc, err, c.want)
		}
	}
}

// Every problem of a file is listed, in the order of its lines, not
// only the first; each is a yamldoc.Problem.
func TestConfigEveryProblem(t *testing.T) {
	doc := `listen: 127.0.0.1:2222
metrics: 19472
nodes:
  lyra:
    keys: ["` + keyA + `"]
    permissions: [push, root]
  vega:
    keys: []
    permissions: [read]
limits:
  sessions: -3
  max_batch: 1000000
  colour: red
retention:
  timezone: Mars/Olympus
jobs:
  drill: {schedule: "@dialy", sample_files: -1}
`
	_, err := ParseConfig([]byte(doc), "c.yaml")
	want := strings.Join([]string{
		"c.yaml:2: metrics: address 19472: missing port in address (give HOST:PORT, such as 127.0.0.1:9100)",
		`c.yaml:6: nodes.lyra.permissions[1]: unknown permission "root" (use push, read, admin)`,
		"c.yaml:8: nodes.vega.keys: none: give the node's public keys (authorized_keys lines)",
		"c.yaml:11: limits.sessions: -3 is negative; give a number above 0, or leave it out for the default 32",
		"c.yaml:12: limits.max_batch: 1000000 is above the most allowed, 65536",
		"c.yaml:13: limits.colour: unknown key",
		"c.yaml:15: retention.timezone: unknown time zone Mars/Olympus",
		`c.yaml:17: jobs.drill.schedule: "@dialy": unrecognized descriptor: @dialy`,
		"c.yaml:17: jobs.drill.sample_files: -1 is negative; give a number of files, or 0 for all",
	}, "\n")
	if err == nil || err.Error() != want {
		t.Fatalf("got\n%v\nwant\n%s", err, want)
	}
	var ps yamldoc.Problems
	if !errors.As(err, &ps) || len(ps) != 9 || ps[0].Key != "metrics" || ps[0].Line != 2 {
		t.Errorf("problems %#v", ps)
	}
}

// A configuration file named explicitly must exist: serve started with
// no nodes and status said all well. Commands that may do without
// (status with the default DIR.yaml) get DefaultConfig, marked Missing,
// and status lists it as needing attention.
func TestLoadConfigMissing(t *testing.T) {
	path := filepath.Join(t.TempDir(), "none.yaml")
	_, err := LoadConfig(path)
	if !errors.Is(err, fs.ErrNotExist) || err.Error() != path+": no such configuration file (cairn init writes one beside the repository)" {
		t.Errorf("missing: %v", err)
	}
	c := DefaultConfig(path)
	if !c.Missing || c.Path != path || len(c.Nodes) != 0 || c.Limits.Sessions != DefaultSessions {
		t.Errorf("default %+v", c)
	}
	if err := os.WriteFile(path, []byte("listen: 127.0.0.1:2200\n"), 0o600); err != nil {
		t.Fatal(err)
	}
	c, err = LoadConfig(path)
	if err != nil || c.Missing || c.Path != path || c.Listen != "127.0.0.1:2200" {
		t.Errorf("present: %+v %v", c, err)
	}
}
