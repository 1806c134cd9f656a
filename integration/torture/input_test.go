package torture

import (
	"archive/tar"
	"bytes"
	"context"
	"crypto/sha256"
	"encoding/hex"
	"fmt"
	"io/fs"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/cairnbackup/cairn/integration/tartest"
	"github.com/cairnbackup/cairn/repo"
	"github.com/cairnbackup/cairn/repo/blob"
	"github.com/cairnbackup/cairn/repo/snapshot"
	"github.com/cairnbackup/cairn/repo/tree"
	"golang.org/x/sys/unix"
)

// Hostile input: tar streams with "../", absolute paths, huge headers and
// symlink tricks; snapshot trees crafted (with the repository key, as a
// compromised writer could) to escape the restore target; file names with
// odd bytes read back through FUSE. Nothing may be written outside a
// restore's target, hostile names are refused or skipped with a message,
// and odd names come back byte-exact.

// sentinelDir makes a directory beside a restore target holding one file;
// unchanged reports whether the directory still holds exactly that.
func sentinelDir(t *testing.T, parent string) (dir string, unchanged func() bool) {
	dir = filepath.Join(parent, "outside")
	if err := os.MkdirAll(dir, 0o755); err != nil {
		t.Fatal(err)
	}
	os.WriteFile(filepath.Join(dir, "keep"), []byte("untouched"), 0o644)
	return dir, func() bool {
		entries, _ := os.ReadDir(dir)
		b, _ := os.ReadFile(filepath.Join(dir, "keep"))
		return len(entries) == 1 && string(b) == "untouched"
	}
}

func TestHostileTar(t *testing.T) {
	e := newEnv(t)
	e.initRepo()
	parent := t.TempDir()
	outside, unchanged := sentinelDir(t, parent)
	cases := []struct {
		name    string
		members []tartest.Member
		// what the snapshot must hold (path → contents, "->target" for
		// a symlink), and the warnings the backup must give
		want     map[string]string
		warnings []string
		fails    string // the backup must fail with this
	}{
		{"dot-dot members", []tartest.Member{
			{Hdr: tar.Header{Name: "../escape.txt", Typeflag: tar.TypeReg}, Body: "out"},
			{Hdr: tar.Header{Name: "a/../../escape2.txt", Typeflag: tar.TypeReg}, Body: "out"},
			{Hdr: tar.Header{Name: "ok/inside.txt", Typeflag: tar.TypeReg}, Body: "in"},
		}, map[string]string{"ok/inside.txt": "in"}, []string{`"../escape.txt": skipped`, `"a/../../escape2.txt": skipped`}, ""},
		{"absolute paths", []tartest.Member{
			{Hdr: tar.Header{Name: outside + "/keep", Typeflag: tar.TypeReg}, Body: "overwritten?"},
			{Hdr: tar.Header{Name: "/etc/cron.d/evil", Typeflag: tar.TypeReg}, Body: "* * * * * root sh"},
		}, map[string]string{strings.TrimPrefix(outside, "/") + "/keep": "overwritten?", "etc/cron.d/evil": "* * * * * root sh"}, []string{`removed the leading "/"`}, ""},
		{"symlink then a file through it", []tartest.Member{
			{Hdr: tar.Header{Name: "link", Typeflag: tar.TypeSymlink, Linkname: outside}, Body: ""},
			{Hdr: tar.Header{Name: "link/keep", Typeflag: tar.TypeReg}, Body: "through the link"},
			{Hdr: tar.Header{Name: "up", Typeflag: tar.TypeSymlink, Linkname: "../../.."}, Body: ""},
			{Hdr: tar.Header{Name: "up/etc/passwd", Typeflag: tar.TypeReg}, Body: "root::0:0"},
		}, map[string]string{"link": "->" + outside, "up": "->../../.."}, []string{`"link/keep": skipped: a parent is not a directory`, `"up/etc/passwd": skipped: a parent is not a directory`}, ""},
		{"hardlinks out of the archive", []tartest.Member{
			{Hdr: tar.Header{Name: "shadow", Typeflag: tar.TypeLink, Linkname: "/etc/shadow"}, Body: ""},
			{Hdr: tar.Header{Name: "up", Typeflag: tar.TypeLink, Linkname: "../outside/keep"}, Body: ""},
			{Hdr: tar.Header{Name: "real", Typeflag: tar.TypeReg}, Body: "real"},
		}, map[string]string{"real": "real"}, []string{`"shadow": skipped: hardlink to "/etc/shadow"`, `"up": skipped`}, ""},
		{"huge names", []tartest.Member{
			{Hdr: tar.Header{Name: strings.Repeat("n", 5000), Typeflag: tar.TypeReg, Format: tar.FormatPAX}, Body: "long"},
			{Hdr: tar.Header{Name: "d/" + strings.Repeat("y", 250), Typeflag: tar.TypeReg, Format: tar.FormatPAX}, Body: "250"},
		}, map[string]string{"d/" + strings.Repeat("y", 250): "250"}, []string{`: skipped: tree: name of 5000 bytes exceeds 1024`}, ""},
		{"huge PAX header", nil, nil, nil, "tar"},
	}
	for _, c := range cases {
		t.Run(c.name, func(t *testing.T) {
			stream := tartest.Stream(t, c.members...)
			if c.members == nil {
				stream = hugePAX()
			}
			r := e.run(nil, bytes.NewReader(stream), "backup", "--tar", "--node", "tar", "--plan", strings.ReplaceAll(c.name, " ", "-"))
			refused := false
			switch {
			case c.fails != "":
				refused = r.code == 1 && strings.Contains(r.stderr, c.fails)
				if !refused {
					t.Errorf("backup of a hostile tar: %s", r)
				}
			case r.code != 3 && r.code != 0:
				t.Fatalf("backup: %s", r)
			default:
				refused = true
				for _, w := range c.warnings {
					if !strings.Contains(r.stderr, w) {
						t.Errorf("no warning %q:\n%s", w, r.stderr)
						refused = false
					}
				}
			}
			lost := 0
			if c.fails == "" {
				target := filepath.Join(parent, "target-"+strings.ReplaceAll(c.name, " ", "-"))
				if rr := e.run(nil, nil, "restore", "latest", "--plan", strings.ReplaceAll(c.name, " ", "-"), "--target", target); rr.code != 0 {
					t.Fatalf("restore: %s", rr)
				}
				got := readTree(t, target)
				if !mapsEqual(got, c.want) {
					t.Errorf("restored %v\nwant %v", got, c.want)
					lost = 1
				}
			}
			if !unchanged() {
				t.Errorf("something was written outside the target")
				lost = 1
			}
			d := 0
			if refused {
				d = 1
			}
			record("hostile input: tar with "+c.name, 1, d, lost, firstLine(r.stderr))
		})
	}
}

