package torture

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"hash/fnv"
	"io"
	"math/rand/v2"
	"os"
	"os/exec"
	"path/filepath"
	"slices"
	"strings"
	"testing"

	"github.com/cairnbackup/cairn/repo"
	"github.com/cairnbackup/cairn/repo/blob"
)

// Bit rot: bytes of packs (blob data, pack headers, tree packs), snapshot
// files, key files, the config and the badger index are flipped, zeroed
// or cut off. Each damage must be detected by check --read-data (or, for
// what the repository cannot open without, by every command failing with
// a clear message), data damage by drills too, and named with the
// snapshots and paths it affects; no restore and no read through FUSE
// may ever return wrong bytes without an error; cairn repair index must
// recover everything the damage did not destroy, so that after it every
// file the check did not name restores bit-identical.

// golden is a repository with three snapshots of a changing source and
// a kept copy of each version; every damage case works on a copy of it.
type golden struct {
	e       *env
	src     string
	snaps   map[string]string // snapshot ID → copy of its source
	order   []string          // IDs, oldest first
	listing string            // snapshots --json
}

// makeGolden makes the golden repository: a directory, or what mk makes
// (an object store) when it is not nil.
func makeGolden(t *testing.T, rng *rand.Rand, mk func(testing.TB) *env) *golden {
	if mk == nil {
		mk = newEnv
	}
	e := mk(t)
	e.initRepo()
	g := &golden{e: e, snaps: map[string]string{}}
	s := newSource(t, filepath.Join(e.dir, "src"), rng.Uint64(), smallSpec, 3<<19)
	g.src = s.dir
	for i := range 3 {
		if i > 0 {
			s.next()
		}
		cp := s.keep(filepath.Join(e.dir, fmt.Sprintf("copy%d", i)))
		sum, ok := summaryOf(e.ok("backup", "--json", "--node", "lyra", "--plan", "files", s.dir))
		if !ok {
			t.Fatal("no backup summary")
		}
		g.snaps[sum.Snapshot] = cp
		g.order = append(g.order, sum.Snapshot)
	}
	g.listing = e.ok("snapshots", "--json")
	return g
}

// clone copies the repository and its key file to a new env.
func (g *golden) clone(t *testing.T) *env {
	if g.e.s3 != nil {
		return g.e.s3.clone(t)
	}
	e := newEnv(t)
	for _, p := range []string{"", ".key"} {
		if out, err := exec.Command("cp", "-a", g.e.repo+p, e.repo+p).CombinedOutput(); err != nil {
			t.Fatalf("cp: %v %s", err, out)
		}
	}
	return e
}

// region is the file a damage goes to and the byte range it may hit.
type region struct {
	path   string
	lo, hi int64
}

// rotTarget is a kind of file to damage.
type rotTarget struct {
	name string
	// class: "data" (blobs), "header" (a pack's own structure), "snapshot",
	// "secret" (key files and config: nothing opens without them) or
	// "index".
	class string
	pick  func(t *testing.T, e *env, rng *rand.Rand) region
}

func fileSize(t *testing.T, p string) int64 {
	fi, err := os.Stat(p)
	if err != nil {
		t.Fatal(err)
	}
	return fi.Size()
}

func whole(p string) func(t *testing.T, e *env, rng *rand.Rand) region {
	return func(t *testing.T, e *env, rng *rand.Rand) region {
		full := filepath.Join(e.repo, p)
		if p == "../repo.key" {
			full = e.repo + ".key"
		}
		if matches, _ := filepath.Glob(full); len(matches) > 0 {
			slices.Sort(matches)
			full = matches[rng.IntN(len(matches))]
		}
		return region{full, 0, fileSize(t, full)}
	}
}

// packsBy lists the files of the packs holding blobs of type typ,
// largest first.
func packsBy(t *testing.T, e *env, typ blob.Type) []string {
	out := packIDsBy(t, e, typ)
	for i, id := range out {
		out[i] = filepath.Join(e.repo, "packs", id[:2], id)
	}
	return out
}

