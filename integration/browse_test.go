package integration

import (
	"encoding/json"
	"fmt"
	"math"
	"os"
	"os/exec"
	"path/filepath"
	"regexp"
	"slices"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/cairnbackup/cairn/repo/repotest"
)

// browseFixture is a repository with two backups of one source tree,
// changed in between.
type browseFixture struct {
	e        *env
	src      string
	bk1, bk2 backupSummary
}

// newBrowseFixture backs up writeSource's tree plus a hard link and a
// FIFO, then changes a file's contents, a symlink's target and a file's
// mode, removes a file, adds a directory tree, and backs up again.
func newBrowseFixture(t *testing.T) *browseFixture {
	e := newEnv(t)
	e.ok("init")
	src := filepath.Join(e.dir, "src")
	writeSource(t, src)
	if err := os.Link(filepath.Join(src, "var/lib/db.dump"), filepath.Join(src, "var/lib/db.hard")); err != nil {
		t.Fatal(err)
	}
	if err := syscall.Mkfifo(filepath.Join(src, "var/pipe"), 0o640); err != nil {
		t.Fatal(err)
	}
	f := &browseFixture{e: e, src: src}
	f.bk1 = e.backupJSON("--node", "lyra", "--plan", "files", src)

	must := func(err error) {
		t.Helper()
		if err != nil {
			t.Fatal(err)
		}
	}
	must(os.WriteFile(filepath.Join(src, "etc/service.yaml"), []byte("port: 9090\nhost: example\n"), 0o644))
	must(os.Remove(filepath.Join(src, "etc/current")))
	must(os.Symlink("other.yaml", filepath.Join(src, "etc/current")))
	must(os.Chmod(filepath.Join(src, "var/lib/media.bin"), 0o600))
	must(os.Remove(filepath.Join(src, "home/.profile")))
	repotest.WriteTree(t, src, map[string]string{"new/dir/file.txt": "fresh\n"})
	f.bk2 = e.backupJSON("--node", "lyra", "--plan", "files", src)
	return f
}

func TestBrowse(t *testing.T) {
	f := newBrowseFixture(t)
	t.Run("find", f.testFind)
	t.Run("diff", f.testDiff)
	t.Run("stats", f.testStats)
	t.Run("dump", f.testDump)
	t.Run("dump damaged", f.testDumpDamaged) // last: it damages the repository
}

