package fuse

import (
	"context"
	"encoding/hex"
	"path"
	"slices"
	"strings"
	"sync"
	"syscall"
	"time"

	"github.com/cairnbackup/cairn/repo/blob"
	"github.com/cairnbackup/cairn/repo/snapfs"
	"github.com/cairnbackup/cairn/repo/snapshot"
	"github.com/cairnbackup/cairn/repo/tree"
	"github.com/hanwen/go-fuse/v2/fs"
	"github.com/hanwen/go-fuse/v2/fuse"
	"golang.org/x/sys/unix"
)

// hashXattr is the extended attribute that carries a file's recorded
// SHA-256, as 64 lowercase hex digits.
const hashXattr = "user.cairn.sha256"

// entry is what every node inside a snapshot knows: where it is and
// the tree node describing it.
type entry struct {
	fsys *filesys
	snap blob.ID
	path string     // inside the snapshot, slash-separated; "" for the root
	node *tree.Node // nil for the snapshot's root directory
	ino  uint64
	// root only: the snapshot's time, shown as the root's times.
	time time.Time
}

// snapDir is a directory of a snapshot, its root included. Its decoded
// tree is loaded on first use and held while the kernel keeps the
// inode.
type snapDir struct {
	readOnly
	entry
	subtree blob.ID

	mu sync.Mutex
	t  *tree.Tree
}

// snapFile is a regular file of a snapshot.
type snapFile struct {
	readOnly
	entry
	stored uint64 // bytes not in holes

	offsOnce sync.Once
	offs     []int64 // start of chunk i; offs[len(Content)] is the size
}

// snapOther is a symlink, device, FIFO or socket of a snapshot.
type snapOther struct {
	readOnly
	entry
}

var (
	_ fs.NodeLookuper    = (*snapDir)(nil)
	_ fs.NodeReaddirer   = (*snapDir)(nil)
	_ fs.NodeGetattrer   = (*snapDir)(nil)
	_ fs.NodeGetxattrer  = (*snapDir)(nil)
	_ fs.NodeListxattrer = (*snapDir)(nil)
	_ fs.NodeGetattrer   = (*snapFile)(nil)
	_ fs.NodeOpener      = (*snapFile)(nil)
	_ fs.NodeLseeker     = (*snapFile)(nil)
	_ fs.NodeGetxattrer  = (*snapFile)(nil)
	_ fs.NodeListxattrer = (*snapFile)(nil)
	_ fs.NodeGetattrer   = (*snapOther)(nil)
	_ fs.NodeReadlinker  = (*snapOther)(nil)
	_ fs.NodeGetxattrer  = (*snapOther)(nil)
	_ fs.NodeListxattrer = (*snapOther)(nil)
)

// newSnapRoot returns the root directory of snapshot sn.
func newSnapRoot(f *filesys, sn *snapshot.Entry) *snapDir {
	return &snapDir{entry: entry{fsys: f, snap: sn.ID, ino: treeIno(sn.ID, ""), time: sn.Time}, subtree: sn.Tree}
}

// attrer is implemented by every node inside a snapshot.
type attrer interface {
	fs.InodeEmbedder
	attr(*fuse.Attr)
}

// childIno is the inode number of node n, named p in snapshot id: all
// names of a hardlinked file share one.
func childIno(id blob.ID, p string, n *tree.Node) uint64 {
	if n.HardlinkID != 0 && n.Type != tree.Dir {
		return hardlinkIno(id, n.HardlinkID)
	}
	return treeIno(id, p)
}

// child makes the node for n, an entry of directory d.
func (d *snapDir) child(n *tree.Node) (attrer, uint64) {
	p := path.Join(d.path, n.Name)
	e := entry{fsys: d.fsys, snap: d.snap, path: p, node: n, ino: childIno(d.snap, p, n)}
	switch n.Type {
	case tree.Dir:
		return &snapDir{entry: e, subtree: n.Subtree}, e.ino
	case tree.File:
		f := &snapFile{entry: e}
		for _, c := range n.Content {
			if !c.ID.IsZero() {
				f.stored += c.Size
			}
		}
		return f, e.ino
	default:
		return &snapOther{entry: e}, e.ino
	}
}

// tree returns the directory's decoded listing, loading it once. A tree
// that cannot be loaded is logged and gives EIO; the next access tries
// again.
func (d *snapDir) tree() (*tree.Tree, syscall.Errno) {
	d.mu.Lock()
	defer d.mu.Unlock()
	if d.t != nil {
		return d.t, 0
	}
	t, err := snapfs.LoadTree(d.fsys.ctx, d.fsys.src, d.subtree)
	if err != nil {
		d.fsys.log.Error("listing a directory failed", "snapshot", d.snap.Short(), "path", "/"+d.path, "err", err)
		return nil, syscall.EIO
	}
	d.t = t
	return t, 0
}

