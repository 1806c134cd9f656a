package datagen

import (
	"fmt"
	"io/fs"
	"path"
	"strconv"
	"strings"
	"unicode/utf8"
)

// The top-level directories of a generated tree. [Mutate] finds the
// small files under srcDir and the dumps under dbDir.
const (
	srcDir     = "src"
	dbDir      = "db"
	linksDir   = "links"
	oddDir     = "odd"
	specialDir = "special"
	maxDepth   = 6 // of directories below srcDir
)

type kind uint8

const (
	kindText   kind = iota // a small source-like file
	kindDump               // an SQL dump
	kindRandom             // incompressible bytes
	kindSparse             // random extents between holes
)

// An extent is a run of data in a sparse file.
type extent struct{ off, len int64 }

// A fileSpec is one regular file to write.
type fileSpec struct {
	path    string // relative, slash-separated
	mode    fs.FileMode
	kind    kind
	size    int64
	seed    uint64
	style   byte     // kindText
	extents []extent // kindSparse
}

// data returns how many bytes writing f writes.
func (f *fileSpec) data() int64 {
	if f.kind != kindSparse {
		return f.size
	}
	var n int64
	for _, e := range f.extents {
		n += e.len
	}
	return n
}

type dirSpec struct {
	path  string
	mode  fs.FileMode
	depth int // of the directory below the root, 1 for top-level ones
}

type linkSpec struct{ path, target string }

type xattrSpec struct{ path, name, value string }

// A plan is everything [Generate] creates, decided before anything is
// written. Paths are unique, and every parent precedes its children.
type plan struct {
	seed      uint64
	dirs      []dirSpec
	files     []fileSpec
	symlinks  []linkSpec
	hardlinks []linkSpec // path is the new name, target the existing one
	fifos     []dirSpec
	xattrs    []xattrSpec
	taken     map[string]bool // every planned path
	isDir     map[string]bool // the planned directories
	small     []int           // indices into files of the small files
	srcDirs   []int           // indices into dirs of the directories under srcDir
}

func newPlan(s Spec, seed uint64) *plan {
	p := &plan{seed: seed, taken: map[string]bool{".": true}, isDir: map[string]bool{".": true}}
	p.planSmall(s.SmallFiles)
	p.planDumps(s.Dumps)
	p.planRandom(s.RandomFiles)
	p.planSparse(s.SparseImages)
	if s.OddNames {
		p.planOdd()
	}
	if s.Specials {
		p.planSpecials()
	}
	p.planHardlinks(s.Hardlinks)
	p.planSymlinks(s.Symlinks)
	return p
}

func (p *plan) stats() Stats {
	st := Stats{
		Files:     len(p.files),
		Dirs:      len(p.dirs),
		Symlinks:  len(p.symlinks),
		Hardlinks: len(p.hardlinks),
		Specials:  len(p.fifos),
	}
	for i := range p.files {
		st.Bytes += p.files[i].size
		st.DataBytes += p.files[i].data()
	}
	return st
}

// unique returns dir/name, or dir/name-2 (before the extension), -3, …
// if that is taken, and marks the result taken. Names are cut to
// maxName bytes.
func (p *plan) unique(dir, name string) string {
	full := path.Join(dir, clampName(name, maxName))
	if p.taken[full] {
		ext := path.Ext(name)
		if len(ext) == len(name) || len(ext) > 16 {
			ext = ""
		}
		base := strings.TrimSuffix(name, ext)
		for i := 2; p.taken[full]; i++ {
			suffix := "-" + strconv.Itoa(i) + ext
			full = path.Join(dir, clampName(base, maxName-len(suffix))+suffix)
		}
	}
	p.taken[full] = true
	return full
}

// maxName is the longest file name Linux filesystems accept, in bytes.
const maxName = 255

// clampName cuts name to at most n bytes without splitting a UTF-8
// sequence.
func clampName(name string, n int) string {
	if len(name) <= n {
		return name
	}
	for n > 0 && !utf8.RuneStart(name[n]) {
		n--
	}
	return name[:n]
}

