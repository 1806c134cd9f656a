package tree

import (
	"bytes"
	"encoding/hex"
	"errors"
	"flag"
	"io/fs"
	"math"
	"os"
	"path/filepath"
	"reflect"
	"strings"
	"testing"

	"github.com/cairnbackup/cairn/repo/blob"
)

var update = flag.Bool("update", false, "create missing golden files and fuzz seeds (never overwrites existing ones)")

var goldenPath = filepath.Join("testdata", "v1", "tree.bin")

// id returns an ID whose bytes are all b, for readable fixtures.
func id(b byte) blob.ID {
	var x blob.ID
	for i := range x {
		x[i] = b
	}
	return x
}

// goldenTree is the expected decoded form of testdata/v1/tree.bin. It has
// one node of every type, and every field a node's type can carry is set
// (TestGoldenTreeSetsEveryField keeps it so), with values that need the
// longest varints, negative times and a name that is not UTF-8.
//
// Never change this function or the file: together they prove that trees
// written by older versions stay readable.
func goldenTree() *Tree {
	return &Tree{Nodes: []Node{
		{
			Name: "bin", Type: Dir, Mode: 0o755, UID: 1000, GID: 100,
			User: "alice", Group: "users",
			MTime: 1700000000123456789, ATime: 1700000001000000000, CTime: 1700000002000000001,
			Size: 4096, Inode: 131073, DeviceID: 0xfd01, Links: 2, HardlinkID: 1, Rdev: 1,
			Xattrs:  []Xattr{{Name: "user.dir", Value: []byte("d")}},
			Subtree: id(0xd1),
		},
		{
			Name: "blk0", Type: BlockDevice, Mode: 0o660, UID: 0, GID: 6,
			User: "root", Group: "disk",
			MTime: 1, ATime: -1, CTime: 2,
			Size: 3, Inode: 4, DeviceID: 5, Links: 1, HardlinkID: 2, Rdev: 0x0801,
			Xattrs: []Xattr{{Name: "security.selinux", Value: []byte("system_u:object_r:fixed_disk_device_t:s0\x00")}},
		},
		{
			Name: "data\xff.bin", Type: File, Mode: 0o7777, UID: math.MaxUint32, GID: math.MaxUint32,
			User: strings.Repeat("u", MaxOwnerLen), Group: "gr\xfeup",
			MTime: math.MinInt64, ATime: math.MaxInt64, CTime: -1700000000000000000,
			Size: 1<<40 + 3, Inode: math.MaxUint64, DeviceID: math.MaxUint64, Links: math.MaxUint64,
			HardlinkID: math.MaxUint64, Rdev: math.MaxUint64,
			Xattrs: []Xattr{
				{Name: "user.empty", Value: []byte{}},
				{Name: "user.mime_type", Value: []byte("application/octet-stream")},
				{Name: "user.z", Value: []byte{0, 1, 2, 0xff}},
			},
			FileHash: id(0xf1),
			Content: []Chunk{
				{ID: id(0xc1), Size: 1},
				{ID: blob.ID{}, Size: 1 << 40}, // a hole
				{ID: id(0xc2), Size: 2},
			},
		},
		{
			Name: "fifo", Type: FIFO, Mode: 0o600, UID: 1, GID: 2,
			User: "bob", Group: "bob",
			MTime: 10, ATime: 20, CTime: 30,
			Size: 7, Inode: 40, DeviceID: 50, Links: 60, HardlinkID: 70, Rdev: 80,
			Xattrs: []Xattr{{Name: "user.a", Value: []byte("1")}},
		},
		{
			Name: "link", Type: Symlink, Mode: 0o777, UID: 1000, GID: 100,
			User: "alice", Group: "users",
			MTime: 1700000000000000000, ATime: 1700000000000000000, CTime: 1700000000000000000,
			Size: uint64(len("../target dir/\xff")), Inode: 131074, DeviceID: 0xfd01, Links: 1, HardlinkID: 3, Rdev: 9,
			LinkTarget: "../target dir/\xff",
			Xattrs:     []Xattr{{Name: "trusted.x", Value: []byte("y")}},
		},
		{
			Name: "sock", Type: Socket, Mode: 0o1777, UID: 2, GID: 3,
			User: "daemon", Group: "daemon",
			MTime: 127, ATime: 128, CTime: -64,
			Size: 1, Inode: 2, DeviceID: 3, Links: 4, HardlinkID: 5, Rdev: 6,
			Xattrs: []Xattr{{Name: "user.sock", Value: []byte("s")}},
		},
		{
			Name: "tty0", Type: CharDevice, Mode: 0o4620, UID: 0, GID: 5,
			User: "root", Group: "tty",
			MTime: 1 << 50, ATime: -(1 << 50), CTime: 1<<63 - 1,
			Size: 8, Inode: 9, DeviceID: 10, Links: 11, HardlinkID: 12, Rdev: 0x0400,
			Xattrs: []Xattr{{Name: "user.tty", Value: []byte("t")}},
		},
	}}
}

