package datagen

import (
	"bytes"
	"compress/flate"
	"errors"
	"flag"
	"fmt"
	"io/fs"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"testing"
	"unicode/utf8"

	"golang.org/x/sys/unix"
)

var update = flag.Bool("update", false, "rewrite testdata/golden.txt")

// generate makes a tree in a new temporary directory and walks it.
func generate(t *testing.T, s Spec, seed uint64) (string, Stats, []Entry) {
	t.Helper()
	dir := filepath.Join(t.TempDir(), "tree")
	st, err := Generate(dir, s, seed)
	if err != nil {
		t.Fatal(err)
	}
	return dir, st, walk(t, dir)
}

func walk(t *testing.T, dir string) []Entry {
	t.Helper()
	list, err := Walk(dir)
	if err != nil {
		t.Fatal(err)
	}
	return list
}

func find(t *testing.T, list []Entry, p string) Entry {
	t.Helper()
	i, ok := slices.BinarySearchFunc(list, p, func(e Entry, p string) int { return strings.Compare(e.Path, p) })
	if !ok {
		t.Fatalf("%q not in the tree", p)
	}
	return list[i]
}

func TestGenerateDeterministic(t *testing.T) {
	t.Parallel()
	_, sa, a := generate(t, Small, 1)
	_, sb, b := generate(t, Small, 1)
	if sa != sb {
		t.Errorf("stats differ: %+v != %+v", sa, sb)
	}
	if d := Diff(a, b, true); d != nil {
		t.Fatalf("same seed, different trees:\n%s", strings.Join(d, "\n"))
	}
	if d := Diff(a, b, false); len(d) == 0 {
		t.Error("two trees share all inode numbers")
	}
}

func TestGenerateSeedDiffers(t *testing.T) {
	t.Parallel()
	_, _, a := generate(t, Small, 1)
	_, _, b := generate(t, Small, 2)
	d := Diff(a, b, true)
	if len(d) < len(a)/2 {
		t.Fatalf("seeds 1 and 2 differ in only %d fields:\n%s", len(d), strings.Join(d, "\n"))
	}
	// Contents differ even where names agree.
	for _, p := range []string{"special/setuid-helper", "special/ends-in-hole.img"} {
		if find(t, a, p).SHA256 == find(t, b, p).SHA256 {
			t.Errorf("%s: same contents for seeds 1 and 2", p)
		}
	}
}

func TestStatsMatchWalk(t *testing.T) {
	t.Parallel()
	_, st, list := generate(t, Small, 3)
	var got Stats
	inodes := map[uint64]bool{}
	for _, e := range list {
		switch e.Type {
		case "file":
			if inodes[e.Inode] {
				got.Hardlinks++
				continue
			}
			inodes[e.Inode] = true
			got.Files++
			got.Bytes += e.Size
		case "dir":
			got.Dirs++
		case "symlink":
			got.Symlinks++
		default:
			got.Specials++
		}
	}
	got.Dirs-- // the root
	got.DataBytes = st.DataBytes
	if got != st {
		t.Errorf("Walk counts %+v, Generate returned %+v", got, st)
	}
	if st.Hardlinks != Small.Hardlinks || st.Symlinks != Small.Symlinks || st.Specials != 1 {
		t.Errorf("stats %+v do not match the spec", st)
	}
	if st.DataBytes >= st.Bytes || st.DataBytes < 17*mib {
		t.Errorf("DataBytes %d, Bytes %d", st.DataBytes, st.Bytes)
	}
}

func TestGenerateEmptyOrNew(t *testing.T) {
	t.Parallel()
	dir := t.TempDir()
	if err := os.WriteFile(filepath.Join(dir, "x"), nil, 0o644); err != nil {
		t.Fatal(err)
	}
	if _, err := Generate(dir, Spec{}, 1); err == nil {
		t.Error("Generate into a non-empty directory succeeded")
	}
	if _, err := Generate(filepath.Join(dir, "x"), Spec{}, 1); err == nil {
		t.Error("Generate onto a file succeeded")
	}
	if _, err := Generate(filepath.Join(t.TempDir(), "new"), Spec{Dumps: []int64{-1}}, 1); err == nil {
		t.Error("Generate with a negative size succeeded")
	}
	_, st, list := generate(t, Spec{}, 1)
	if st != (Stats{}) || len(list) != 1 || list[0].Mode != 0o755 {
		t.Errorf("empty spec: stats %+v, tree %+v", st, list)
	}
}

