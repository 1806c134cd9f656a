package integration

import (
	"encoding/json"
	"os"
	"os/exec"
	"path/filepath"
	"runtime"
	"strings"
	"testing"

	"github.com/cairnbackup/cairn/integration/testenv"
)

// buildStamped builds cairn with the version and commit stamped as
// `make build` does.
func buildStamped(t *testing.T, version, commit string) string {
	t.Helper()
	bin := filepath.Join(t.TempDir(), "cairn")
	ld := "-X main.version=" + version + " -X main.commit=" + commit
	out, err := exec.Command("go", "build", "-ldflags", ld, "-o", bin, "../cmd/cairn").CombinedOutput()
	if err != nil {
		t.Fatalf("go build: %v\n%s", err, out)
	}
	return bin
}

func TestVersion(t *testing.T) {
	bin := buildStamped(t, "v1.2.3-4-gabcdef0", "abcdef0123456789abcdef0123456789abcdef01")
	out, err := exec.Command(bin, "version").Output()
	if err != nil {
		t.Fatal(err)
	}
	want := "cairn v1.2.3-4-gabcdef0\n" +
		"commit:            abcdef0123456789abcdef0123456789abcdef01\n" +
		"go:                " + runtime.Version() + "\n" +
		"repository format: 1\n"
	if string(out) != want {
		t.Fatalf("cairn version:\n%s\nwant:\n%s", out, want)
	}
	out, err = exec.Command(bin, "version", "--json").Output()
	if err != nil {
		t.Fatal(err)
	}
	want = `{
  "version": "v1.2.3-4-gabcdef0",
  "commit": "abcdef0123456789abcdef0123456789abcdef01",
  "go": "` + runtime.Version() + `",
  "repository_format": 1
}
`
	if string(out) != want {
		t.Fatalf("cairn version --json:\n%s\nwant:\n%s", out, want)
	}
	// A binary built without stamps (GOFLAGS=-buildvcs=false, no
	// module version) says so rather than guessing.
	cmd := exec.Command("go", "build", "-buildvcs=false", "-o", filepath.Join(t.TempDir(), "plain"), "../cmd/cairn")
	cmd.Dir = "."
	if out, err := cmd.CombinedOutput(); err != nil {
		t.Fatalf("go build: %v\n%s", err, out)
	}
	out, err = exec.Command(cmd.Args[4], "version", "--json").Output()
	if err != nil {
		t.Fatal(err)
	}
	var plain struct{ Version, Commit string }
	if err := json.Unmarshal(out, &plain); err != nil || plain.Version != "dev" || plain.Commit != "unknown" {
		t.Fatalf("unstamped build: %s (%v)", out, err)
	}
}

// make build stamps the binary with git describe and the commit.
func TestMakeBuildStampsVersion(t *testing.T) {
	testenv.RequireProgram(t, "make", "make")
	git := testenv.RequireProgram(t, "git", "git")
	describe, err := exec.Command(git, "-C", "..", "describe", "--tags", "--always", "--dirty").Output()
	if err != nil {
		testenv.Missing(t, "not a git checkout: %v", err)
	}
	head, err := exec.Command(git, "-C", "..", "rev-parse", "HEAD").Output()
	if err != nil {
		t.Fatal(err)
	}
	bin := filepath.Join(t.TempDir(), "cairn")
	cmd := exec.Command("make", "-C", "..", "build", "BIN="+bin)
	if out, err := cmd.CombinedOutput(); err != nil {
		t.Fatalf("make build: %v\n%s", err, out)
	}
	out, err := exec.Command(bin, "version", "--json").Output()
	if err != nil {
		t.Fatal(err)
	}
	var got struct {
		Version, Commit, Go string
		RepositoryFormat    int `json:"repository_format"`
	}
	if err := json.Unmarshal(out, &got); err != nil {
		t.Fatal(err)
	}
	if got.Version != strings.TrimSpace(string(describe)) || got.Commit != strings.TrimSpace(string(head)) || got.Go != runtime.Version() || got.RepositoryFormat != 1 {
		t.Fatalf("make build: version %s, want %s and commit %s", out, describe, head)
	}
	os.Remove(bin)
}