// mayBeZero lists the fields a node of each type must leave zero.
func mayBeZero(t NodeType, field string) bool {
	switch field {
	case "FileHash", "Content":
		return t != File
	case "Subtree":
		return t != Dir
	case "LinkTarget":
		return t != Symlink
	case "UID": // root
		return t == BlockDevice || t == CharDevice
	}
	return false
}

func TestGoldenTreeSetsEveryField(t *testing.T) {
	types := map[NodeType]bool{}
	for _, n := range goldenTree().Nodes {
		types[n.Type] = true
		v := reflect.ValueOf(n)
		for i := range v.NumField() {
			name := v.Type().Field(i).Name
			if v.Field(i).IsZero() && !mayBeZero(n.Type, name) {
				t.Errorf("node %q: field %s is zero", n.Name, name)
			}
		}
	}
	for typ := File; typ <= Socket; typ++ {
		if !types[typ] {
			t.Errorf("no node of type %s", typ)
		}
	}
}

// assertTree compares got with want node by node and field by field, so a
// failure names the field that changed.
func assertTree(t *testing.T, got, want *Tree) {
	t.Helper()
	if got == nil {
		t.Fatal("tree is nil")
	}
	if len(got.Nodes) != len(want.Nodes) {
		t.Fatalf("got %d nodes, want %d", len(got.Nodes), len(want.Nodes))
	}
	for i := range want.Nodes {
		g, w := reflect.ValueOf(got.Nodes[i]), reflect.ValueOf(want.Nodes[i])
		for f := range w.NumField() {
			if !reflect.DeepEqual(g.Field(f).Interface(), w.Field(f).Interface()) {
				t.Errorf("node %d (%q): %s = %#v, want %#v", i, want.Nodes[i].Name,
					w.Type().Field(f).Name, g.Field(f).Interface(), w.Field(f).Interface())
			}
		}
	}
}

func mustEncode(t testing.TB, tr *Tree) []byte {
	t.Helper()
	b, err := Encode(nil, tr)
	if err != nil {
		t.Fatalf("Encode: %v", err)
	}
	return b
}

// writeIfMissing creates a golden file under -update. It never replaces
// an existing file: fixtures are frozen once written.
func writeIfMissing(t *testing.T, path string, data []byte) {
	t.Helper()
	if _, err := os.Stat(path); err == nil {
		return
	}
	if err := os.MkdirAll(filepath.Dir(path), 0o755); err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(path, data, 0o644); err != nil {
		t.Fatal(err)
	}
	t.Logf("created %s", path)
}