// hugePAX is a tar stream whose first member has a PAX header of 3 MiB
// (one extended attribute), which archive/tar's writer refuses to make.
func hugePAX() []byte {
	rec := paxRecord("SCHILY.xattr.user.big", strings.Repeat("v", 3<<20))
	var b bytes.Buffer
	b.Write(rawHeader("PaxHeaders/big", 'x', int64(len(rec))))
	b.WriteString(rec)
	b.Write(make([]byte, (512-len(rec)%512)%512))
	b.Write(rawHeader("big", '0', 1))
	b.WriteString("x")
	b.Write(make([]byte, 511+1024))
	return b.Bytes()
}

// rawHeader is a ustar header block.
func rawHeader(name string, typ byte, size int64) []byte {
	h := make([]byte, 512)
	copy(h, name)
	copy(h[100:], "0000644\x00")
	copy(h[108:], "0000000\x00")
	copy(h[116:], "0000000\x00")
	copy(h[124:], fmt.Sprintf("%011o\x00", size))
	copy(h[136:], fmt.Sprintf("%011o\x00", 1700000000))
	h[156] = typ
	copy(h[257:], "ustar\x0000")
	copy(h[148:], "        ")
	sum := 0
	for _, c := range h {
		sum += int(c)
	}
	copy(h[148:], fmt.Sprintf("%06o\x00 ", sum))
	return h
}

// readTree returns every file (contents) and symlink ("->target") below
// dir by relative path.
func readTree(t *testing.T, dir string) map[string]string {
	out := map[string]string{}
	filepath.WalkDir(dir, func(p string, d fs.DirEntry, err error) error {
		if err != nil || p == dir {
			return err
		}
		rel, _ := filepath.Rel(dir, p)
		switch {
		case d.Type()&fs.ModeSymlink != 0:
			target, _ := os.Readlink(p)
			out[rel] = "->" + target
		case d.Type().IsRegular():
			b, _ := os.ReadFile(p)
			out[rel] = string(b)
		}
		return nil
	})
	return out
}

func mapsEqual(a, b map[string]string) bool {
	if len(a) != len(b) {
		return false
	}
	for k, v := range a {
		if w, ok := b[k]; !ok || w != v {
			return false
		}
	}
	return true
}

