package tree

import (
	"fmt"
	"testing"

	"github.com/cairnbackup/cairn/repo/blob"
)

// benchTree is a 10 000-node directory shaped like a real one: mostly
// files of one to four chunks, some directories and symlinks, a few
// xattrs, and owners that repeat.
func benchTree(tb testing.TB) *Tree {
	tr := &Tree{Nodes: make([]Node, 10000)}
	for i := range tr.Nodes {
		n := Node{
			Name: fmt.Sprintf("file-%05d.dat", i), Type: File, Mode: 0o644,
			UID: 1000, GID: 1000, User: "alice", Group: "alice",
			MTime: 1700000000000000000 + int64(i)*1e9, ATime: 1700000000000000000, CTime: 1700000000000000000 + int64(i),
			Inode: 1000000 + uint64(i), DeviceID: 0xfd01, Links: 1,
		}
		switch {
		case i%10 == 0:
			n.Type, n.Mode, n.Size = Dir, 0o755, 4096
			n.Subtree = blob.Hash([]byte(n.Name))
		case i%10 == 1:
			n.Type, n.Mode = Symlink, 0o777
			n.LinkTarget = "../shared/" + n.Name
			n.Size = uint64(len(n.LinkTarget))
		default:
			n.FileHash = blob.Hash([]byte(n.Name))
			for j := range i%4 + 1 {
				c := Chunk{ID: blob.Hash([]byte(fmt.Sprint(i, j))), Size: 1<<20 + uint64(j)}
				n.Content = append(n.Content, c)
				n.Size += c.Size
			}
		}
		if i%50 == 0 {
			n.Xattrs = []Xattr{{Name: "user.comment", Value: []byte("kept")}}
		}
		tr.Nodes[i] = n
	}
	if _, err := Encode(nil, tr); err != nil {
		tb.Fatal(err)
	}
	return tr
}

func BenchmarkEncode(b *testing.B) {
	tr := benchTree(b)
	buf := mustEncode(b, tr)
	b.SetBytes(int64(len(buf)))
	b.ReportAllocs()
	for b.Loop() {
		var err error
		if buf, err = Encode(buf[:0], tr); err != nil {
			b.Fatal(err)
		}
	}
}

func BenchmarkDecode(b *testing.B) {
	data := mustEncode(b, benchTree(b))
	b.SetBytes(int64(len(data)))
	b.ReportAllocs()
	for b.Loop() {
		if _, err := Decode(data); err != nil {
			b.Fatal(err)
		}
	}
}
