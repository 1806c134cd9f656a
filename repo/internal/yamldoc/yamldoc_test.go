package yamldoc

import (
	"errors"
	"io"
	"testing"
)

type doc struct {
	Listen string `yaml:"listen"`
	Nodes  map[string]struct {
		Keys        []string `yaml:"keys"`
		Permissions []string `yaml:"permissions"`
	} `yaml:"nodes"`
}

// Syntax errors are reported at the line that is wrong; the yaml package
// names the line where the enclosing block starts.
func TestSyntaxErrorLine(t *testing.T) {
	for _, c := range []struct{ doc, want string }{
		{"listen: a\nnodes:\n  lyra:\n keys: []\n", "yaml: line 4: did not find expected key"},
		{"listen: a\nnodes:\n  lyra:\n     keys: []\n    permissions: [push]\n", "yaml: line 5: did not find expected key"},
		{"listen: a\nnodes:\n  lyra:\n    keys: [a]\n      permissions: [push]\n", "yaml: line 5: did not find expected key"},
		{"listen: a\nnodes:\n  lyra:\n    keys: []\n    permissions: [push]\n  vega:\n    keys: []\n   permissions: []", "yaml: line 8: did not find expected key"},
		{"listen: a\nnodes:\n  lyra: x\n  vega: y: z\n", "yaml: line 4: mapping values are not allowed in this context"},
		{"listen: a\n\tnodes: {}\n", "yaml: line 2: found a tab character that violates indentation"},
		{"listen: [a,\n  b\nnodes: {}\n", "yaml: line 3: did not find expected ',' or ']'"},
		{"listen: [a,\n  b,\n  @c]\n", "yaml: line 3: found character that cannot start any token"},
		{"listen: 'a\n  b\nnodes: {}\n", "yaml: line 4: found unexpected end of stream"},
	} {
		var d doc
		err := Decode([]byte(c.doc), &d)
		if err == nil || err.Error() != c.want {
			t.Errorf("%q:\n got %v\nwant %s", c.doc, err, c.want)
		}
	}
}

func TestTypeErrorsAndEmpty(t *testing.T) {
	var d doc
	err := Decode([]byte("listen: a\nnodes:\n  lyra:\n    keys: []\n    colour: red\n"), &d)
	if err == nil || err.Error() != "yaml: unmarshal errors:\n  line 5: field colour not found in type struct { Keys []string \"yaml:\\\"keys\\\"\"; Permissions []string \"yaml:\\\"permissions\\\"\" }" {
		t.Errorf("unknown field: %q", err)
	}
	if err := Decode(nil, &d); !errors.Is(err, io.EOF) {
		t.Errorf("empty: %v", err)
	}
	if err := Decode([]byte("listen: a\n"), &d); err != nil || d.Listen != "a" {
		t.Errorf("good: %v %+v", err, d)
	}
}
