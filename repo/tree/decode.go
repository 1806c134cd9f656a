package tree

import (
	"encoding/binary"
	"fmt"
	"math"

	"github.com/cairnbackup/cairn/repo/blob"
)

// Smallest encodings, used to check counts read from the input against
// the bytes that remain before allocating anything for them.
const (
	// minNodeLen: a 1-byte name (2 bytes) and 17 one-byte fields from
	// type to xattr count, for a type with no file or dir part.
	minNodeLen = 2 + 17
	// minChunkLen: a 32-byte ID and a one-byte size.
	minChunkLen = blob.IDSize + 1
	// minXattrLen: a 1-byte name (2 bytes) and an empty value (1 byte).
	minXattrLen = 3
)

// Decode parses a tree blob. It accepts exactly the encodings [Encode]
// produces: the version byte must be 1, every varint minimal, every rule
// of [Node.Validate] met, names strictly increasing, and nothing may
// follow the last node. Any other input gives a *[DecodeError] (which
// wraps [blob.ErrCorrupt]) and a nil tree; Decode never panics.
//
// The returned tree shares no memory with data. A node without xattrs or
// chunks has a nil Xattrs or Content, and an empty tree a nil Nodes.
func Decode(data []byte) (*Tree, error) {
	d := decoder{data: data, node: -1}
	if len(data) > blob.MaxSize {
		return nil, d.fail(0, fmt.Sprintf("input of %d bytes exceeds the maximum blob size %d", len(data), blob.MaxSize))
	}
	if len(data) == 0 {
		return nil, d.fail(0, "unexpected end of input in version")
	}
	if data[0] != version1 {
		return nil, &DecodeError{
			Offset: 0,
			Node:   -1,
			Reason: fmt.Sprintf("unknown format version %d, want %d", data[0], version1),
			mark:   ErrVersion,
		}
	}
	d.off = 1
	count, err := d.count("node count", minNodeLen)
	if err != nil {
		return nil, err
	}
	t := &Tree{}
	if count > 0 {
		t.Nodes = make([]Node, count)
	}
	for i := range t.Nodes {
		d.node = i
		var prev *Node
		if i > 0 {
			prev = &t.Nodes[i-1]
		}
		if err := d.decodeNode(&t.Nodes[i], prev); err != nil {
			return nil, err
		}
	}
	d.node = -1
	if d.off != len(data) {
		return nil, d.fail(d.off, fmt.Sprintf("trailing data after the last node (%d bytes)", len(data)-d.off))
	}
	return t, nil
}

// decoder reads data from off onwards. Every read checks the bytes left
// and moves off past what it read only on success.
type decoder struct {
	data []byte
	off  int
	node int // index of the node being decoded, -1 outside nodes
}

func (d *decoder) fail(off int, reason string) error {
	return &DecodeError{Offset: off, Node: d.node, Reason: reason}
}

func (d *decoder) left() int { return len(d.data) - d.off }

func (d *decoder) truncated(field string) error {
	return d.fail(d.off, "unexpected end of input in "+field)
}

func (d *decoder) byte(field string) (byte, error) {
	if d.left() < 1 {
		return 0, d.truncated(field)
	}
	b := d.data[d.off]
	d.off++
	return b, nil
}

// uvarint reads a minimally encoded unsigned varint.
func (d *decoder) uvarint(field string) (uint64, error) {
	return d.uvarintOf(field, "")
}

// uvarintOf is uvarint for the field named field+suffix; the name is only
// built when there is an error to report.
func (d *decoder) uvarintOf(field, suffix string) (uint64, error) {
	if d.off < len(d.data) && d.data[d.off] < 0x80 {
		v := d.data[d.off]
		d.off++
		return uint64(v), nil
	}
	v, n := binary.Uvarint(d.data[d.off:])
	switch {
	case n == 0:
		return 0, d.truncated(field + suffix)
	case n < 0:
		return 0, d.fail(d.off, field+suffix+": varint overflows 64 bits")
	case d.data[d.off+n-1] == 0:
		// A last byte of zero adds nothing: a shorter encoding exists.
		// (n > 1 here: a single byte below 0x80 took the fast path.)
		return 0, d.fail(d.off, field+suffix+": non-minimal varint encoding")
	}
	d.off += n
	return v, nil
}

// varint reads a minimally encoded zig-zag signed varint.
func (d *decoder) varint(field string) (int64, error) {
	u, err := d.uvarint(field)
	x := int64(u >> 1)
	if u&1 != 0 {
		x = ^x
	}
	return x, err
}

func (d *decoder) uint32(field string) (uint32, error) {
	at := d.off
	v, err := d.uvarint(field)
	if err != nil {
		return 0, err
	}
	if v > math.MaxUint32 {
		return 0, d.fail(at, fmt.Sprintf("%s %d does not fit in 32 bits", field, v))
	}
	return uint32(v), nil
}

// bytes reads a length-prefixed byte string. The result aliases the input.
func (d *decoder) bytes(field string) ([]byte, error) {
	at := d.off
	n, err := d.uvarintOf(field, " length")
	if err != nil {
		return nil, err
	}
	if n > uint64(d.left()) {
		return nil, d.fail(at, fmt.Sprintf("%s length %d exceeds the remaining %d bytes", field, n, d.left()))
	}
	b := d.data[d.off : d.off+int(n)]
	d.off += int(n)
	return b, nil
}

// string reads a length-prefixed string, reusing prev instead of
// allocating when the bytes are equal (users and groups repeat).
func (d *decoder) string(field, prev string) (string, error) {
	b, err := d.bytes(field)
	if err != nil {
		return "", err
	}
	if string(b) == prev {
		return prev, nil
	}
	return string(b), nil
}

