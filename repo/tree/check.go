package tree

import (
	"errors"
	"fmt"
	"strings"
)

// The rules of the format live here, once, as functions returning a
// reason ("" when the value is fine). [Decode] applies them field by field
// as it reads, so a fault is reported at its offset; [Node.Validate] and
// [Encode] apply them in the same order, so both report the same first
// fault for the same node.

// CheckName returns an error unless name may be a [Node.Name]: it must be
// 1 to [MaxNameLen] bytes, must not be "." or "..", and must contain
// neither '/' nor a NUL byte. Any other bytes are allowed; names need not
// be UTF-8. [Decode] applies this rule to every node, so code that walks a
// decoded tree may join names to paths without checking them again.
func CheckName(name string) error {
	if r := nameReason(name); r != "" {
		return errors.New("tree: " + r)
	}
	return nil
}

func nameReason(name string) string {
	switch {
	case name == "":
		return "name is empty"
	case name == "." || name == "..":
		return fmt.Sprintf("name %q is not allowed", name)
	case len(name) > MaxNameLen:
		return fmt.Sprintf("name of %d bytes exceeds %d", len(name), MaxNameLen)
	case strings.IndexByte(name, '/') >= 0:
		return fmt.Sprintf("name %q contains '/'", name)
	case strings.IndexByte(name, 0) >= 0:
		return fmt.Sprintf("name %q contains a NUL byte", name)
	}
	return ""
}

// orderReason checks that name sorts strictly after prev in byte order.
// what is "name" or "xattr name".
func orderReason(what, prev, name string) string {
	switch {
	case name == prev:
		return fmt.Sprintf("duplicate %s %q", what, name)
	case name < prev:
		return fmt.Sprintf("%s %q sorts before the previous %q", what, name, prev)
	}
	return ""
}

func typeReason(t NodeType) string {
	if !t.valid() {
		return fmt.Sprintf("unknown node type %d", uint8(t))
	}
	return ""
}

func modeReason(mode uint64) string {
	if mode > maxMode {
		return fmt.Sprintf("mode %#o has bits outside 07777", mode)
	}
	return ""
}

// ownerReason checks a user or group name; what is "user" or "group".
func ownerReason(what, name string) string {
	if len(name) > MaxOwnerLen {
		return fmt.Sprintf("%s name of %d bytes exceeds %d", what, len(name), MaxOwnerLen)
	}
	return ""
}

func linkTargetReason(t NodeType, target string) string {
	switch {
	case len(target) > MaxLinkTargetLen:
		return fmt.Sprintf("link target of %d bytes exceeds %d", len(target), MaxLinkTargetLen)
	case t == Symlink && target == "":
		return "symlink has an empty link target"
	case t != Symlink && target != "":
		return fmt.Sprintf("%s node has a link target", t)
	}
	return ""
}

func xattrCountReason(n uint64) string {
	if n > MaxXattrs {
		return fmt.Sprintf("%d xattrs exceed the limit of %d", n, MaxXattrs)
	}
	return ""
}

// xattrNameReason checks the name of xattr i; prev is the name of xattr
// i-1 and is ignored for i == 0.
func xattrNameReason(i int, name, prev string) string {
	switch {
	case name == "":
		return fmt.Sprintf("xattr %d has an empty name", i)
	case len(name) > MaxXattrNameLen:
		return fmt.Sprintf("xattr %d name of %d bytes exceeds %d", i, len(name), MaxXattrNameLen)
	case i > 0:
		return orderReason("xattr name", prev, name)
	}
	return ""
}

func xattrValueReason(name string, n int) string {
	if n > MaxXattrValueLen {
		return fmt.Sprintf("xattr %q value of %d bytes exceeds %d", name, n, MaxXattrValueLen)
	}
	return ""
}

// chunkReason checks chunk i of a file of fileSize bytes, where left is
// the part of fileSize not covered by chunks 0 to i-1. Comparing with left
// instead of summing keeps the check free of overflow.
func chunkReason(i int, size, left, fileSize uint64) string {
	switch {
	case size == 0:
		return fmt.Sprintf("chunk %d has size 0", i)
	case size > left:
		return fmt.Sprintf("chunk sizes up to chunk %d exceed the file size %d", i, fileSize)
	}
	return ""
}

// chunkSumReason checks, after the last chunk, that the chunks covered
// the whole file.
func chunkSumReason(left, fileSize uint64) string {
	if left != 0 {
		return fmt.Sprintf("chunk sizes add up to %d, not the file size %d", fileSize-left, fileSize)
	}
	return ""
}

// Validate reports whether the node may be stored in a [Tree]:
//   - the name passes [CheckName];
//   - the type is known and the mode is at most 07777;
//   - User and Group are at most [MaxOwnerLen] bytes;
//   - a symlink has a non-empty LinkTarget of at most [MaxLinkTargetLen]
//     bytes, and no other type has one;
//   - there are at most [MaxXattrs] xattrs, sorted by name with no
//     duplicates, each with a name of 1 to [MaxXattrNameLen] bytes and a
//     value of at most [MaxXattrValueLen] bytes;
//   - a file has no Subtree, and the sizes of its chunks are all > 0 and
//     add up to Size;
//   - a directory has a non-zero Subtree, no Content and a zero FileHash;
//   - every other type has no Content, a zero FileHash and a zero Subtree.
//
// The order of nodes within a tree is checked by [Encode] and [Decode].
func (n *Node) Validate() error {
	if r := nameReason(n.Name); r != "" {
		return errors.New("tree: " + r)
	}
	if r := n.fieldsReason(); r != "" {
		return fmt.Errorf("tree: node %q: %s", n.Name, r)
	}
	return nil
}

// fieldsReason checks everything but the name, in the order of the
// encoding.
func (n *Node) fieldsReason() string {
	if r := typeReason(n.Type); r != "" {
		return r
	}
	if r := modeReason(uint64(n.Mode)); r != "" {
		return r
	}
	if r := ownerReason("user", n.User); r != "" {
		return r
	}
	if r := ownerReason("group", n.Group); r != "" {
		return r
	}
	if r := linkTargetReason(n.Type, n.LinkTarget); r != "" {
		return r
	}
	if r := xattrCountReason(uint64(len(n.Xattrs))); r != "" {
		return r
	}
	for i, x := range n.Xattrs {
		prev := ""
		if i > 0 {
			prev = n.Xattrs[i-1].Name
		}
		if r := xattrNameReason(i, x.Name, prev); r != "" {
			return r
		}
		if r := xattrValueReason(x.Name, len(x.Value)); r != "" {
			return r
		}
	}
	switch n.Type {
	case File:
		if !n.Subtree.IsZero() {
			return "file node has a subtree"
		}
		left := n.Size
		for i, c := range n.Content {
			if r := chunkReason(i, c.Size, left, n.Size); r != "" {
				return r
			}
			left -= c.Size
		}
		return chunkSumReason(left, n.Size)
	case Dir:
		switch {
		case !n.FileHash.IsZero():
			return "dir node has a file hash"
		case len(n.Content) > 0:
			return "dir node has content"
		case n.Subtree.IsZero():
			return "dir node has a zero subtree id"
		}
	default:
		switch {
		case !n.FileHash.IsZero():
			return fmt.Sprintf("%s node has a file hash", n.Type)
		case len(n.Content) > 0:
			return fmt.Sprintf("%s node has content", n.Type)
		case !n.Subtree.IsZero():
			return fmt.Sprintf("%s node has a subtree", n.Type)
		}
	}
	return ""
}
