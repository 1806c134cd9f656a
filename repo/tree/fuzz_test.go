package tree

import (
	"bytes"
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"strconv"
	"strings"
	"testing"

	"github.com/cairnbackup/cairn/repo/blob"
)

var seedDir = filepath.Join("testdata", "fuzz", "FuzzDecode")

// fuzzSeeds are the seed corpus of FuzzDecode, written to seedDir in the
// "go test fuzz v1" format by -update when missing. Valid trees give the
// fuzzer the structure to mutate; the invalid ones start it near the
// checks.
func fuzzSeeds(t *testing.T) map[string][]byte {
	golden, err := os.ReadFile(goldenPath)
	if err != nil {
		t.Fatal(err)
	}
	node := func(n Node) []byte { return mustEncode(t, &Tree{Nodes: []Node{n}}) }
	return map[string][]byte{
		"golden":     golden,
		"empty":      {1, 0},
		"small":      smallTree(),
		"file":       node(validNode("f", File)),
		"dir":        node(validNode("d", Dir)),
		"symlink":    node(validNode("l", Symlink)),
		"fifo":       node(validNode("p", FIFO)),
		"xattrs":     node(Node{Name: "x", Type: Socket, Xattrs: []Xattr{{Name: "a", Value: []byte("1")}, {Name: "b"}}}),
		"hole":       node(Node{Name: "h", Type: File, Size: 1 << 30, Content: []Chunk{{Size: 1 << 30}}}),
		"dotdot":     raw(fifo("..")),
		"unsorted":   raw(fifo("b"), fifo("a")),
		"nonminimal": {1, 0x80, 0x00},
		"trailing":   append(raw(fifo("a")), 0),
		"version2":   {2, 0},
	}
}

func TestFuzzSeeds(t *testing.T) {
	for name, data := range fuzzSeeds(t) {
		path := filepath.Join(seedDir, name)
		if *update {
			writeIfMissing(t, path, []byte(fmt.Sprintf("go test fuzz v1\n[]byte(%q)\n", data)))
		}
		got, err := readSeed(path)
		if err != nil {
			t.Fatal(err)
		}
		// Only the golden seed is pinned; the others may drift with the
		// helpers that built them, which is harmless for a seed.
		if name == "golden" && !bytes.Equal(got, data) {
			t.Errorf("%s holds %x, want the bytes of %s", path, got, goldenPath)
		}
	}
}

// readSeed parses a corpus file holding a single []byte value.
func readSeed(path string) ([]byte, error) {
	b, err := os.ReadFile(path)
	if err != nil {
		return nil, err
	}
	header, value, ok := strings.Cut(strings.TrimSpace(string(b)), "\n")
	if !ok || header != "go test fuzz v1" || !strings.HasPrefix(value, "[]byte(") || !strings.HasSuffix(value, ")") {
		return nil, fmt.Errorf("%s: not a go test fuzz v1 file of one []byte", path)
	}
	s, err := strconv.Unquote(value[len("[]byte(") : len(value)-1])
	if err != nil {
		return nil, fmt.Errorf("%s: %w", path, err)
	}
	return []byte(s), nil
}

// FuzzDecode checks that Decode never panics, that every failure is a
// *DecodeError wrapping blob.ErrCorrupt, and that every success is a
// valid tree whose encoding is exactly the input: one tree, one encoding.
func FuzzDecode(f *testing.F) {
	f.Add(mustEncode(f, goldenTree()))
	f.Fuzz(func(t *testing.T, data []byte) {
		tr, err := Decode(data)
		if err != nil {
			if tr != nil {
				t.Fatal("Decode returned a tree and an error")
			}
			var de *DecodeError
			if !errors.As(err, &de) || !errors.Is(err, blob.ErrCorrupt) {
				t.Fatalf("Decode error %v is not a *DecodeError wrapping blob.ErrCorrupt", err)
			}
			if de.Offset < 0 || de.Offset > len(data) || de.Node < -1 {
				t.Fatalf("Decode error %v has offset %d, node %d for %d bytes", err, de.Offset, de.Node, len(data))
			}
			return
		}
		for i := range tr.Nodes {
			if err := tr.Nodes[i].Validate(); err != nil {
				t.Fatalf("Decode accepted node %d: %v", i, err)
			}
		}
		enc, err := Encode(nil, tr)
		if err != nil {
			t.Fatalf("Encode(Decode(x)): %v", err)
		}
		if !bytes.Equal(enc, data) {
			t.Fatalf("Encode(Decode(x)) != x\n  x = %x\nenc = %x", data, enc)
		}
	})
}
