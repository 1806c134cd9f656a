package yamldoc

import (
	"errors"
	"fmt"
	"io/fs"
	"os"
	"path/filepath"
	"strings"
	"testing"

	"go.yaml.in/yaml/v3"
)

type config struct {
	Listen string `yaml:"listen"`
	Nodes  map[string]struct {
		Keys        []string `yaml:"keys"`
		Permissions []string `yaml:"permissions"`
	} `yaml:"nodes"`
	Limits struct {
		Sessions int `yaml:"sessions"`
	} `yaml:"limits"`
	Expect map[string]even `yaml:"expect"`
}

// even is a value with an UnmarshalYAML method that refuses odd numbers.
type even int

func (e *even) UnmarshalYAML(n *yaml.Node) error {
	return Scalar(n, "an even number", func(s string) error {
		var v int
		if _, err := fmt.Sscan(s, &v); err != nil || v%2 != 0 {
			return fmt.Errorf("%q is not an even number", s)
		}
		*e = even(v)
		return nil
	})
}

// Syntax errors are reported at the line that is wrong; the yaml package
// names the line where the enclosing block starts.
func TestSyntaxErrorLine(t *testing.T) {
	for _, c := range []struct{ doc, want string }{
		{"listen: a\nnodes:\n  lyra:\n keys: []\n", "f.yaml:4: did not find expected key"},
		{"listen: a\nnodes:\n  lyra:\n     keys: []\n    permissions: [push]\n", "f.yaml:5: did not find expected key"},
		{"listen: a\nnodes:\n  lyra:\n    keys: [a]\n      permissions: [push]\n", "f.yaml:5: did not find expected key"},
		{"listen: a\nnodes:\n  lyra:\n    keys: []\n    permissions: [push]\n  vega:\n    keys: []\n   permissions: []", "f.yaml:8: did not find expected key"},
		{"listen: a\nnodes:\n  lyra: x\n  vega: y: z\n", "f.yaml:4: mapping values are not allowed in this context"},
		{"listen: a\n\tnodes: {}\n", "f.yaml:2: found a tab character that violates indentation"},
		{"listen: [a,\n  b\nnodes: {}\n", "f.yaml:3: did not find expected ',' or ']'"},
		{"listen: [a,\n  b,\n  @c]\n", "f.yaml:3: found character that cannot start any token"},
		{"listen: 'a\n  b\nnodes: {}\n", "f.yaml:4: found unexpected end of stream"},
	} {
		var d config
		_, err := Parse([]byte(c.doc), "f.yaml", &d)
		if err == nil || err.Error() != c.want {
			t.Errorf("%q:\n got %v\nwant %s", c.doc, err, c.want)
		}
	}
}

// Every decoding problem is listed, each with its line and key: unknown
// keys, wrong types, values an UnmarshalYAML method refuses (which
// before ended decoding with no line at all), also in flow mappings
// that hold several keys on one line.
func TestDecodingProblems(t *testing.T) {
	var d config
	src := "listen: a\nnodes:\n  lyra:\n    keys: []\n    colour: red\nlimits:\n  sessions: many\nexpect:\n  default: 3\n  lyra: {x: 2}\n  vega: [4]\nnodes2: {}\n"
	doc, err := Parse([]byte(src), "/etc/c.yaml", &d)
	if err != nil {
		t.Fatal(err)
	}
	want := strings.Join([]string{
		"/etc/c.yaml:5: nodes.lyra.colour: unknown key",
		"/etc/c.yaml:7: limits.sessions: cannot unmarshal !!str `many` into int",
		`/etc/c.yaml:9: expect.default: "3" is not an even number`,
		"/etc/c.yaml:10: expect.lyra: want an even number, not a mapping",
		"/etc/c.yaml:11: expect.vega: want an even number, not a list",
		"/etc/c.yaml:12: nodes2: unknown key",
	}, "\n")
	if err := doc.Err(); err == nil || err.Error() != want {
		t.Errorf("got\n%v\nwant\n%s", err, want)
	}
	var ps Problems
	if !errors.As(doc.Err(), &ps) || len(ps) != 6 || ps[1] != (Problem{File: "/etc/c.yaml", Line: 7, Key: "limits.sessions", Message: "cannot unmarshal !!str `many` into int"}) {
		t.Errorf("problems %#v", ps)
	}

	var flow config
	doc, _ = Parse([]byte("expect: {a: 2, b: 5, c: 4}\nnodes: {x: {keys: [k], permissions: [p], size: 3}}\nlimits: {sessions: {a: 1}}\n"), "f", &flow)
	want = "f:1: expect.b: \"5\" is not an even number\nf:2: nodes.x.size: unknown key\nf:3: limits.sessions: cannot unmarshal !!map into int"
	if err := doc.Err(); err == nil || err.Error() != want {
		t.Errorf("flow: got\n%v\nwant\n%s", err, want)
	}
}

// Problemf names the line of the key, or of the nearest enclosing key
// for one that is missing; a key the decoder refused gets no second
// problem; problems come out in the order of their lines.
func TestProblemf(t *testing.T) {
	var d config
	doc, err := Parse([]byte("listen: a\nnodes:\n  lyra:\n    keys:\n      - k1\n      - k2\nlimits:\n  sessions: x\n"), "f.yaml", &d)
	if err != nil {
		t.Fatal(err)
	}
	doc.Problemf("nodes.lyra.keys[1]", "bad key")
	doc.Problemf("nodes.lyra.permissions", "missing")
	doc.Problemf("limits.sessions", "must be positive") // refused already
	doc.Problemf("limits", "something")                 // has a problem under it
	doc.Problemf("listen", "not an address")
	doc.Problemf("metrics", "absent key, no line")
	want := strings.Join([]string{
		"f.yaml:1: listen: not an address",
		"f.yaml:3: nodes.lyra.permissions: missing",
		"f.yaml:6: nodes.lyra.keys[1]: bad key",
		"f.yaml:8: limits.sessions: cannot unmarshal !!str `x` into int",
		"f.yaml: metrics: absent key, no line",
	}, "\n")
	if err := doc.Err(); err == nil || err.Error() != want {
		t.Errorf("got\n%v\nwant\n%s", err, want)
	}
	if l := doc.Line("nodes.lyra.keys[0]"); l != 5 {
		t.Errorf("line of keys[0] = %d", l)
	}
}

func TestEmptyAndGood(t *testing.T) {
	var d config
	doc, err := Parse(nil, "f", &d)
	if err != nil || doc.Err() != nil {
		t.Errorf("empty: %v %v", err, doc.Err())
	}
	doc, err = Parse([]byte("listen: a\n"), "f", &d)
	if err != nil || doc.Err() != nil || d.Listen != "a" {
		t.Errorf("good: %v %v %+v", err, doc.Err(), d)
	}
	// An alias to itself is not followed while finding lines.
	var n any
	if _, err := Parse([]byte("&a [*a]"), "f", &n); err != nil {
		t.Errorf("alias: %v", err)
	}
}

func TestReadFile(t *testing.T) {
	dir := t.TempDir()
	if _, err := ReadFile(filepath.Join(dir, "none.yaml")); !errors.Is(err, fs.ErrNotExist) || err.Error() != "open "+dir+"/none.yaml: no such file or directory" {
		t.Errorf("missing: %v", err)
	}
	big := filepath.Join(dir, "big")
	if err := os.WriteFile(big, make([]byte, MaxFileSize+1), 0o600); err != nil {
		t.Fatal(err)
	}
	if _, err := ReadFile(big); err == nil || err.Error() != big+": larger than 4 MiB: not a configuration file" {
		t.Errorf("big: %v", err)
	}
}