// dir plans directory rel (if not yet planned) and its parents.
func (p *plan) dir(rel string, mode fs.FileMode) string {
	if p.isDir[rel] {
		return rel
	}
	p.dir(path.Dir(rel), 0o755)
	p.taken[rel] = true
	p.isDir[rel] = true
	p.dirs = append(p.dirs, dirSpec{path: rel, mode: mode, depth: strings.Count(rel, "/") + 1})
	return rel
}

func (p *plan) file(f fileSpec) {
	p.dir(path.Dir(f.path), 0o755)
	p.files = append(p.files, f)
}

// Extensions of small files with their styles, weighted by repetition.
var sourceExts = []struct {
	ext   string
	style byte
}{
	{".go", styleGo}, {".go", styleGo}, {".go", styleGo}, {".py", stylePy}, {".py", stylePy},
	{".c", styleC}, {".h", styleC}, {".js", styleJS}, {".ts", styleJS}, {".sh", styleSh},
	{".yaml", styleYAML}, {".yml", styleYAML}, {".json", styleJSON}, {".md", styleMD},
	{".txt", styleMD}, {".conf", styleConf}, {".toml", styleConf},
}

// smallSize draws a size from 200 B to 16 KiB, roughly log-uniform.
func smallSize(r *rng) int64 {
	lo := 200 << r.intn(7)
	hi := min(2*lo, 16<<10)
	return int64(r.between(lo, hi))
}

// sourceName draws the name of a small file and its style.
func sourceName(r *rng) (string, byte) {
	e := pick(r, sourceExts)
	var name string
	switch r.intn(6) {
	case 0:
		name = pick(r, words)
	case 1:
		name = pick(r, words) + "_test"
	default:
		name = pick(r, words) + "_" + pick(r, words)
	}
	if e.style == styleMD && r.chance(4) {
		return "README.md", e.style
	}
	return name + e.ext, e.style
}

func sourceMode(style byte) fs.FileMode {
	if style == styleSh {
		return 0o755
	}
	return 0o644
}

// planSmall spreads n small files over new directories of 20 to 60
// files each; one new directory in four gets only subdirectories.
func (p *plan) planSmall(n int) {
	if n <= 0 {
		return
	}
	r := newRNG(derive(p.seed, "small", 0))
	p.dir(srcDir, 0o755)
	type node struct {
		path          string
		depth, parent int
	}
	nodes := []node{{srcDir, 0, 0}}
	last := 0
	for left := n; left > 0; {
		// Usually a sibling or an ancestor's sibling of a random
		// directory, sometimes a child of the newest one.
		parent := last
		if nodes[parent].depth >= maxDepth || !r.chance(3) {
			parent = r.intn(len(nodes))
			for nodes[parent].depth >= maxDepth || nodes[parent].depth > 1 && r.chance(2) {
				parent = nodes[parent].parent
			}
			if nodes[parent].depth == 1 && r.chance(10) {
				parent = 0 // a new project
			}
		}
		name := pick(r, subdirNames)
		switch {
		case nodes[parent].depth == 0:
			name = pick(r, projectNames)
		case r.chance(3):
			name = pick(r, words)
		}
		d := node{p.unique(nodes[parent].path, name), nodes[parent].depth + 1, parent}
		p.dir(d.path, 0o755)
		p.srcDirs = append(p.srcDirs, len(p.dirs)-1)
		nodes = append(nodes, d)
		last = len(nodes) - 1
		if d.depth < maxDepth && r.chance(4) {
			continue
		}
		for k := min(r.between(20, 60), left); k > 0; k-- {
			left--
			if len(p.small) > 0 && r.chance(25) { // an identical copy of an earlier file
				f := p.files[pick(r, p.small)]
				f.path = p.unique(d.path, path.Base(f.path))
				p.small = append(p.small, len(p.files))
				p.file(f)
				continue
			}
			name, style := sourceName(r)
			p.small = append(p.small, len(p.files))
			p.file(fileSpec{
				path: p.unique(d.path, name), mode: sourceMode(style), kind: kindText,
				size: smallSize(r), seed: r.uint64(), style: style,
			})
		}
	}
}