func (d *snapDir) Lookup(ctx context.Context, name string, out *fuse.EntryOut) (*fs.Inode, syscall.Errno) {
	t, errno := d.tree()
	if errno != 0 {
		return nil, errno
	}
	i, ok := slices.BinarySearchFunc(t.Nodes, name, func(n tree.Node, name string) int { return strings.Compare(n.Name, name) })
	if !ok {
		return nil, syscall.ENOENT
	}
	n := &t.Nodes[i]
	ops, ino := d.child(n)
	ops.attr(&out.Attr)
	out.SetEntryTimeout(immutableTimeout)
	out.SetAttrTimeout(immutableTimeout)
	return d.NewInode(ctx, ops, fs.StableAttr{Mode: typeBits(n.Type), Ino: ino}), 0
}

func (d *snapDir) Readdir(context.Context) (fs.DirStream, syscall.Errno) {
	t, errno := d.tree()
	if errno != 0 {
		return nil, errno
	}
	return &dirStream{n: len(t.Nodes), at: func(i int) fuse.DirEntry {
		n := &t.Nodes[i]
		return fuse.DirEntry{Name: n.Name, Mode: typeBits(n.Type), Ino: childIno(d.snap, path.Join(d.path, n.Name), n)}
	}}, 0
}

func (d *snapDir) Getattr(_ context.Context, _ fs.FileHandle, out *fuse.AttrOut) syscall.Errno {
	d.attr(&out.Attr)
	out.SetTimeout(immutableTimeout)
	return 0
}

func (f *snapFile) Getattr(_ context.Context, _ fs.FileHandle, out *fuse.AttrOut) syscall.Errno {
	f.attr(&out.Attr)
	out.SetTimeout(immutableTimeout)
	return 0
}

func (o *snapOther) Getattr(_ context.Context, _ fs.FileHandle, out *fuse.AttrOut) syscall.Errno {
	o.attr(&out.Attr)
	out.SetTimeout(immutableTimeout)
	return 0
}

// attr describes a directory; the snapshot's root, which has no node of
// its own, is a 0755 directory of the user who mounted with the
// snapshot's time.
func (d *snapDir) attr(a *fuse.Attr) {
	if d.node == nil {
		*a = fuse.Attr{Ino: d.ino, Mode: syscall.S_IFDIR | 0o755, Nlink: 1, Blksize: 4096}
		a.Uid, a.Gid = d.fsys.uid, d.fsys.gid
		setTimes(a, d.time, d.time, d.time)
		return
	}
	nodeAttr(a, d.node, d.ino, 0)
}

func (f *snapFile) attr(a *fuse.Attr) { nodeAttr(a, f.node, f.ino, f.stored) }

func (o *snapOther) attr(a *fuse.Attr) { nodeAttr(a, o.node, o.ino, 0) }

// typeBits is the S_IF* file type of a node type (a regular file for
// an unknown one, which tree decoding never gives).
func typeBits(t tree.NodeType) uint32 {
	if bits := t.ModeBits(); bits != 0 {
		return bits
	}
	return syscall.S_IFREG
}

// nodeAttr fills a from tree node n: type and mode with setuid, setgid
// and sticky, owner, size, times to the nanosecond, device number, link
// count (1 for directories, which tells find not to count
// subdirectories from it), and blocks: the stored bytes (stored) in
// 512-byte units, so du shows sparse files as sparse.
func nodeAttr(a *fuse.Attr, n *tree.Node, ino, stored uint64) {
	*a = fuse.Attr{
		Ino:     ino,
		Size:    n.Size,
		Blocks:  (stored + 511) / 512,
		Mode:    typeBits(n.Type) | n.Mode&0o7777,
		Nlink:   uint32(max(n.Links, 1)),
		Blksize: 4096,
	}
	a.Uid, a.Gid = n.UID, n.GID
	switch n.Type {
	case tree.Dir:
		a.Nlink = 1
	case tree.Symlink:
		a.Size = uint64(len(n.LinkTarget))
	case tree.BlockDevice, tree.CharDevice:
		a.Rdev = encodeDev(n.Rdev)
	}
	if n.Links > 1<<32-1 {
		a.Nlink = 1<<32 - 1
	}
	setTimes(a, time.Unix(0, n.ATime), time.Unix(0, n.MTime), time.Unix(0, n.CTime))
}

// encodeDev converts a device number as stat(2) reports it (glibc's
// 64-bit encoding, as recorded in the tree) into the 32-bit encoding the
// FUSE protocol carries (the kernel's new_encode_dev).
func encodeDev(rdev uint64) uint32 {
	major, minor := unix.Major(rdev), unix.Minor(rdev)
	return minor&0xff | major<<8 | (minor&^0xff)<<12
}

func (o *snapOther) Readlink(context.Context) ([]byte, syscall.Errno) {
	if o.node.Type != tree.Symlink {
		return nil, syscall.EINVAL
	}
	return []byte(o.node.LinkTarget), 0
}

// hasHash reports whether the entry is a file with a recorded hash,
// which getxattr answers as user.cairn.sha256.
func (e *entry) hasHash() bool {
	return e.node != nil && e.node.Type == tree.File && !e.node.FileHash.IsZero()
}

