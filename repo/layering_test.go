package repo_test

import (
	"bytes"
	"encoding/json"
	"go/parser"
	"go/token"
	"os/exec"
	"regexp"
	"slices"
	"strconv"
	"strings"
	"sync"
	"testing"
)

// module is the import path of the module; go list runs in its root,
// the parent of this package's directory.
const module = "github.com/cairnbackup/cairn"

// goPackage is what go list says about one package of the module.
type goPackage struct {
	ImportPath string
	Imports    []string // of the package's own files, not its tests
}

var listed struct {
	once sync.Once
	pkgs []goPackage
	err  string
}

// modulePackages lists the module's packages and what their non-test
// files import (go list, which go test puts on the PATH).
func modulePackages(t *testing.T) []goPackage {
	t.Helper()
	listed.once.Do(func() {
		cmd := exec.Command("go", "list", "-json=ImportPath,Imports", "./...")
		cmd.Dir = ".."
		var stderr bytes.Buffer
		cmd.Stderr = &stderr
		out, err := cmd.Output()
		if err != nil {
			listed.err = "go list: " + err.Error() + "\n" + stderr.String()
			return
		}
		dec := json.NewDecoder(bytes.NewReader(out))
		for dec.More() {
			var p goPackage
			if err := dec.Decode(&p); err != nil {
				listed.err = "go list: " + err.Error()
				return
			}
			listed.pkgs = append(listed.pkgs, p)
		}
	})
	if listed.err != "" {
		t.Fatal(listed.err)
	}
	if len(listed.pkgs) == 0 {
		t.Fatal("go list found no packages")
	}
	return listed.pkgs
}

// SHA-256 comes from one package in the code (tests may check it against
// the standard library's).
func TestOneSHA256(t *testing.T) {
	for _, p := range modulePackages(t) {
		if slices.Contains(p.Imports, "crypto/sha256") {
			t.Errorf("%s imports crypto/sha256: use github.com/minio/sha256-simd, the module's one SHA-256", p.ImportPath)
		}
	}
}

var mapRow = regexp.MustCompile(`^\t([0-9]+) +(\S.*)$`)

// packageMap reads the layer of every package (relative to the module)
// from the "Package map" section of repo's package documentation.
func packageMap(t *testing.T) map[string]int {
	t.Helper()
	f, err := parser.ParseFile(token.NewFileSet(), "doc.go", nil, parser.ParseComments|parser.PackageClauseOnly)
	if err != nil {
		t.Fatal(err)
	}
	_, section, ok := strings.Cut(f.Doc.Text(), "\n# Package map\n")
	if !ok {
		t.Fatal(`doc.go: no "# Package map" section`)
	}
	section, _, _ = strings.Cut(section, "\n# ")
	layers := map[string]int{}
	for line := range strings.Lines(section) {
		m := mapRow.FindStringSubmatch(strings.TrimSuffix(line, "\n"))
		if m == nil {
			continue
		}
		n, _ := strconv.Atoi(m[1])
		for _, p := range strings.Fields(m[2]) {
			if _, dup := layers[p]; dup {
				t.Errorf("doc.go: the package map names %s twice", p)
			}
			layers[p] = n
		}
	}
	if len(layers) == 0 {
		t.Fatal("doc.go: the package map has no rows")
	}
	return layers
}

// Every package imports only packages of lower layers of repo's package
// map, and the rules beside the layers hold.
func TestLayering(t *testing.T) {
	layers := packageMap(t)
	seen := map[string]bool{}
	for _, p := range modulePackages(t) {
		rel, ok := strings.CutPrefix(p.ImportPath, module+"/")
		if !ok {
			t.Errorf("%s is outside the module's folders", p.ImportPath)
			continue
		}
		if rel == "integration" || strings.HasPrefix(rel, "integration/") {
			continue // end-to-end tests and their helpers: anything goes
		}
		seen[rel] = true
		layer, placed := layers[rel]
		if !placed {
			t.Errorf("%s is not in the package map (repo/doc.go): give it a layer", rel)
			continue
		}
		for _, imp := range p.Imports {
			dep, ours := strings.CutPrefix(imp, module+"/")
			switch {
			case !ours:
			case dep == "integration" || strings.HasPrefix(dep, "integration/"), dep == "repo/repotest" || strings.HasPrefix(dep, "repo/repotest/"):
				t.Errorf("%s imports %s, which only tests may import", rel, dep)
			case dep == "repo/internal/index" && rel != "repo":
				t.Errorf("%s imports repo/internal/index, which only repo may import", rel)
			default:
				if l, placed := layers[dep]; placed && l >= layer {
					t.Errorf("%s (layer %d) imports %s (layer %d): a package imports only lower layers (repo/doc.go, Package map)", rel, layer, dep, l)
				}
			}
		}
	}
	for p := range layers {
		if !seen[p] {
			t.Errorf("the package map (repo/doc.go) names %s, which is not a package of the module", p)
		}
	}
}