// packIDsBy lists the IDs of the packs holding blobs of type typ (by
// reading their headers with the repository opened in this process),
// largest first.
func packIDsBy(t *testing.T, e *env, typ blob.Type) []string {
	r, err := repo.Open(context.Background(), e.repo, repo.Credentials{KeyFile: e.beside(".key")}, e.repoOptions())
	if err != nil {
		t.Fatal(err)
	}
	defer r.Close()
	sizes, err := r.StoredPacks(t.Context())
	if err != nil {
		t.Fatal(err)
	}
	var out []string
	for id := range sizes {
		entries, _, err := r.ReadPackHeader(t.Context(), id)
		if err != nil {
			t.Fatal(err)
		}
		if len(entries) > 0 && entries[0].Type == typ {
			out = append(out, id.String())
		}
	}
	slices.SortFunc(out, func(a, b string) int {
		ia, _ := blob.ParseID(a)
		ib, _ := blob.ParseID(b)
		return int(sizes[ib] - sizes[ia])
	})
	return out
}

var rotTargets = []rotTarget{
	{"pack: blob data", "data", func(t *testing.T, e *env, rng *rand.Rand) region {
		p := packsBy(t, e, blob.Data)[0]
		return region{p, 16, fileSize(t, p) * 3 / 4}
	}},
	{"pack: header and footer", "header", func(t *testing.T, e *env, rng *rand.Rand) region {
		p := packsBy(t, e, blob.Data)[0]
		n := fileSize(t, p)
		return region{p, n - 200, n}
	}},
	{"pack: trees", "data", func(t *testing.T, e *env, rng *rand.Rand) region {
		ps := packsBy(t, e, blob.Tree)
		p := ps[rng.IntN(len(ps))]
		return region{p, 16, fileSize(t, p) * 3 / 4}
	}},
	{"snapshot file", "snapshot", whole("snapshots/*")},
	{"key (keys/)", "secret", whole("keys/*")},
	{"key file (DIR.key)", "secret", whole("../repo.key")},
	{"config", "secret", whole("config")},
	{"index: table (.sst)", "index", func(t *testing.T, e *env, rng *rand.Rand) region {
		ms, _ := filepath.Glob(filepath.Join(e.indexDir(), "*.sst"))
		slices.SortFunc(ms, func(a, b string) int { return int(fileSize(t, b) - fileSize(t, a)) })
		return region{ms[0], 0, fileSize(t, ms[0])}
	}},
	{"index: MANIFEST", "index", inIndex("MANIFEST")},
	{"index: KEYREGISTRY", "index", inIndex("KEYREGISTRY")},
}

// damages are the ways a file rots.
var damages = []struct {
	name  string
	apply func(t *testing.T, r region, rng *rand.Rand) string
}{
	{"flip", func(t *testing.T, r region, rng *rand.Rand) string {
		off := r.lo + rng.Int64N(r.hi-r.lo)
		b := []byte{0}
		f := openRW(t, r.path)
		defer f.Close()
		f.ReadAt(b, off)
		bit := byte(1) << rng.IntN(8)
		f.WriteAt([]byte{b[0] ^ bit}, off)
		return fmt.Sprintf("bit %d of byte %d", bitIndex(bit), off)
	}},
	{"zero", func(t *testing.T, r region, rng *rand.Rand) string {
		off := r.lo + rng.Int64N(r.hi-r.lo)
		n := min(int64(4096), r.hi-off)
		f := openRW(t, r.path)
		defer f.Close()
		f.WriteAt(make([]byte, n), off)
		return fmt.Sprintf("%d bytes at %d", n, off)
	}},
	{"truncate", func(t *testing.T, r region, rng *rand.Rand) string {
		off := r.lo + rng.Int64N(r.hi-r.lo)
		if err := os.Truncate(r.path, off); err != nil {
			t.Fatal(err)
		}
		return fmt.Sprintf("cut at %d of %d", off, r.hi)
	}},
}

func bitIndex(b byte) int {
	for i := range 8 {
		if b == 1<<i {
			return i
		}
	}
	return -1
}

func openRW(t *testing.T, p string) *os.File {
	os.Chmod(p, 0o600)
	f, err := os.OpenFile(p, os.O_RDWR, 0)
	if err != nil {
		t.Fatal(err)
	}
	return f
}

type checkReport struct {
	Findings []struct {
		Kind     string `json:"kind"`
		Message  string `json:"message"`
		Snapshot string `json:"snapshot"`
		Affected []struct {
			Snapshot string `json:"snapshot"`
			Path     string `json:"path"`
		} `json:"affected"`
	} `json:"findings"`
}

// affected maps snapshot ID → the paths (with a leading "/") a check
// named for it, and the snapshots it named as damaged as a whole.
type affected struct {
	paths map[string][]string
	whole map[string]bool
}

