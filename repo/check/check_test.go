package check_test

import (
	"errors"
	"os"
	"path/filepath"
	"slices"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/cairnbackup/cairn/repo"
	"github.com/cairnbackup/cairn/repo/backup"
	"github.com/cairnbackup/cairn/repo/blob"
	"github.com/cairnbackup/cairn/repo/check"
	"github.com/cairnbackup/cairn/repo/repotest"
	"github.com/cairnbackup/cairn/repo/restore"
	"github.com/cairnbackup/cairn/repo/snapfs"
	"github.com/cairnbackup/cairn/repo/snapshot"
	"github.com/cairnbackup/cairn/repo/storage"
	"github.com/cairnbackup/cairn/repo/tree"
)

type fixture struct {
	dir   string
	src   string
	rel   string // src inside snapshots, without the leading slash
	snaps []blob.ID
}

// setup makes a repository with two snapshots of the same small tree
// (the second adds a file), then closes it.
func setup(t *testing.T) *fixture {
	t.Helper()
	f := &fixture{dir: repotest.Init(t, repotest.Options())}
	f.src = filepath.Join(t.TempDir(), "src")
	f.rel = strings.TrimPrefix(f.src, "/")
	big := make([]byte, 300<<10)
	for i := range big {
		big[i] = byte(i * 2654435761 >> 13)
	}
	repotest.WriteTree(t, f.src, map[string]string{
		"a.txt":     "alpha",
		"sub/b.bin": string(big),
	})
	r := repotest.Open(t, f.dir)
	for i := range 2 {
		if i == 1 {
			os.WriteFile(filepath.Join(f.src, "c.txt"), []byte("gamma"), 0o644)
		}
		s := r.NewSession()
		res, err := backup.Run(t.Context(), s, []string{f.src}, backup.Options{Params: r.ChunkerParams(), Table: r.ChunkerTable()})
		if err != nil {
			t.Fatal(err)
		}
		id, err := s.Commit(t.Context(), &snapshot.Snapshot{Version: 1, Time: time.Unix(int64(1e9+i), 0), Node: "lyra", Paths: []string{f.src}, Tree: res.Tree})
		if err != nil {
			t.Fatal(err)
		}
		f.snaps = append(f.snaps, id)
	}
	r.Close()
	return f
}

// node returns the tree node at rel/p in the first snapshot.
func (f *fixture) node(t *testing.T, r *repo.Repository, p string) tree.Node {
	t.Helper()
	sn, err := r.LoadSnapshot(t.Context(), f.snaps[0])
	if err != nil {
		t.Fatal(err)
	}
	n, err := snapfs.Lookup(t.Context(), r, sn.Tree, f.rel+"/"+p)
	if err != nil {
		t.Fatal(err)
	}
	return n
}

func (f *fixture) packPath(id blob.ID) string {
	return storage.NewLocal(f.dir).Path(storage.Handle{Kind: storage.Packs, Name: id.String()})
}

func (f *fixture) both(p string) []check.Affected {
	return []check.Affected{{Node: "lyra", Snapshot: f.snaps[0], Path: p}, {Node: "lyra", Snapshot: f.snaps[1], Path: p}}
}

func flipAt(t *testing.T, path string, off int64) {
	t.Helper()
	fh, err := os.OpenFile(path, os.O_RDWR, 0)
	if err != nil {
		t.Fatal(err)
	}
	defer fh.Close()
	b := make([]byte, 1)
	fh.ReadAt(b, off)
	b[0] ^= 0x01
	if _, err := fh.WriteAt(b, off); err != nil {
		t.Fatal(err)
	}
}

type want struct {
	kind     check.Kind
	blob     *blob.ID
	affected []check.Affected
}

func runCheck(t *testing.T, r *repo.Repository, readData bool) *check.Report {
	t.Helper()
	rep, err := check.Run(t.Context(), r, check.Options{ReadData: readData})
	if err != nil {
		t.Fatal(err)
	}
	return rep
}

// assertFindings compares findings by kind, blob and affected places; the
// messages are checked separately where they matter.
func assertFindings(t *testing.T, rep *check.Report, wants []want) {
	t.Helper()
	if len(rep.Findings) != len(wants) {
		for _, f := range rep.Findings {
			t.Log(f)
		}
		t.Fatalf("%d findings, want %d", len(rep.Findings), len(wants))
	}
	for i, w := range wants {
		f := rep.Findings[i]
		if f.Kind != w.kind {
			t.Errorf("finding %d: kind %s, want %s (%s)", i, f.Kind, w.kind, f)
		}
		if w.blob != nil && (f.Blob == nil || *f.Blob != *w.blob) {
			t.Errorf("finding %d: blob %v, want %s", i, f.Blob, w.blob.Short())
		}
		if !slices.Equal(f.Affected, w.affected) {
			t.Errorf("finding %d: affected %v, want %v", i, f.Affected, w.affected)
		}
	}
}

