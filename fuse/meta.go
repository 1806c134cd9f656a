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
// tags/…/<time>). Its target is read from the current layout at each
// readlink: latest moves when a newer snapshot arrives.
type metaLinkNode struct {
	readOnly
	fsys *filesys
	path string
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
	n.fsys.metaAttr(&out.Attr, e, metaIno(n.path))
	out.SetTimeout(metaTimeout)
	return 0
}

func (n *metaNode) Lookup(ctx context.Context, name string, out *fuse.EntryOut) (*fs.Inode, syscall.Errno) {
	e := n.fsys.current().lookup(n.path, name)
	if e == nil {
		return nil, syscall.ENOENT
	}
	p := path.Join(n.path, name)
	switch e.kind {
	case metaDir:
		ino := metaIno(p)
		n.fsys.metaAttr(&out.Attr, e, ino)
		out.SetEntryTimeout(metaTimeout)
		out.SetAttrTimeout(metaTimeout)
		return n.NewInode(ctx, &metaNode{fsys: n.fsys, path: p}, fs.StableAttr{Mode: syscall.S_IFDIR, Ino: ino}), 0
	case metaLink:
		ino := metaIno(p)
		n.fsys.metaAttr(&out.Attr, e, ino)
		out.SetEntryTimeout(metaTimeout)
		out.SetAttrTimeout(metaTimeout)
		return n.NewInode(ctx, &metaLinkNode{fsys: n.fsys, path: p}, fs.StableAttr{Mode: syscall.S_IFLNK, Ino: ino}), 0
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
		p := path.Join(n.path, e.name)
		switch e.kind {
		case metaDir:
			return fuse.DirEntry{Name: e.name, Mode: syscall.S_IFDIR, Ino: metaIno(p)}
		case metaLink:
			return fuse.DirEntry{Name: e.name, Mode: syscall.S_IFLNK, Ino: metaIno(p)}
		default:
			return fuse.DirEntry{Name: e.name, Mode: syscall.S_IFDIR, Ino: treeIno(e.snap.ID, "")}
		}
	}}, 0
}

func (n *metaLinkNode) Getattr(_ context.Context, _ fs.FileHandle, out *fuse.AttrOut) syscall.Errno {
	e := n.fsys.current().entries[n.path]
	if e == nil {
		return syscall.ENOENT
	}
	n.fsys.metaAttr(&out.Attr, e, metaIno(n.path))
	out.SetTimeout(metaTimeout)
	return 0
}

func (n *metaLinkNode) Readlink(context.Context) ([]byte, syscall.Errno) {
	e := n.fsys.current().entries[n.path]
	if e == nil || e.kind != metaLink {
		return nil, syscall.ENOENT
	}
	return []byte(e.target), 0
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
