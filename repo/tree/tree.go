package tree

import (
	"errors"
	"fmt"

	"github.com/cairnbackup/cairn/repo/blob"
)

// version1 is the first byte of every tree blob this package writes.
const version1 = 1

// Limits on the variable-length fields of a [Node]. They are part of
// format version 1: [Decode] rejects a tree that exceeds any of them and
// [Encode] refuses to write one.
const (
	MaxNameLen       = 1024  // bytes in a [Node.Name]
	MaxOwnerLen      = 256   // bytes in [Node.User] and in [Node.Group]
	MaxLinkTargetLen = 4096  // bytes in a [Node.LinkTarget] (PATH_MAX)
	MaxXattrs        = 1024  // entries in [Node.Xattrs]
	MaxXattrNameLen  = 255   // bytes in an [Xattr.Name] (XATTR_NAME_MAX)
	MaxXattrValueLen = 65536 // bytes in an [Xattr.Value] (XATTR_SIZE_MAX)
)

// maxMode covers the permission bits plus setuid, setgid and sticky.
const maxMode = 0o7777

// NodeType says what kind of file system object a [Node] describes. The
// numeric values are part of the format.
type NodeType uint8

// Node types. Any other value is rejected by [Decode] and [Encode].
const (
	File        NodeType = 1 // a regular file; its data is in [Node.Content]
	Dir         NodeType = 2 // a directory; its listing is the tree [Node.Subtree]
	Symlink     NodeType = 3 // a symbolic link to [Node.LinkTarget]
	BlockDevice NodeType = 4 // a block device with device number [Node.Rdev]
	CharDevice  NodeType = 5 // a character device with device number [Node.Rdev]
	FIFO        NodeType = 6 // a named pipe
	Socket      NodeType = 7 // a unix domain socket
)

func (t NodeType) valid() bool { return t >= File && t <= Socket }

// modeTypes are the S_IF* file type bits (those of Linux and every
// POSIX system cairn runs on) of each node type.
var modeTypes = [...]uint32{File: 0o100000, Dir: 0o040000, Symlink: 0o120000,
	BlockDevice: 0o060000, CharDevice: 0o020000, FIFO: 0o010000, Socket: 0o140000}

// modeTypeMask is S_IFMT, the type bits of a mode.
const modeTypeMask = 0o170000

// TypeOfMode is the node type of a file whose st_mode (as lstat(2)
// gives it) is mode, and 0 for a kind of file a tree cannot hold.
func TypeOfMode(mode uint32) NodeType {
	for t, bits := range modeTypes {
		if bits != 0 && mode&modeTypeMask == bits {
			return NodeType(t)
		}
	}
	return 0
}

// ModeBits is the S_IF* file type of t, as st_mode and mknod(2) carry
// it, and 0 for an unknown type (which decoding never gives).
func (t NodeType) ModeBits() uint32 {
	if int(t) < len(modeTypes) {
		return modeTypes[t]
	}
	return 0
}

// String names the type: "file", "dir", "symlink", "blockdev", "chardev",
// "fifo" or "socket", and "nodetype(N)" for an unknown value N.
func (t NodeType) String() string {
	switch t {
	case File:
		return "file"
	case Dir:
		return "dir"
	case Symlink:
		return "symlink"
	case BlockDevice:
		return "blockdev"
	case CharDevice:
		return "chardev"
	case FIFO:
		return "fifo"
	case Socket:
		return "socket"
	}
	return fmt.Sprintf("nodetype(%d)", uint8(t))
}

// Chunk is one piece of a file's contents, in file order.
type Chunk struct {
	// ID is the data blob holding the chunk. The zero ID marks a hole: a
	// sparse region of Size zero bytes that is not stored.
	ID blob.ID
	// Size is the plaintext length of the chunk, always > 0. Storing it
	// here lets a reader find the chunk holding any file offset by binary
	// search over the running sum, without asking the index.
	Size uint64
}