func TestCleanRepository(t *testing.T) {
	f := setup(t)
	r := repotest.Open(t, f.dir)
	rep := runCheck(t, r, true)
	if !rep.Clean() || rep.Snapshots != 2 || rep.PacksRead != rep.Packs || rep.Packs == 0 {
		t.Fatalf("report %+v", rep)
	}
}

func TestFlippedByteInDataBlob(t *testing.T) {
	f := setup(t)
	r := repotest.Open(t, f.dir)
	n := f.node(t, r, "sub/b.bin")
	chunk := n.Content[1].ID
	loc, _, _ := r.Lookup(blob.Handle{ID: chunk, Type: blob.Data})
	flipAt(t, f.packPath(loc.Pack), int64(loc.Offset)+40)

	// The structure check does not read data: clean.
	if rep := runCheck(t, r, false); !rep.Clean() {
		t.Fatalf("structure check: %v", rep.Findings)
	}
	rep := runCheck(t, r, true)
	assertFindings(t, rep, []want{
		{kind: check.PackHash},
		{kind: check.BlobDamaged, blob: &chunk, affected: f.both(f.rel + "/sub/b.bin")},
	})
	if msg := rep.Findings[1].Message; !strings.Contains(msg, "message authentication failed") {
		t.Errorf("message %q", msg)
	}
	// Restoring the damaged file fails loudly; nothing wrong is written.
	sn, _ := r.LoadSnapshot(t.Context(), f.snaps[0])
	_, err := restore.Run(t.Context(), r, sn.Tree, f.rel+"/sub/b.bin", t.TempDir(), restore.Options{})
	if !errors.Is(err, blob.ErrCorrupt) {
		t.Fatalf("restore: %v", err)
	}
	// The other file restores.
	dst := t.TempDir()
	if _, err := restore.Run(t.Context(), r, sn.Tree, f.rel+"/a.txt", dst, restore.Options{}); err != nil {
		t.Fatal(err)
	}
	if b, _ := os.ReadFile(filepath.Join(dst, "a.txt")); string(b) != "alpha" {
		t.Fatalf("a.txt = %q", b)
	}
}

func TestFlippedByteInTreeBlob(t *testing.T) {
	f := setup(t)
	r := repotest.Open(t, f.dir)
	sub := f.node(t, r, "sub")
	loc, _, _ := r.Lookup(blob.Handle{ID: sub.Subtree, Type: blob.Tree})
	flipAt(t, f.packPath(loc.Pack), int64(loc.Offset)+30)
	for _, readData := range []bool{false, true} {
		rep := runCheck(t, r, readData)
		wants := []want{{kind: check.BlobDamaged, blob: &sub.Subtree, affected: f.both(f.rel + "/sub")}}
		if readData {
			wants = append([]want{{kind: check.PackHash}}, wants...)
		}
		assertFindings(t, rep, wants)
	}
}

func TestMissingPack(t *testing.T) {
	f := setup(t)
	r := repotest.Open(t, f.dir)
	n := f.node(t, r, "sub/b.bin")
	loc, _, _ := r.Lookup(blob.Handle{ID: n.Content[0].ID, Type: blob.Data})
	if err := os.Remove(f.packPath(loc.Pack)); err != nil {
		t.Fatal(err)
	}
	rep := runCheck(t, r, false)
	if len(rep.Findings) == 0 || rep.Findings[0].Kind != check.PackMissing || *rep.Findings[0].Pack != loc.Pack {
		t.Fatalf("findings %v", rep.Findings)
	}
	// Every blob of the lost pack that a file uses names that file.
	for _, fd := range rep.Findings[1:] {
		if fd.Kind != check.BlobMissing || len(fd.Affected) == 0 {
			t.Errorf("finding %s", fd)
		}
	}
	var hit bool
	for _, fd := range rep.Findings {
		if fd.Blob != nil && *fd.Blob == n.Content[0].ID {
			hit = slices.Equal(fd.Affected, f.both(f.rel+"/sub/b.bin"))
		}
	}
	if !hit {
		t.Fatalf("the missing chunk is not reported against sub/b.bin: %v", rep.Findings)
	}
	// After reopening, reconcile forgets the pack but remembers it was
	// lost: check still names it, and the blobs are reported as
	// referenced but not indexed, with the same paths.
	r.Close()
	r = repotest.Open(t, f.dir)
	rep = runCheck(t, r, false)
	if len(rep.Findings) < 2 || rep.Findings[0].Kind != check.PackMissing || *rep.Findings[0].Pack != loc.Pack {
		t.Fatalf("after reopen: %v", rep.Findings)
	}
	for _, fd := range rep.Findings[1:] {
		if fd.Kind != check.BlobMissing || len(fd.Affected) == 0 {
			t.Errorf("after reopen: %s", fd)
		}
	}
}