func TestGolden(t *testing.T) {
	want := goldenTree()
	if *update {
		writeIfMissing(t, goldenPath, mustEncode(t, want))
	}
	data, err := os.ReadFile(goldenPath)
	if errors.Is(err, fs.ErrNotExist) {
		t.Fatalf("%s is missing; run go test -run TestGolden -update once to create it", goldenPath)
	}
	if err != nil {
		t.Fatal(err)
	}
	if len(data) != 1014 {
		t.Errorf("golden file has %d bytes, want 1014", len(data))
	}

	got, err := Decode(data)
	if err != nil {
		t.Fatalf("Decode(golden): %v", err)
	}
	assertTree(t, got, want)

	enc := mustEncode(t, want)
	if !bytes.Equal(enc, data) {
		t.Errorf("Encode(goldenTree()) differs from %s:\ngot  %x\nwant %x", goldenPath, enc, data)
	}
}

func TestRoundTrip(t *testing.T) {
	want := goldenTree()
	prefix := []byte("prefix")
	enc, err := Encode(prefix[:len(prefix):len(prefix)], want)
	if err != nil {
		t.Fatal(err)
	}
	if !bytes.HasPrefix(enc, prefix) {
		t.Fatalf("Encode did not append to dst: %q", enc[:len(prefix)])
	}
	body := enc[len(prefix):]
	if got := 1 + uvarintLen(uint64(len(want.Nodes))); got != 2 {
		t.Fatalf("header length %d", got)
	}
	size := 2
	for i := range want.Nodes {
		size += want.Nodes[i].encodedLen()
	}
	if len(body) != size {
		t.Errorf("encoded %d bytes, encodedLen says %d", len(body), size)
	}

	got, err := Decode(body)
	if err != nil {
		t.Fatal(err)
	}
	assertTree(t, got, want)

	// Decode copies: scribbling over the input changes nothing decoded.
	for i := range body {
		body[i] = 0xaa
	}
	assertTree(t, got, want)

	again := mustEncode(t, got)
	if !bytes.Equal(again, mustEncode(t, want)) {
		t.Error("Encode(Decode(x)) != x")
	}
}

func TestEmptyTree(t *testing.T) {
	for _, tr := range []*Tree{{}, {Nodes: []Node{}}} {
		enc := mustEncode(t, tr)
		if !bytes.Equal(enc, []byte{1, 0}) {
			t.Errorf("empty tree encodes as %x, want 0100", enc)
		}
	}
	got, err := Decode([]byte{1, 0})
	if err != nil {
		t.Fatal(err)
	}
	if got.Nodes != nil {
		t.Errorf("Nodes = %#v, want nil", got.Nodes)
	}
}

// TestFormatExample keeps the worked example in FORMAT.md true.
func TestFormatExample(t *testing.T) {
	tr := &Tree{Nodes: []Node{
		{Name: "a", Type: Dir, Mode: 0o755, MTime: -1, Subtree: id(0x11)},
		{Name: "b", Type: File, Mode: 0o644, User: "al", Size: 300, FileHash: id(0x22),
			Content: []Chunk{{ID: id(0x33), Size: 300}}},
	}}
	want := "01" + "02" +
		"0161" + "02" + "ed03" + "00" + "00" + "00" + "00" + "01" + "00" + "00" +
		"00" + "00" + "00" + "00" + "00" + "00" + "00" + "00" +
		strings.Repeat("11", 32) +
		"0162" + "01" + "a403" + "00" + "00" + "02616c" + "00" + "00" + "00" + "00" +
		"ac02" + "00" + "00" + "00" + "00" + "00" + "00" + "00" +
		strings.Repeat("22", 32) + "01" + strings.Repeat("33", 32) + "ac02"
	if got := hex.EncodeToString(mustEncode(t, tr)); got != want {
		t.Errorf("got  %s\nwant %s", got, want)
	}
}

func TestNodeTypeString(t *testing.T) {
	want := map[NodeType]string{
		0: "nodetype(0)", File: "file", Dir: "dir", Symlink: "symlink", BlockDevice: "blockdev",
		CharDevice: "chardev", FIFO: "fifo", Socket: "socket", 8: "nodetype(8)", 255: "nodetype(255)",
	}
	for typ, s := range want {
		if got := typ.String(); got != s {
			t.Errorf("NodeType(%d).String() = %q, want %q", uint8(typ), got, s)
		}
	}
}