func (a affected) covers(id, p string) bool {
	if a.whole[id] {
		return true
	}
	for _, q := range a.paths[id] {
		if p == q || strings.HasPrefix(p, q+"/") || q == "/" {
			return true
		}
	}
	return false
}

func (a affected) count() int {
	n := len(a.whole)
	for _, ps := range a.paths {
		n += len(ps)
	}
	return n
}

func parseCheck(out string) (affected, []string, error) {
	var rep checkReport
	a := affected{paths: map[string][]string{}, whole: map[string]bool{}}
	if err := json.Unmarshal([]byte(out), &rep); err != nil {
		return a, nil, err
	}
	var kinds []string
	for _, f := range rep.Findings {
		kinds = append(kinds, f.Kind)
		for _, x := range f.Affected {
			a.paths[x.Snapshot] = append(a.paths[x.Snapshot], "/"+x.Path)
		}
		if f.Snapshot != "" {
			a.whole[f.Snapshot] = true
		}
	}
	return a, kinds, nil
}

// judgeRestore restores snapshot id's src and compares every regular file
// with the copy. A file that differs is fine only if the restore failed
// and named it; one that is missing only if the restore failed. It
// returns the silent differences and the files not restored identical.
func (e *env) judgeRestore(id, src, cp string) (silent, notIdentical []string, code int) {
	dst, err := os.MkdirTemp(e.dir, "judge-")
	if err != nil {
		e.t.Fatal(err)
	}
	defer os.RemoveAll(dst)
	r := e.run(nil, nil, "restore", id+":"+src, "--target", dst)
	base := filepath.Base(src)
	filepath.Walk(cp, func(p string, fi os.FileInfo, err error) error {
		if err != nil || !fi.Mode().IsRegular() {
			return nil
		}
		rel, _ := filepath.Rel(cp, p)
		got := filepath.Join(dst, base, rel)
		gi, gerr := os.Lstat(got)
		switch {
		case gerr != nil:
			notIdentical = append(notIdentical, rel)
			if r.code == 0 {
				silent = append(silent, rel+": missing after a restore that reported success")
			}
		case !gi.Mode().IsRegular():
			notIdentical = append(notIdentical, rel)
			silent = append(silent, rel+": not a file")
		default:
			if err := sameBytes(p, got); err != nil {
				notIdentical = append(notIdentical, rel)
				if r.code == 0 || !strings.Contains(r.stderr, base+"/"+rel) {
					silent = append(silent, fmt.Sprintf("%s: %v, and the restore did not name it (exit %d)", rel, err, r.code))
				}
			}
		}
		return nil
	})
	return silent, notIdentical, r.code
}

// judgeFUSE reads every file of every snapshot through a mount: each read
// must give the kept copy's bytes or fail (EIO), never other bytes.
func (e *env) judgeFUSE(t *testing.T, g *golden) (silent []string, eio int) {
	m := e.mount(t)
	for id, cp := range g.snaps {
		root := m.snapshotPath(id, g.src)
		filepath.Walk(cp, func(p string, fi os.FileInfo, err error) error {
			if err != nil || !fi.Mode().IsRegular() {
				return nil
			}
			rel, _ := filepath.Rel(cp, p)
			want, _ := os.ReadFile(p)
			f, err := os.Open(filepath.Join(root, rel))
			if err != nil {
				eio++
				return nil
			}
			got, err := io.ReadAll(f)
			f.Close()
			switch {
			case err != nil:
				eio++
				if !errors.Is(err, errEIO) {
					silent = append(silent, fmt.Sprintf("%s %s: read error %v, want EIO", id[:8], rel, err))
				}
			case string(got) != string(want):
				silent = append(silent, fmt.Sprintf("%s %s: FUSE read gave %d wrong bytes without an error", id[:8], rel, len(got)))
			}
			return nil
		})
	}
	m.unmount()
	return silent, eio
}

