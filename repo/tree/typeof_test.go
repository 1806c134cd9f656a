package tree_test

import (
	"testing"

	"github.com/cairnbackup/cairn/repo/tree"
	"golang.org/x/sys/unix"
)

// TypeOfMode reads the type bits of an lstat mode, ignoring the
// permission bits, and ModeBits gives them back.
func TestTypeOfMode(t *testing.T) {
	for _, c := range []struct {
		bits uint32
		want tree.NodeType
	}{
		{unix.S_IFREG, tree.File},
		{unix.S_IFDIR, tree.Dir},
		{unix.S_IFLNK, tree.Symlink},
		{unix.S_IFBLK, tree.BlockDevice},
		{unix.S_IFCHR, tree.CharDevice},
		{unix.S_IFIFO, tree.FIFO},
		{unix.S_IFSOCK, tree.Socket},
		{0o070000, 0},
		{0, 0},
	} {
		if got := tree.TypeOfMode(c.bits | 0o7777); got != c.want {
			t.Errorf("TypeOfMode(%o) = %v, want %v", c.bits|0o7777, got, c.want)
		}
		if c.want != 0 {
			if got := c.want.ModeBits(); got != c.bits {
				t.Errorf("%v.ModeBits() = %o, want %o", c.want, got, c.bits)
			}
		}
	}
	for _, bad := range []tree.NodeType{0, 8, 255} {
		if got := bad.ModeBits(); got != 0 {
			t.Errorf("NodeType(%d).ModeBits() = %o, want 0", bad, got)
		}
	}
}
