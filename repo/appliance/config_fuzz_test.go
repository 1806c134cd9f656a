package appliance

import (
	"testing"
)

// FuzzParseConfig: the appliance config is read from disk (and reloaded
// on SIGHUP); no document may panic the parser, and one it accepts is
// complete: an address, a node map, limits above zero, and for every
// node at least one key and a permission.
func FuzzParseConfig(f *testing.F) {
	f.Add([]byte(DefaultConfigText))
	f.Add([]byte("listen: 0.0.0.0:2222\nnodes:\n  lyra:\n    keys: [\"" + keyA + "\"]\n    permissions: [push, read]\n    isolated: true\nlimits:\n  idle_timeout: 90s\n  max_batch: 10\n"))
	f.Add([]byte("nodes:\n  a: {keys: [\"" + keyA + "\"], permissions: [admin]}\nlimits: {sessions: 1, sessions_per_node: 1}\n"))
	f.Add([]byte("nodes: [1, 2]\n"))
	f.Add([]byte("&a [*a]"))
	f.Fuzz(func(t *testing.T, b []byte) {
		c, err := ParseConfig(b, "fuzz")
		if err != nil {
			return
		}
		if c.Listen == "" || c.Nodes == nil || c.Limits.Sessions <= 0 || c.Limits.SessionsPerNode <= 0 || c.Limits.MaxBatch <= 0 {
			t.Fatalf("accepted an incomplete config: %+v", c)
		}
		for name, n := range c.Nodes {
			if len(n.Keys) == 0 || n.Perms() == 0 {
				t.Fatalf("node %q accepted without keys or permissions: %+v", name, n)
			}
		}
	})
}
