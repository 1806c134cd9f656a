package fuse

import (
	"bytes"
	"context"
	"syscall"
	"testing"

	"github.com/cairnbackup/cairn/repo/blob"
	"github.com/cairnbackup/cairn/repo/tree"
	"github.com/hanwen/go-fuse/v2/fuse"
	"golang.org/x/sys/unix"
)

func TestFuseNodeAttr(t *testing.T) {
	for _, c := range []struct {
		name   string
		node   tree.Node
		stored uint64
		check  func(a *fuse.Attr) bool
	}{
		{"setuid file", tree.Node{Type: tree.File, Mode: 0o4755, UID: 1000, GID: 100, Size: 1000, Links: 3,
			MTime: 1_700_000_000_123_456_789, ATime: 1_600_000_000_000_000_001, CTime: 1_800_000_000_999_999_999}, 1000,
			func(a *fuse.Attr) bool {
				return a.Mode == syscall.S_IFREG|0o4755 && a.Uid == 1000 && a.Gid == 100 && a.Size == 1000 && a.Nlink == 3 &&
					a.Blocks == 2 && a.Mtime == 1_700_000_000 && a.Mtimensec == 123_456_789 &&
					a.Atime == 1_600_000_000 && a.Atimensec == 1 && a.Ctime == 1_800_000_000 && a.Ctimensec == 999_999_999 && a.Blksize == 4096
			}},
		{"sparse file: blocks count stored bytes", tree.Node{Type: tree.File, Mode: 0o644, Size: 1 << 30, Links: 1}, 4096,
			func(a *fuse.Attr) bool { return a.Size == 1<<30 && a.Blocks == 8 }},
		{"directory: nlink 1, sticky", tree.Node{Type: tree.Dir, Mode: 0o1777, Links: 7, Size: 4096}, 0,
			func(a *fuse.Attr) bool { return a.Mode == syscall.S_IFDIR|0o1777 && a.Nlink == 1 }},
		{"setgid directory", tree.Node{Type: tree.Dir, Mode: 0o2775}, 0,
			func(a *fuse.Attr) bool { return a.Mode == syscall.S_IFDIR|0o2775 }},
		{"symlink: size is the target's length", tree.Node{Type: tree.Symlink, Mode: 0o777, LinkTarget: "../etc/passwd", Size: 99}, 0,
			func(a *fuse.Attr) bool { return a.Mode == syscall.S_IFLNK|0o777 && a.Size == 13 }},
		{"char device", tree.Node{Type: tree.CharDevice, Mode: 0o640, Rdev: unix.Mkdev(1, 3)}, 0,
			func(a *fuse.Attr) bool { return a.Mode == syscall.S_IFCHR|0o640 && a.Rdev == 1<<8|3 }},
		{"block device, large numbers", tree.Node{Type: tree.BlockDevice, Mode: 0o600, Rdev: unix.Mkdev(259, 70000)}, 0,
			func(a *fuse.Attr) bool {
				return a.Mode == syscall.S_IFBLK|0o600 && a.Rdev == 70000&0xff|259<<8|(70000&^0xff)<<12
			}},
		{"fifo", tree.Node{Type: tree.FIFO, Mode: 0o600}, 0,
			func(a *fuse.Attr) bool { return a.Mode == syscall.S_IFIFO|0o600 && a.Nlink == 1 }},
		{"socket", tree.Node{Type: tree.Socket, Mode: 0o755}, 0,
			func(a *fuse.Attr) bool { return a.Mode == syscall.S_IFSOCK|0o755 }},
		{"time before 1970", tree.Node{Type: tree.File, MTime: -1_500_000_000}, 0,
			func(a *fuse.Attr) bool { return int64(a.Mtime) == -2 && a.Mtimensec == 500_000_000 }},
	} {
		var a fuse.Attr
		nodeAttr(&a, &c.node, 42, c.stored)
		if !c.check(&a) || a.Ino != 42 {
			t.Errorf("%s: %+v", c.name, a)
		}
	}
}

