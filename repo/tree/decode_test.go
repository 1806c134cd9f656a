package tree

import (
	"bytes"
	"encoding/binary"
	"errors"
	"fmt"
	"runtime"
	"slices"
	"strings"
	"testing"

	"github.com/cairnbackup/cairn/repo/blob"
)

// raw encodes nodes without checking them, to build invalid input.
func raw(nodes ...Node) []byte {
	b := []byte{version1}
	b = binary.AppendUvarint(b, uint64(len(nodes)))
	for i := range nodes {
		b = nodes[i].append(b)
	}
	return b
}

// cat joins byte strings; uv and str encode a uvarint and a string.
func cat(parts ...[]byte) []byte { return bytes.Join(parts, nil) }
func uv(x uint64) []byte         { return binary.AppendUvarint(nil, x) }
func str(s string) []byte        { return appendString(nil, s) }

func fifo(name string) Node { return Node{Name: name, Type: FIFO} }

// zeros is n zero bytes: n one-byte fields holding 0 or "".
func zeros(n int) []byte { return make([]byte, n) }

// smallTree is a dir "d" and a file "f" of two chunks, both with mode
// 0644 (two varint bytes); its layout, for the truncation cases:
//
//	0        version
//	1        node count
//	2..4     "d" name
//	4        type
//	5..7     mode
//	7..22    uid to xattr count
//	22..54   subtree
//	54..56   "f" name
//	56       type
//	57..59   mode
//	59..74   uid to xattr count (size at 66)
//	74..106  file hash
//	106      chunk count
//	107..139 chunk 0 id, 139 its size
//	140..172 chunk 1 id, 172 its size
//	173      end
func smallTree() []byte {
	return raw(validNode("d", Dir), validNode("f", File))
}

func TestSmallTreeLayout(t *testing.T) {
	if n := len(smallTree()); n != 173 {
		t.Fatalf("small tree is %d bytes, want 173", n)
	}
	if _, err := Decode(smallTree()); err != nil {
		t.Fatal(err)
	}
}