func TestSparse(t *testing.T) {
	t.Parallel()
	dir, _, list := generate(t, Spec{SparseImages: []int64{64 * mib, 16*mib + 1000}, Specials: true}, 4)
	type want struct {
		path               string
		size               int64
		startData, endData bool
	}
	for _, w := range []want{
		{"vm/images/debian-12.img", 64 * mib, true, true},
		{"vm/images/opnsense.img", 16*mib + 1000, true, false},
		{"special/ends-in-hole.img", 4 * mib, false, false},
	} {
		name := filepath.Join(dir, filepath.FromSlash(w.path))
		var st unix.Stat_t
		if err := unix.Stat(name, &st); err != nil {
			t.Fatal(err)
		}
		if st.Size != w.size || find(t, list, w.path).Size != w.size {
			t.Errorf("%s: size %d, want %d", w.path, st.Size, w.size)
		}
		if alloc := st.Blocks * 512; alloc == 0 || alloc > w.size/10 {
			t.Errorf("%s: %d bytes allocated of %d: not sparse", w.path, alloc, w.size)
		}
		f, err := os.Open(name)
		if err != nil {
			t.Fatal(err)
		}
		fd := int(f.Fd())
		firstData, err := unix.Seek(fd, 0, unix.SEEK_DATA)
		if err != nil {
			t.Fatal(err)
		}
		firstHole, _ := unix.Seek(fd, 0, unix.SEEK_HOLE)
		if firstHole == w.size {
			f.Close()
			t.Skip("the filesystem does not report holes")
		}
		lastHole, err := unix.Seek(fd, w.size-1, unix.SEEK_HOLE)
		if err != nil {
			t.Fatal(err)
		}
		f.Close()
		if (firstData == 0) != w.startData {
			t.Errorf("%s: first data at %d", w.path, firstData)
		}
		if (lastHole == w.size) != w.endData {
			t.Errorf("%s: last byte in data: %v, want %v", w.path, lastHole == w.size, w.endData)
		}
	}
}

func TestSparseLayout(t *testing.T) {
	t.Parallel()
	r := newRNG(1)
	for _, size := range []int64{0, 4 * kib, 1 * mib, 64*mib + 123, 300 * mib, 4 << 30} {
		for _, tail := range []bool{false, true} {
			ext := sparseLayout(r, size, tail)
			var data, end int64
			for i, e := range ext {
				data += e.len
				if e.off < end || e.off%(4*kib) != 0 || e.len <= 0 {
					t.Fatalf("size %d: extent %d %+v after %d", size, i, e, end)
				}
				if size >= 4*mib && (e.len < 64*kib || e.len > 4*mib+4*kib) {
					t.Errorf("size %d: extent %d of %d bytes", size, i, e.len)
				}
				end = e.off + e.len
			}
			if size == 0 {
				continue
			}
			if ext[0].off != 0 || end > size || (end == size) == (tail && size >= 8*kib) {
				t.Errorf("size %d tail %v: extents %+v", size, tail, ext)
			}
			if size >= mib && (data < size*3/100 || data > size*5/100) {
				t.Errorf("size %d: %d bytes of data", size, data)
			}
		}
	}
}

func TestNamesAndSpecials(t *testing.T) {
	t.Parallel()
	_, _, list := generate(t, Small, 5)
	for p, want := range map[string]struct {
		typ  string
		mode fs.FileMode
	}{
		"odd/line\nbreak.txt":               {"file", 0o644},
		"odd/caf\u00e9.txt":                 {"file", 0o644},
		"odd/cafe\u0301.txt":                {"file", 0o644},
		"odd/日本/ファイル.txt":                   {"file", 0o644},
		"odd/-leading-dash.txt":             {"file", 0o644},
		"odd/file with spaces.txt":          {"file", 0o644},
		"odd/dir with spaces/inner file.md": {"file", 0o644},
		"special/empty":                     {"file", 0o644},
		"special/empty-dir":                 {"dir", 0o755},
		"special/fifo":                      {"fifo", 0o644},
		"special/id_ed25519":                {"file", 0o600},
		"special/run.sh":                    {"file", 0o755},
		"special/setuid-helper":             {"file", 0o755 | fs.ModeSetuid},
		"special/private":                   {"dir", 0o700},
		"special/shared":                    {"dir", 0o775 | fs.ModeSetgid},
		"special/tmp":                       {"dir", 0o777 | fs.ModeSticky},
	} {
		e := find(t, list, p)
		if e.Type != want.typ || e.Mode != want.mode {
			t.Errorf("%q: %s %s, want %s %s", p, e.Type, octalMode(e.Mode), want.typ, octalMode(want.mode))
		}
	}
	if e := find(t, list, "special/empty"); e.Size != 0 {
		t.Errorf("special/empty has %d bytes", e.Size)
	}
	long := 0
	for _, e := range list {
		name := e.Path[strings.LastIndexByte(e.Path, '/')+1:]
		if len(name) > 255 || !utf8.ValidString(name) {
			t.Errorf("bad name %q", name)
		}
		if len(name) == 255 {
			long++
		}
		if strings.HasPrefix(e.Path, "special/empty-dir/") {
			t.Errorf("special/empty-dir is not empty: %q", e.Path)
		}
	}
	if long == 0 {
		t.Error("no name of 255 bytes")
	}
	// Symlinks: relative and absolute, some dangling, none to an ancestor.
	var rel, abs int
	for _, e := range list {
		if e.Type != "symlink" {
			continue
		}
		if filepath.IsAbs(e.Target) {
			abs++
		} else {
			rel++
			if target := filepath.Join(filepath.Dir(e.Path), e.Target); target == "." || strings.HasPrefix(filepath.Dir(e.Path)+"/", target+"/") {
				t.Errorf("%s -> %s points at an ancestor", e.Path, e.Target)
			}
		}
	}
	if rel == 0 || abs == 0 {
		t.Errorf("%d relative and %d absolute symlinks", rel, abs)
	}
	if xattrsSupported(t) {
		for _, p := range []string{"special/tagged.txt", "special/tagged-dir"} {
			if v := find(t, list, p).Xattrs[xattrName]; v == "" {
				t.Errorf("%s: no %s", p, xattrName)
			}
		}
	}
}

