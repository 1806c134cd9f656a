package backup_test

import (
	"archive/tar"
	"bytes"
	"errors"
	"io"
	"os"
	"path/filepath"
	"slices"
	"strconv"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/cairnbackup/cairn/integration/testenv"
	"github.com/cairnbackup/cairn/repo"
	"github.com/cairnbackup/cairn/repo/backup"
	"github.com/cairnbackup/cairn/repo/blob"
	"github.com/cairnbackup/cairn/repo/filter"
	"github.com/cairnbackup/cairn/repo/repotest"
	"github.com/cairnbackup/cairn/repo/snapfs"
	"github.com/cairnbackup/cairn/repo/snapshot"
	"github.com/cairnbackup/cairn/repo/tree"
	"golang.org/x/sys/unix"
)

func opts(r *repo.Repository) backup.Options {
	return backup.Options{Params: r.ChunkerParams(), Table: r.ChunkerTable(), Loader: r}
}

// run backs up paths in a new session and flushes it, so the trees can be
// read back.
func run(t *testing.T, r *repo.Repository, o backup.Options, paths ...string) *backup.Result {
	t.Helper()
	s := r.NewSession()
	res, err := backup.Run(t.Context(), s, paths, o)
	if err != nil {
		t.Fatal(err)
	}
	if err := s.Flush(t.Context()); err != nil {
		t.Fatal(err)
	}
	return res
}

// node returns the node at the absolute path p inside the backup.
func node(t *testing.T, r *repo.Repository, root blob.ID, p string) tree.Node {
	t.Helper()
	n, err := snapfs.Lookup(t.Context(), r, root, p)
	if err != nil {
		t.Fatal(err)
	}
	return n
}

func TestParentSkipsUnchangedFiles(t *testing.T) {
	r := repotest.New(t)
	src := filepath.Join(t.TempDir(), "src")
	big := bytes.Repeat([]byte("0123456789abcdef"), 64<<10) // 1 MiB
	repotest.WriteTree(t, src, map[string]string{"a": "alpha", "big": string(big), "d/c": "gamma"})
	first := run(t, r, opts(r), src)
	if first.Summary.FilesNew != 3 || first.Summary.BytesRead != uint64(len(big))+10 {
		t.Fatalf("first: %+v", first.Summary)
	}
	o := opts(r)
	o.Parent = first.Tree
	second := run(t, r, o, src)
	if second.Summary.BytesRead != 0 || second.Summary.FilesUnchanged != 3 || second.Summary.FilesNew != 0 {
		t.Fatalf("unchanged: %+v", second.Summary)
	}
	if node(t, r, second.Tree, src).Subtree != node(t, r, first.Tree, src).Subtree {
		t.Fatal("unchanged backup made a different tree")
	}
	// Change one file: only it is read.
	os.WriteFile(filepath.Join(src, "a"), []byte("ALPHA!"), 0o644)
	o.Parent = second.Tree
	third := run(t, r, o, src)
	if third.Summary.BytesRead != 6 || third.Summary.FilesChanged != 1 || third.Summary.FilesUnchanged != 2 {
		t.Fatalf("one changed: %+v", third.Summary)
	}
	// --force-read reads everything again.
	o.ForceRead = true
	forced := run(t, r, o, src)
	if forced.Summary.BytesRead != uint64(len(big))+6+5 {
		t.Fatalf("forced: %+v", forced.Summary)
	}
	if node(t, r, forced.Tree, src).Subtree != node(t, r, third.Tree, src).Subtree {
		t.Fatal("a forced read of unchanged files made a different tree")
	}
}

