package fuse

import (
	"context"
	"path"
	"syscall"
	"time"

	"github.com/hanwen/go-fuse/v2/fs"
	"github.com/hanwen/go-fuse/v2/fuse"
)

// metaNode is a synthetic directory: the root, nodes/, nodes/<node>/,
// snapshots/, tags/… . It holds only its path and finds its entries in
// the current layout, so the same inode shows new snapshots as they
// come.
type metaNode struct {
	readOnly
	fsys *filesys
	path string
}

// metaLinkNode is a synthetic symlink (latest, snapshots/<id>,
// tags/…/<time>). Its inode number covers its target as well as its
// path (see [metaEntry.ino]): when latest moves to a newer snapshot it
// becomes another inode, so the target the kernel caches for the old
// one is never shown again.
type metaLinkNode struct {
	readOnly
	fsys   *filesys
	path   string
	target string
}

var (
	_ fs.NodeLookuper   = (*metaNode)(nil)
	_ fs.NodeReaddirer  = (*metaNode)(nil)
	_ fs.NodeGetattrer  = (*metaNode)(nil)
	_ fs.NodeReadlinker = (*metaLinkNode)(nil)
	_ fs.NodeGetattrer  = (*metaLinkNode)(nil)
)

// current returns the layout, refreshed if it is older than the refresh
// interval. It cannot fail once mounted: a failed refresh keeps the
// previous layout.
func (f *filesys) current() *layout {
	l, _ := f.layout()
	return l
}

func (n *metaNode) Getattr(_ context.Context, _ fs.FileHandle, out *fuse.AttrOut) syscall.Errno {
	e := n.fsys.current().entries[n.path]
	if e == nil {
		return syscall.ENOENT
	}
	n.fsys.metaAttr(&out.Attr, e, n.StableAttr().Ino)
	out.SetTimeout(metaTimeout)
	return 0
}

func (n *metaNode) Lookup(ctx context.Context, name string, out *fuse.EntryOut) (*fs.Inode, syscall.Errno) {
	e := n.fsys.current().lookup(n.path, name)
	if e == nil {
		return nil, syscall.ENOENT
	}
	p := path.Join(n.path, name)
	ino := e.ino(p)
	switch e.kind {
	case metaDir:
		n.fsys.metaAttr(&out.Attr, e, ino)
		out.SetEntryTimeout(metaTimeout)
		out.SetAttrTimeout(metaTimeout)
		return n.NewInode(ctx, &metaNode{fsys: n.fsys, path: p}, fs.StableAttr{Mode: syscall.S_IFDIR, Ino: ino}), 0
	case metaLink:
		n.fsys.metaAttr(&out.Attr, e, ino)
		out.SetEntryTimeout(metaTimeout)
		out.SetAttrTimeout(metaTimeout)
		return n.NewInode(ctx, &metaLinkNode{fsys: n.fsys, path: p, target: e.target}, fs.StableAttr{Mode: syscall.S_IFLNK, Ino: ino}), 0
	default: // metaSnap
		d := newSnapRoot(n.fsys, e.snap)
		d.attr(&out.Attr)
		// The name may move (a snapshot in the same second); the
		// contents never change.
		out.SetEntryTimeout(metaTimeout)
		out.SetAttrTimeout(immutableTimeout)
		return n.NewInode(ctx, d, fs.StableAttr{Mode: syscall.S_IFDIR, Ino: d.ino}), 0
	}
}

func (n *metaNode) Readdir(context.Context) (fs.DirStream, syscall.Errno) {
	l := n.fsys.current()
	entries := l.dirs[n.path]
	return &dirStream{n: len(entries), at: func(i int) fuse.DirEntry {
		e := entries[i]
		mode := uint32(syscall.S_IFDIR)
		if e.kind == metaLink {
			mode = syscall.S_IFLNK
		}
		return fuse.DirEntry{Name: e.name, Mode: mode, Ino: e.ino(path.Join(n.path, e.name))}
	}}, 0
}

// ino is the inode number of the entry at path p: ("cairn-meta", p)
// for a directory, ("cairn-meta", p, target) for a symlink, and the
// root of its snapshot for a snapshot's directory.
func (e *metaEntry) ino(p string) uint64 {
	switch e.kind {
	case metaLink:
		return metaIno(p + "\x00" + e.target)
	case metaSnap:
		return treeIno(e.snap.ID, "")
	}
	return metaIno(p)
}

func (n *metaLinkNode) Getattr(_ context.Context, _ fs.FileHandle, out *fuse.AttrOut) syscall.Errno {
	e := n.fsys.current().entries[n.path]
	if e == nil || e.kind != metaLink || e.target != n.target {
		// Gone, or moved on: this inode keeps its old target.
		e = &metaEntry{kind: metaLink, target: n.target, mtime: n.fsys.mtime}
	}
	n.fsys.metaAttr(&out.Attr, e, n.StableAttr().Ino)
	out.SetTimeout(metaTimeout)
	return 0
}

func (n *metaLinkNode) Readlink(context.Context) ([]byte, syscall.Errno) {
	return []byte(n.target), 0
}

// metaAttr describes a synthetic entry: owned by the user who mounted,
// directories 0555 and symlinks 0777, with the time of the newest
// snapshot at or below it.
func (f *filesys) metaAttr(a *fuse.Attr, e *metaEntry, ino uint64) {
	*a = fuse.Attr{Ino: ino, Nlink: 1, Blksize: 4096}
	a.Uid, a.Gid = f.uid, f.gid
	switch e.kind {
	case metaLink:
		a.Mode = syscall.S_IFLNK | 0o777
		a.Size = uint64(len(e.target))
	default:
		a.Mode = syscall.S_IFDIR | 0o555
	}
	setTimes(a, e.mtime, e.mtime, e.mtime)
}

func setTimes(a *fuse.Attr, atime, mtime, ctime time.Time) {
	a.Atime, a.Atimensec = uint64(atime.Unix()), uint32(atime.Nanosecond())
	a.Mtime, a.Mtimensec = uint64(mtime.Unix()), uint32(mtime.Nanosecond())
	a.Ctime, a.Ctimensec = uint64(ctime.Unix()), uint32(ctime.Nanosecond())
}

// dirStream lists n entries made on demand by at. It supports seeking
// (telldir/seekdir, and the kernel re-reading after an interrupted
// readdir): the offset after entry i is i+1.
type dirStream struct {
	n  int
	i  int
	at func(i int) fuse.DirEntry
}

var _ fs.FileSeekdirer = (*dirStream)(nil)

func (d *dirStream) HasNext() bool { return d.i < d.n }

func (d *dirStream) Next() (fuse.DirEntry, syscall.Errno) {
	e := d.at(d.i)
	d.i++
	e.Off = uint64(d.i)
	return e, 0
}

func (d *dirStream) Close() {}

func (d *dirStream) Seekdir(_ context.Context, off uint64) syscall.Errno {
	if off > uint64(d.n) {
		return syscall.EINVAL
	}
	d.i = int(off)
	return 0
}
