package backup

import (
	"errors"
	"fmt"
	"hash/fnv"
	"os"
	"os/user"
	"slices"
	"strconv"
	"sync/atomic"
	"syscall"

	"github.com/cairnbackup/cairn/repo/internal/xattr"
	"github.com/cairnbackup/cairn/repo/tree"
)

// owners caches user and group names by ID. Not safe for concurrent use;
// the walker owns it.
type owners struct {
	users  map[uint32]string
	groups map[uint32]string
}

func newOwners() *owners {
	return &owners{users: map[uint32]string{}, groups: map[uint32]string{}}
}

func (o *owners) user(uid uint32) string {
	return cachedName(o.users, uid, func(id string) string {
		if u, err := user.LookupId(id); err == nil {
			return u.Username
		}
		return ""
	})
}

func (o *owners) group(gid uint32) string {
	return cachedName(o.groups, gid, func(id string) string {
		if g, err := user.LookupGroupId(id); err == nil {
			return g.Name
		}
		return ""
	})
}

// cachedName returns the name of id from cache, looking it up (by id in
// decimal) the first time; an id without a name has the name "".
func cachedName(cache map[uint32]string, id uint32, lookup func(id string) string) string {
	name, ok := cache[id]
	if !ok {
		name = lookup(strconv.FormatUint(uint64(id), 10))
		cache[id] = name
	}
	return name
}

func statNode(name string, fi os.FileInfo, o *owners) (tree.Node, error) {
	n := tree.Node{Name: name, Mode: uint32(fi.Mode().Perm())}
	m := fi.Mode()
	if m&os.ModeSetuid != 0 {
		n.Mode |= syscall.S_ISUID
	}
	if m&os.ModeSetgid != 0 {
		n.Mode |= syscall.S_ISGID
	}
	if m&os.ModeSticky != 0 {
		n.Mode |= syscall.S_ISVTX
	}
	switch n.Type = tree.TypeOf(m); n.Type {
	case 0:
		return n, fmt.Errorf("unknown file type %v", m)
	case tree.File:
		n.Size = uint64(fi.Size())
	}
	st, ok := fi.Sys().(*syscall.Stat_t)
	if !ok {
		return n, errors.New("no stat information")
	}
	n.UID, n.GID = st.Uid, st.Gid
	n.User, n.Group = o.user(st.Uid), o.group(st.Gid)
	n.MTime = st.Mtim.Nano()
	n.ATime = st.Atim.Nano()
	n.CTime = st.Ctim.Nano()
	n.Inode = st.Ino
	n.DeviceID = st.Dev
	n.Links = st.Nlink
	if n.Type == tree.BlockDevice || n.Type == tree.CharDevice {
		n.Rdev = st.Rdev
	}
	if n.Type == tree.Symlink {
		// Reading a link updates its access time, so recording it
		// would make every backup's tree differ: symlinks carry none.
		n.ATime = 0
	}
	if n.Type != tree.Dir && n.Links > 1 {
		n.HardlinkID = hardlinkID(st.Dev, st.Ino)
	}
	return n, nil
}

// hardlinkID derives a stable, non-zero ID for the file (dev, ino), so
// that an unchanged hardlinked file gives an unchanged tree.
func hardlinkID(dev, ino uint64) uint64 {
	h := fnv.New64a()
	var b [16]byte
	for i := range 8 {
		b[i] = byte(dev >> (8 * i))
		b[8+i] = byte(ino >> (8 * i))
	}
	h.Write(b[:])
	return h.Sum64() | 1
}

// xattrReads counts readXattrs calls, for tests.
var xattrReads atomic.Uint64

// readXattrs reads p's extended attributes ([xattr.Read]), counted.
func readXattrs(p string) ([]tree.Xattr, error) {
	xattrReads.Add(1)
	return xattr.Read(p)
}

// openNoAtime opens a file or directory for reading without updating its
// access time (O_NOATIME), so that a backup does not change what the next
// backup records. O_NOATIME is allowed only to the file's owner and root;
// for others it falls back to a plain open.
func openNoAtime(p string, flags int) (*os.File, error) {
	for {
		fd, err := syscall.Open(p, syscall.O_RDONLY|syscall.O_CLOEXEC|syscall.O_NOATIME|flags, 0)
		if err == syscall.EPERM {
			fd, err = syscall.Open(p, syscall.O_RDONLY|syscall.O_CLOEXEC|flags, 0)
		}
		if err == syscall.EINTR {
			continue
		}
		if err != nil {
			return nil, &os.PathError{Op: "open", Path: p, Err: err}
		}
		return os.NewFile(uintptr(fd), p), nil
	}
}

// readDirNames lists a directory's names sorted in byte order, without
// touching its access time.
func readDirNames(p string) ([]string, error) {
	f, err := openNoAtime(p, syscall.O_DIRECTORY)
	if err != nil {
		return nil, err
	}
	defer f.Close()
	names, err := f.Readdirnames(-1)
	slices.Sort(names)
	return names, err
}