func (f *browseFixture) testFind(t *testing.T) {
	e := &env{t: t, dir: f.e.dir, repo: f.e.repo, vars: f.e.vars}
	src := f.src

	// Text: one line per match, oldest snapshot first.
	r := e.run(nil, "find", "service.yaml")
	if r.code != 0 {
		t.Fatalf("exit %d: %s", r.code, r.stderr)
	}
	lines := strings.Split(strings.TrimSuffix(r.stdout, "\n"), "\n")
	if len(lines) != 2 {
		t.Fatalf("find output:\n%s", r.stdout)
	}
	const stamp = `\d{4}-\d\d-\d\d \d\d:\d\d:\d\d \S+`
	for i, c := range []struct {
		id   string
		size int
	}{{f.bk1.Snapshot, 11}, {f.bk2.Snapshot, 25}} {
		re := fmt.Sprintf(`^%s  %s  file     %12d  %s  %s$`, c.id[:8], stamp, c.size, stamp, regexp.QuoteMeta(src+"/etc/service.yaml"))
		if !regexp.MustCompile(re).MatchString(lines[i]) {
			t.Errorf("line %d: %q does not match %q", i, lines[i], re)
		}
	}
	if r.stderr != "found 2 matches in 2 of 2 snapshots\n" {
		t.Errorf("stderr %q", r.stderr)
	}

	// A symlink shows its target.
	out := e.ok("find", "--snapshot", f.bk2.Snapshot[:8], "current")
	if !strings.HasSuffix(out, "  "+src+"/etc/current -> other.yaml\n") || strings.Count(out, "\n") != 1 {
		t.Errorf("symlink: %q", out)
	}

	// --json: one object per line with the recorded hash of files.
	type hit struct {
		Snapshot string    `json:"snapshot"`
		Time     time.Time `json:"time"`
		Path     string    `json:"path"`
		Type     string    `json:"type"`
		Size     uint64    `json:"size"`
		MTime    time.Time `json:"mtime"`
		Target   string    `json:"target"`
		SHA256   string    `json:"sha256"`
	}
	var hits []string
	var mtime time.Time
	for l := range strings.SplitSeq(strings.TrimSpace(e.ok("find", "--json", "etc/*")), "\n") {
		var h hit
		dec := json.NewDecoder(strings.NewReader(l))
		dec.DisallowUnknownFields()
		if err := dec.Decode(&h); err != nil {
			t.Fatalf("%v: %s", err, l)
		}
		if h.Time.IsZero() || h.MTime.IsZero() {
			t.Errorf("times missing: %s", l)
		}
		if h.Snapshot == f.bk2.Snapshot && h.Path == src+"/etc/service.yaml" {
			mtime = h.MTime
		}
		hits = append(hits, fmt.Sprintf("%s %s %s %d %s %s", h.Snapshot[:8], h.Path, h.Type, h.Size, h.Target, h.SHA256))
	}
	want := []string{
		f.bk1.Snapshot[:8] + " " + src + "/etc/current symlink 12 service.yaml ",
		f.bk1.Snapshot[:8] + " " + src + "/etc/service.yaml file 11  " + sha256hex("port: 8080\n"),
		f.bk2.Snapshot[:8] + " " + src + "/etc/current symlink 10 other.yaml ",
		f.bk2.Snapshot[:8] + " " + src + "/etc/service.yaml file 25  " + sha256hex("port: 9090\nhost: example\n"),
	}
	if !slices.Equal(hits, want) {
		t.Errorf("find --json:\n%s\nwant:\n%s", strings.Join(hits, "\n"), strings.Join(want, "\n"))
	}
	if fi, err := os.Stat(filepath.Join(src, "etc/service.yaml")); err != nil || !fi.ModTime().Equal(mtime) {
		t.Errorf("mtime %v, want %v (%v)", mtime, fi.ModTime(), err)
	}

	// A removed file is found only in the snapshot that has it; a
	// directory pattern matches directories only; filters apply.
	for _, c := range []struct {
		args []string
		want []string
	}{
		{[]string{".profile"}, []string{f.bk1.Snapshot[:8] + " " + src + "/home/.profile"}},
		{[]string{"--snapshot", f.bk2.Snapshot[:8], ".profile"}, nil},
		{[]string{"--snapshot", "latest", "--snapshot", f.bk1.Snapshot[:6], "dir/"}, []string{f.bk2.Snapshot[:8] + " " + src + "/new/dir"}},
		{[]string{"--path", src, "pipe"}, []string{f.bk1.Snapshot[:8] + " " + src + "/var/pipe", f.bk2.Snapshot[:8] + " " + src + "/var/pipe"}},
		{[]string{"--path", "/elsewhere", "pipe"}, nil},
		{[]string{"--node", "vega", "pipe"}, nil},
		{[]string{"/" + strings.TrimPrefix(src, "/") + "/var/lib/db.*"}, []string{
			f.bk1.Snapshot[:8] + " " + src + "/var/lib/db.dump", f.bk1.Snapshot[:8] + " " + src + "/var/lib/db.hard",
			f.bk2.Snapshot[:8] + " " + src + "/var/lib/db.dump", f.bk2.Snapshot[:8] + " " + src + "/var/lib/db.hard",
		}},
	} {
		var got []string
		out := e.ok(append([]string{"find", "--json"}, c.args...)...)
		for l := range strings.SplitSeq(strings.TrimSpace(out), "\n") {
			if l == "" {
				continue
			}
			var h hit
			if err := json.Unmarshal([]byte(l), &h); err != nil {
				t.Fatal(err)
			}
			got = append(got, h.Snapshot[:8]+" "+h.Path)
		}
		if !slices.Equal(got, c.want) {
			t.Errorf("find %q: %q, want %q", c.args, got, c.want)
		}
	}

	if r := e.run(nil, "find"); r.code != 2 {
		t.Errorf("find without a pattern: exit %d", r.code)
	}
	if r := e.run(nil, "find", "[x"); r.code != 2 || !strings.Contains(r.stderr, "unclosed") {
		t.Errorf("bad pattern: exit %d, %q", r.code, r.stderr)
	}
}