func (p *plan) planDumps(sizes []int64) {
	r := newRNG(derive(p.seed, "dumps", 0))
	for i, size := range sizes {
		db := dumpNames[i%len(dumpNames)]
		day := 1704067200/86400 + r.int63n(730) // 2024 or 2025
		y, m, d := civil(day)
		name := fmt.Sprintf("%s-%04d-%02d-%02d.sql", db, y, m, d)
		p.file(fileSpec{path: p.unique(dbDir, name), mode: 0o640, kind: kindDump, size: size, seed: r.uint64()})
	}
}

func (p *plan) planRandom(sizes []int64) {
	r := newRNG(derive(p.seed, "random", 0))
	for _, size := range sizes {
		var dir, name string
		switch {
		case size >= 64*mib:
			dir = "media/video"
			name = fmt.Sprintf("%s.%d.1080p.mkv", pick(r, videoNames), r.between(2015, 2025))
		case size > 16*mib || r.chance(4):
			dir = "git/" + pick(r, projectNames) + ".git/objects/pack"
			name = fmt.Sprintf("pack-%016x%016x%08x.pack", r.uint64(), r.uint64(), uint32(r.uint64()))
		default:
			dir = "media/photos/" + strconv.Itoa(r.between(2018, 2025))
			name = fmt.Sprintf("IMG_%04d.jpg", r.intn(10000))
		}
		p.file(fileSpec{path: p.unique(dir, name), mode: 0o644, kind: kindRandom, size: size, seed: r.uint64()})
	}
}

// planSparse lays out each image as data extents separated by holes.
func (p *plan) planSparse(sizes []int64) {
	r := newRNG(derive(p.seed, "sparse", 0))
	for i, size := range sizes {
		tailHole := i > 0 && i == len(sizes)-1
		name := vmNames[i%len(vmNames)] + ".img"
		p.file(fileSpec{
			path: p.unique("vm/images", name), mode: 0o600, kind: kindSparse, size: size,
			seed: r.uint64(), extents: sparseLayout(r, size, tailHole),
		})
	}
}

// sparseLayout returns extents covering about 4 % of size, in 4 KiB
// units of 64 KiB to 4 MiB, the first at offset 0 and, unless tailHole,
// the last ending at size.
func sparseLayout(r *rng, size int64, tailHole bool) []extent {
	const unit = 4 * kib
	units := size / unit
	if units < 2 { // too small for holes
		if size == 0 {
			return nil
		}
		return []extent{{0, size}}
	}
	data := max(size*4/100/unit, 1)
	var lens []int64 // in units
	for left := data; left > 0; {
		lo := 16 << r.intn(7) // 64 KiB … 4 MiB
		n := min(int64(r.between(lo, min(2*lo, 1024))), left)
		if rest := left - n; rest > 0 && rest < 16 { // no runt at the end
			if n+rest <= 1024 {
				n += rest
			} else {
				n -= 16 - rest
			}
		}
		lens = append(lens, n)
		left -= n
	}
	if len(lens) == 1 && !tailHole && data >= 2 { // room for a first and a last extent
		lens = []int64{data / 2, data - data/2}
	}
	gaps := len(lens) - 1 // holes between extents
	if tailHole {
		gaps++
	}
	holes := units - data
	weights := make([]int64, gaps)
	var sum int64
	for j := range weights {
		weights[j] = int64(r.between(1, 1000))
		sum += weights[j]
	}
	ext := make([]extent, len(lens))
	var off, used int64
	for j, n := range lens {
		ext[j] = extent{off * unit, n * unit}
		off += n
		if j < len(weights) {
			g := holes * weights[j] / sum
			if j == len(weights)-1 {
				g = holes - used // the rounding rest
			}
			used += g
			off += g
		}
	}
	if !tailHole { // the last extent takes the bytes after the last whole unit
		ext[len(ext)-1].len += size - units*unit
	}
	return ext
}