func (d *decoder) id(field string) (blob.ID, error) {
	var id blob.ID
	if d.left() < blob.IDSize {
		return id, d.truncated(field)
	}
	copy(id[:], d.data[d.off:])
	d.off += blob.IDSize
	return id, nil
}

// count reads a count of items that each take at least min bytes and
// checks that the rest of the input can hold that many.
func (d *decoder) count(field string, min int) (int, error) {
	at := d.off
	n, err := d.uvarint(field)
	if err != nil {
		return 0, err
	}
	if n > uint64(d.left()/min) {
		return 0, d.fail(at, fmt.Sprintf("%s %d exceeds what the remaining %d bytes can hold", field, n, d.left()))
	}
	return int(n), nil
}

// decodeNode reads one node into n, checking each field as it goes. prev
// is the previous node of the tree, or nil for the first.
func (d *decoder) decodeNode(n *Node, prev *Node) error {
	at := d.off
	name, err := d.bytes("name")
	if err != nil {
		return err
	}
	n.Name = string(name)
	if r := nameReason(n.Name); r != "" {
		return d.fail(at, r)
	}
	var prevUser, prevGroup string
	if prev != nil {
		if r := orderReason("name", prev.Name, n.Name); r != "" {
			return d.fail(at, r)
		}
		prevUser, prevGroup = prev.User, prev.Group
	}

	at = d.off
	typ, err := d.byte("type")
	if err != nil {
		return err
	}
	n.Type = NodeType(typ)
	if r := typeReason(n.Type); r != "" {
		return d.fail(at, r)
	}

	at = d.off
	mode, err := d.uvarint("mode")
	if err != nil {
		return err
	}
	if r := modeReason(mode); r != "" {
		return d.fail(at, r)
	}
	n.Mode = uint32(mode)

	if n.UID, err = d.uint32("uid"); err != nil {
		return err
	}
	if n.GID, err = d.uint32("gid"); err != nil {
		return err
	}

	at = d.off
	if n.User, err = d.string("user", prevUser); err != nil {
		return err
	}
	if r := ownerReason("user", n.User); r != "" {
		return d.fail(at, r)
	}
	at = d.off
	if n.Group, err = d.string("group", prevGroup); err != nil {
		return err
	}
	if r := ownerReason("group", n.Group); r != "" {
		return d.fail(at, r)
	}

	for _, f := range []struct {
		p    *int64
		name string
	}{{&n.MTime, "mtime"}, {&n.ATime, "atime"}, {&n.CTime, "ctime"}} {
		if *f.p, err = d.varint(f.name); err != nil {
			return err
		}
	}
	for _, f := range []struct {
		p    *uint64
		name string
	}{
		{&n.Size, "size"}, {&n.Inode, "inode"}, {&n.DeviceID, "device id"},
		{&n.Links, "links"}, {&n.HardlinkID, "hardlink id"}, {&n.Rdev, "rdev"},
	} {
		if *f.p, err = d.uvarint(f.name); err != nil {
			return err
		}
	}

	at = d.off
	if n.LinkTarget, err = d.string("link target", ""); err != nil {
		return err
	}
	if r := linkTargetReason(n.Type, n.LinkTarget); r != "" {
		return d.fail(at, r)
	}

	if err := d.xattrs(n); err != nil {
		return err
	}

	switch n.Type {
	case File:
		if n.FileHash, err = d.id("file hash"); err != nil {
			return err
		}
		return d.content(n)
	case Dir:
		at = d.off
		if n.Subtree, err = d.id("subtree id"); err != nil {
			return err
		}
		if n.Subtree.IsZero() {
			return d.fail(at, "dir node has a zero subtree id")
		}
	}
	return nil
}

func (d *decoder) xattrs(n *Node) error {
	at := d.off
	count, err := d.count("xattr count", minXattrLen)
	if err != nil {
		return err
	}
	if r := xattrCountReason(uint64(count)); r != "" {
		return d.fail(at, r)
	}
	if count == 0 {
		return nil
	}
	n.Xattrs = make([]Xattr, count)
	for i := range n.Xattrs {
		x := &n.Xattrs[i]
		prev := ""
		if i > 0 {
			prev = n.Xattrs[i-1].Name
		}
		at = d.off
		if x.Name, err = d.string("xattr name", ""); err != nil {
			return err
		}
		if r := xattrNameReason(i, x.Name, prev); r != "" {
			return d.fail(at, r)
		}
		at = d.off
		v, err := d.bytes("xattr value")
		if err != nil {
			return err
		}
		if r := xattrValueReason(x.Name, len(v)); r != "" {
			return d.fail(at, r)
		}
		x.Value = append([]byte{}, v...)
	}
	return nil
}

func (d *decoder) content(n *Node) error {
	at := d.off
	count, err := d.count("chunk count", minChunkLen)
	if err != nil {
		return err
	}
	left := n.Size
	if count > 0 {
		n.Content = make([]Chunk, count)
	}
	for i := range n.Content {
		c := &n.Content[i]
		cat := d.off
		if c.ID, err = d.id("chunk id"); err != nil {
			return err
		}
		if c.Size, err = d.uvarint("chunk size"); err != nil {
			return err
		}
		if r := chunkReason(i, c.Size, left, n.Size); r != "" {
			return d.fail(cat, r)
		}
		left -= c.Size
	}
	if r := chunkSumReason(left, n.Size); r != "" {
		return d.fail(at, r)
	}
	return nil
}