// xattrsSupported reports whether the temporary directory's filesystem
// takes user xattrs.
func xattrsSupported(t *testing.T) bool {
	name := filepath.Join(t.TempDir(), "probe")
	if err := os.WriteFile(name, nil, 0o644); err != nil {
		t.Fatal(err)
	}
	return unix.Lsetxattr(name, "user.probe", []byte("x"), 0) == nil
}

func TestContents(t *testing.T) {
	t.Parallel()
	dir, _, list := generate(t, Small, 6)
	read := func(p string) []byte {
		b, err := os.ReadFile(filepath.Join(dir, filepath.FromSlash(p)))
		if err != nil {
			t.Fatal(err)
		}
		return b
	}
	ratio := func(b []byte) float64 { // of a MiB from the middle: flate is slow with -race
		if len(b) > int(mib) {
			b = b[len(b)/2-int(mib)/2:][:mib]
		}
		var buf bytes.Buffer
		w, _ := flate.NewWriter(&buf, 6)
		w.Write(b)
		w.Close()
		return float64(len(b)) / float64(buf.Len())
	}
	var small, dups int
	seen := map[string]bool{}
	for _, e := range list {
		switch {
		case e.Type != "file":
		case strings.HasPrefix(e.Path, "src/"):
			small++
			if e.Size < 200 || e.Size > 16*kib {
				t.Errorf("%s: %d bytes", e.Path, e.Size)
			}
			if e.Nlink == 1 && seen[e.SHA256] {
				dups++
			}
			seen[e.SHA256] = true
			if b := read(e.Path); !utf8.Valid(b) || bytes.IndexByte(b, 0) >= 0 || b[len(b)-1] != '\n' {
				t.Errorf("%s is not a text file", e.Path)
			}
		case strings.HasPrefix(e.Path, "db/"):
			b := read(e.Path)
			if r := ratio(b); r < 5 || r > 8 {
				t.Errorf("%s compresses %.1f times", e.Path, r)
			}
			if !bytes.HasPrefix(b, []byte("-- MariaDB dump")) || bytes.Count(b, []byte("\nINSERT INTO `")) < 10000 {
				t.Errorf("%s does not look like a dump", e.Path)
			}
		case strings.HasPrefix(e.Path, "media/"):
			if r := ratio(read(e.Path)); r > 1.001 {
				t.Errorf("%s compresses %.3f times", e.Path, r)
			}
		}
	}
	if small < Small.SmallFiles || dups == 0 || dups > small/10 {
		t.Errorf("%d small files, %d duplicates", small, dups)
	}
}

