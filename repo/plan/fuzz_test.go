package plan

import (
	"errors"
	"path/filepath"
	"slices"
	"strings"
	"testing"

	"github.com/cairnbackup/cairn/repo/internal/yamldoc"
)

// FuzzParse: plan files are read from disk on the node; no document may
// panic the parser, one it refuses says why as yamldoc.Problems, and a
// plan it accepts has sources with unique names,
// a reason and a known class each, and either absolute paths or a
// command with the file its output is stored under.
func FuzzParse(f *testing.F) {
	f.Add([]byte("sources:\n  - name: git\n    class: git\n    why: our code\n    paths: [/srv/git]\n  - name: pg\n    class: database\n    why: data\n    command: pg_dumpall\n    file: pg.sql\n"))
	f.Add([]byte("sources: []\n"))
	f.Add([]byte("sources:\n  - {name: a, class: files, why: x, paths: [/a], exclude: [\"*.tmp\"], keep_disposable: true, tags: [t]}\n"))
	f.Add([]byte("sources: {a: 1}\n"))
	f.Add([]byte("sources:\n  - name: git\n    class: gti\n    why: \"\"\n    paths: [srv, /a]\n    colour: red\n  - name: git\n    command: x\n"))
	f.Fuzz(func(t *testing.T, b []byte) {
		p, err := Parse(b, "fuzz")
		if err != nil {
			var ps yamldoc.Problems
			if !errors.As(err, &ps) || len(ps) == 0 || ps[0].File != "fuzz" {
				t.Fatalf("refused without problems naming the file: %v", err)
			}
			return
		}
		if len(p.Sources) == 0 {
			t.Fatal("accepted a plan with no sources")
		}
		seen := map[string]bool{}
		for _, s := range p.Sources {
			if seen[s.Name] {
				t.Fatalf("accepted two sources named %q", s.Name)
			}
			seen[s.Name] = true
			if strings.TrimSpace(s.Why) == "" || !slices.Contains(Classes, s.Class) {
				t.Fatalf("accepted a source without a reason or with an unknown class: %+v", s)
			}
			if (len(s.Paths) == 0) == (s.Command == "") || (s.Command != "") != (s.File != "") {
				t.Fatalf("accepted a source without exactly one of paths and command+file: %+v", s)
			}
			for _, q := range s.Paths {
				if !filepath.IsAbs(q) {
					t.Fatalf("accepted a relative path %q", q)
				}
			}
		}
	})
}
