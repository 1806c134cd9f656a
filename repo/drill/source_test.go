package drill_test

import (
	"testing"

	"github.com/cairnbackup/cairn/repo/drill"
	"github.com/cairnbackup/cairn/repo/repotest"
)

// sourceOnly hides every method of the repository but a Source's.
type sourceOnly struct{ drill.Source }

// A drill reads snapshots and blobs through drill.Source and needs
// nothing else of the repository (a replica's repository serves the same
// way).
func TestDrillNeedsOnlyASource(t *testing.T) {
	src := t.TempDir()
	repotest.WriteTree(t, src, map[string]string{"a.txt": "a\n", "d/b.txt": "bb\n"})
	r := repotest.New(t)
	snap := backupSnap(t, r, src, "")
	rep, err := drill.Run(t.Context(), sourceOnly{r}, snap, drill.Options{Scratch: t.TempDir()})
	if err != nil {
		t.Fatal(err)
	}
	if !rep.OK() || rep.Files != 2 || rep.Bytes != 5 {
		t.Fatalf("drill: ok %v, %d files, %d bytes, failures %+v; want ok, 2 files, 5 bytes", rep.OK(), rep.Files, rep.Bytes, rep.Failures)
	}
}