func (f *browseFixture) testDiff(t *testing.T) {
	e := &env{t: t, dir: f.e.dir, repo: f.e.repo, vars: f.e.vars}
	src := f.src
	a, b := f.bk1.Snapshot[:8]+":"+src, f.bk2.Snapshot[:8]+":"+src
	want := []string{
		"m " + src + "/etc", // its symlink was replaced
		"m " + src + "/etc/current",
		"M " + src + "/etc/service.yaml",
		"m " + src + "/home",
		"- " + src + "/home/.profile",
		"+ " + src + "/new",
		"+ " + src + "/new/dir",
		"+ " + src + "/new/dir/file.txt",
		"m " + src + "/var/lib/media.bin",
		"3 added, 1 removed, 1 modified, 4 metadata only",
	}
	if got := strings.Split(strings.TrimSuffix(e.ok("diff", a, b), "\n"), "\n"); !slices.Equal(got, want) {
		t.Errorf("diff:\n%s\nwant:\n%s", strings.Join(got, "\n"), strings.Join(want, "\n"))
	}

	// --json: the same changes, one object per line, no count.
	var got []string
	for l := range strings.SplitSeq(strings.TrimSpace(e.ok("diff", "--json", b, a)), "\n") {
		var c struct{ Kind, Path string }
		if err := json.Unmarshal([]byte(l), &c); err != nil {
			t.Fatal(err)
		}
		got = append(got, c.Kind+" "+c.Path)
	}
	wantJSON := []string{
		"metadata /etc", "metadata /etc/current", "modified /etc/service.yaml",
		"metadata /home", "added /home/.profile",
		"removed /new", "removed /new/dir", "removed /new/dir/file.txt",
		"metadata /var/lib/media.bin",
	}
	for i := range wantJSON {
		k, p, _ := strings.Cut(wantJSON[i], " ")
		wantJSON[i] = k + " " + src + p
	}
	if !slices.Equal(got, wantJSON) {
		t.Errorf("diff --json (reversed):\n%s\nwant:\n%s", strings.Join(got, "\n"), strings.Join(wantJSON, "\n"))
	}

	// Different paths on each side: relative to each; a file against a
	// file compares the two entries.
	if out := e.ok("diff", a+"/etc", b+"/home"); out != "- /current\n- /service.yaml\n0 added, 2 removed, 0 modified, 0 metadata only\n" {
		t.Errorf("etc against home: %q", out)
	}
	if out := e.ok("diff", a+"/etc/service.yaml", b+"/etc/service.yaml"); out != "M "+src+"/etc/service.yaml\n0 added, 0 removed, 1 modified, 0 metadata only\n" {
		t.Errorf("one file: %q", out)
	}
	if out := e.ok("diff", a, a); out != "0 added, 0 removed, 0 modified, 0 metadata only\n" {
		t.Errorf("a snapshot against itself: %q", out)
	}
	if r := e.run(nil, "diff", a); r.code != 2 {
		t.Errorf("one argument: exit %d", r.code)
	}
}