func TestExcludes(t *testing.T) {
	r := repotest.New(t)
	src := filepath.Join(t.TempDir(), "src")
	repotest.WriteTree(t, src, map[string]string{
		"keep.txt": "k", "x.tmp": "t", "sub/y.tmp": "t", "node_modules/m.js": "m",
		"cache/CACHEDIR.TAG": backup.CacheDirTagSignature + "\n", "cache/blob": "b", "cache/sub/more": "b",
	})
	exclFile := filepath.Join(t.TempDir(), "excludes")
	os.WriteFile(exclFile, []byte("# comment\nnode_modules/\n"), 0o644)
	rules := filter.FromFlags([]string{"*.tmp"}, "--exclude")
	more, err := filter.ReadFile(exclFile)
	if err != nil {
		t.Fatal(err)
	}
	m, err := filter.New(append(rules, more...))
	if err != nil {
		t.Fatal(err)
	}
	o := opts(r)
	o.Exclude = m
	o.ExcludeCaches = true
	res := run(t, r, o, src)
	var got []string
	for e, err := range snapfs.Walk(t.Context(), r, node(t, r, res.Tree, src).Subtree, snapfs.WalkOptions{}) {
		if err != nil {
			t.Fatal(err)
		}
		got = append(got, e.Path)
	}
	want := []string{"cache", "cache/CACHEDIR.TAG", "keep.txt", "sub"}
	if !slices.Equal(got, want) {
		t.Fatalf("backed up %v, want %v", got, want)
	}
	wantEx := []string{`--exclude "*.tmp"=2`, "--exclude-caches=2", `exclude-file ` + exclFile + `:2 "node_modules/"=1`}
	var gotEx []string
	for _, e := range res.Excludes {
		gotEx = append(gotEx, e.Rule+"="+itoa(e.Count))
	}
	if !slices.Equal(gotEx, wantEx) {
		t.Fatalf("excludes %v, want %v", gotEx, wantEx)
	}
}

func itoa(n uint64) string { return strconv.FormatUint(n, 10) }

func TestMetadata(t *testing.T) {
	r := repotest.New(t)
	src := filepath.Join(t.TempDir(), "src")
	repotest.WriteTree(t, src, map[string]string{"f": "data", "d/": ""})
	f := filepath.Join(src, "f")
	syscall.Chmod(f, 0o4750)
	if err := unix.Setxattr(f, "user.cairn", []byte("v1"), 0); err != nil {
		testenv.Missing(t, "user xattrs are not supported on %s: %v", src, err)
	}
	os.Link(f, filepath.Join(src, "hard"))
	os.Symlink("f", filepath.Join(src, "link"))
	if err := unix.Mkfifo(filepath.Join(src, "fifo"), 0o640); err != nil {
		t.Fatal(err)
	}
	mt := time.Date(2021, 2, 3, 4, 5, 6, 789, time.UTC)
	os.Chtimes(f, mt, mt)
	res := run(t, r, opts(r), src)
	var st syscall.Stat_t
	syscall.Stat(f, &st)
	n := node(t, r, res.Tree, src+"/f")
	if n.Mode != 0o4750 || n.MTime != mt.UnixNano() || n.Inode != st.Ino || n.Links != 2 || n.HardlinkID == 0 ||
		len(n.Xattrs) != 1 || n.Xattrs[0].Name != "user.cairn" || string(n.Xattrs[0].Value) != "v1" || n.UID != st.Uid || n.User == "" {
		t.Fatalf("file node %+v", n)
	}
	if n.FileHash != blob.Hash([]byte("data")) {
		t.Fatal("whole-file hash")
	}
	h := node(t, r, res.Tree, src+"/hard")
	if h.HardlinkID != n.HardlinkID || h.FileHash != n.FileHash || !slices.Equal(h.Content, n.Content) {
		t.Fatalf("hardlink node %+v", h)
	}
	if l := node(t, r, res.Tree, src+"/link"); l.Type != tree.Symlink || l.LinkTarget != "f" || l.ATime != 0 {
		t.Fatalf("symlink %+v", l)
	}
	if p := node(t, r, res.Tree, src+"/fifo"); p.Type != tree.FIFO || p.Mode != 0o640 {
		t.Fatalf("fifo %+v", p)
	}
	if os.Geteuid() == 0 {
		dev := filepath.Join(src, "null")
		if err := unix.Mknod(dev, unix.S_IFCHR|0o600, int(unix.Mkdev(1, 3))); err != nil {
			t.Fatal(err)
		}
		res = run(t, r, opts(r), src)
		if d := node(t, r, res.Tree, src+"/null"); d.Type != tree.CharDevice || d.Rdev != unix.Mkdev(1, 3) {
			t.Fatalf("device %+v", d)
		}
	}
}