func TestBitRot(t *testing.T) {
	rng := rand.New(rand.NewPCG(seed, 0xb17))
	g := makeGolden(t, rng, nil)
	type rotCase struct {
		target rotTarget
		damage int
		fuse   bool
	}
	var cases []rotCase
	if *fullRun {
		for _, tg := range rotTargets {
			for d := range damages {
				cases = append(cases, rotCase{tg, d, tg.class == "data" && d == 0})
			}
		}
	} else {
		// One damage per kind of file that matters most, the damage
		// drawn from the seed.
		for _, name := range []string{"pack: blob data", "pack: header and footer", "snapshot file", "config", "index: table (.sst)"} {
			i := slices.IndexFunc(rotTargets, func(tg rotTarget) bool { return tg.name == name })
			cases = append(cases, rotCase{rotTargets[i], rng.IntN(len(damages)), name == "pack: blob data"})
		}
	}
	for _, c := range cases {
		name := "bit rot: " + c.target.name
		t.Run(c.target.name+"/"+damages[c.damage].name, func(t *testing.T) {
			// Each case draws from its own stream: replaying one case
			// alone damages the same byte.
			h := fnv.New64a()
			h.Write([]byte(t.Name()))
			rng := rand.New(rand.NewPCG(seed, h.Sum64()))
			detected, lost, note := rotOne(t, g, c.target, c.damage, c.fuse, rng)
			d := 0
			if detected {
				d = 1
			}
			record(name, 1, d, lost, damages[c.damage].name+": "+note)
		})
	}
}

// rotOne damages a copy of the golden repository and judges what cairn
// makes of it. It returns whether the damage was detected, how many
// runs lost data (0 or 1) and a note for the table.
func rotOne(t *testing.T, g *golden, tg rotTarget, dmg int, withFUSE bool, rng *rand.Rand) (bool, int, string) {
	e := g.clone(t)
	reg := tg.pick(t, e, rng)
	orig, err := os.ReadFile(reg.path)
	if err != nil {
		t.Fatal(err)
	}
	how := damages[dmg].apply(t, reg, rng)
	t.Logf("%s: %s %s (%s)", tg.name, damages[dmg].name, filepath.Base(reg.path), how)
	putBack := func() {
		if err := os.WriteFile(reg.path, orig, 0o600); err != nil {
			t.Fatal(err)
		}
	}
	return judgeRot(t, g, e, tg, dmg, how, withFUSE, putBack)
}