// Getxattr returns attribute name; an empty dest asks for its size.
// For a file with a recorded hash, user.cairn.sha256 is that hash (it
// replaces a recorded attribute of that name). ls -l asks every file
// for security.selinux: a miss costs a binary search and no allocation.
func (e *entry) Getxattr(_ context.Context, name string, dest []byte) (uint32, syscall.Errno) {
	if e.node == nil {
		return 0, syscall.ENODATA
	}
	if name == hashXattr && e.hasHash() {
		var sum [2 * blob.IDSize]byte
		hex.Encode(sum[:], e.node.FileHash[:])
		return copyOut(dest, sum[:])
	}
	i, ok := slices.BinarySearchFunc(e.node.Xattrs, name, func(x tree.Xattr, name string) int { return strings.Compare(x.Name, name) })
	if !ok {
		return 0, syscall.ENODATA
	}
	return copyOut(dest, e.node.Xattrs[i].Value)
}

// Listxattr returns the recorded attribute names, each followed by NUL;
// an empty dest asks for the size of the list. user.cairn.sha256 of a
// file with a recorded hash is not listed: getxattr answers it, but
// cp -a, rsync -X and tar --xattrs copy what listxattr lists, and a copy
// out of the mount is to have the file's own attributes only.
func (e *entry) Listxattr(_ context.Context, dest []byte) (uint32, syscall.Errno) {
	if e.node == nil {
		return copyOut(dest, nil)
	}
	var list []byte
	for _, x := range e.node.Xattrs {
		if x.Name != hashXattr || !e.hasHash() {
			list = append(append(list, x.Name...), 0)
		}
	}
	return copyOut(dest, list)
}

// copyOut answers a getxattr or listxattr: the size alone for an empty
// dest, ERANGE when dest is too small.
func copyOut(dest, v []byte) (uint32, syscall.Errno) {
	switch {
	case len(dest) == 0:
		return uint32(len(v)), 0
	case len(dest) < len(v):
		return uint32(len(v)), syscall.ERANGE
	}
	return uint32(copy(dest, v)), 0
}

// offsets returns the start of each chunk, computed once per inode.
func (f *snapFile) offsets() []int64 {
	f.offsOnce.Do(func() {
		f.offs = make([]int64, len(f.node.Content)+1)
		for i, c := range f.node.Content {
			f.offs[i+1] = f.offs[i] + int64(c.Size)
		}
	})
	return f.offs
}

// Open opens the file for reading; anything else is EROFS. The kernel
// keeps the file's pages across opens (FOPEN_KEEP_CACHE): a snapshot
// never changes.
func (f *snapFile) Open(_ context.Context, flags uint32) (fs.FileHandle, uint32, syscall.Errno) {
	if flags&(syscall.O_WRONLY|syscall.O_RDWR|syscall.O_TRUNC|syscall.O_APPEND) != 0 {
		return nil, 0, syscall.EROFS
	}
	h, err := newHandle(f.fsys, &f.entry, f.offsets())
	if err != nil {
		f.fsys.log.Error("open failed", "snapshot", f.snap.Short(), "path", "/"+f.path, "err", err)
		return nil, 0, syscall.EIO
	}
	return h, fuse.FOPEN_KEEP_CACHE, 0
}

// Lseek answers SEEK_DATA and SEEK_HOLE from the chunk list: holes are
// the chunks recorded as holes, so cp --sparse and tar --sparse skip
// them without reading.
func (f *snapFile) Lseek(_ context.Context, _ fs.FileHandle, off uint64, whence uint32) (uint64, syscall.Errno) {
	o, errno := seekData(f.node.Content, f.offsets(), int64(off), whence)
	return uint64(o), errno
}

// seekData implements SEEK_DATA and SEEK_HOLE over a chunk list with
// start offsets offs. The end of the file counts as a hole.
func seekData(content []tree.Chunk, offs []int64, off int64, whence uint32) (int64, syscall.Errno) {
	size := offs[len(offs)-1]
	if whence != unix.SEEK_DATA && whence != unix.SEEK_HOLE {
		return 0, syscall.EINVAL
	}
	if off < 0 || off >= size {
		return 0, syscall.ENXIO
	}
	i := chunkAt(offs, off)
	wantHole := whence == unix.SEEK_HOLE
	for ; i < len(content); i++ {
		if content[i].ID.IsZero() == wantHole {
			return max(off, offs[i]), 0
		}
	}
	if wantHole {
		return size, 0
	}
	return 0, syscall.ENXIO
}

// chunkAt returns the index of the chunk holding offset off (0 <= off),
// or the number of chunks at or past the end.
func chunkAt(offs []int64, off int64) int {
	n := len(offs) - 1
	if off >= offs[n] {
		return n
	}
	i, found := slices.BinarySearch(offs[:n], off)
	if found {
		return i
	}
	return i - 1
}