func TestSparseFile(t *testing.T) {
	r := repotest.New(t)
	src := filepath.Join(t.TempDir(), "src")
	os.MkdirAll(src, 0o755)
	p := filepath.Join(src, "sparse.img")
	f, _ := os.Create(p)
	f.WriteAt([]byte("head"), 0)
	f.WriteAt([]byte("middle"), 8<<20)
	f.Truncate(32 << 20) // ends in a hole
	f.Close()
	var st syscall.Stat_t
	syscall.Stat(p, &st)
	if st.Blocks*512 >= 1<<20 {
		testenv.Missing(t, "the file system of %s does not make sparse files", src)
	}
	res := run(t, r, opts(r), src)
	n := node(t, r, res.Tree, src+"/sparse.img")
	var holes, data uint64
	for _, c := range n.Content {
		if c.ID.IsZero() {
			holes += c.Size
		} else {
			data += c.Size
		}
	}
	if n.Size != 32<<20 || holes < 31<<20 || data > 1<<20 {
		t.Fatalf("size %d, holes %d, data %d", n.Size, holes, data)
	}
	want, _ := os.ReadFile(p)
	if n.FileHash != blob.Hash(want) {
		t.Fatal("whole-file hash of a sparse file differs from its bytes")
	}
	if res.Summary.BytesRead > 1<<20 {
		t.Fatalf("read %d bytes of a file with %d bytes of data", res.Summary.BytesRead, data)
	}
}

func TestChangedWhileReading(t *testing.T) {
	r := repotest.New(t)
	src := filepath.Join(t.TempDir(), "src")
	repotest.WriteTree(t, src, map[string]string{"log": "line 1\n"})
	backup.SetTestHookAfterRead(func(p string) {
		f, _ := os.OpenFile(p, os.O_APPEND|os.O_WRONLY, 0)
		f.WriteString("line 2\n")
		f.Close()
	})
	defer backup.SetTestHookAfterRead(nil)
	res := run(t, r, opts(r), src)
	want := filepath.Join(src, "log") + ": changed while being read (size 7 before, 14 after, 7 read)"
	if !slices.Equal(res.Summary.Warnings, []string{want}) {
		t.Fatalf("warnings %q", res.Summary.Warnings)
	}
}

// A file replaced between the walker's lstat and its open is not read:
// not through a symbolic link to a file its owner cannot read (whose
// bytes would be stored under the link's name and mode), not as a FIFO
// (whose open would wait for a writer for good), not as another file.
// Each is named in a warning and left out; the others are backed up.
func TestReplacedBeforeOpen(t *testing.T) {
	r := repotest.New(t)
	dir := t.TempDir()
	src := filepath.Join(dir, "src")
	repotest.WriteTree(t, src, map[string]string{"a-fifo": "x", "b-link": "x", "c-other": "x", "d-kept": "kept", "e-was-link": "x"})
	secret := filepath.Join(dir, "secret")
	if err := os.WriteFile(secret, []byte("only root reads this"), 0o600); err != nil {
		t.Fatal(err)
	}
	other := filepath.Join(dir, "other")
	if err := os.WriteFile(other, []byte("another file"), 0o644); err != nil {
		t.Fatal(err)
	}
	// A symbolic link replaced by a file before the walker reads it.
	wasLink := filepath.Join(src, "e-was-link")
	if err := os.Remove(wasLink); err != nil {
		t.Fatal(err)
	}
	if err := os.Symlink("d-kept", wasLink); err != nil {
		t.Fatal(err)
	}
	backup.SetTestHookBeforeOpen(func(p string) {
		var err error
		switch filepath.Base(p) {
		case "a-fifo":
			if err = os.Remove(p); err == nil {
				err = syscall.Mkfifo(p, 0o644)
			}
		case "b-link":
			if err = os.Remove(p); err == nil {
				err = os.Symlink(secret, p)
			}
		case "c-other":
			err = os.Rename(other, p)
		case "e-was-link":
			if err = os.Remove(p); err == nil {
				err = os.WriteFile(p, []byte("a file now"), 0o644)
			}
		}
		if err != nil {
			t.Error(err)
		}
	})
	defer backup.SetTestHookBeforeOpen(nil)
	res := run(t, r, opts(r), src)
	var want []string
	for _, name := range []string{"a-fifo", "b-link", "c-other"} {
		want = append(want, filepath.Join(src, name)+": replaced since it was listed (not the regular file it was): not read; the next backup reads what is there then")
	}
	want = append(want, wasLink+": replaced since it was listed (not the symbolic link it was): not read; the next backup reads what is there then")
	if got := slices.Sorted(slices.Values(res.Summary.Warnings)); !slices.Equal(got, want) {
		t.Fatalf("warnings %q\nwant %q", got, want)
	}
	srcTree, err := snapfs.Lookup(t.Context(), r, res.Tree, src)
	if err != nil {
		t.Fatal(err)
	}
	tr, err := snapfs.LoadTree(t.Context(), r, srcTree.Subtree)
	if err != nil {
		t.Fatal(err)
	}
	var names []string
	for _, n := range tr.Nodes {
		names = append(names, n.Name)
	}
	if !slices.Equal(names, []string{"d-kept"}) {
		t.Fatalf("the snapshot holds %v, want d-kept only", names)
	}
	if n := node(t, r, res.Tree, filepath.Join(src, "d-kept")); n.FileHash != blob.Hash([]byte("kept")) {
		t.Fatalf("d-kept: %+v", n)
	}
}