// TestCraftedTrees stores trees with hostile names and symlink tricks
// straight into the repository (as someone holding the key could) and
// snapshots of them, then restores, dumps and mounts them.
func TestCraftedTrees(t *testing.T) {
	e := newEnv(t)
	e.initRepo()
	parent := t.TempDir()
	outside, unchanged := sentinelDir(t, parent)
	evil := []byte("evil")
	file := func(name string) tree.Node {
		return tree.Node{Name: name, Type: tree.File, Mode: 0o644, Size: uint64(len(evil)), FileHash: blob.Hash(evil),
			Content: []tree.Chunk{{ID: blob.Hash(evil), Size: uint64(len(evil))}}}
	}
	encode := func(nodes ...tree.Node) []byte {
		b, err := tree.Encode(nil, &tree.Tree{Nodes: nodes})
		if err != nil {
			t.Fatal(err)
		}
		return b
	}
	hostile := func(benign, bad string) []byte {
		return bytes.Replace(encode(file(benign)), []byte(benign), []byte(bad), 1)
	}
	cases := []struct {
		name  string
		trees func(save func([]byte) blob.ID) blob.ID // returns the root
		// ok: a valid tree that must restore inside the target
		ok bool
	}{
		{"a name ..", func(save func([]byte) blob.ID) blob.ID { return save(hostile("xx", "..")) }, false},
		{"a name with a slash", func(save func([]byte) blob.ID) blob.ID { return save(hostile("xoutsidexkeep", "/outside/keep")) }, false},
		{"a name with NUL", func(save func([]byte) blob.ID) blob.ID { return save(hostile("axb", "a\x00b")) }, false},
		{"a .. deep down", func(save func([]byte) blob.ID) blob.ID {
			inner := save(hostile("xx", ".."))
			d := tree.Node{Name: "d", Type: tree.Dir, Mode: 0o755, Subtree: inner}
			return save(encode(d))
		}, false},
		{"duplicate names", func(save func([]byte) blob.ID) blob.ID {
			b := encode(file("aa"), file("ab"))
			return save(bytes.Replace(b, []byte("ab"), []byte("aa"), 1))
		}, false},
		{"symlinks out of the target", func(save func([]byte) blob.ID) blob.ID {
			// "link" → outside, and a directory "link2" holding a file,
			// renamed to the same name would be a duplicate: instead
			// the symlink points at the target's parent, and the file
			// comes after it in another directory.
			link := tree.Node{Name: "link", Type: tree.Symlink, Mode: 0o777, LinkTarget: outside, Size: uint64(len(outside))}
			up := tree.Node{Name: "up", Type: tree.Symlink, Mode: 0o777, LinkTarget: "../../../../../../../..", Size: 23}
			return save(encode(link, up, file("z-file")))
		}, true},
	}
	r, err := repo.Open(context.Background(), e.repo, repo.Credentials{KeyFile: e.repo + ".key"}, repo.Options{})
	if err != nil {
		t.Fatal(err)
	}
	ids := make([]blob.ID, len(cases))
	for i, c := range cases {
		s := r.NewSession()
		s.SaveBlob(t.Context(), blob.Data, evil)
		root := c.trees(func(b []byte) blob.ID {
			id, _, err := s.SaveBlob(t.Context(), blob.Tree, b)
			if err != nil {
				t.Fatal(err)
			}
			return id
		})
		ids[i], err = s.Commit(t.Context(), &snapshot.Snapshot{Version: snapshot.Version, Time: time.Now(), Node: "crafted", Plan: fmt.Sprint("c", i), Paths: []string{"/x"}, Tree: root})
		if err != nil {
			t.Fatal(err)
		}
	}
	r.Close()
	for i, c := range cases {
		t.Run(c.name, func(t *testing.T) {
			id := ids[i].String()
			target := filepath.Join(parent, fmt.Sprint("target", i))
			// The target holds a symlink where the snapshot has a
			// directory or file: it must be replaced, not followed.
			os.MkdirAll(target, 0o755)
			os.Symlink(outside, filepath.Join(target, "z-file"))
			rr := e.run(nil, nil, "restore", id, "--target", target)
			dump := e.run(nil, nil, "dump", id)
			refused := false
			lost := 0
			if c.ok {
				refused = rr.code == 0 // restored safely is what "refused" means here
				got := readTree(t, target)
				want := map[string]string{"link": "->" + outside, "up": "->../../../../../../../..", "z-file": "evil"}
				if !mapsEqual(got, want) {
					t.Errorf("restored %v, want %v", got, want)
					lost = 1
				}
			} else {
				refused = rr.code == 1 && (strings.Contains(rr.stderr, "not allowed") || strings.Contains(rr.stderr, "contains") || strings.Contains(rr.stderr, "duplicate"))
				if !refused {
					t.Errorf("restore of a hostile tree: %s", rr)
				}
				if dump.code == 0 {
					t.Errorf("dump of a hostile tree succeeded: %d bytes", len(dump.stdout))
					lost = 1
				}
			}
			if !unchanged() {
				t.Errorf("written outside the target")
				lost = 1
			}
			if c.ok {
				// The check sees every snapshot as sound.
			} else if ck := e.run(nil, nil, "check"); ck.code != 4 || !strings.Contains(ck.stdout, "tree-damaged") {
				t.Errorf("check does not report the hostile tree: %s", ck)
			}
			d := 0
			if refused {
				d = 1
			}
			note := strings.Join(strings.Fields(strings.TrimPrefix(rr.stderr, "cairn: ")), " ")
			if c.ok {
				note = "restored inside the target; the symlink already in the target was replaced, not followed"
			}
			record("hostile input: crafted tree, "+c.name, 1, d, lost, note)
		})
	}
}