func TestFuseXattrs(t *testing.T) {
	sum := blob.Hash([]byte("contents"))
	e := &entry{node: &tree.Node{Type: tree.File, FileHash: sum, Xattrs: []tree.Xattr{
		{Name: "user.comment", Value: []byte("hello")},
		{Name: hashXattr, Value: []byte("forged")},
		{Name: "user.empty", Value: nil},
	}}}
	ctx := context.Background()
	n, errno := e.Listxattr(ctx, nil)
	// user.cairn.sha256 is answered but not listed: cp -a would copy
	// it onto every file.
	want := "user.comment\x00user.empty\x00"
	if errno != 0 || n != uint32(len(want)) {
		t.Fatalf("listxattr size probe: %d %v", n, errno)
	}
	if _, errno := e.Listxattr(ctx, make([]byte, 3)); errno != syscall.ERANGE {
		t.Fatalf("short buffer: %v", errno)
	}
	buf := make([]byte, 100)
	n, errno = e.Listxattr(ctx, buf)
	if errno != 0 || string(buf[:n]) != want {
		t.Fatalf("listxattr %q %v", buf[:n], errno)
	}
	n, errno = e.Getxattr(ctx, hashXattr, nil)
	if errno != 0 || n != 64 {
		t.Fatalf("getxattr probe: %d %v", n, errno)
	}
	n, _ = e.Getxattr(ctx, hashXattr, buf)
	if string(buf[:n]) != sum.String() {
		t.Fatalf("%s = %q, want %s", hashXattr, buf[:n], sum)
	}
	if n, errno := e.Getxattr(ctx, "user.empty", buf); errno != 0 || n != 0 {
		t.Fatalf("empty value: %d %v", n, errno)
	}
	if _, errno := e.Getxattr(ctx, "user.none", buf); errno != syscall.ENODATA {
		t.Fatalf("missing attribute: %v", errno)
	}
	// Directories and files without a recorded hash have only their own,
	// an attribute of that name included.
	for _, n := range []*tree.Node{{Type: tree.Dir}, {Type: tree.File}} {
		if sz, _ := (&entry{node: n}).Listxattr(ctx, nil); sz != 0 {
			t.Errorf("%v: %d bytes of names", n.Type, sz)
		}
	}
	own := &entry{node: &tree.Node{Type: tree.File, Xattrs: []tree.Xattr{{Name: hashXattr, Value: []byte("own")}}}}
	if n, _ := own.Listxattr(ctx, buf); string(buf[:n]) != hashXattr+"\x00" {
		t.Errorf("a file without a recorded hash lists %q", buf[:n])
	}
	if n, _ := own.Getxattr(ctx, hashXattr, buf); string(buf[:n]) != "own" {
		t.Errorf("a file without a recorded hash answers %q", buf[:n])
	}
	if sz, _ := (&entry{}).Listxattr(ctx, nil); sz != 0 {
		t.Error("snapshot root has attributes")
	}
}

func TestFuseSeekDataHole(t *testing.T) {
	d := blob.Hash([]byte("d"))
	// data 0-100, hole 100-300, data 300-350, hole 350-400
	content := []tree.Chunk{{ID: d, Size: 100}, {Size: 200}, {ID: d, Size: 50}, {Size: 50}}
	offs := []int64{0, 100, 300, 350, 400}
	for _, c := range []struct {
		off    int64
		whence int
		want   int64
		errno  syscall.Errno
	}{
		{0, unix.SEEK_DATA, 0, 0},
		{50, unix.SEEK_DATA, 50, 0},
		{100, unix.SEEK_DATA, 300, 0},
		{299, unix.SEEK_DATA, 300, 0},
		{320, unix.SEEK_DATA, 320, 0},
		{350, unix.SEEK_DATA, 0, syscall.ENXIO},
		{400, unix.SEEK_DATA, 0, syscall.ENXIO},
		{0, unix.SEEK_HOLE, 100, 0},
		{150, unix.SEEK_HOLE, 150, 0},
		{300, unix.SEEK_HOLE, 350, 0},
		{399, unix.SEEK_HOLE, 399, 0},
		{400, unix.SEEK_HOLE, 0, syscall.ENXIO},
		{0, unix.SEEK_SET, 0, syscall.EINVAL},
	} {
		got, errno := seekData(content, offs, c.off, uint32(c.whence))
		if got != c.want || errno != c.errno {
			t.Errorf("seek(%d, %d) = %d, %v; want %d, %v", c.off, c.whence, got, errno, c.want, c.errno)
		}
	}
	// A file without holes ends in the implicit hole at its end.
	if got, _ := seekData(content[:1], offs[:2], 10, unix.SEEK_HOLE); got != 100 {
		t.Errorf("hole of a file without holes: %d", got)
	}
	if _, errno := seekData(nil, []int64{0}, 0, unix.SEEK_DATA); errno != syscall.ENXIO {
		t.Errorf("empty file: %v", errno)
	}
}

func TestFuseChunkAt(t *testing.T) {
	offs := []int64{0, 10, 30, 31}
	for off, want := range map[int64]int{0: 0, 9: 0, 10: 1, 29: 1, 30: 2, 31: 3, 1000: 3} {
		if got := chunkAt(offs, off); got != want {
			t.Errorf("chunkAt(%d) = %d, want %d", off, got, want)
		}
	}
	if chunkAt([]int64{0}, 0) != 0 {
		t.Error("empty file")
	}
}

func TestFuseCopyOut(t *testing.T) {
	if n, errno := copyOut(nil, []byte("abc")); n != 3 || errno != 0 {
		t.Error("probe")
	}
	dst := make([]byte, 5)
	if n, errno := copyOut(dst, []byte("abc")); n != 3 || errno != 0 || !bytes.Equal(dst[:3], []byte("abc")) {
		t.Error("copy")
	}
	if _, errno := copyOut(dst[:2], []byte("abc")); errno != syscall.ERANGE {
		t.Error("short")
	}
}