// srcNames lists the names the snapshot holds in directory p.
func srcNames(t *testing.T, r *repo.Repository, root blob.ID, p string) []string {
	t.Helper()
	tr, err := snapfs.LoadTree(t.Context(), r, node(t, r, root, p).Subtree)
	if err != nil {
		t.Fatal(err)
	}
	var names []string
	for _, n := range tr.Nodes {
		names = append(names, n.Name)
	}
	return names
}

// secretDir makes a directory only root may read, holding files a and b
// with the xattr user.mark "secret" on b.
func secretDir(t *testing.T, dir string) string {
	t.Helper()
	secret := filepath.Join(dir, "secret")
	repotest.WriteTree(t, secret, map[string]string{"a": "SECRET a", "b": "SECRET b", "c/d": "SECRET d"})
	if err := unix.Setxattr(filepath.Join(secret, "b"), "user.mark", []byte("secret"), 0); err != nil {
		testenv.Missing(t, "user xattrs are not supported on %s: %v", dir, err)
	}
	if err := os.Chmod(secret, 0o700); err != nil {
		t.Fatal(err)
	}
	return secret
}

// A directory replaced by a symbolic link between the walker's lstat and
// its open is left out with a warning: the walker never lists the link's
// target (a directory only root reads) in its place.
func TestDirectoryReplacedBeforeListing(t *testing.T) {
	r := repotest.New(t)
	dir := t.TempDir()
	src := filepath.Join(dir, "src")
	repotest.WriteTree(t, src, map[string]string{"sub/a": "mine", "z-kept": "kept"})
	secret := secretDir(t, dir)
	sub := filepath.Join(src, "sub")
	backup.SetTestHookBeforeOpen(func(p string) {
		if p != sub {
			return
		}
		if err := os.RemoveAll(sub); err != nil {
			t.Error(err)
		}
		if err := os.Symlink(secret, sub); err != nil {
			t.Error(err)
		}
	})
	defer backup.SetTestHookBeforeOpen(nil)
	res := run(t, r, opts(r), src)
	want := []string{sub + ": replaced since it was listed (not the directory it was): not read; the next backup reads what is there then"}
	if !slices.Equal(res.Summary.Warnings, want) {
		t.Fatalf("warnings %q\nwant %q", res.Summary.Warnings, want)
	}
	if names := srcNames(t, r, res.Tree, src); !slices.Equal(names, []string{"z-kept"}) {
		t.Fatalf("the snapshot holds %v in src, want z-kept only", names)
	}
}