// TestOddNamesThroughFUSE backs up names with odd bytes and reads them
// back through a mount, byte-exact, with their recorded SHA-256.
func TestOddNamesThroughFUSE(t *testing.T) {
	requireFUSE(t)
	e := newEnv(t)
	e.initRepo()
	src := filepath.Join(e.dir, "odd")
	os.MkdirAll(src, 0o755)
	names := []string{
		"\xff\xfe not utf-8", "new\nline", "tab\there", "back\\slash", "-rf", " spaces ", ".hidden",
		"..dots", "...", "%s%n%x", "quote\"'`", "$(rm -rf ~)", "é-precomposed", "e\u0301-decomposed",
		"日本語", "😀", "\x01\x02\x7f", strings.Repeat("L", 255), "semi;colon|pipe&amp",
	}
	want := map[string][]byte{}
	for i, n := range names {
		b := []byte(fmt.Sprintf("file %d named %q\n", i, n))
		if err := os.WriteFile(filepath.Join(src, n), b, 0o644); err != nil {
			t.Fatalf("%q: %v", n, err)
		}
		want[n] = b
	}
	os.Mkdir(filepath.Join(src, "dir\nwith\xffodd"), 0o755)
	os.WriteFile(filepath.Join(src, "dir\nwith\xffodd", "inner \xfe"), []byte("inner"), 0o644)
	want["dir\nwith\xffodd/inner \xfe"] = []byte("inner")
	sum, ok := summaryOf(e.ok("backup", "--json", "--node", "odd", src))
	if !ok {
		t.Fatal("no summary")
	}
	m := e.mount(t)
	root := m.snapshotPath(sum.Snapshot, src)
	entries, err := os.ReadDir(root)
	if err != nil {
		t.Fatal(err)
	}
	var got []string
	for _, en := range entries {
		got = append(got, en.Name())
	}
	wantNames := append(slices.Clone(names), "dir\nwith\xffodd")
	slices.Sort(wantNames)
	slices.Sort(got)
	lost := 0
	if !slices.Equal(got, wantNames) {
		t.Errorf("names through FUSE:\n%q\nwant\n%q", got, wantNames)
		lost = 1
	}
	for n, b := range want {
		p := filepath.Join(root, n)
		data, err := os.ReadFile(p)
		if err != nil || !bytes.Equal(data, b) {
			t.Errorf("%q: %q %v", n, data, err)
			lost = 1
			continue
		}
		x := make([]byte, 64)
		k, err := unix.Getxattr(p, "user.cairn.sha256", x)
		s := sha256.Sum256(b)
		if err != nil || string(x[:k]) != hex.EncodeToString(s[:]) {
			t.Errorf("%q: user.cairn.sha256 %q %v", n, x[:k], err)
			lost = 1
		}
	}
	// Names that do not exist, odd ones included, are simply absent.
	for _, n := range []string{"\xff", "new", "nope\n", strings.Repeat("M", 255)} {
		if _, err := os.Lstat(filepath.Join(root, n)); !os.IsNotExist(err) {
			t.Errorf("%q: %v, want not found", n, err)
			lost = 1
		}
	}
	m.unmount()
	record("hostile input: odd names through FUSE", len(want), len(want), lost, fmt.Sprintf("%d names (invalid UTF-8, newlines, control bytes, 255 bytes, shell syntax) listed and read byte-exact with their SHA-256 xattr", len(want)))
}
