package torture

import (
	"archive/tar"
	"bytes"
	"fmt"
	"math/rand/v2"
	"os"
	"path/filepath"
	"strings"
	"testing"

	"github.com/cairnbackup/cairn/integration/tartest"
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
	g := makeGolden(t, rng, nil)
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

// A tar member whose name has a component over NAME_MAX (255 bytes) was
// stored, and every restore and drill of the snapshot then failed: the
// backup now skips it with a warning (exit 3), and the snapshot restores
// and drills.
func TestTarNameOverNameMax(t *testing.T) {
	e := newEnv(t)
	e.initRepo()
	long := strings.Repeat("z", 256)
	stream := tartest.Stream(t, []tartest.Member{
		{Hdr: tar.Header{Name: "d/" + long, Typeflag: tar.TypeReg, Format: tar.FormatPAX}, Body: "too long"},
		{Hdr: tar.Header{Name: "d/" + long + "/below", Typeflag: tar.TypeReg, Format: tar.FormatPAX}, Body: "below"},
		{Hdr: tar.Header{Name: "d/" + long[:255], Typeflag: tar.TypeReg, Format: tar.FormatPAX}, Body: "255"},
	}...)
	r := e.run(nil, bytes.NewReader(stream), "backup", "--tar", "--name", "vol", "--node", "tar", "--plan", "names")
	warn := `: skipped: the name "` + long + `" is 256 bytes, longer than a file system allows (255)`
	d, lost := 0, 0
	if r.code == 3 && strings.Count(r.stderr, warn) == 2 {
		d = 1
	} else {
		t.Errorf("backup: %s", r)
	}
	target := filepath.Join(e.dir, "target")
	if rr := e.run(nil, nil, "restore", "latest", "--plan", "names", "--target", target); rr.code != 0 {
		t.Errorf("restore: %s", rr)
		lost = 1
	} else if got := readTree(t, target); !mapsEqual(got, map[string]string{"vol/d/" + long[:255]: "255"}) {
		t.Errorf("restored %v", got)
		lost = 1
	}
	scratch := filepath.Join(e.dir, "scratch")
	os.Mkdir(scratch, 0o700)
	if rr := e.run(nil, nil, "drill", "latest", "--scratch", scratch); rr.code != 0 {
		t.Errorf("drill: %s", rr)
		lost = 1
	}
	record("hostile input: tar with a name over NAME_MAX", 1, d, lost, "skipped with a warning (exit 3); the snapshot restores and drills")
}