// A directory replaced by a symbolic link while the walker lists it (here
// after its first entry) changes nothing: the walker reaches the entries
// through the directory it opened, so it stores the files it listed, with
// their own contents and extended attributes, and nothing of the link's
// target.
func TestDirectoryReplacedWhileListed(t *testing.T) {
	r := repotest.New(t)
	dir := t.TempDir()
	src := filepath.Join(dir, "src")
	repotest.WriteTree(t, src, map[string]string{"sub/a": "mine a", "sub/b": "mine b", "sub/c/d": "mine d"})
	if err := unix.Setxattr(filepath.Join(src, "sub", "b"), "user.mark", []byte("mine"), 0); err != nil {
		testenv.Missing(t, "user xattrs are not supported on %s: %v", dir, err)
	}
	secret := secretDir(t, dir)
	sub := filepath.Join(src, "sub")
	swapped := false
	backup.SetTestHookBeforeOpen(func(p string) {
		if p != filepath.Join(sub, "a") || swapped {
			return
		}
		swapped = true
		if err := os.Rename(sub, filepath.Join(dir, "moved")); err != nil {
			t.Error(err)
		}
		if err := os.Symlink(secret, sub); err != nil {
			t.Error(err)
		}
	})
	defer backup.SetTestHookBeforeOpen(nil)
	res := run(t, r, opts(r), src)
	if !swapped || len(res.Summary.Warnings) != 0 {
		t.Fatalf("swapped %v, warnings %q", swapped, res.Summary.Warnings)
	}
	for name, want := range map[string]string{"a": "mine a", "b": "mine b", "c/d": "mine d"} {
		if n := node(t, r, res.Tree, filepath.Join(sub, name)); n.FileHash != blob.Hash([]byte(want)) || n.Size != uint64(len(want)) {
			t.Errorf("%s stored with hash %s, size %d; want the contents %q", name, n.FileHash, n.Size, want)
		}
	}
	b := node(t, r, res.Tree, filepath.Join(sub, "b"))
	if want := []tree.Xattr{{Name: "user.mark", Value: []byte("mine")}}; !slices.EqualFunc(b.Xattrs, want, func(x, y tree.Xattr) bool { return x.Name == y.Name && bytes.Equal(x.Value, y.Value) }) {
		t.Errorf("b's xattrs %q, want %q", b.Xattrs, want)
	}
	var st unix.Stat_t
	if err := unix.Lstat(filepath.Join(dir, "moved", "b"), &st); err != nil || st.Ino != b.Inode {
		t.Errorf("b stored with inode %d; the file listed has %d (%v)", b.Inode, st.Ino, err)
	}
}

// A CACHEDIR.TAG that is a symbolic link to a valid tag elsewhere, or a
// FIFO (whose open or read would wait for a writer), does not mark its
// directory as a cache.
func TestCacheDirTagMustBeAFile(t *testing.T) {
	r := repotest.New(t)
	dir := t.TempDir()
	src := filepath.Join(dir, "src")
	repotest.WriteTree(t, src, map[string]string{"linked/x": "kept", "fifo/x": "kept", "real/CACHEDIR.TAG": backup.CacheDirTagSignature, "real/x": "left out"})
	if err := os.Symlink(filepath.Join(src, "real", "CACHEDIR.TAG"), filepath.Join(src, "linked", "CACHEDIR.TAG")); err != nil {
		t.Fatal(err)
	}
	if err := unix.Mkfifo(filepath.Join(src, "fifo", "CACHEDIR.TAG"), 0o644); err != nil {
		t.Fatal(err)
	}
	o := opts(r)
	o.ExcludeCaches = true
	res := run(t, r, o, src)
	for d, want := range map[string][]string{"linked": {"CACHEDIR.TAG", "x"}, "fifo": {"CACHEDIR.TAG", "x"}, "real": {"CACHEDIR.TAG"}} {
		if names := srcNames(t, r, res.Tree, filepath.Join(src, d)); !slices.Equal(names, want) {
			t.Errorf("%s holds %v, want %v", d, names, want)
		}
	}
	if want := []snapshot.Exclude{{Rule: "--exclude-caches", Count: 1}}; !slices.Equal(res.Excludes, want) {
		t.Errorf("excludes %+v, want %+v", res.Excludes, want)
	}
}

