package drill_test

import (
	"os"
	"path/filepath"
	"slices"
	"testing"

	"github.com/cairnbackup/cairn/repo/drill"
	"github.com/cairnbackup/cairn/repo/repotest"
	"golang.org/x/sys/unix"
)

// A drill killed part-way leaves its scratch directory behind (found by
// the torture suite: every killed drill left a restored copy in TMPDIR).
// The next drill removes every such directory that no running drill
// holds, says so in its warnings, and leaves alone a drill's directory
// still in use and directories that are not a drill's.
func TestDrillSweepsScratchOfKilledDrills(t *testing.T) {
	src := t.TempDir()
	repotest.WriteTree(t, src, map[string]string{"a.txt": "a\n", "d/b.txt": "b\n"})
	r := repotest.New(t)
	snap := backupSnap(t, r, src, "")
	sc := t.TempDir()

	// Left by a killed drill: a restored tree, a read-only directory in it.
	stale := filepath.Join(sc, "cairn-drill-0123abcd-4242")
	repotest.WriteTree(t, stale, map[string]string{"tmp/src/a.txt": "a\n", "tmp/src/ro/x": "x"})
	os.Chmod(filepath.Join(stale, "tmp", "src", "ro"), 0o500)
	// A drill still running: its directory is locked.
	running := filepath.Join(sc, "cairn-drill-89abcdef-77")
	if err := os.Mkdir(running, 0o700); err != nil {
		t.Fatal(err)
	}
	f, err := os.Open(running)
	if err != nil {
		t.Fatal(err)
	}
	defer f.Close()
	if err := unix.Flock(int(f.Fd()), unix.LOCK_EX|unix.LOCK_NB); err != nil {
		t.Fatal(err)
	}
	// Not a drill's.
	other := filepath.Join(sc, "cairn-drill-notes")
	if err := os.Mkdir(other, 0o700); err != nil {
		t.Fatal(err)
	}

	rep, err := drill.Run(t.Context(), r, snap, drill.Options{Scratch: sc})
	if err != nil {
		t.Fatal(err)
	}
	if !rep.OK() {
		t.Fatalf("drill failed: %+v", rep.Failures)
	}
	want := "removed the scratch directory " + stale + " left by an interrupted drill"
	if !slices.Contains(rep.Warnings, want) || len(rep.Warnings) != 1 {
		t.Errorf("warnings %q, want [%q]", rep.Warnings, want)
	}
	var left []string
	entries, _ := os.ReadDir(sc)
	for _, e := range entries {
		left = append(left, e.Name())
	}
	if !slices.Equal(left, []string{"cairn-drill-89abcdef-77", "cairn-drill-notes"}) {
		t.Errorf("scratch holds %v, want the running drill's and the other directory", left)
	}
}