// A pack whose footer is cut off has no readable header, but its blobs
// still read through the index. check --read-data used to report every
// one of them as damaged, naming files that restore perfectly (found by
// the torture suite: a damaged pack header made check name 131 intact
// files while every drill passed). It now reads each blob the index
// places in the pack and names only those that are really gone.
func TestTruncatedPack(t *testing.T) {
	f := setup(t)
	r := repotest.Open(t, f.dir)
	n := f.node(t, r, "a.txt")
	loc, _, _ := r.Lookup(blob.Handle{ID: n.Content[0].ID, Type: blob.Data})
	p := f.packPath(loc.Pack)
	fi, _ := os.Stat(p)
	if err := os.Truncate(p, fi.Size()-10); err != nil {
		t.Fatal(err)
	}
	rep := runCheck(t, r, false)
	assertFindings(t, rep, []want{{kind: check.PackSize}, {kind: check.PackHeader}})
	msg := "pack " + loc.Pack.String() + " is " + itoa(fi.Size()-10) + " bytes, the index says " + itoa(fi.Size())
	if rep.Findings[0].Message != msg {
		t.Errorf("message %q\nwant %q", rep.Findings[0].Message, msg)
	}
	rep = runCheck(t, r, true)
	assertFindings(t, rep, []want{{kind: check.PackSize}, {kind: check.PackHeader}, {kind: check.PackHeader}})

	// Cut after the pack's first blob: it stays intact, every blob
	// after the cut is damaged, and the files using them are named.
	type entry struct {
		h   blob.Handle
		end uint64
	}
	var entries []entry
	r.IndexedBlobs(func(h blob.Handle, l repo.Location) error {
		if l.Pack == loc.Pack {
			entries = append(entries, entry{h, l.Offset + uint64(l.Length)})
		}
		return nil
	})
	slices.SortFunc(entries, func(a, b entry) int { return int(a.end) - int(b.end) })
	if len(entries) < 2 {
		t.Fatalf("the pack holds %d blobs, want several", len(entries))
	}
	cut := entries[0].end
	if err := os.Truncate(p, int64(cut)); err != nil {
		t.Fatal(err)
	}
	rep = runCheck(t, r, true)
	damaged := map[blob.ID]bool{}
	for _, fd := range rep.Findings {
		if fd.Kind == check.BlobDamaged {
			damaged[*fd.Blob] = true
			if len(fd.Affected) == 0 {
				t.Errorf("%s names no file", fd)
			}
		}
	}
	for i, e := range entries {
		if damaged[e.h.ID] != (i > 0) {
			t.Errorf("blob %d of the pack (ends at %d, cut at %d): reported damaged %v", i, e.end, cut, damaged[e.h.ID])
		}
	}
}

func TestDamagedSnapshotFile(t *testing.T) {
	f := setup(t)
	p := storage.NewLocal(f.dir).Path(storage.Handle{Kind: storage.Snapshot, Name: f.snaps[1].String()})
	flipAt(t, p, 20)
	r := repotest.Open(t, f.dir)
	rep := runCheck(t, r, false)
	if len(rep.Findings) != 1 || rep.Findings[0].Kind != check.SnapshotDamaged || *rep.Findings[0].Snapshot != f.snaps[1] {
		t.Fatalf("findings %v", rep.Findings)
	}
}

func TestSubset(t *testing.T) {
	for s, want := range map[string]check.Subset{"1/3": {N: 1, M: 3}, "3/3": {N: 3, M: 3}, "10%": {Percent: 10}} {
		got, err := check.ParseSubset(s)
		if err != nil || got != want {
			t.Errorf("ParseSubset(%q) = %+v, %v", s, got, err)
		}
	}
	for _, bad := range []string{"0/3", "4/3", "x", "0%", "101%", "1/0", "1/4294967296"} {
		if _, err := check.ParseSubset(bad); err == nil {
			t.Errorf("ParseSubset(%q) accepted", bad)
		}
	}
	f := setup(t)
	r := repotest.Open(t, f.dir)
	total := 0
	for n := 1; n <= 3; n++ {
		rep, err := check.Run(t.Context(), r, check.Options{ReadData: true, Subset: check.Subset{N: n, M: 3}})
		if err != nil || !rep.Clean() {
			t.Fatal(err, rep.Findings)
		}
		total += rep.PacksRead
	}
	rep := runCheck(t, r, false)
	if total != rep.Packs {
		t.Fatalf("subsets read %d packs, the repository has %d", total, rep.Packs)
	}
}

func itoa(n int64) string { return strconv.FormatInt(n, 10) }
