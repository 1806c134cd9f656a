package backup

import (
	"errors"
	"fmt"
	"hash/fnv"
	"os"
	"os/user"
	"slices"
	"strconv"
	"strings"
	"sync/atomic"
	"syscall"

	"github.com/cairnbackup/cairn/repo/tree"
	"golang.org/x/sys/unix"
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
	if name, ok := o.users[uid]; ok {
		return name
	}
	name := ""
	if u, err := user.LookupId(strconv.FormatUint(uint64(uid), 10)); err == nil {
		name = u.Username
	}
	o.users[uid] = name
	return name
}

func (o *owners) group(gid uint32) string {
	if name, ok := o.groups[gid]; ok {
		return name
	}
	name := ""
	if g, err := user.LookupGroupId(strconv.FormatUint(uint64(gid), 10)); err == nil {
		name = g.Name
	}
	o.groups[gid] = name
	return name
}

// statNode fills a node's metadata from an lstat result.
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
	switch {
	case m.IsRegular():
		n.Type = tree.File
		n.Size = uint64(fi.Size())
	case m.IsDir():
		n.Type = tree.Dir
	case m&os.ModeSymlink != 0:
		n.Type = tree.Symlink
	case m&os.ModeDevice != 0 && m&os.ModeCharDevice != 0:
		n.Type = tree.CharDevice
	case m&os.ModeDevice != 0:
		n.Type = tree.BlockDevice
	case m&os.ModeNamedPipe != 0:
		n.Type = tree.FIFO
	case m&os.ModeSocket != 0:
		n.Type = tree.Socket
	default:
		return n, fmt.Errorf("unknown file type %v", m)
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

// readXattrs returns the extended attributes of p (not following a final
// symlink), sorted by name; POSIX ACLs are among them
// (system.posix_acl_access, system.posix_acl_default).
func readXattrs(p string) ([]tree.Xattr, error) {
	xattrReads.Add(1)
	size, err := unix.Llistxattr(p, nil)
	if err != nil {
		if errors.Is(err, unix.ENOTSUP) || errors.Is(err, unix.ENODATA) {
			return nil, nil
		}
		return nil, err
	}
	if size == 0 {
		return nil, nil
	}
	buf := make([]byte, size)
	size, err = unix.Llistxattr(p, buf)
	if err != nil {
		return nil, err
	}
	var out []tree.Xattr
	for name := range strings.SplitSeq(string(buf[:size]), "\x00") {
		if name == "" {
			continue
		}
		vs, err := unix.Lgetxattr(p, name, nil)
		if errors.Is(err, unix.ENODATA) {
			continue // removed meanwhile
		}
		if err != nil {
			return nil, fmt.Errorf("xattr %s: %w", name, err)
		}
		v := make([]byte, vs)
		vs, err = unix.Lgetxattr(p, name, v)
		if err != nil {
			return nil, fmt.Errorf("xattr %s: %w", name, err)
		}
		if len(name) > tree.MaxXattrNameLen || vs > tree.MaxXattrValueLen {
			return nil, fmt.Errorf("xattr %s: too large to store (%d bytes)", name, vs)
		}
		out = append(out, tree.Xattr{Name: name, Value: v[:vs]})
	}
	slices.SortFunc(out, func(a, b tree.Xattr) int { return strings.Compare(a.Name, b.Name) })
	if len(out) > tree.MaxXattrs {
		return nil, fmt.Errorf("%d extended attributes, more than %d", len(out), tree.MaxXattrs)
	}
	return out, nil
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