// oddNames are the entries of odd/; a trailing slash marks a directory.
func oddNames() []string {
	long := "long-name-"
	for len(long)+len("日本語-")+len(".txt") <= 255 {
		long += "日本語-"
	}
	long += strings.Repeat("x", 255-len(long)-len(".txt")) + ".txt"
	return []string{
		"file with spaces.txt",
		"  leading and trailing spaces  ",
		"caf\u00e9.txt",  // precomposed é
		"cafe\u0301.txt", // e + combining acute: a different name
		"日本語のメモ.txt",
		"emoji 📦 box.md",
		"-leading-dash.txt",
		"--rf",
		"it's \"quoted\" & $dollar.txt",
		"back\\slash.txt",
		"line\nbreak.txt",
		"tab\tstop.txt",
		long,
		"dir with spaces/",
		"dir with spaces/inner file.md",
		"日本/",
		"日本/ファイル.txt",
		"-dash-dir/",
		"-dash-dir/--help",
	}
}

func (p *plan) planOdd() {
	r := newRNG(derive(p.seed, "odd", 0))
	p.dir(oddDir, 0o755)
	for _, name := range oddNames() {
		if strings.HasSuffix(name, "/") {
			p.dir(p.unique(oddDir, strings.TrimSuffix(name, "/")), 0o755)
			continue
		}
		p.file(fileSpec{
			path: p.unique(oddDir, name), mode: 0o644, kind: kindText,
			size: int64(r.between(200, 2000)), seed: r.uint64(), style: styleMD,
		})
	}
}

func (p *plan) planSpecials() {
	r := newRNG(derive(p.seed, "specials", 0))
	d := p.dir(specialDir, 0o755)
	text := func(name string, mode fs.FileMode, style byte) {
		p.file(fileSpec{
			path: p.unique(d, name), mode: mode, kind: kindText,
			size: int64(r.between(200, 4000)), seed: r.uint64(), style: style,
		})
	}
	p.file(fileSpec{path: p.unique(d, "empty"), mode: 0o644, kind: kindRandom})
	p.dir(p.unique(d, "empty-dir"), 0o755)
	p.fifos = append(p.fifos, dirSpec{path: p.unique(d, "fifo"), mode: 0o644})
	text("id_ed25519", 0o600, styleConf)
	text("run.sh", 0o755, styleSh)
	p.file(fileSpec{path: p.unique(d, "setuid-helper"), mode: 0o755 | fs.ModeSetuid, kind: kindRandom, size: 8 * kib, seed: r.uint64()})
	p.dir(p.unique(d, "private"), 0o700)
	text(path.Join("private", "secrets.env"), 0o600, styleConf)
	p.dir(p.unique(d, "shared"), 0o775|fs.ModeSetgid)
	p.dir(p.unique(d, "tmp"), 0o777|fs.ModeSticky)
	text("tagged.txt", 0o644, styleMD)
	tagged := p.files[len(p.files)-1].path
	taggedDir := p.dir(p.unique(d, "tagged-dir"), 0o755)
	p.xattrs = append(p.xattrs,
		xattrSpec{tagged, xattrName, fmt.Sprintf("file %016x", r.uint64())},
		xattrSpec{taggedDir, xattrName, fmt.Sprintf("dir %016x", r.uint64())},
	)
	// A sparse file that starts and ends with a hole: 64 KiB of data at
	// 1 MiB in 4 MiB.
	p.file(fileSpec{
		path: p.unique(d, "ends-in-hole.img"), mode: 0o644, kind: kindSparse, size: 4 * mib,
		seed: r.uint64(), extents: []extent{{mib, 64 * kib}},
	})
}

// xattrName is the extended attribute set with Spec.Specials.
const xattrName = "user.cairn.test"

