package main

import (
	"math"
	"os"
	"path/filepath"
	"runtime/debug"
	"testing"

	"github.com/cairnbackup/cairn/repo"
)

// TestBackupSetsMemoryLimit: a standalone backup asks the Go runtime to
// keep its heap near backupMemoryLimit (the session's data packs, three
// for a directory, and 60 MiB), unless GOMEMLIMIT says otherwise.
func TestBackupSetsMemoryLimit(t *testing.T) {
	for _, withPlan := range []bool{false, true} {
		t.Run(map[bool]string{false: "paths", true: "plan file"}[withPlan], func(t *testing.T) { testBackupMemoryLimit(t, withPlan) })
	}
}

func testBackupMemoryLimit(t *testing.T, withPlan bool) {
	old := debug.SetMemoryLimit(-1)
	t.Cleanup(func() { debug.SetMemoryLimit(old) })
	debug.SetMemoryLimit(math.MaxInt64)
	dir := filepath.Join(t.TempDir(), "repo")
	if _, err := repo.Init(t.Context(), dir, repo.Credentials{}, repo.InitOptions{}); err != nil {
		t.Fatal(err)
	}
	src := t.TempDir()
	if err := os.WriteFile(filepath.Join(src, "f"), []byte("data"), 0o644); err != nil {
		t.Fatal(err)
	}
	t.Setenv("GOMEMLIMIT", "")
	args := []string{"--repo", dir, "backup", "--node", "lyra", src}
	if withPlan {
		planFile := filepath.Join(t.TempDir(), "plan.yaml")
		pl := "sources:\n  - name: code\n    class: files\n    why: what we write\n    paths: [" + src + "]\n"
		if err := os.WriteFile(planFile, []byte(pl), 0o644); err != nil {
			t.Fatal(err)
		}
		args = []string{"--repo", dir, "backup", "--node", "lyra", "--plan", planFile}
	}
	if code, stderr := runCLI(t, args...); code != exitOK {
		t.Fatalf("backup: exit %d, %s", code, stderr)
	}
	// Default packs: 16 MiB and the header's reserve (4096 entries,
	// the footer, an envelope's overhead).
	if got, want := debug.SetMemoryLimit(-1), int64(3*(16<<20+4096*49+24+29))+60<<20; got != want {
		t.Fatalf("memory limit %d, want %d", got, want)
	}
}
