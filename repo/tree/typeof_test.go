package tree_test

import (
	"io/fs"
	"testing"

	"github.com/cairnbackup/cairn/repo/tree"
)

func TestTypeOf(t *testing.T) {
	for _, c := range []struct {
		mode fs.FileMode
		want tree.NodeType
	}{
		{0o644, tree.File},
		{fs.ModeDir | 0o755, tree.Dir},
		{fs.ModeSymlink | 0o777, tree.Symlink},
		{fs.ModeDevice | 0o600, tree.BlockDevice},
		{fs.ModeDevice | fs.ModeCharDevice | 0o600, tree.CharDevice},
		{fs.ModeNamedPipe | 0o600, tree.FIFO},
		{fs.ModeSocket | 0o755, tree.Socket},
		{fs.ModeIrregular, 0},
	} {
		if got := tree.TypeOf(c.mode); got != c.want {
			t.Errorf("TypeOf(%v) = %v, want %v", c.mode, got, c.want)
		}
	}
}