func TestDecodeInvalid(t *testing.T) {
	small := smallTree()
	nonMinimalMode := cat([]byte{1, 1}, str("a"), []byte{byte(FIFO), 0x80, 0x00}, zeros(15))
	for _, tc := range []struct {
		desc string
		data []byte
		err  string
	}{
		// Names.
		{"empty name", append(raw(fifo("")), 0), `tree: node 0 at offset 2: name is empty`},
		{"dot", raw(fifo(".")), `tree: node 0 at offset 2: name "." is not allowed`},
		{"dotdot", raw(fifo("..")), `tree: node 0 at offset 2: name ".." is not allowed`},
		{"slash inside", raw(fifo("a/b")), `tree: node 0 at offset 2: name "a/b" contains '/'`},
		{"absolute", raw(fifo("/abs")), `tree: node 0 at offset 2: name "/abs" contains '/'`},
		{"parent path", raw(fifo("../x")), `tree: node 0 at offset 2: name "../x" contains '/'`},
		{"lone slash", raw(fifo("/")), `tree: node 0 at offset 2: name "/" contains '/'`},
		{"NUL", raw(fifo("a\x00b")), `tree: node 0 at offset 2: name "a\x00b" contains a NUL byte`},
		{"long name", raw(fifo(strings.Repeat("n", 1025))), `tree: node 0 at offset 2: name of 1025 bytes exceeds 1024`},
		{"dotdot later", raw(fifo("a"), fifo("..")), `tree: node 1 at offset 21: name ".." is not allowed`},
		{"unsorted", raw(fifo("b"), fifo("a")), `tree: node 1 at offset 21: name "a" sorts before the previous "b"`},
		{"unsorted by byte", raw(fifo("a"), fifo("B")), `tree: node 1 at offset 21: name "B" sorts before the previous "a"`},
		{"duplicate", raw(fifo("a"), fifo("b"), fifo("b")), `tree: node 2 at offset 40: duplicate name "b"`},

		// Fixed fields.
		{"type 0", raw(Node{Name: "a", Type: 0}), `tree: node 0 at offset 4: unknown node type 0`},
		{"type 8", raw(Node{Name: "a", Type: 8}), `tree: node 0 at offset 4: unknown node type 8`},
		{"type 255", raw(Node{Name: "a", Type: 255}), `tree: node 0 at offset 4: unknown node type 255`},
		{"bad mode", raw(Node{Name: "a", Type: FIFO, Mode: 0o10000}), `tree: node 0 at offset 5: mode 010000 has bits outside 07777`},
		{"huge mode", cat([]byte{1, 1}, str("a"), []byte{byte(FIFO)}, uv(1<<63), zeros(15)), `tree: node 0 at offset 5: mode 01000000000000000000000 has bits outside 07777`},
		{"uid over 32 bits", cat([]byte{1, 1}, str("a"), []byte{byte(FIFO), 0}, uv(1<<32), zeros(14)), `tree: node 0 at offset 6: uid 4294967296 does not fit in 32 bits`},
		{"gid over 32 bits", cat([]byte{1, 1}, str("a"), []byte{byte(FIFO), 0, 0}, uv(1<<40), zeros(13)), `tree: node 0 at offset 7: gid 1099511627776 does not fit in 32 bits`},
		{"long user", raw(Node{Name: "a", Type: FIFO, User: strings.Repeat("u", 257)}), `tree: node 0 at offset 8: user name of 257 bytes exceeds 256`},
		{"long group", raw(Node{Name: "a", Type: FIFO, Group: strings.Repeat("g", 257)}), `tree: node 0 at offset 9: group name of 257 bytes exceeds 256`},

		// Link targets.
		{"symlink without target", raw(Node{Name: "a", Type: Symlink}), `tree: node 0 at offset 19: symlink has an empty link target`},
		{"file with target", raw(Node{Name: "a", Type: File, LinkTarget: "x"}), `tree: node 0 at offset 19: file node has a link target`},
		{"long target", raw(Node{Name: "a", Type: Symlink, LinkTarget: strings.Repeat("t", 4097)}), `tree: node 0 at offset 19: link target of 4097 bytes exceeds 4096`},

		// Xattrs (the xattr count is at offset 20 for a node named "a").
		{"xattr unsorted", raw(Node{Name: "a", Type: FIFO, Xattrs: []Xattr{{Name: "b"}, {Name: "a"}}}), `tree: node 0 at offset 24: xattr name "a" sorts before the previous "b"`},
		{"xattr duplicate", raw(Node{Name: "a", Type: FIFO, Xattrs: []Xattr{{Name: "b"}, {Name: "b"}}}), `tree: node 0 at offset 24: duplicate xattr name "b"`},
		{"xattr empty name", append(raw(Node{Name: "a", Type: FIFO, Xattrs: []Xattr{{Name: ""}}}), 0), `tree: node 0 at offset 21: xattr 0 has an empty name`},
		{"xattr long name", raw(Node{Name: "a", Type: FIFO, Xattrs: []Xattr{{Name: strings.Repeat("x", 256)}}}), `tree: node 0 at offset 21: xattr 0 name of 256 bytes exceeds 255`},
		{"xattr long value", raw(Node{Name: "a", Type: FIFO, Xattrs: []Xattr{{Name: "x", Value: make([]byte, 65537)}}}), `tree: node 0 at offset 23: xattr "x" value of 65537 bytes exceeds 65536`},
		{"too many xattrs", cat([]byte{1, 1}, str("a"), []byte{byte(FIFO)}, zeros(15), uv(1025), zeros(3*1025)), `tree: node 0 at offset 20: 1025 xattrs exceed the limit of 1024`},

		// File contents.
		{"size > sum", raw(Node{Name: "a", Type: File, Size: 10, Content: []Chunk{{ID: id(1), Size: 4}, {ID: id(2), Size: 5}}}), `tree: node 0 at offset 53: chunk sizes add up to 9, not the file size 10`},
		{"size < sum", raw(Node{Name: "a", Type: File, Size: 8, Content: []Chunk{{ID: id(1), Size: 4}, {ID: id(2), Size: 5}}}), `tree: node 0 at offset 87: chunk sizes up to chunk 1 exceed the file size 8`},
		{"size without chunks", raw(Node{Name: "a", Type: File, Size: 1}), `tree: node 0 at offset 53: chunk sizes add up to 0, not the file size 1`},
		{"chunk size 0", raw(Node{Name: "a", Type: File, Content: []Chunk{{ID: id(1)}}}), `tree: node 0 at offset 54: chunk 0 has size 0`},
		{"chunk sizes overflow", raw(Node{Name: "a", Type: File, Size: 1<<64 - 1, Content: []Chunk{{ID: id(1), Size: 1<<64 - 1}, {ID: id(2), Size: 1}}}), `tree: node 0 at offset 105: chunk sizes up to chunk 1 exceed the file size 18446744073709551615`},

		// Directories.
		{"dir without subtree", raw(Node{Name: "a", Type: Dir}), `tree: node 0 at offset 21: dir node has a zero subtree id`},

		// Truncation at several offsets of smallTree.
		{"empty input", nil, `tree: at offset 0: unexpected end of input in version`},
		{"cut in node count", small[:1], `tree: at offset 1: unexpected end of input in node count`},
		{"cut before name", small[:2], `tree: at offset 1: node count 2 exceeds what the remaining 0 bytes can hold`},
		{"cut in name", small[:3], `tree: at offset 1: node count 2 exceeds what the remaining 1 bytes can hold`},
		{"cut in mode", small[:6], `tree: at offset 1: node count 2 exceeds what the remaining 4 bytes can hold`},
		{"cut in subtree", small[:40], `tree: node 0 at offset 22: unexpected end of input in subtree id`},
		{"cut before second name", small[:54], `tree: node 1 at offset 54: unexpected end of input in name length`},
		{"cut in second name", small[:55], `tree: node 1 at offset 54: name length 1 exceeds the remaining 0 bytes`},
		{"cut in second mode", small[:58], `tree: node 1 at offset 57: unexpected end of input in mode`},
		{"cut before size", small[:66], `tree: node 1 at offset 66: unexpected end of input in size`},
		{"cut in file hash", small[:100], `tree: node 1 at offset 74: unexpected end of input in file hash`},
		{"cut before chunk count", small[:106], `tree: node 1 at offset 106: unexpected end of input in chunk count`},
		{"cut in chunk id", small[:120], `tree: node 1 at offset 106: chunk count 2 exceeds what the remaining 13 bytes can hold`},
		{"cut before last chunk size", small[:172], `tree: node 1 at offset 106: chunk count 2 exceeds what the remaining 65 bytes can hold`},
		{"cut in last chunk size", raw(Node{Name: "a", Type: File, Size: 600, Content: []Chunk{{ID: id(1), Size: 300}, {ID: id(2), Size: 300}}})[:122], `tree: node 0 at offset 121: unexpected end of input in chunk size`},
		{"cut before last byte", small[:172], `tree: node 1 at offset 106: chunk count 2 exceeds what the remaining 65 bytes can hold`},

		// After the last node.
		{"trailing byte", append(raw(fifo("a")), 0), `tree: at offset 21: trailing data after the last node (1 bytes)`},
		{"trailing node", append(raw(fifo("a")), raw(fifo("b"))[2:]...), `tree: at offset 21: trailing data after the last node (19 bytes)`},

		// Counts larger than the input could hold.
		{"huge node count", cat([]byte{1}, uv(1<<62)), `tree: at offset 1: node count 4611686018427387904 exceeds what the remaining 0 bytes can hold`},
		{"max node count", cat([]byte{1}, uv(1<<64-1), zeros(100)), `tree: at offset 1: node count 18446744073709551615 exceeds what the remaining 100 bytes can hold`},
		{"node count one too many", cat(raw(fifo("a"), fifo("b"))[:1], uv(3), raw(fifo("a"), fifo("b"))[2:]), `tree: at offset 1: node count 3 exceeds what the remaining 38 bytes can hold`},
		{"huge chunk count", cat([]byte{1, 1}, str("a"), []byte{byte(File)}, zeros(16), zeros(32), uv(1<<40), zeros(64)), `tree: node 0 at offset 53: chunk count 1099511627776 exceeds what the remaining 64 bytes can hold`},
		{"huge xattr count", cat([]byte{1, 1}, str("a"), []byte{byte(FIFO)}, zeros(15), uv(1<<50)), `tree: node 0 at offset 20: xattr count 1125899906842624 exceeds what the remaining 0 bytes can hold`},
		{"huge name length", cat([]byte{1, 1}, uv(1<<60), zeros(30)), `tree: node 0 at offset 2: name length 1152921504606846976 exceeds the remaining 30 bytes`},
		{"huge value length", cat([]byte{1, 1}, str("a"), []byte{byte(FIFO)}, zeros(15), uv(1), str("x"), uv(1<<33)), `tree: node 0 at offset 23: xattr value length 8589934592 exceeds the remaining 0 bytes`},

		// Varints.
		{"non-minimal node count", []byte{1, 0x80, 0x00}, `tree: at offset 1: node count: non-minimal varint encoding`},
		{"non-minimal node count 1", []byte{1, 0x81, 0x80, 0x00}, `tree: at offset 1: node count: non-minimal varint encoding`},
		{"non-minimal mode", nonMinimalMode, `tree: node 0 at offset 5: mode: non-minimal varint encoding`},
		{"non-minimal name length", cat([]byte{1, 1, 0x81, 0x00, 'a', byte(FIFO)}, zeros(16)), `tree: node 0 at offset 2: name length: non-minimal varint encoding`},
		{"non-minimal mtime", cat([]byte{1, 1}, str("a"), []byte{byte(FIFO)}, zeros(5), []byte{0x82, 0x80, 0x00}, zeros(10)), `tree: node 0 at offset 10: mtime: non-minimal varint encoding`},
		{"non-minimal 10-byte varint", cat([]byte{1}, bytes.Repeat([]byte{0xff}, 9), []byte{0x00}), `tree: at offset 1: node count: non-minimal varint encoding`},
		{"varint overflow", cat([]byte{1}, bytes.Repeat([]byte{0xff}, 11)), `tree: at offset 1: node count: varint overflows 64 bits`},
		{"varint overflow in 10th byte", cat([]byte{1}, bytes.Repeat([]byte{0xff}, 9), []byte{0x02}), `tree: at offset 1: node count: varint overflows 64 bits`},

		// Size.
		{"too large", make([]byte, blob.MaxSize+1), `tree: at offset 0: input of 67108865 bytes exceeds the maximum blob size 67108864`},
	} {
		t.Run(tc.desc, func(t *testing.T) {
			got, err := Decode(tc.data)
			if got != nil {
				t.Errorf("Decode returned a tree with an error")
			}
			if errString(err) != tc.err {
				t.Fatalf("Decode error\n got %q\nwant %q", errString(err), tc.err)
			}
			assertCorrupt(t, err)
			if errors.Is(err, ErrVersion) {
				t.Error("errors.Is(err, ErrVersion) for a known version")
			}
		})
	}
}

