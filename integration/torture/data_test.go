package torture

import (
	"bytes"
	"encoding/json"
	"fmt"
	"io"
	"math/rand/v2"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"

	"github.com/cairnbackup/cairn/repo/repotest/datagen"
)

// smallSpec is a source tree of about 0.8 MiB with every kind of entry:
// source-like files, a dump, a random file, symlinks, hardlinks, odd
// names, an empty file and directory, a FIFO, unusual modes and xattrs.
var smallSpec = datagen.Spec{
	SmallFiles:  24,
	Dumps:       []int64{160 << 10},
	RandomFiles: []int64{384 << 10},
	Symlinks:    3,
	Hardlinks:   2,
	OddNames:    true,
	Specials:    true,
}

// source is a tree that changes from version to version: datagen.Mutate
// (dumps grow, small files change, come and go) plus a new incompressible
// file vN.bin replacing the previous version's, so every version writes
// new packs and leaves the previous file's chunks as garbage for prune.
type source struct {
	t    testing.TB
	dir  string
	seed uint64
	v    int
	big  int
}

func newSource(t testing.TB, dir string, seed uint64, spec datagen.Spec, big int) *source {
	t.Helper()
	if _, err := datagen.Generate(dir, spec, seed); err != nil {
		t.Fatal(err)
	}
	s := &source{t: t, dir: dir, seed: seed, big: big}
	s.writeBig()
	return s
}

func (s *source) writeBig() {
	if s.big == 0 {
		return
	}
	if err := os.WriteFile(filepath.Join(s.dir, fmt.Sprintf("v%d.bin", s.v)), randomBytes(s.seed^uint64(s.v)<<32, s.big), 0o644); err != nil {
		s.t.Fatal(err)
	}
}

// next changes the tree into its next version.
func (s *source) next() {
	s.t.Helper()
	if _, err := datagen.Mutate(s.dir, s.seed+uint64(s.v)+1); err != nil {
		s.t.Fatal(err)
	}
	if s.big > 0 {
		if err := os.Remove(filepath.Join(s.dir, fmt.Sprintf("v%d.bin", s.v))); err != nil {
			s.t.Fatal(err)
		}
	}
	s.v++
	s.writeBig()
}

// keep copies the tree as it is now to dst (cp -a: modes, times, links,
// xattrs, the FIFO), the reference a restore of this version must match.
func (s *source) keep(dst string) string {
	s.t.Helper()
	if out, err := exec.Command("cp", "-a", s.dir, dst).CombinedOutput(); err != nil {
		s.t.Fatalf("cp -a %s %s: %v\n%s", s.dir, dst, err, out)
	}
	return dst
}

func randomBytes(seed uint64, n int) []byte {
	b := make([]byte, n)
	r := rand.New(rand.NewPCG(seed, seed^0x9e3779b97f4a7c15))
	for i := 0; i < n; i += 8 {
		v := r.Uint64()
		for j := 0; j < 8 && i+j < n; j++ {
			b[i+j] = byte(v >> (8 * j))
		}
	}
	return b
}

// diffTrees compares the tree got with want: every entry's type, mode,
// size, mtime, symlink target, xattrs and hardlink group (datagen.Diff),
// and every regular file byte for byte. It returns the differences.
func diffTrees(want, got string) []string {
	a, err := datagen.Walk(want)
	if err != nil {
		return []string{err.Error()}
	}
	b, err := datagen.Walk(got)
	if err != nil {
		return []string{err.Error()}
	}
	d := datagen.Diff(a, b, true)
	for _, en := range a {
		if en.Type != "file" {
			continue
		}
		if err := sameBytes(filepath.Join(want, en.Path), filepath.Join(got, en.Path)); err != nil {
			d = append(d, fmt.Sprintf("%q: %v", en.Path, err))
		}
	}
	return d
}

// sameBytes compares two files byte for byte.
func sameBytes(a, b string) error {
	fa, err := os.Open(a)
	if err != nil {
		return err
	}
	defer fa.Close()
	fb, err := os.Open(b)
	if err != nil {
		return err
	}
	defer fb.Close()
	ba, bb := make([]byte, 256<<10), make([]byte, 256<<10)
	var off int64
	for {
		na, ea := io.ReadFull(fa, ba)
		nb, eb := io.ReadFull(fb, bb)
		if na != nb || !bytes.Equal(ba[:na], bb[:nb]) {
			for i := 0; i < min(na, nb); i++ {
				if ba[i] != bb[i] {
					return fmt.Errorf("differs at byte %d", off+int64(i))
				}
			}
			return fmt.Errorf("differs in length (at byte %d)", off+int64(min(na, nb)))
		}
		off += int64(na)
		if ea != nil || eb != nil {
			if (ea == nil) != (eb == nil) {
				return fmt.Errorf("differs in length (at byte %d)", off)
			}
			return nil
		}
	}
}

// snapshotList is what `cairn snapshots --json` says, by ID.
type snapshotInfo struct {
	ID    string   `json:"id"`
	Node  string   `json:"node"`
	Plan  string   `json:"plan"`
	Paths []string `json:"paths"`
}

func parseSnapshots(out string) (map[string]snapshotInfo, error) {
	var list []snapshotInfo
	if err := json.Unmarshal([]byte(out), &list); err != nil {
		return nil, fmt.Errorf("snapshots --json: %w: %q", err, out)
	}
	m := map[string]snapshotInfo{}
	for _, s := range list {
		m[s.ID] = s
	}
	return m, nil
}

// restoreCompare restores path src of snapshot id into a fresh directory
// and compares it with the kept copy; it returns the differences (or the
// restore's failure) and removes the restored tree.
func (e *env) restoreCompare(id, src, copyDir string) []string {
	e.t.Helper()
	dst, err := os.MkdirTemp(e.dir, "restore-")
	if err != nil {
		e.t.Fatal(err)
	}
	defer os.RemoveAll(dst)
	r := e.run(nil, nil, "restore", id+":"+src, "--target", dst)
	if r.code != 0 {
		return []string{fmt.Sprintf("restore of %s failed: %s", id[:8], strings.TrimSpace(r.stderr))}
	}
	d := diffTrees(copyDir, filepath.Join(dst, filepath.Base(src)))
	for i := range d {
		d[i] = "snapshot " + id[:8] + ": " + d[i]
	}
	return d
}

// backupSummary is the last line of backup --json or push --json.
type backupSummary struct {
	Type     string `json:"type"`
	Snapshot string `json:"snapshot"`
	Summary  struct {
		Bytes      uint64 `json:"bytes"`
		BytesRead  uint64 `json:"bytes_read"`
		BytesAdded uint64 `json:"bytes_added"`
	} `json:"summary"`
}

// summaryOf returns the summary of a backup or push run with --json.
func summaryOf(out string) (backupSummary, bool) {
	lines := strings.Split(strings.TrimSpace(out), "\n")
	var s backupSummary
	if err := json.Unmarshal([]byte(lines[len(lines)-1]), &s); err != nil || s.Type != "summary" || s.Snapshot == "" {
		return backupSummary{}, false
	}
	return s, true
}