func TestCheckName(t *testing.T) {
	for _, tc := range []struct {
		name, err string
	}{
		{"a", ""},
		{".a", ""},
		{"...", ""},
		{"a b\xff\x01\\", ""},
		{strings.Repeat("n", MaxNameLen), ""},
		{"", "tree: name is empty"},
		{".", `tree: name "." is not allowed`},
		{"..", `tree: name ".." is not allowed`},
		{"a/b", `tree: name "a/b" contains '/'`},
		{"/abs", `tree: name "/abs" contains '/'`},
		{"../x", `tree: name "../x" contains '/'`},
		{"x/", `tree: name "x/" contains '/'`},
		{"a\x00b", `tree: name "a\x00b" contains a NUL byte`},
		{strings.Repeat("n", MaxNameLen+1), "tree: name of 1025 bytes exceeds 1024"},
	} {
		err := CheckName(tc.name)
		if got := errString(err); got != tc.err {
			t.Errorf("CheckName(%q) = %q, want %q", tc.name, got, tc.err)
		}
	}
}

func errString(err error) string {
	if err == nil {
		return ""
	}
	return err.Error()
}

// validNode returns a valid node of type typ named name.
func validNode(name string, typ NodeType) Node {
	n := Node{Name: name, Type: typ, Mode: 0o644}
	switch typ {
	case File:
		n.Size = 5
		n.FileHash = id(0xf0)
		n.Content = []Chunk{{ID: id(1), Size: 2}, {ID: id(2), Size: 3}}
	case Dir:
		n.Subtree = id(0xd0)
	case Symlink:
		n.LinkTarget = "target"
	}
	return n
}