func (f *browseFixture) testStats(t *testing.T) {
	e := &env{t: t, dir: f.e.dir, repo: f.e.repo, vars: f.e.vars}
	type stats struct {
		Scope            string  `json:"scope"`
		Snapshots        int     `json:"snapshots"`
		Packs            uint64  `json:"packs"`
		Blobs            uint64  `json:"blobs"`
		DataBlobs        uint64  `json:"data_blobs"`
		TreeBlobs        uint64  `json:"tree_blobs"`
		StoredBytes      uint64  `json:"stored_bytes"`
		BlobBytes        uint64  `json:"blob_bytes"`
		PlaintextBytes   uint64  `json:"plaintext_bytes"`
		CompressionRatio float64 `json:"compression_ratio"`
		LogicalBytes     uint64  `json:"logical_bytes"`
		UniqueDataBlobs  uint64  `json:"unique_data_blobs"`
		UniqueBytes      uint64  `json:"unique_bytes"`
		DedupRatio       float64 `json:"dedup_ratio"`
	}
	get := func(args ...string) stats {
		t.Helper()
		var s stats
		dec := json.NewDecoder(strings.NewReader(e.ok(append([]string{"stats", "--json"}, args...)...)))
		dec.DisallowUnknownFields()
		if err := dec.Decode(&s); err != nil {
			t.Fatal(err)
		}
		return s
	}
	near := func(a, b float64) bool { return math.Abs(a-b) < 1e-9*max(1, b) }

	all := get()
	if all.Scope != "all" || all.Snapshots != 2 || all.Packs == 0 || all.Blobs != all.DataBlobs+all.TreeBlobs {
		t.Errorf("counts: %+v", all)
	}
	// The text dump compresses well, so the stored size (headers and
	// encryption included) stays below the plaintext.
	if !(all.BlobBytes <= all.StoredBytes && all.StoredBytes < all.PlaintextBytes) ||
		!near(all.CompressionRatio, float64(all.PlaintextBytes)/float64(all.BlobBytes)) || all.CompressionRatio <= 1 {
		t.Errorf("sizes: %+v", all)
	}
	if all.LogicalBytes != f.bk1.Summary.Bytes+f.bk2.Summary.Bytes || all.UniqueBytes > all.PlaintextBytes ||
		all.UniqueDataBlobs != all.DataBlobs || !near(all.DedupRatio, float64(all.LogicalBytes)/float64(all.UniqueBytes)) {
		t.Errorf("logical and unique: %+v", all)
	}

	// One snapshot: the data it references, each chunk once, is its
	// files' contents, the hard-linked dump counted once.
	one := get(f.bk1.Snapshot[:8])
	unique := uint64(len("port: 8080\n") + 20000*len("INSERT INTO t VALUES (1, 'x');\n") + 3<<20 + len("export PATH\n"))
	if one.Scope != "selected" || one.Snapshots != 1 || one.LogicalBytes != f.bk1.Summary.Bytes || one.UniqueBytes != unique ||
		!near(one.DedupRatio, float64(one.LogicalBytes)/float64(unique)) || one.Packs != all.Packs || one.StoredBytes != all.StoredBytes {
		t.Errorf("one snapshot (unique data %d): %+v", unique, one)
	}
	// Both, named: the second backup shares all but its new contents.
	both := get(f.bk1.Snapshot[:8], f.bk2.Snapshot[:8])
	if both.Scope != "selected" || both.Snapshots != 2 || both.LogicalBytes != all.LogicalBytes ||
		both.UniqueBytes != unique+uint64(len("port: 9090\nhost: example\n")+len("fresh\n")) || both.DedupRatio < 1.9 {
		t.Errorf("both snapshots: %+v", both)
	}
	if vega := get("--node", "vega"); vega.Snapshots != 0 || vega.LogicalBytes != 0 || vega.DedupRatio != 0 {
		t.Errorf("no snapshots: %+v", vega)
	}

	out := e.ok("stats")
	for _, l := range []string{"snapshots:         2 (all)\n", fmt.Sprintf("packs:             %d\n", all.Packs),
		fmt.Sprintf("blobs:             %d (%d data, %d tree)\n", all.Blobs, all.DataBlobs, all.TreeBlobs),
		fmt.Sprintf("dedup ratio:       %.2fx (logical / unique data)\n", all.DedupRatio)} {
		if !strings.Contains(out, l) {
			t.Errorf("stats output lacks %q:\n%s", l, out)
		}
	}
}