// assertCorrupt checks that err is a *DecodeError wrapping blob.ErrCorrupt.
func assertCorrupt(t testing.TB, err error) {
	t.Helper()
	if !errors.Is(err, blob.ErrCorrupt) {
		t.Errorf("errors.Is(%v, blob.ErrCorrupt) = false", err)
	}
	var de *DecodeError
	if !errors.As(err, &de) {
		t.Errorf("%v is not a *DecodeError", err)
	}
}

func TestDecodeUnknownVersion(t *testing.T) {
	for _, tc := range []struct {
		data []byte
		err  string
	}{
		{[]byte{0}, "tree: at offset 0: unknown format version 0, want 1"},
		{[]byte{2, 0}, "tree: at offset 0: unknown format version 2, want 1"},
		{[]byte{0xff, 0, 0, 0}, "tree: at offset 0: unknown format version 255, want 1"},
	} {
		got, err := Decode(tc.data)
		if got != nil || errString(err) != tc.err {
			t.Errorf("Decode(%x) = %v, %q; want nil, %q", tc.data, got, errString(err), tc.err)
		}
		if !errors.Is(err, ErrVersion) {
			t.Errorf("errors.Is(%v, ErrVersion) = false", err)
		}
		assertCorrupt(t, err)
	}
}

// TestDecodeEveryPrefix cuts the golden encoding at every length: each
// prefix must fail cleanly, never panic, and report blob.ErrCorrupt.
func TestDecodeEveryPrefix(t *testing.T) {
	data := mustEncode(t, goldenTree())
	for n := range len(data) {
		tr, err := Decode(data[:n])
		if err == nil || tr != nil {
			t.Fatalf("Decode of the first %d bytes succeeded", n)
		}
		assertCorrupt(t, err)
	}
}

