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

	"github.com/cairnbackup/cairn/repo/internal/xattr"
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

// statNode is the node of entry name whose lstat is st, without its
// contents, extended attributes or link target.
func statNode(name string, st *unix.Stat_t, o *owners) (tree.Node, error) {
	n := tree.Node{Name: name, Mode: st.Mode & 0o7777}
	if n.Type = tree.TypeOfMode(st.Mode); n.Type == 0 {
		return n, fmt.Errorf("unknown file type %o", st.Mode&unix.S_IFMT)
	}
	if n.Type == tree.File {
		n.Size = uint64(st.Size)
	}
	n.UID, n.GID = st.Uid, st.Gid
	n.User, n.Group = o.user(st.Uid), o.group(st.Gid)
	n.MTime = st.Mtim.Nano()
	n.ATime = st.Atim.Nano()
	n.CTime = st.Ctim.Nano()
	n.Inode = st.Ino
	n.DeviceID = st.Dev
	n.Links = uint64(st.Nlink)
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

// Walking by descriptor.
//
// Whoever can write a directory being backed up can replace anything in
// it at any moment, a subdirectory with a symbolic link to /root among
// them. A walker that named each entry by its path (lstat, open, readlink,
// listxattr of "dir/sub/name") followed such a link in every path that
// went through it: it listed the link's target in place of "sub" and
// stored what it found there, readable to whoever may restore the
// snapshot. So the walker never resolves a path of more than one
// component: it keeps each directory it lists open and reaches the
// entries inside through that descriptor (fstatat, openat, readlinkat,
// and extended attributes through /proc/self/fd/N/name), never following
// a symbolic link (AT_SYMLINK_NOFOLLOW, O_NOFOLLOW); a directory it opens
// must be the inode it listed (openDirAt), a file it reads the inode it
// stat'ed (sameFile). What was swapped in the meantime is left out with a
// warning. Only the backed-up paths themselves are given whole, and they
// too are reached one component at a time from "/".

// openRoot opens "/", where every walk starts.
func openRoot() (*os.File, error) {
	return openAt(unix.AT_FDCWD, "/", "/", unix.O_DIRECTORY)
}

// lstatAt is the lstat of entry name of directory dir (path p, for
// errors).
func lstatAt(dir int, name, p string) (*unix.Stat_t, error) {
	st := new(unix.Stat_t)
	for {
		err := unix.Fstatat(dir, name, st, unix.AT_SYMLINK_NOFOLLOW)
		if err == unix.EINTR {
			continue
		}
		if err != nil {
			return nil, &os.PathError{Op: "lstat", Path: p, Err: err}
		}
		return st, nil
	}
}

// openAt opens entry name of directory dir (path p, for errors) for
// reading, without following a symbolic link there and without updating
// its access time (O_NOATIME, so that a backup does not change what the
// next backup records; allowed only to the file's owner and root, others
// fall back to a plain open).
func openAt(dir int, name, p string, flags int) (*os.File, error) {
	flags |= unix.O_RDONLY | unix.O_CLOEXEC | unix.O_NOFOLLOW
	for {
		fd, err := unix.Openat(dir, name, flags|unix.O_NOATIME, 0)
		if err == unix.EPERM {
			fd, err = unix.Openat(dir, name, flags, 0)
		}
		if err == unix.EINTR {
			continue
		}
		if err != nil {
			return nil, &os.PathError{Op: "open", Path: p, Err: err}
		}
		return os.NewFile(uintptr(fd), p), nil
	}
}

// errReplacedDir is why a directory is left out that is no longer, when
// the walker opens it, the directory it listed in its parent.
var errReplacedDir = errors.New("replaced since it was listed (not the directory it was): not read; the next backup reads what is there then")

// openDirAt opens directory entry name of dir (path p), the inode ino
// of device dev when it was listed, for listing: errReplacedDir if name
// is no longer that directory.
func openDirAt(dir int, name, p string, dev, ino uint64) (*os.File, error) {
	if testHookBeforeOpen != nil {
		testHookBeforeOpen(p)
	}
	f, err := openAt(dir, name, p, unix.O_DIRECTORY)
	if errors.Is(err, unix.ELOOP) || errors.Is(err, unix.ENOTDIR) {
		return nil, errReplacedDir
	}
	if err != nil {
		return nil, err
	}
	now, err := fstat(f)
	if err != nil {
		f.Close()
		return nil, &os.PathError{Op: "fstat", Path: p, Err: err}
	}
	if now.Dev != dev || now.Ino != ino {
		f.Close()
		return nil, errReplacedDir
	}
	return f, nil
}

// errReplacedLink is why a symbolic link is left out that is no longer,
// when the walker reads it, a symbolic link.
var errReplacedLink = errors.New("replaced since it was listed (not the symbolic link it was): not read; the next backup reads what is there then")

// readlinkAt is the target of symbolic link name in directory dir (path
// p, for errors): errReplacedLink if name is no longer a link.
func readlinkAt(dir int, name, p string) (string, error) {
	if testHookBeforeOpen != nil {
		testHookBeforeOpen(p)
	}
	buf := make([]byte, tree.MaxLinkTargetLen+1)
	for {
		n, err := unix.Readlinkat(dir, name, buf)
		if err == unix.EINTR {
			continue
		}
		if err == unix.EINVAL {
			return "", errReplacedLink
		}
		if err != nil {
			return "", &os.PathError{Op: "readlink", Path: p, Err: err}
		}
		if n > tree.MaxLinkTargetLen {
			return "", fmt.Errorf("link target longer than %d bytes", tree.MaxLinkTargetLen)
		}
		return string(buf[:n]), nil
	}
}

// xattrReads counts readXattrs calls, for tests.
var xattrReads atomic.Uint64

// readXattrs reads the extended attributes of entry name of directory
// dir ([xattr.ReadAt]), counted.
func readXattrs(dir int, name string) ([]tree.Xattr, error) {
	xattrReads.Add(1)
	return xattr.ReadAt(dir, name)
}

// checkProc fails unless /proc/self/fd is there, as readXattrs needs it.
func checkProc() error {
	if _, err := os.Stat("/proc/self/fd"); err != nil {
		return fmt.Errorf("backup: /proc is needed to read extended attributes: %w", err)
	}
	return nil
}

// readDirNames lists an open directory's names sorted in byte order.
func readDirNames(d *os.File) ([]string, error) {
	names, err := d.Readdirnames(-1)
	slices.Sort(names)
	return names, err
}