func (f *browseFixture) testDump(t *testing.T) {
	e := &env{t: t, dir: f.e.dir, repo: f.e.repo, vars: f.e.vars}
	src := f.src
	ref := f.bk2.Snapshot[:8] + ":" + src

	// A file: its bytes.
	want, err := os.ReadFile(filepath.Join(src, "var/lib/media.bin"))
	if err != nil {
		t.Fatal(err)
	}
	if got := e.ok("dump", ref+"/var/lib/media.bin"); got != string(want) {
		t.Errorf("dump of media.bin: %d bytes differ from the source's %d", len(got), len(want))
	}

	// A directory: a tar stream that GNU tar extracts into the same tree.
	archive := e.ok("dump", ref)
	dst := filepath.Join(e.dir, "extracted")
	fi, err := os.Stat(src)
	if err != nil {
		t.Fatal(err)
	}
	if err := os.Mkdir(dst, fi.Mode().Perm()); err != nil {
		t.Fatal(err)
	}
	os.Chmod(dst, fi.Mode().Perm())
	tar := exec.Command("tar", "-x", "-p", "-C", dst)
	tar.Stdin = strings.NewReader(archive)
	if out, err := tar.CombinedOutput(); err != nil {
		t.Fatalf("tar -x: %v\n%s", err, out)
	}
	repotest.AssertSameTree(t, src, dst)
	a, errA := os.Stat(filepath.Join(dst, "var/lib/db.dump"))
	b, errB := os.Stat(filepath.Join(dst, "var/lib/db.hard"))
	if errA != nil || errB != nil || !os.SameFile(a, b) {
		t.Errorf("db.dump and db.hard are not one file after extraction: %v %v", errA, errB)
	}

	// Names are relative to PATH.
	cmd := exec.Command(cairnBin, "dump", ref+"/etc")
	cmd.Env = append(cleanEnviron(), e.vars...)
	tarT := exec.Command("tar", "-t")
	pipe, _ := cmd.StdoutPipe()
	tarT.Stdin = pipe
	if err := cmd.Start(); err != nil {
		t.Fatal(err)
	}
	list, err := tarT.Output()
	if werr := cmd.Wait(); err != nil || werr != nil {
		t.Fatalf("dump | tar -t: %v %v", err, werr)
	}
	if string(list) != "current\nservice.yaml\n" {
		t.Errorf("tar -t: %q", list)
	}

	if r := e.run(nil, "dump", ref+"/nothing"); r.code != 1 || !strings.Contains(r.stderr, "no such file or directory in the snapshot") {
		t.Errorf("missing path: exit %d, %q", r.code, r.stderr)
	}
}

// A damaged chunk stops the dump with exit code 1 and a message naming
// the file.
func (f *browseFixture) testDumpDamaged(t *testing.T) {
	e := &env{t: t, dir: f.e.dir, repo: f.e.repo, vars: f.e.vars}
	// The largest pack holds the data of the first backup; flip a byte
	// every 64 KiB of it, so every chunk of media.bin is damaged.
	var biggest string
	var size int64
	filepath.Walk(filepath.Join(f.e.repo, "packs"), func(p string, fi os.FileInfo, err error) error {
		if err == nil && fi.Mode().IsRegular() && fi.Size() > size {
			biggest, size = p, fi.Size()
		}
		return nil
	})
	os.Chmod(biggest, 0o600)
	data, err := os.ReadFile(biggest)
	if err != nil {
		t.Fatal(err)
	}
	for i := 1000; i < len(data); i += 64 << 10 {
		data[i] ^= 0x20
	}
	if err := os.WriteFile(biggest, data, 0o600); err != nil {
		t.Fatal(err)
	}
	file := f.src + "/var/lib/media.bin"
	r := e.run(nil, "dump", f.bk1.Snapshot[:8]+":"+file)
	if r.code != 1 || !strings.HasPrefix(r.stderr, "cairn: dump: snapshot "+f.bk1.Snapshot[:8]+": "+file+": offset 0: ") || r.stdout != "" {
		t.Errorf("exit %d, %d bytes out, stderr %q", r.code, len(r.stdout), r.stderr)
	}
}