// TestDecodeEveryByteFlip changes each byte of a small tree in turn: the
// result either fails with ErrCorrupt or is a different valid tree that
// encodes back to the same bytes.
func TestDecodeEveryByteFlip(t *testing.T) {
	orig := smallTree()
	for i := range orig {
		for _, x := range []byte{0x01, 0x80, 0xff} {
			data := bytes.Clone(orig)
			data[i] ^= x
			tr, err := Decode(data)
			if err != nil {
				assertCorrupt(t, err)
				continue
			}
			if enc := mustEncode(t, tr); !bytes.Equal(enc, data) {
				t.Fatalf("flip %#x at %d: Encode(Decode(x)) != x", x, i)
			}
		}
	}
}

// allocated returns the bytes the heap allocated while f ran.
func allocated(f func()) uint64 {
	var before, after runtime.MemStats
	runtime.GC()
	runtime.ReadMemStats(&before)
	f()
	runtime.ReadMemStats(&after)
	return after.TotalAlloc - before.TotalAlloc
}

// TestDecodeHostileCountsAllocateLittle: a few bytes claiming billions of
// items must be refused before anything is allocated for them.
func TestDecodeHostileCountsAllocateLittle(t *testing.T) {
	for _, data := range [][]byte{
		cat([]byte{1}, uv(1<<62)),
		cat([]byte{1}, uv(1<<20), zeros(1<<10)),
		cat([]byte{1, 1}, str("a"), []byte{byte(File)}, zeros(16), zeros(32), uv(1<<40)),
		cat([]byte{1, 1}, str("a"), []byte{byte(FIFO)}, zeros(15), uv(1000)),
		cat([]byte{1, 1}, uv(1<<40)),
	} {
		if _, err := Decode(data); err == nil {
			t.Fatal("hostile input decoded")
		}
		// Average over several runs, after a first one that warms up fmt.
		const runs = 10
		n := allocated(func() {
			for range runs {
				_, _ = Decode(data)
			}
		}) / runs
		if n > 2048 {
			t.Errorf("Decode(%x...) allocated %d bytes", data[:min(len(data), 12)], n)
		}
	}
}

