// Package xattr reads a file's extended attributes the one way cairn
// does: backup records them with [ReadAt] (through the directory it
// walks), and restore's verifier reads a restored file's with [ReadAt] to
// compare them with the snapshot's.
//
// # Memory
//
// [Read] holds the attribute names and values of one file, each value
// bounded by tree.MaxXattrValueLen and their number by tree.MaxXattrs.
package xattr

import (
	"errors"
	"fmt"
	"slices"
	"strconv"
	"strings"

	"github.com/cairnbackup/cairn/repo/tree"
	"golang.org/x/sys/unix"
)

// Read returns the extended attributes of p (not following a final
// symlink), sorted by name; POSIX ACLs are among them
// (system.posix_acl_access, system.posix_acl_default). A file system
// without extended attributes gives none. An attribute removed while it
// is read is left out; one larger than a tree can hold, or more of them
// than it can hold, is an error.
func Read(p string) ([]tree.Xattr, error) {
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

// ReadAt is [Read] of entry name of the directory open as dir. The
// system calls that read attributes take a path (before Linux 6.13), so
// /proc/self/fd/DIR/NAME stands for the entry: no path is resolved
// outside the directory, and no symbolic link is followed.
func ReadAt(dir int, name string) ([]tree.Xattr, error) {
	p := make([]byte, 0, len("/proc/self/fd/")+12+len(name))
	p = append(p, "/proc/self/fd/"...)
	p = strconv.AppendInt(p, int64(dir), 10)
	p = append(p, '/')
	p = append(p, name...)
	return Read(string(p))
}