// The walker descends MaxDepth levels below a backed-up path and no
// further: the directory there is recorded without its entries, with a
// warning, however deep the tree goes (each level holds a descriptor).
func TestMaxDepth(t *testing.T) {
	r := repotest.New(t)
	src := filepath.Join(t.TempDir(), "src")
	deepest := src + strings.Repeat("/d", backup.MaxDepth+2)
	if err := os.MkdirAll(deepest, 0o755); err != nil {
		t.Fatal(err)
	}
	for _, p := range []string{src + strings.Repeat("/d", backup.MaxDepth-1) + "/f", deepest + "/f"} {
		if err := os.WriteFile(p, []byte("deep"), 0o644); err != nil {
			t.Fatal(err)
		}
	}
	res := run(t, r, opts(r), src)
	last := src + strings.Repeat("/d", backup.MaxDepth)
	want := []string{last + ": 1024 directory levels below the backed-up path: what it holds is not backed up"}
	if !slices.Equal(res.Summary.Warnings, want) {
		t.Fatalf("warnings %q\nwant %q", res.Summary.Warnings, want)
	}
	if names := srcNames(t, r, res.Tree, filepath.Dir(last)); !slices.Equal(names, []string{"d", "f"}) {
		t.Errorf("level %d holds %v, want d and f", backup.MaxDepth-1, names)
	}
	if names := srcNames(t, r, res.Tree, last); len(names) != 0 {
		t.Errorf("level %d holds %v, want nothing", backup.MaxDepth, names)
	}
	// The directories above src, src and its MaxDepth levels.
	above := strings.Count(src, "/") - 1
	if res.Summary.Dirs != uint64(above+1+backup.MaxDepth) || res.Summary.Files != 1 {
		t.Errorf("summary: %d directories, %d files", res.Summary.Dirs, res.Summary.Files)
	}
}

func TestStream(t *testing.T) {
	r := repotest.New(t)
	data := strings.Repeat("INSERT INTO t VALUES (1);\n", 100000)
	s := r.NewSession()
	res, err := backup.Stream(t.Context(), s, strings.NewReader(data), "db.sql", opts(r))
	if err != nil {
		t.Fatal(err)
	}
	s.Flush(t.Context())
	n := node(t, r, res.Tree, "db.sql")
	if n.Size != uint64(len(data)) || n.FileHash != blob.Hash([]byte(data)) || n.Mode != 0o600 {
		t.Fatalf("node %+v", n)
	}
	if _, err := backup.Stream(t.Context(), s, strings.NewReader(""), "../x", opts(r)); err == nil {
		t.Fatal("a hostile stream name was accepted")
	}
}

func TestTar(t *testing.T) {
	r := repotest.New(t)
	var buf bytes.Buffer
	tw := tar.NewWriter(&buf)
	mt := time.Date(2022, 1, 1, 0, 0, 0, 0, time.UTC)
	long := strings.Repeat("long-name-", 20) // > 100 bytes: needs PAX or GNU headers
	add := func(h *tar.Header, body string) {
		h.ModTime = mt
		h.Size = int64(len(body))
		if h.Typeflag != tar.TypeReg {
			h.Size = 0
		}
		if err := tw.WriteHeader(h); err != nil {
			t.Fatal(err)
		}
		tw.Write([]byte(body))
	}
	add(&tar.Header{Name: "./etc/", Typeflag: tar.TypeDir, Mode: 0o755}, "")
	add(&tar.Header{Name: "./etc/app.conf", Typeflag: tar.TypeReg, Mode: 0o640, Uid: 1000, Gid: 1000, Uname: "app", Gname: "app",
		PAXRecords: map[string]string{"SCHILY.xattr.user.note": "hi"}}, "port=1\n")
	add(&tar.Header{Name: "./etc/" + long, Typeflag: tar.TypeReg, Mode: 0o644}, "long")
	add(&tar.Header{Name: "./etc/hard", Typeflag: tar.TypeLink, Linkname: "./etc/app.conf"}, "")
	add(&tar.Header{Name: "./etc/link", Typeflag: tar.TypeSymlink, Linkname: "app.conf"}, "")
	add(&tar.Header{Name: "./dev/null", Typeflag: tar.TypeChar, Mode: 0o666, Devmajor: 1, Devminor: 3}, "")
	add(&tar.Header{Name: "./run/fifo", Typeflag: tar.TypeFifo, Mode: 0o600}, "")
	add(&tar.Header{Name: "../escape", Typeflag: tar.TypeReg, Mode: 0o644}, "evil")
	add(&tar.Header{Name: "/abs/file", Typeflag: tar.TypeReg, Mode: 0o644}, "abs")
	tw.Close()

	s := r.NewSession()
	res, err := backup.Tar(t.Context(), s, &buf, opts(r))
	if err != nil {
		t.Fatal(err)
	}
	s.Flush(t.Context())
	wantWarn := []string{
		`tar: "../escape": skipped: the name has a ".." component`,
		`tar: removed the leading "/" from member names`,
	}
	if !slices.Equal(res.Summary.Warnings, wantWarn) {
		t.Fatalf("warnings %q", res.Summary.Warnings)
	}
	var got []string
	for e, err := range snapfs.Walk(t.Context(), r, res.Tree, snapfs.WalkOptions{}) {
		if err != nil {
			t.Fatal(err)
		}
		got = append(got, e.Path+" "+e.Node.Type.String())
	}
	want := []string{"abs dir", "abs/file file", "dev dir", "dev/null chardev", "etc dir", "etc/app.conf file", "etc/hard file",
		"etc/link symlink", "etc/" + long + " file", "run dir", "run/fifo fifo"}
	if !slices.Equal(got, want) {
		t.Fatalf("tree\n%v\nwant\n%v", got, want)
	}
	conf := node(t, r, res.Tree, "etc/app.conf")
	if conf.Mode != 0o640 || conf.UID != 1000 || conf.User != "app" || conf.MTime != mt.UnixNano() || conf.FileHash != blob.Hash([]byte("port=1\n")) ||
		len(conf.Xattrs) != 1 || string(conf.Xattrs[0].Value) != "hi" || conf.HardlinkID == 0 {
		t.Fatalf("app.conf %+v", conf)
	}
	if hard := node(t, r, res.Tree, "etc/hard"); hard.HardlinkID != conf.HardlinkID || hard.FileHash != conf.FileHash {
		t.Fatalf("hard %+v", hard)
	}
	if d := node(t, r, res.Tree, "dev/null"); d.Rdev != unix.Mkdev(1, 3) {
		t.Fatalf("dev %+v", d)
	}
	// A truncated stream is an error, not a partial snapshot.
	var trunc bytes.Buffer
	tw = tar.NewWriter(&trunc)
	tw.WriteHeader(&tar.Header{Name: "f", Typeflag: tar.TypeReg, Size: 1000, Mode: 0o644})
	tw.Write(make([]byte, 100))
	_, err = backup.Tar(t.Context(), r.NewSession(), bytes.NewReader(trunc.Bytes()), opts(r))
	if err == nil || !errors.Is(err, io.ErrUnexpectedEOF) {
		t.Fatalf("truncated: %v", err)
	}
}