// judgeRot judges what cairn makes of the damage how (of kind dmg to
// target tg) in e, a copy of g: detection, no wrong bytes, recovery
// (putBack restores the operator's copy of a file nothing opens
// without). It returns what rotOne returns.
func judgeRot(t *testing.T, g *golden, e *env, tg rotTarget, dmg int, how string, withFUSE bool, putBack func()) (bool, int, string) {
	var err error
	var notes []string
	lost := false
	bad := func(format string, args ...any) {
		t.Errorf(format, args...)
		lost = true
	}

	// The damaged repository: listing, check, drills, restores, FUSE.
	if r := e.run(nil, nil, "snapshots", "--json"); r.code == 0 && r.stdout != g.listing {
		// A changed listing is fine if it says less (a snapshot whose
		// file is damaged may be left out), never something else.
		list, err := parseSnapshots(r.stdout)
		want, _ := parseSnapshots(g.listing)
		for id, s := range list {
			if w, ok := want[id]; err != nil || !ok || fmt.Sprint(w) != fmt.Sprint(s) {
				bad("the listing changed without an error:\n%s\nwant\n%s", r.stdout, g.listing)
				break
			}
		}
	}
	chk := e.run(nil, nil, "check", "--read-data", "--json")
	var aff affected
	detectedBy := []string{}
	switch chk.code {
	case 4:
		var kinds []string
		aff, kinds, err = parseCheck(chk.stdout)
		if err != nil {
			t.Fatalf("check --json: %v\n%s", err, chk.stdout)
		}
		slices.Sort(kinds)
		kinds = slices.Compact(kinds)
		detectedBy = append(detectedBy, "check ("+strings.Join(kinds, ", ")+")")
	case 1:
		detectedBy = append(detectedBy, "every command refuses to open: "+firstLine(chk.stderr))
	case 0:
	default:
		bad("check exited %d: %s", chk.code, chk)
	}
	if strings.Contains(chk.stderr, "indexing packs not yet in the index") {
		// The index (a cache) lost entries, and the open rebuilt them
		// from the packs.
		detectedBy = append(detectedBy, "the next open, which re-indexed packs")
	}
	for _, f := range aff.paths {
		if len(f) > 0 {
			notes = append(notes, fmt.Sprintf("check named %d paths", aff.count()))
			break
		}
	}
	drillFailed, indexDrillsOK := 0, 0
	for _, id := range g.order {
		r := e.run(nil, nil, "drill", id)
		if r.code != 0 {
			drillFailed++
		}
		if r.code == 0 && (len(aff.paths[id]) > 0 || aff.whole[id]) {
			if tg.class == "index" {
				// The index is a cache: check names the paths whose
				// blobs it lost, but a drill that restored every file
				// and matched each recorded SHA-256 proved the data is
				// whole (the restores below and the recovery check it
				// again). Seen when a process's open or compaction
				// left the drill an index that still had those blobs.
				indexDrillsOK++
				continue
			}
			bad("the drill of %s passed, but check named damage in it: %s", id[:8], r.stdout)
		}
	}
	if indexDrillsOK > 0 {
		notes = append(notes, fmt.Sprintf("%d drills of snapshots check named passed, restoring every file by its hash (the data was whole; the index lost entries)", indexDrillsOK))
	}
	if drillFailed > 0 {
		detectedBy = append(detectedBy, fmt.Sprintf("%d of %d drills", drillFailed, len(g.order)))
	}
	for id, cp := range g.snaps {
		silent, _, _ := e.judgeRestore(id, g.src, cp)
		for _, s := range silent {
			bad("restore of %s after %s: %s", id[:8], how, s)
		}
	}
	if withFUSE {
		silent, eio := e.judgeFUSE(t, g)
		for _, s := range silent {
			bad("%s", s)
		}
		notes = append(notes, fmt.Sprintf("FUSE: %d reads EIO, no wrong bytes", eio))
	}
	// Damage nobody noticed must have been harmless: a byte nothing
	// reads (an unauthenticated JSON field of a key file, a manifest
	// record badger drops as a torn write of its cache). That is proven
	// below: a clean check and every snapshot restored whole.
	detected := len(detectedBy) > 0

	// Recovery: repair index, or put back the operator's copy of a file
	// nothing opens without.
	switch tg.class {
	case "secret":
		if chk.code == 1 {
			putBack()
			notes = append(notes, "recovered from the operator's copy of the file")
		}
	default:
		r := e.run(nil, nil, "repair", "index")
		if r.code != 0 {
			bad("repair index: %s", r)
		}
		var named []string
		recovered := 0
		for _, l := range strings.Split(r.stdout, "\n") {
			if strings.HasPrefix(l, "unreadable ") {
				named = append(named, strings.Fields(l)[1])
			}
			if strings.Contains(l, "rewritten from the index's copy") {
				recovered++
			}
		}
		if len(named) > 0 {
			notes = append(notes, "repair named "+strings.Join(named, ", ")+" unreadable")
		}
		if recovered > 0 {
			notes = append(notes, fmt.Sprintf("repair rewrote %d snapshot files from the index", recovered))
		}
	}
	after := e.run(nil, nil, "check", "--read-data", "--json")
	switch {
	case after.code == 0:
	case after.code == 4 && (tg.class == "data" || tg.class == "header"):
		// The data really is gone: it must still be reported.
	default:
		bad("check after recovery: %s", after)
	}
	restored := 0
	for id, cp := range g.snaps {
		silent, notIdentical, _ := e.judgeRestore(id, g.src, cp)
		for _, s := range silent {
			bad("restore of %s after recovery: %s", id[:8], s)
		}
		for _, rel := range notIdentical {
			if !aff.covers(id, g.src+"/"+rel) {
				bad("after recovery, %s of snapshot %s does not restore, though no check named it", rel, id[:8])
			}
		}
		if len(notIdentical) == 0 {
			restored++
		}
	}
	notes = append(notes, fmt.Sprintf("after recovery %d of %d snapshots restore whole", restored, len(g.snaps)))
	if !detected {
		if after.code != 0 || restored != len(g.snaps) {
			bad("%s %s (%s) was not detected by check or drills, and it was not harmless", damages[dmg].name, tg.name, how)
		}
		notes = append([]string{"not detected, and harmless (check clean, every snapshot restores whole)"}, notes...)
	}
	if detected {
		notes = append([]string{"detected by " + strings.Join(detectedBy, ", ")}, notes...)
	}
	l := 0
	if lost {
		l = 1
	}
	return detected, l, strings.Join(notes, ", ")
}

func firstLine(s string) string {
	s, _, _ = strings.Cut(strings.TrimSpace(s), "\n")
	return strings.TrimPrefix(s, "cairn: ")
}