func TestMutate(t *testing.T) {
	t.Parallel()
	dirA, _, before := generate(t, Small, 7)
	dirB, _, _ := generate(t, Small, 7)
	msA, err := Mutate(dirA, 11)
	if err != nil {
		t.Fatal(err)
	}
	msB, err := Mutate(dirB, 11)
	if err != nil {
		t.Fatal(err)
	}
	after := walk(t, dirA)
	if d := Diff(after, walk(t, dirB), true); d != nil || msA != msB {
		t.Fatalf("same seed, different mutations: %+v != %+v\n%s", msA, msB, strings.Join(d, "\n"))
	}
	srcFiles := 0
	for _, e := range before {
		if e.Type == "file" && strings.HasPrefix(e.Path, "src/") {
			srcFiles++
		}
	}
	want := MutateStats{Appended: 1, Inserted: 1, Modified: srcFiles / 100, Added: 50, Deleted: 20, Touched: srcFiles / 100}
	if msA != want {
		t.Errorf("Mutate = %+v, want %+v", msA, want)
	}

	// Classify every difference and count.
	var got MutateStats
	modified, touched := map[uint64]bool{}, map[uint64]bool{}
	var grew []int64
	i, j := 0, 0
	for i < len(before) || j < len(after) {
		switch {
		case j == len(after) || i < len(before) && before[i].Path < after[j].Path:
			if !strings.HasPrefix(before[i].Path, "src/") || before[i].Type != "file" {
				t.Errorf("%s deleted", before[i].Path)
			}
			got.Deleted++
			i++
			continue
		case i == len(before) || after[j].Path < before[i].Path:
			if !strings.HasPrefix(after[j].Path, "src/") || after[j].Type != "file" || after[j].MTimeNs < genEnd {
				t.Errorf("%s added", after[j].Path)
			}
			got.Added++
			j++
			continue
		}
		x, y := before[i], after[j]
		i++
		j++
		if x.Nlink != y.Nlink {
			x.Nlink = y.Nlink // a hardlink partner was deleted
		}
		switch {
		case len(Diff([]Entry{x}, []Entry{y}, false)) == 0:
		case x.Type == "dir":
			if y.MTimeNs < genEnd || len(Diff([]Entry{x}, []Entry{{Path: y.Path, Type: y.Type, Mode: y.Mode, MTimeNs: x.MTimeNs, Inode: y.Inode}}, false)) > 0 {
				t.Errorf("%s: %v", x.Path, Diff([]Entry{x}, []Entry{y}, false))
			}
		case x.Type == "file" && strings.HasPrefix(x.Path, "db/"):
			grew = append(grew, y.Size-x.Size)
		case x.Type == "file" && x.SHA256 != y.SHA256 && x.Size == y.Size && y.MTimeNs >= genEnd:
			modified[x.Inode] = true
		case x.Type == "file" && x.SHA256 == y.SHA256 && y.MTimeNs >= genEnd:
			touched[x.Inode] = true
		default:
			t.Errorf("unexpected change: %v", Diff([]Entry{x}, []Entry{y}, false))
		}
	}
	got.Modified, got.Touched = len(modified), len(touched)
	slices.Sort(grew)
	if !slices.Equal(grew, []int64{insertSize, appendSize}) {
		t.Errorf("dumps grew by %v", grew)
	} else {
		got.Appended, got.Inserted = 1, 1
	}
	if got != want {
		t.Errorf("the tree shows %+v, want %+v", got, want)
	}

	// Mutating again works and changes the tree again.
	if _, err := Mutate(dirA, 12); err != nil {
		t.Fatal(err)
	}
	if d := Diff(after, walk(t, dirA), true); len(d) < 70 {
		t.Errorf("second mutation changed only %d fields", len(d))
	}
}