func TestValidate(t *testing.T) {
	mod := func(typ NodeType, f func(*Node)) Node {
		n := validNode("n", typ)
		f(&n)
		return n
	}
	for _, tc := range []struct {
		desc string
		node Node
		err  string
	}{
		{"file", validNode("f", File), ""},
		{"dir", validNode("d", Dir), ""},
		{"symlink", validNode("l", Symlink), ""},
		{"fifo", validNode("p", FIFO), ""},
		{"empty file", Node{Name: "e", Type: File}, ""},
		{"hole", mod(File, func(n *Node) { n.Content[0].ID = blob.ID{} }), ""},
		{"max mode", mod(FIFO, func(n *Node) { n.Mode = 0o7777 }), ""},
		{"max xattrs", mod(FIFO, func(n *Node) { n.Xattrs = manyXattrs(MaxXattrs) }), ""},
		{"max xattr sizes", mod(FIFO, func(n *Node) {
			n.Xattrs = []Xattr{{Name: strings.Repeat("x", MaxXattrNameLen), Value: make([]byte, MaxXattrValueLen)}}
		}), ""},
		{"max link target", mod(Symlink, func(n *Node) { n.LinkTarget = strings.Repeat("t", MaxLinkTargetLen) }), ""},

		{"empty name", mod(FIFO, func(n *Node) { n.Name = "" }), "tree: name is empty"},
		{"dotdot", mod(FIFO, func(n *Node) { n.Name = ".." }), `tree: name ".." is not allowed`},
		{"slash", mod(FIFO, func(n *Node) { n.Name = "a/b" }), `tree: name "a/b" contains '/'`},
		{"type 0", mod(FIFO, func(n *Node) { n.Type = 0 }), `tree: node "n": unknown node type 0`},
		{"type 8", mod(FIFO, func(n *Node) { n.Type = 8 }), `tree: node "n": unknown node type 8`},
		{"mode", mod(FIFO, func(n *Node) { n.Mode = 0o10000 }), `tree: node "n": mode 010000 has bits outside 07777`},
		{"file type bits in mode", mod(FIFO, func(n *Node) { n.Mode = 0o100644 }), `tree: node "n": mode 0100644 has bits outside 07777`},
		{"user", mod(FIFO, func(n *Node) { n.User = strings.Repeat("u", 257) }), `tree: node "n": user name of 257 bytes exceeds 256`},
		{"group", mod(FIFO, func(n *Node) { n.Group = strings.Repeat("g", 300) }), `tree: node "n": group name of 300 bytes exceeds 256`},
		{"symlink without target", mod(Symlink, func(n *Node) { n.LinkTarget = "" }), `tree: node "n": symlink has an empty link target`},
		{"long link target", mod(Symlink, func(n *Node) { n.LinkTarget = strings.Repeat("t", 4097) }), `tree: node "n": link target of 4097 bytes exceeds 4096`},
		{"file with target", mod(File, func(n *Node) { n.LinkTarget = "x" }), `tree: node "n": file node has a link target`},
		{"too many xattrs", mod(FIFO, func(n *Node) { n.Xattrs = manyXattrs(MaxXattrs + 1) }), `tree: node "n": 1025 xattrs exceed the limit of 1024`},
		{"xattr empty name", mod(FIFO, func(n *Node) { n.Xattrs = []Xattr{{Name: "a"}, {Name: ""}} }), `tree: node "n": xattr 1 has an empty name`},
		{"xattr long name", mod(FIFO, func(n *Node) { n.Xattrs = []Xattr{{Name: strings.Repeat("x", 256)}} }), `tree: node "n": xattr 0 name of 256 bytes exceeds 255`},
		{"xattr unsorted", mod(FIFO, func(n *Node) { n.Xattrs = []Xattr{{Name: "b"}, {Name: "a"}} }), `tree: node "n": xattr name "a" sorts before the previous "b"`},
		{"xattr duplicate", mod(FIFO, func(n *Node) { n.Xattrs = []Xattr{{Name: "a"}, {Name: "a"}} }), `tree: node "n": duplicate xattr name "a"`},
		{"xattr long value", mod(FIFO, func(n *Node) { n.Xattrs = []Xattr{{Name: "a", Value: make([]byte, 65537)}} }), `tree: node "n": xattr "a" value of 65537 bytes exceeds 65536`},
		{"file with subtree", mod(File, func(n *Node) { n.Subtree = id(1) }), `tree: node "n": file node has a subtree`},
		{"chunk size 0", mod(File, func(n *Node) { n.Content = []Chunk{{ID: id(1), Size: 5}, {ID: id(2)}} }), `tree: node "n": chunk 1 has size 0`},
		{"size < sum", mod(File, func(n *Node) { n.Size = 4 }), `tree: node "n": chunk sizes up to chunk 1 exceed the file size 4`},
		{"size > sum", mod(File, func(n *Node) { n.Size = 6 }), `tree: node "n": chunk sizes add up to 5, not the file size 6`},
		{"sum overflows", mod(File, func(n *Node) {
			n.Size = math.MaxUint64
			n.Content = []Chunk{{ID: id(1), Size: math.MaxUint64}, {ID: id(2), Size: 1}}
		}), `tree: node "n": chunk sizes up to chunk 1 exceed the file size 18446744073709551615`},
		{"dir without subtree", mod(Dir, func(n *Node) { n.Subtree = blob.ID{} }), `tree: node "n": dir node has a zero subtree id`},
		{"dir with content", mod(Dir, func(n *Node) { n.Content = []Chunk{{ID: id(1), Size: 1}} }), `tree: node "n": dir node has content`},
		{"dir with file hash", mod(Dir, func(n *Node) { n.FileHash = id(1) }), `tree: node "n": dir node has a file hash`},
		{"fifo with content", mod(FIFO, func(n *Node) { n.Content = []Chunk{{ID: id(1), Size: 1}} }), `tree: node "n": fifo node has content`},
		{"socket with file hash", mod(Socket, func(n *Node) { n.FileHash = id(1) }), `tree: node "n": socket node has a file hash`},
		{"symlink with subtree", mod(Symlink, func(n *Node) { n.Subtree = id(1) }), `tree: node "n": symlink node has a subtree`},
	} {
		t.Run(tc.desc, func(t *testing.T) {
			if got := errString(tc.node.Validate()); got != tc.err {
				t.Errorf("Validate() = %q, want %q", got, tc.err)
			}
			// Encode applies the same rules and names the node's index.
			tr := &Tree{Nodes: []Node{validNode("!first", FIFO), tc.node}}
			dst := []byte("keep")
			out, err := Encode(dst, tr)
			if tc.err == "" {
				if err != nil {
					t.Fatalf("Encode: %v", err)
				}
				return
			}
			want := strings.Replace(tc.err, "tree: node ", "tree: encode: node 1 ", 1)
			if strings.HasPrefix(tc.err, "tree: name") {
				want = strings.Replace(tc.err, "tree: ", "tree: encode: node 1: ", 1)
			}
			if got := errString(err); got != want {
				t.Errorf("Encode error = %q, want %q", got, want)
			}
			if string(out) != "keep" {
				t.Errorf("Encode returned %q, want dst unchanged", out)
			}
		})
	}
}

