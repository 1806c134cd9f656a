package plan

import "testing"

// A YAML indentation error in a plan file was reported at the line where
// the enclosing mapping starts, not at the line that is wrong.
func TestParseErrorLine(t *testing.T) {
	for doc, want := range map[string]string{
		"sources:\n  - name: git\n    class: git\n   why: our code\n    paths: [/srv/git]\n":                "p.yaml:4: did not find expected '-' indicator",
		"sources:\n  - name: git\n    class: git\n    why: our code\n     paths: [/srv/git]\n":              "p.yaml:5: mapping values are not allowed in this context",
		"sources:\n  - name: git\n    class: git\n    why: our code\n    paths: [/srv/git]\n - name: etc\n": "p.yaml:6: did not find expected key",
	} {
		_, err := Parse([]byte(doc), "p.yaml")
		if err == nil || err.Error() != want {
			t.Errorf("%q:\n got %v\nwant %s", doc, err, want)
		}
	}
}