// planHardlinks adds extra names, cycling through: another directory,
// the same directory, a large file, and then a third name for an inode
// that already has two.
func (p *plan) planHardlinks(n int) {
	if n <= 0 || len(p.files) == 0 {
		return
	}
	r := newRNG(derive(p.seed, "hardlinks", 0))
	var big []int
	for i := range p.files {
		if k := p.files[i].kind; k == kindRandom && p.files[i].size >= mib || k == kindDump {
			big = append(big, i)
		}
	}
	smallOrAny := func() int {
		if len(p.small) > 0 {
			return pick(r, p.small)
		}
		return r.intn(len(p.files))
	}
	for i := range n {
		var target int
		dir := ""
		switch {
		case i%4 == 2 && len(big) > 0:
			target = pick(r, big)
			dir = path.Dir(p.files[target].path)
		case i%4 == 3 && len(p.hardlinks) > 0:
			t := pick(r, p.hardlinks).target
			p.hardlinks = append(p.hardlinks, linkSpec{p.unique(linksDir, path.Base(t)), t})
			p.dir(linksDir, 0o755)
			continue
		case i%4 == 1:
			target = smallOrAny()
			dir = path.Dir(p.files[target].path)
		default:
			target = smallOrAny()
			dir = linksDir
			if len(p.srcDirs) > 0 && r.chance(2) {
				dir = p.dirs[pick(r, p.srcDirs)].path
			}
		}
		t := p.files[target].path
		p.dir(dir, 0o755)
		name := path.Base(t)
		if dir == path.Dir(t) {
			name += ".orig"
		}
		p.hardlinks = append(p.hardlinks, linkSpec{p.unique(dir, name), t})
	}
}

// absTargets are absolute symlink targets outside the tree; the first
// ones exist on most Linux systems, the rest nowhere.
var absTargets = []string{"/etc/hosts", "/usr/bin/env", "/dev/null", "/", "/nonexistent/cairn/datagen", "/srv/old-nas/photos/2009"}

// planSymlinks cycles through the kinds of links: relative to a file,
// absolute and dangling, relative to a directory, relative and
// dangling, absolute and existing, and relative to another link.
func (p *plan) planSymlinks(n int) {
	if n <= 0 {
		return
	}
	r := newRNG(derive(p.seed, "symlinks", 0))
	for i := range n {
		dir := linksDir
		if len(p.dirs) > 0 && r.chance(2) {
			dir = pick(r, p.dirs).path
		}
		p.dir(dir, 0o755)
		var name, target string
		switch i % 6 {
		case 0, 5:
			if i%6 == 5 && len(p.symlinks) > 0 {
				l := pick(r, p.symlinks).path
				name, target = "via-"+path.Base(l), relPath(dir, l)
				break
			}
			if len(p.files) == 0 {
				name, target = "to-nothing", "nothing"
				break
			}
			f := pick(r, p.files).path
			name, target = "to-"+path.Base(f), relPath(dir, f)
		case 1:
			name, target = "abs-dangling", absTargets[4+r.intn(2)]
		case 2: // never an ancestor: a tree that follows links stays finite
			name, target = "dir-gone", relPath(dir, "gone")
			for range 10 {
				if d := pick(r, p.dirs).path; d != dir && !strings.HasPrefix(dir, d+"/") {
					name, target = "dir-"+path.Base(d), relPath(dir, d)
					break
				}
			}
		case 3:
			name = "dangling"
			target = relPath(dir, path.Join(srcDir, "removed", pick(r, words)+".go"))
		case 4:
			name, target = "abs", absTargets[r.intn(4)]
		}
		p.symlinks = append(p.symlinks, linkSpec{p.unique(dir, name), target})
	}
}

// relPath returns the relative path from directory from to to, both
// relative to the root and slash-separated.
func relPath(from, to string) string {
	f := strings.Split(from, "/")
	t := strings.Split(to, "/")
	if from == "." {
		f = nil
	}
	i := 0
	for i < len(f) && i < len(t) && f[i] == t[i] {
		i++
	}
	parts := make([]string, 0, len(f)-i+len(t)-i)
	for range f[i:] {
		parts = append(parts, "..")
	}
	parts = append(parts, t[i:]...)
	if len(parts) == 0 {
		return "."
	}
	return strings.Join(parts, "/")
}