// TestUnchangedKeepsXattrs backs up a tree, then again with it as the
// parent: the second backup takes every entry's extended attributes from
// the parent (their ctime and inode are the same) without listing them,
// and still records them; an entry whose xattr changed (its ctime moved)
// is read again.
func TestUnchangedKeepsXattrs(t *testing.T) {
	r := repotest.New(t)
	src := filepath.Join(t.TempDir(), "src")
	files := map[string]string{"d/": ""}
	for i := range 20 {
		files["d/f"+strconv.Itoa(i)] = "data " + strconv.Itoa(i)
	}
	repotest.WriteTree(t, src, files)
	f := filepath.Join(src, "d", "f3")
	if err := unix.Setxattr(f, "user.cairn", []byte("v1"), 0); err != nil {
		testenv.Missing(t, "user xattrs are not supported on %s: %v", src, err)
	}
	o := opts(r)
	first := run(t, r, o, src)
	o.Parent = first.Tree
	before := backup.XattrReads()
	second := run(t, r, o, src)
	// Only the directories above src are read (the walk on the way
	// to src reads them as before).
	above := uint64(strings.Count(src, "/") - 1)
	if got := backup.XattrReads() - before; got != above {
		t.Fatalf("unchanged backup read xattrs %d times, want %d (the directories above src)", got, above)
	}
	if n := node(t, r, second.Tree, f); len(n.Xattrs) != 1 || string(n.Xattrs[0].Value) != "v1" {
		t.Fatalf("unchanged file's xattrs %+v", n.Xattrs)
	}
	if err := unix.Setxattr(f, "user.cairn", []byte("v2"), 0); err != nil {
		t.Fatal(err)
	}
	o.Parent = second.Tree
	third := run(t, r, o, src)
	if n := node(t, r, third.Tree, f); len(n.Xattrs) != 1 || string(n.Xattrs[0].Value) != "v2" {
		t.Fatalf("changed xattr recorded as %+v", n.Xattrs)
	}
}
