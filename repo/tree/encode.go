package tree

import (
	"encoding/binary"
	"errors"
	"fmt"
	"math/bits"
	"slices"

	"github.com/cairnbackup/cairn/repo/blob"
)

// Encode appends the version 1 encoding of t to dst and returns the
// extended slice. It first checks every node with the rules of
// [Node.Validate] and checks that the names are strictly increasing in
// byte order; it refuses a tree that breaks any rule, or whose encoding
// would exceed [blob.MaxSize], returning dst unchanged and an error naming
// the first node at fault. It grows dst at most once.
//
// The encoding is canonical: equal trees give equal bytes, and
// [Decode] followed by Encode gives back the input exactly. A nil Xattrs,
// Content or Value encodes like an empty one.
func Encode(dst []byte, t *Tree) ([]byte, error) {
	if t == nil {
		return dst, errors.New("tree: encode: nil tree")
	}
	size := 1 + uvarintLen(uint64(len(t.Nodes)))
	for i := range t.Nodes {
		n := &t.Nodes[i]
		if r := nameReason(n.Name); r != "" {
			return dst, fmt.Errorf("tree: encode: node %d: %s", i, r)
		}
		if i > 0 {
			if r := orderReason("name", t.Nodes[i-1].Name, n.Name); r != "" {
				return dst, fmt.Errorf("tree: encode: node %d: %s", i, r)
			}
		}
		if r := n.fieldsReason(); r != "" {
			return dst, fmt.Errorf("tree: encode: node %d %q: %s", i, n.Name, r)
		}
		size += n.encodedLen()
		if size > blob.MaxSize {
			return dst, fmt.Errorf("tree: encode: encoding exceeds the maximum blob size of %d bytes at node %d", blob.MaxSize, i)
		}
	}
	dst = slices.Grow(dst, size)
	dst = append(dst, version1)
	dst = binary.AppendUvarint(dst, uint64(len(t.Nodes)))
	for i := range t.Nodes {
		dst = t.Nodes[i].append(dst)
	}
	return dst, nil
}

// append appends the encoding of n without checking it.
func (n *Node) append(b []byte) []byte {
	b = appendString(b, n.Name)
	b = append(b, byte(n.Type))
	b = binary.AppendUvarint(b, uint64(n.Mode))
	b = binary.AppendUvarint(b, uint64(n.UID))
	b = binary.AppendUvarint(b, uint64(n.GID))
	b = appendString(b, n.User)
	b = appendString(b, n.Group)
	b = binary.AppendVarint(b, n.MTime)
	b = binary.AppendVarint(b, n.ATime)
	b = binary.AppendVarint(b, n.CTime)
	b = binary.AppendUvarint(b, n.Size)
	b = binary.AppendUvarint(b, n.Inode)
	b = binary.AppendUvarint(b, n.DeviceID)
	b = binary.AppendUvarint(b, n.Links)
	b = binary.AppendUvarint(b, n.HardlinkID)
	b = binary.AppendUvarint(b, n.Rdev)
	b = appendString(b, n.LinkTarget)
	b = binary.AppendUvarint(b, uint64(len(n.Xattrs)))
	for _, x := range n.Xattrs {
		b = appendString(b, x.Name)
		b = binary.AppendUvarint(b, uint64(len(x.Value)))
		b = append(b, x.Value...)
	}
	switch n.Type {
	case File:
		b = append(b, n.FileHash[:]...)
		b = binary.AppendUvarint(b, uint64(len(n.Content)))
		for _, c := range n.Content {
			b = append(b, c.ID[:]...)
			b = binary.AppendUvarint(b, c.Size)
		}
	case Dir:
		b = append(b, n.Subtree[:]...)
	}
	return b
}

// encodedLen returns len(n.append(nil)).
func (n *Node) encodedLen() int {
	l := stringLen(len(n.Name)) + 1 +
		uvarintLen(uint64(n.Mode)) + uvarintLen(uint64(n.UID)) + uvarintLen(uint64(n.GID)) +
		stringLen(len(n.User)) + stringLen(len(n.Group)) +
		varintLen(n.MTime) + varintLen(n.ATime) + varintLen(n.CTime) +
		uvarintLen(n.Size) + uvarintLen(n.Inode) + uvarintLen(n.DeviceID) +
		uvarintLen(n.Links) + uvarintLen(n.HardlinkID) + uvarintLen(n.Rdev) +
		stringLen(len(n.LinkTarget)) +
		uvarintLen(uint64(len(n.Xattrs)))
	for _, x := range n.Xattrs {
		l += stringLen(len(x.Name)) + stringLen(len(x.Value))
	}
	switch n.Type {
	case File:
		l += blob.IDSize + uvarintLen(uint64(len(n.Content)))
		for _, c := range n.Content {
			l += blob.IDSize + uvarintLen(c.Size)
		}
	case Dir:
		l += blob.IDSize
	}
	return l
}

func appendString(b []byte, s string) []byte {
	b = binary.AppendUvarint(b, uint64(len(s)))
	return append(b, s...)
}

// uvarintLen is the length of the minimal uvarint encoding of x.
func uvarintLen(x uint64) int {
	return (bits.Len64(x|1) + 6) / 7
}

// varintLen is the length of the minimal (zig-zag) varint encoding of x.
func varintLen(x int64) int {
	return uvarintLen(uint64(x<<1) ^ uint64(x>>63))
}

// stringLen is the encoded length of a string or byte slice of n bytes.
func stringLen(n int) int {
	return uvarintLen(uint64(n)) + n
}