// TestDecodeMemoryBound decodes dense trees, the worst case for the ratio
// of memory to input, and holds Decode to the bound in the package doc.
func TestDecodeMemoryBound(t *testing.T) {
	// 60 000 minimal nodes with the shortest names that sort.
	var dense Tree
	for i := range 60000 {
		var name string
		if i < 250 {
			name = string([]byte{byte(i + 1)})
		} else {
			name = string([]byte{byte(i/250 + 1), byte(i%250 + 1)})
		}
		if CheckName(name) != nil {
			continue
		}
		dense.Nodes = append(dense.Nodes, fifo(name))
	}
	slices.SortFunc(dense.Nodes, func(a, b Node) int { return strings.Compare(a.Name, b.Name) })
	// 200 nodes of 1024 xattrs with empty values each.
	var xattrs Tree
	for i := range 200 {
		n := fifo(fmt.Sprintf("%03d", i))
		n.Xattrs = make([]Xattr, 1024)
		for j := range n.Xattrs {
			n.Xattrs[j] = Xattr{Name: string([]byte{byte(j/250 + 1), byte(j%250 + 1)}), Value: []byte{}}
		}
		xattrs.Nodes = append(xattrs.Nodes, n)
	}
	for name, tr := range map[string]*Tree{"dense": &dense, "xattrs": &xattrs, "golden": goldenTree()} {
		data := mustEncode(t, tr)
		var got *Tree
		n := allocated(func() {
			var err error
			if got, err = Decode(data); err != nil {
				t.Fatal(err)
			}
		})
		ratio := float64(n) / float64(len(data))
		t.Logf("%s: %d input bytes, %d allocated, %.1f×", name, len(data), n, ratio)
		if ratio > 15 {
			t.Errorf("%s: Decode allocated %.1f times its input, more than the documented 15", name, ratio)
		}
		runtime.KeepAlive(got)
	}
}
