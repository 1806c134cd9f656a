package appliance

import (
	"errors"
	"net"
	"testing"

	"github.com/cairnbackup/cairn/repo/internal/yamldoc"
	"github.com/cairnbackup/cairn/scheduler"
	"go.yaml.in/yaml/v3"
)

// FuzzParseConfig: the appliance config is read from disk (and reloaded
// on SIGHUP); no document may panic the parser. One it accepts is
// complete: an address, a node map, limits above zero, and for every
// node at least one key and a permission; it is whole, as serve needs
// it (its jobs make a scheduler, its addresses split into host and
// port); and no value it holds was replaced: a limit the document sets
// is the limit in force. One it refuses says why as yamldoc.Problems,
// each naming the file.
func FuzzParseConfig(f *testing.F) {
	f.Add([]byte(DefaultConfigText))
	f.Add([]byte("listen: 0.0.0.0:2222\nnodes:\n  lyra:\n    keys: [\"" + keyA + "\"]\n    permissions: [push, read]\n    isolated: true\nlimits:\n  idle_timeout: 90s\n  max_batch: 10\n"))
	f.Add([]byte("nodes:\n  a: {keys: [\"" + keyA + "\"], permissions: [admin]}\nlimits: {sessions: 1, sessions_per_node: 1}\n"))
	f.Add([]byte("nodes: [1, 2]\n"))
	f.Add([]byte("&a [*a]"))
	// Issue 13 item 5: values that were replaced or passed unnoticed.
	f.Add([]byte("limits:\n  sessions: -3\n  max_batch: 1000000\n"))
	f.Add([]byte("metrics: 19472\n"))
	f.Add([]byte("metrics: 127.0.0.1:9100\nlisten: 127.0.0.1:65536\n"))
	f.Add([]byte("jobs:\n  drill: {schedule: \"@dialy\", jitter: 5m}\n  verify: {schedule: \"@every 6h\", cycle: 30d}\n"))
	f.Add([]byte("expect: {default: 26h, lyra/git: 8d, lyra/git/x: 1d, bad: 0h}\n"))
	f.Add([]byte("retention:\n  timezone: Europe/Berlin\n  group_by: node,plan\n  policies:\n    default: {keep_last: 3, keep_within: 7d}\n    lyra: {keep_within: [1]}\n"))
	f.Add([]byte("nodes:\n  lyra:\n    keys: [\"" + keyA + "\"]\n    permissions: [push, root]\n    max_sessions: -1\n    colour: red\n"))
	f.Add([]byte("limits: {idle_timeout: -1s, clock_skew: soon, handshake_timeout: {a: 1}}\n"))
	f.Fuzz(func(t *testing.T, b []byte) {
		c, err := ParseConfig(b, "fuzz")
		if err != nil {
			var ps yamldoc.Problems
			if !errors.As(err, &ps) || len(ps) == 0 {
				t.Fatalf("refused without problems: %v", err)
			}
			for _, p := range ps {
				if p.File != "fuzz" || p.Message == "" {
					t.Fatalf("a problem without its file or message: %#v", p)
				}
			}
			return
		}
		l := c.Limits
		if c.Listen == "" || c.Nodes == nil || l.Sessions <= 0 || l.SessionsPerNode <= 0 || l.MaxBatch <= 0 || l.MaxBatch > 65536 ||
			l.IdleTimeout <= 0 || l.ClockSkew <= 0 || l.Unauthenticated <= 0 || l.UnauthenticatedPerAddress <= 0 || l.HandshakeTimeout <= 0 {
			t.Fatalf("accepted an incomplete config: %+v", c)
		}
		for name, n := range c.Nodes {
			if len(n.Keys) == 0 || n.Perms() == 0 || n.MaxSessions < 0 {
				t.Fatalf("node %q accepted without keys or permissions: %+v", name, n)
			}
		}
		if _, err := scheduler.New((&Appliance{}).jobs(c), nil, scheduler.Options{}); err != nil {
			t.Fatalf("accepted a configuration whose jobs the scheduler refuses: %v", err)
		}
		for _, addr := range []string{c.Listen, c.Metrics} {
			if _, _, err := net.SplitHostPort(addr); addr != "" && err != nil {
				t.Fatalf("accepted the address %q: %v", addr, err)
			}
		}
		var raw struct {
			Limits Limits `yaml:"limits"`
		}
		if yaml.Unmarshal(b, &raw) == nil {
			r := raw.Limits
			for _, x := range []struct{ set, got int64 }{
				{int64(r.Sessions), int64(l.Sessions)}, {int64(r.SessionsPerNode), int64(l.SessionsPerNode)},
				{int64(r.MaxBatch), int64(l.MaxBatch)}, {int64(r.IdleTimeout), int64(l.IdleTimeout)},
				{int64(r.ClockSkew), int64(l.ClockSkew)}, {int64(r.Unauthenticated), int64(l.Unauthenticated)},
				{int64(r.UnauthenticatedPerAddress), int64(l.UnauthenticatedPerAddress)}, {int64(r.HandshakeTimeout), int64(l.HandshakeTimeout)},
			} {
				if x.set != 0 && x.set != x.got {
					t.Fatalf("limits %+v: a value set to %d was replaced by %d", l, x.set, x.got)
				}
			}
		}
	})
}
