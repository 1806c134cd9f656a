package appliance

import "testing"

// A YAML indentation error on line 4 was reported at the line where the
// enclosing mapping starts ("line 2"): the yaml package names the
// context, not the line that is wrong.
func TestParseConfigErrorLine(t *testing.T) {
	for doc, want := range map[string]string{
		"listen: 127.0.0.1:2222\nnodes:\n  lyra:\n keys: [\"" + keyA + "\"]\n":                                              "/etc/cairn.yaml:4: did not find expected key",
		"listen: 127.0.0.1:2222\nnodes:\n  lyra:\n    keys: [\"" + keyA + "\"]\n   permissions: [push]\n":                   "/etc/cairn.yaml:5: did not find expected key",
		"listen: 127.0.0.1:2222\nlimits:\n  sessions: 4\n  idle_timeout: 1m\n   max_batch: 10\n":                            "/etc/cairn.yaml:5: mapping values are not allowed in this context",
		"listen: 127.0.0.1:2222\nnodes:\n  lyra:\n    keys: [\"" + keyA + "\"]\n    permissions: [push]\n    colour: red\n": "/etc/cairn.yaml:6: nodes.lyra.colour: unknown key",
	} {
		_, err := ParseConfig([]byte(doc), "/etc/cairn.yaml")
		if err == nil || err.Error() != want {
			t.Errorf("%q:\n got %v\nwant %s", doc, err, want)
		}
	}
}