func manyXattrs(n int) []Xattr {
	xs := make([]Xattr, n)
	for i := range xs {
		xs[i] = Xattr{Name: "user." + hex.EncodeToString([]byte{byte(i >> 8), byte(i)}), Value: []byte{byte(i)}}
	}
	return xs
}

func TestEncodeOrder(t *testing.T) {
	for _, tc := range []struct {
		names []string
		err   string
	}{
		{[]string{"A", "B", "a", "b", "\xff"}, ""},
		{[]string{"a", "aa", "ab", "b"}, ""},
		{[]string{"b", "a"}, `tree: encode: node 1: name "a" sorts before the previous "b"`},
		{[]string{"a", "b", "b"}, `tree: encode: node 2: duplicate name "b"`},
		{[]string{"a", "B"}, `tree: encode: node 1: name "B" sorts before the previous "a"`},
		{[]string{"ab", "a"}, `tree: encode: node 1: name "a" sorts before the previous "ab"`},
	} {
		tr := &Tree{}
		for _, name := range tc.names {
			tr.Nodes = append(tr.Nodes, validNode(name, FIFO))
		}
		_, err := Encode(nil, tr)
		if got := errString(err); got != tc.err {
			t.Errorf("Encode(%q) error = %q, want %q", tc.names, got, tc.err)
		}
	}
	if _, err := Encode(nil, nil); errString(err) != "tree: encode: nil tree" {
		t.Errorf("Encode(nil) error = %v", err)
	}
}

func TestEncodeTooLarge(t *testing.T) {
	// 1100 files of 64 KiB chunks at 33 bytes a chunk: over 64 MiB.
	chunks := make([]Chunk, 2048)
	for i := range chunks {
		chunks[i] = Chunk{ID: id(1), Size: 1}
	}
	tr := &Tree{Nodes: make([]Node, 1100)}
	for i := range tr.Nodes {
		tr.Nodes[i] = Node{Name: hex.EncodeToString([]byte{byte(i >> 8), byte(i)}), Type: File, Size: 2048, Content: chunks}
	}
	out, err := Encode(nil, tr)
	want := "tree: encode: encoding exceeds the maximum blob size of 67108864 bytes at node 992"
	if errString(err) != want || out != nil {
		t.Errorf("Encode = %d bytes, %v; want nil, %q", len(out), err, want)
	}
}

func TestDecodeErrorFormat(t *testing.T) {
	e := &DecodeError{Offset: 120, Node: 3, Reason: `name ".." is not allowed`}
	if got, want := e.Error(), `tree: node 3 at offset 120: name ".." is not allowed`; got != want {
		t.Errorf("Error() = %q, want %q", got, want)
	}
	e = &DecodeError{Offset: 7, Node: -1, Reason: "x"}
	if got, want := e.Error(), "tree: at offset 7: x"; got != want {
		t.Errorf("Error() = %q, want %q", got, want)
	}
	if !errors.Is(e, blob.ErrCorrupt) || errors.Is(e, ErrVersion) || errors.Is(e, blob.ErrNotFound) {
		t.Error("a DecodeError must be blob.ErrCorrupt and nothing else")
	}
}
