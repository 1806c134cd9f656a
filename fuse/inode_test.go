package fuse

import (
	"testing"

	"github.com/cairnbackup/cairn/repo/blob"
	"github.com/cairnbackup/cairn/repo/tree"
)

func TestFuseInodeNumbers(t *testing.T) {
	a, b := blob.Hash([]byte("snapshot a")), blob.Hash([]byte("snapshot b"))
	// Deterministic: the same inputs give the same number, in any mount.
	p, n := "srv/git", "nodes/lyra"
	if treeIno(a, p) != treeIno(a, "srv/"+"git") || hardlinkIno(a, 7) != hardlinkIno(a, 3+4) || metaIno(n) != metaIno("nodes/"+"lyra") {
		t.Fatal("inode numbers are not deterministic")
	}
	// Pinned values: changing the derivation changes every mount's
	// inode numbers, which tools that remember them (backup programs
	// reading the mount, find -inum) would notice.
	if got := [3]uint64{treeIno(blob.ID{}, "srv"), hardlinkIno(blob.ID{}, 1), metaIno("nodes")}; got != [3]uint64{0x843a112b60cd977e, 0x324ced70a79bf7eb, 0xaa7de0f0d71e6942} {
		t.Errorf("derivation changed: %#x", got)
	}
	seen := map[uint64]string{}
	for name, ino := range map[string]uint64{
		"a root":          treeIno(a, ""),
		"b root":          treeIno(b, ""),
		"a srv":           treeIno(a, "srv"),
		"b srv":           treeIno(b, "srv"),
		"a srv/git":       treeIno(a, "srv/git"),
		"a hardlink 1":    hardlinkIno(a, 1),
		"a hardlink 2":    hardlinkIno(a, 2),
		"b hardlink 1":    hardlinkIno(b, 1),
		"meta root":       metaIno(""),
		"meta nodes":      metaIno("nodes"),
		"meta nodes/lyra": metaIno("nodes/lyra"),
	} {
		if ino <= rootIno {
			t.Errorf("%s: reserved inode %d", name, ino)
		}
		if other, ok := seen[ino]; ok {
			t.Errorf("%s and %s share inode %#x", name, other, ino)
		}
		seen[ino] = name
	}
	// The reserved numbers are moved out of the way.
	for _, sum := range [][]byte{make([]byte, 8), {0, 0, 0, 0, 0, 0, 0, 1}} {
		if ino := inoFrom(sum); ino <= rootIno {
			t.Errorf("inoFrom(%x) = %d", sum, ino)
		}
	}
}

// All names of a hardlinked file share an inode; other entries get one
// per path; a directory never uses its hardlink ID.
func TestFuseChildIno(t *testing.T) {
	id := blob.Hash([]byte("snap"))
	f1 := &tree.Node{Name: "a", Type: tree.File, HardlinkID: 42}
	f2 := &tree.Node{Name: "b", Type: tree.File, HardlinkID: 42}
	plain := &tree.Node{Name: "c", Type: tree.File}
	dir := &tree.Node{Name: "d", Type: tree.Dir, HardlinkID: 42}
	if childIno(id, "x/a", f1) != childIno(id, "y/b", f2) {
		t.Error("hardlinked names have different inodes")
	}
	if childIno(id, "x/a", f1) == childIno(blob.Hash([]byte("other")), "x/a", f1) {
		t.Error("hardlinks of two snapshots share an inode")
	}
	if childIno(id, "c", plain) != treeIno(id, "c") || childIno(id, "d", dir) != treeIno(id, "d") {
		t.Error("plain entries must use their path")
	}
}

// A synthetic symlink whose target moves (latest) becomes another
// inode, so the kernel's cached target of the old one is never used;
// directories keep theirs.
func TestFuseMetaEntryIno(t *testing.T) {
	old := &metaEntry{kind: metaLink, target: "2026-01-01T00:00:00Z"}
	moved := &metaEntry{kind: metaLink, target: "2026-01-02T00:00:00Z"}
	p := "nodes/lyra/etc/latest"
	if old.ino(p) == moved.ino(p) || old.ino(p) != (&metaEntry{kind: metaLink, target: old.target}).ino(p) {
		t.Error("link inodes must follow (path, target)")
	}
	dir := &metaEntry{kind: metaDir}
	if dir.ino("nodes/lyra") != metaIno("nodes/lyra") {
		t.Error("directory inode")
	}
}