func TestDiff(t *testing.T) {
	a := []Entry{
		{Path: ".", Type: "dir", Mode: 0o755, Inode: 1},
		{Path: "a", Type: "file", Mode: 0o644, Size: 3, SHA256: "aa", Nlink: 2, Inode: 10},
		{Path: "b", Type: "file", Mode: 0o644, Size: 3, SHA256: "aa", Nlink: 2, Inode: 10},
		{Path: "c", Type: "file", Mode: 0o644, Size: 3, SHA256: "aa", Nlink: 1, Inode: 12},
		{Path: "gone", Type: "symlink", Mode: 0o777, Target: "x"},
		{Path: "l", Type: "symlink", Mode: 0o777, Target: "x", MTimeNs: 1e9},
		{Path: "x\ny", Type: "file", Mode: 0o755 | fs.ModeSetuid, Xattrs: map[string]string{"user.a": "1", "user.b": "2"}, Inode: 13},
	}
	b := []Entry{
		{Path: ".", Type: "dir", Mode: 0o700, Inode: 101},
		{Path: "a", Type: "file", Mode: 0o644, Size: 3, SHA256: "aa", Nlink: 2, Inode: 110},
		{Path: "b", Type: "file", Mode: 0o644, Size: 3, SHA256: "aa", Nlink: 1, Inode: 111},
		{Path: "c", Type: "file", Mode: 0o644, Size: 3, SHA256: "aa", Nlink: 2, Inode: 110},
		{Path: "l", Type: "symlink", Mode: 0o777, Target: "y", MTimeNs: 2e9},
		{Path: "new", Type: "fifo", Mode: 0o644},
		{Path: "x\ny", Type: "file", Mode: 0o755, Xattrs: map[string]string{"user.a": "2", "user.c": "3"}, Inode: 113},
	}
	got := Diff(a, b, true)
	want := []string{
		".: mode 0755 != 0700",
		`a: hardlinks ["b"] != ["c"]`,
		"b: nlink 2 != 1",
		`b: hardlinks ["a"] != []`,
		"c: nlink 1 != 2",
		`c: hardlinks [] != ["a"]`,
		"gone: only in a",
		`l: mtime 1970-01-01T00:00:01Z != 1970-01-01T00:00:02Z`,
		`l: target "x" != "y"`,
		"new: only in b",
		`"x\ny": mode 04755 != 0755`,
		`"x\ny": xattr user.a "1" != "2"`,
		`"x\ny": xattr user.b "2" != (none)`,
		`"x\ny": xattr user.c (none) != "3"`,
	}
	if !slices.Equal(got, want) {
		t.Errorf("Diff:\n%s\nwant:\n%s", strings.Join(got, "\n"), strings.Join(want, "\n"))
	}
	got = Diff(a[:2], b[:2], false)
	want = []string{".: mode 0755 != 0700", ".: inode 1 != 101", "a: inode 10 != 110"}
	if !slices.Equal(got, want) {
		t.Errorf("Diff with inodes:\n%s", strings.Join(got, "\n"))
	}
	if d := Diff(a, a, false); d != nil {
		t.Errorf("Diff(a, a) = %v", d)
	}
}

// goldenSpec is small enough to pin every byte of its tree in a file.
var goldenSpec = Spec{
	SmallFiles:   80,
	Dumps:        []int64{256 * kib, 100 * kib},
	RandomFiles:  []int64{100 * kib, 64*mib + 1},
	SparseImages: []int64{2 * mib, mib + 7},
	Symlinks:     8,
	Hardlinks:    5,
	OddNames:     true,
	Specials:     true,
}

// TestGolden pins the generators: a change to the PRNG, the word lists,
// the text generators, the layout or Mutate shows here. Regenerate with
// -update only for a deliberate change.
func TestGolden(t *testing.T) {
	t.Parallel()
	dir, st, list := generate(t, goldenSpec, 42)
	var out bytes.Buffer
	fmt.Fprintf(&out, "# Generate(goldenSpec, 42): %+v\n", st)
	writeGolden(&out, list)
	ms, err := Mutate(dir, 43)
	if err != nil {
		t.Fatal(err)
	}
	fmt.Fprintf(&out, "# Mutate(43): %+v\n", ms)
	writeGolden(&out, walk(t, dir))
	const golden = "testdata/golden.txt"
	if *update {
		if err := os.WriteFile(golden, out.Bytes(), 0o644); err != nil {
			t.Fatal(err)
		}
	}
	want, err := os.ReadFile(golden)
	if err != nil {
		t.Fatal(err)
	}
	if !bytes.Equal(out.Bytes(), want) {
		gotLines, wantLines := strings.Split(out.String(), "\n"), strings.Split(string(want), "\n")
		for i := range min(len(gotLines), len(wantLines)) {
			if gotLines[i] != wantLines[i] {
				t.Fatalf("tree differs from %s at line %d:\n got %s\nwant %s", golden, i+1, gotLines[i], wantLines[i])
			}
		}
		t.Fatalf("tree differs from %s: %d lines, want %d", golden, len(gotLines), len(wantLines))
	}
}

// writeGolden writes one line per entry without what depends on the
// machine: inode numbers and xattrs (which need filesystem support).
func writeGolden(out *bytes.Buffer, list []Entry) {
	for _, e := range list {
		sum := e.SHA256
		if len(sum) > 16 {
			sum = sum[:16]
		}
		fmt.Fprintf(out, "%q %s %s %d %d %q %s %d\n", e.Path, e.Type, octalMode(e.Mode), e.Size, e.MTimeNs, e.Target, sum, e.Nlink)
	}
}

func TestWalkErrors(t *testing.T) {
	t.Parallel()
	if _, err := Walk(filepath.Join(t.TempDir(), "missing")); !errors.Is(err, fs.ErrNotExist) {
		t.Errorf("Walk of a missing directory: %v", err)
	}
}