// Xattr is one extended attribute of a [Node].
type Xattr struct {
	Name  string // 1 to [MaxXattrNameLen] bytes, e.g. "user.comment"
	Value []byte // at most [MaxXattrValueLen] bytes, may be empty
}

// Node is one entry of a directory listing: a name plus the metadata and
// contents of the object it names. [Node.Validate] states which fields
// each [NodeType] may set.
type Node struct {
	// Name is the entry's name inside its directory; see [CheckName].
	Name string
	// Type is the kind of object.
	Type NodeType
	// Mode holds the permission bits plus setuid, setgid and sticky: at
	// most 07777. The file type lives in Type, not here.
	Mode uint32
	// UID and GID are the numeric owner and group.
	UID, GID uint32
	// User and Group are the owner and group names at backup time, at
	// most [MaxOwnerLen] bytes each; empty when unknown.
	User, Group string
	// MTime, ATime and CTime are in nanoseconds since the Unix epoch and
	// may be negative.
	MTime, ATime, CTime int64
	// Size is, for files, the content length: the sum of the sizes in
	// Content. For symlinks it is conventionally the target's length; for
	// other types it is stored as given.
	Size uint64
	// Inode and DeviceID are st_ino and st_dev at backup time, used with
	// Size and the times to recognise unchanged files in the next backup.
	Inode, DeviceID uint64
	// Links is st_nlink at backup time.
	Links uint64
	// HardlinkID is 0 when the node is not a hard link; nodes of one
	// snapshot that share a non-zero HardlinkID are the same file.
	HardlinkID uint64
	// Rdev is the device number of a block or character device.
	Rdev uint64
	// LinkTarget is the target of a symlink (1 to [MaxLinkTargetLen]
	// bytes) and empty for every other type.
	LinkTarget string
	// Xattrs are the extended attributes, sorted by Name with no
	// duplicates, at most [MaxXattrs] of them.
	Xattrs []Xattr
	// FileHash is the SHA-256 of a file's whole contents, compared by
	// restore drills; zero for other types.
	FileHash blob.ID
	// Content lists a file's chunks in order; empty for other types.
	Content []Chunk
	// Subtree is the ID of the tree blob listing a directory's contents:
	// required (non-zero) for directories, zero for other types.
	Subtree blob.ID
}

// Tree is the listing of one directory: its nodes sorted by Name in byte
// order, with no two nodes of the same name. A nil or empty Nodes is an
// empty directory.
type Tree struct {
	Nodes []Node
}

// ErrVersion is reported (wrapped, together with [blob.ErrCorrupt]) by
// [Decode] when the first byte of a tree blob names a format version this
// build does not read.
var ErrVersion = errors.New("tree: unknown format version")

// DecodeError describes why [Decode] refused its input. It wraps
// [blob.ErrCorrupt], so errors.Is(err, blob.ErrCorrupt) holds for every
// decode failure, and also [ErrVersion] for an unknown version byte.
type DecodeError struct {
	// Offset is the position in the input of the field at fault.
	Offset int
	// Node is the index of the node being decoded, or -1 when the fault
	// lies outside any node (version, node count, trailing bytes).
	Node int
	// Reason says what is wrong, without location.
	Reason string

	mark error // an extra marker to report through Unwrap, or nil
}

// Error formats the error as "tree: node 3 at offset 120: reason", or as
// "tree: at offset 0: reason" when Node is negative.
func (e *DecodeError) Error() string {
	if e.Node < 0 {
		return fmt.Sprintf("tree: at offset %d: %s", e.Offset, e.Reason)
	}
	return fmt.Sprintf("tree: node %d at offset %d: %s", e.Node, e.Offset, e.Reason)
}

// Unwrap returns [blob.ErrCorrupt], plus [ErrVersion] when the version
// byte is unknown.
func (e *DecodeError) Unwrap() []error {
	if e.mark != nil {
		return []error{blob.ErrCorrupt, e.mark}
	}
	return []error{blob.ErrCorrupt}
}
