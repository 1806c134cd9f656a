package repo_test

import (
	"bytes"
	"encoding/json"
	"os/exec"
	"slices"
	"testing"
)

// goPackage is what go list says about one package of the module.
type goPackage struct {
	ImportPath string
	Imports    []string // of the package's own files, not its tests
}

// modulePackages lists the module's packages and what their non-test
// files import (go list, which go test puts on the PATH).
func modulePackages(t *testing.T) []goPackage {
	t.Helper()
	cmd := exec.Command("go", "list", "-json=ImportPath,Imports", "./...")
	cmd.Dir = ".."
	var stderr bytes.Buffer
	cmd.Stderr = &stderr
	out, err := cmd.Output()
	if err != nil {
		t.Fatalf("go list: %v\n%s", err, stderr.Bytes())
	}
	var pkgs []goPackage
	dec := json.NewDecoder(bytes.NewReader(out))
	for dec.More() {
		var p goPackage
		if err := dec.Decode(&p); err != nil {
			t.Fatalf("go list: %v", err)
		}
		pkgs = append(pkgs, p)
	}
	if len(pkgs) == 0 {
		t.Fatal("go list found no packages")
	}
	return pkgs
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
