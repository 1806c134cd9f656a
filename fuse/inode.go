package fuse

import (
	"encoding/binary"

	"github.com/cairnbackup/cairn/repo/blob"
	"github.com/minio/sha256-simd"
)

// rootIno is the inode number of the mount's root directory; go-fuse
// and the kernel reserve it.
const rootIno = 1

// Domains separate the three kinds of inode number, so that no input of
// one kind hashes like an input of another.
const (
	domainTree     = "cairn-tree\x00"
	domainHardlink = "cairn-hardlink\x00"
	domainMeta     = "cairn-meta\x00"
)

// treeIno is the inode number of the entry at p (slash-separated,
// relative to the snapshot's root tree, "" for the root itself) in
// snapshot id.
func treeIno(id blob.ID, p string) uint64 {
	h := sha256.New()
	h.Write([]byte(domainTree))
	h.Write(id[:])
	h.Write([]byte(p))
	return inoFrom(h.Sum(nil))
}

// hardlinkIno is the inode number shared by every name of the hardlinked
// file with hardlink ID link in snapshot id.
func hardlinkIno(id blob.ID, link uint64) uint64 {
	var b [len(domainHardlink) + blob.IDSize + 8]byte
	n := copy(b[:], domainHardlink)
	n += copy(b[n:], id[:])
	binary.BigEndian.PutUint64(b[n:], link)
	return inoFrom(sha256Sum(b[:]))
}

// metaIno is the inode number of the synthetic entry at p (a path of the
// layout, such as "nodes/lyra").
func metaIno(p string) uint64 {
	return inoFrom(sha256Sum([]byte(domainMeta + p)))
}

func sha256Sum(b []byte) []byte {
	s := sha256.Sum256(b)
	return s[:]
}

// inoFrom takes the first 8 bytes of a digest as the inode number,
// moving the two reserved values 0 (no inode) and 1 (the root) out of
// the way.
func inoFrom(sum []byte) uint64 {
	ino := binary.BigEndian.Uint64(sum)
	if ino <= rootIno {
		ino += 2
	}
	return ino
}
