package torture

import (
	"fmt"
	"math/rand/v2"
	"os"
	"path/filepath"
	"strings"
	"testing"
)

// A snapshot file deleted from snapshots/ vanished silently: the next
// open dropped the index's copy of the record, check --read-data found
// no problem, and repair index had nothing left to restore it from. Now
// check names it (node/plan, time; exit 4), the drill of it fails, repair
// index writes the file back from the index's copy (which hashes to the
// snapshot's ID), check is clean again, and every snapshot restores
// bit-identical to its copy.
func TestSnapshotFileDeleted(t *testing.T) {
	rng := rand.New(rand.NewPCG(seed, 0xde1e7e))
	g := makeGolden(t, rng)
	runs := 1
	if *fullRun {
		runs = len(g.order)
	}
	for i := range runs {
		id := g.order[(rng.IntN(len(g.order))+i)%len(g.order)]
		t.Run(id[:8], func(t *testing.T) {
			detected, lost, note := deleteSnapshotFile(t, g, id)
			record("snapshot file deleted", 1, detected, lost, note)
		})
	}
}

func deleteSnapshotFile(t *testing.T, g *golden, id string) (detected, lost int, note string) {
	e := g.clone(t)
	bad := func(format string, args ...any) {
		t.Errorf(format, args...)
		lost = 1
	}
	if err := os.Remove(filepath.Join(e.repo, "snapshots", id)); err != nil {
		t.Fatal(err)
	}
	var detectedBy []string
	// Opening the repository twice must not lose the index's copy.
	for range 2 {
		r := e.run(nil, nil, "snapshots", "--json")
		if r.code != 0 || r.stdout != g.listing {
			bad("the listing changed: %s", r)
		}
	}
	chk := e.run(nil, nil, "check", "--read-data", "--json")
	aff, kinds, err := parseCheck(chk.stdout)
	switch {
	case chk.code != 4 || err != nil:
		bad("check --read-data: %s", chk)
	case strings.Join(kinds, ",") != "snapshot-missing" || !aff.whole[id] ||
		!strings.Contains(chk.stdout, "snapshot "+id+" (lyra/files, ") || !strings.Contains(chk.stdout, "cairn repair index writes it back"):
		bad("check named %v: %s", kinds, chk.stdout)
	default:
		detectedBy = append(detectedBy, "check (snapshot-missing)")
	}
	if r := e.run(nil, nil, "drill", id); r.code == 0 {
		bad("the drill of the snapshot whose file is gone passed: %s", r)
	} else {
		detectedBy = append(detectedBy, "its drill")
	}
	r := e.run(nil, nil, "repair", "index")
	if r.code != 0 || !strings.Contains(r.stdout, "snapshot "+id+": its file was missing; rewritten from the index's copy of the record\n") {
		bad("repair index: %s", r)
	}
	if got, err := os.ReadFile(filepath.Join(e.repo, "snapshots", id)); err != nil || len(got) == 0 {
		bad("the snapshot file was not written back: %v", err)
	}
	if after := e.run(nil, nil, "check", "--read-data"); after.code != 0 {
		bad("check after repair index: %s", after)
	}
	if r := e.run(nil, nil, "snapshots", "--json"); r.code != 0 || r.stdout != g.listing {
		bad("the listing after repair index: %s", r)
	}
	restored := 0
	for sid, cp := range g.snaps {
		if d := e.restoreCompare(sid, g.src, cp); len(d) > 0 {
			bad("%s", strings.Join(d, "\n"))
			continue
		}
		restored++
	}
	if len(detectedBy) > 0 {
		detected = 1
	}
	return detected, lost, fmt.Sprintf("detected by %s; repair wrote it back; after repair %d of %d snapshots restore whole",
		strings.Join(detectedBy, ", "), restored, len(g.snaps))
}
