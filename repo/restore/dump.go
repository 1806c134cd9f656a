package restore

import (
	"archive/tar"
	"context"
	"errors"
	"fmt"
	"io"
	"time"

	"github.com/cairnbackup/cairn/repo/blob"
	"github.com/cairnbackup/cairn/repo/snapfs"
	"github.com/cairnbackup/cairn/repo/tree"
	"github.com/minio/sha256-simd"
	"golang.org/x/sys/unix"
)

// dumpZeros is what a hole is written from.
var dumpZeros [64 << 10]byte

// WriteFile writes the contents of file node n to w: holes as zeros,
// every chunk authenticated and re-hashed by the loader, chunks loaded
// [ReadAhead] ahead. After the last byte it compares the SHA-256 of
// everything written with the hash recorded at backup time (unless the
// node records none) and returns a *[MismatchError] naming n.Name when
// they differ: the bytes have been written by then, so a caller must
// treat them as damaged. Memory: ReadAhead+1 chunk buffers.
func WriteFile(ctx context.Context, l snapfs.BlobLoader, n *tree.Node, w io.Writer) error {
	return writeContents(ctx, l, n, n.Name, w)
}

func writeContents(ctx context.Context, l snapfs.BlobLoader, n *tree.Node, name string, w io.Writer) error {
	f, err := snapfs.OpenFile(l, n)
	if err != nil {
		return err
	}
	h := sha256.New()
	for c, err := range f.Chunks(ctx, ReadAhead) {
		if err != nil {
			return fmt.Errorf("%s: offset %d: %w", name, c.Offset, err)
		}
		if c.Hole {
			for left := c.Size; left > 0; {
				k := min(left, int64(len(dumpZeros)))
				if _, err := w.Write(dumpZeros[:k]); err != nil {
					return err
				}
				h.Write(dumpZeros[:k])
				left -= k
			}
			continue
		}
		if _, err := w.Write(c.Data); err != nil {
			return err
		}
		h.Write(c.Data)
	}
	if got := blob.ID(h.Sum(nil)); !n.FileHash.IsZero() && got != n.FileHash {
		return &MismatchError{Path: name, Want: n.FileHash, Got: got}
	}
	return nil
}

// WriteTar writes node n to w as a tar stream in the PAX format. For a
// directory (such as the synthetic root node [snapfs.Lookup] returns for
// a snapshot's root) the stream holds everything below it, with names
// relative to it ("etc/", "etc/hosts"), but not the directory itself; any
// other node becomes one entry named n.Name.
//
// Every type is written: files (holes as zeros, contents checked like
// [WriteFile]), directories, symlinks, a file's second and later names
// (by [tree.Node.HardlinkID]) as hard links to the first, character and
// block devices and FIFOs; sockets are left out. Each entry carries the
// permission bits with setuid, setgid and sticky, numeric and named
// owner and group, modification and access times with nanoseconds, and
// extended attributes as SCHILY.xattr records (as GNU tar and bsdtar
// write them).
//
// WriteTar stops at the first error, a tree or chunk that cannot be
// loaded or a file whose contents do not match their recorded SHA-256,
// without finishing the archive, so a reader sees a truncated stream
// rather than a complete but wrong one. Memory: one decoded tree per
// directory level, a read-ahead window of chunks and the first name of
// every hard-linked file.
func WriteTar(ctx context.Context, l snapfs.BlobLoader, n tree.Node, w io.Writer) error {
	d := &tarDumper{l: l, tw: tar.NewWriter(w), links: map[uint64]string{}}
	var err error
	if n.Type == tree.Dir {
		err = d.dir(ctx, n.Subtree)
	} else {
		err = d.entry(ctx, &n, n.Name)
	}
	if err != nil {
		return err
	}
	return d.tw.Close()
}

type tarDumper struct {
	l     snapfs.BlobLoader
	tw    *tar.Writer
	links map[uint64]string // hardlink ID → first name written
}

// dir writes everything below directory tree id, walking with
// [snapfs.Walk] (trees read ahead while files are written).
func (d *tarDumper) dir(ctx context.Context, id blob.ID) error {
	for e, err := range snapfs.Walk(ctx, d.l, id, snapfs.WalkOptions{}) {
		var te *snapfs.TreeError
		switch {
		case errors.As(err, &te) && ctx.Err() == nil && te.Path == "":
			return te.Err
		case errors.As(err, &te) && ctx.Err() == nil:
			return fmt.Errorf("%s: %w", te.Path, te.Err)
		case err != nil:
			return err
		}
		if err := d.entry(ctx, e.Node, e.Path); err != nil {
			return err
		}
	}
	return nil
}

func (d *tarDumper) entry(ctx context.Context, n *tree.Node, name string) error {
	hdr := tarHeader(n, name)
	if hdr == nil {
		return nil
	}
	if n.Type == tree.File && n.HardlinkID != 0 {
		if first, ok := d.links[n.HardlinkID]; ok {
			hdr.Typeflag, hdr.Linkname, hdr.Size = tar.TypeLink, first, 0
		} else {
			d.links[n.HardlinkID] = name
		}
	}
	if err := d.tw.WriteHeader(hdr); err != nil {
		return fmt.Errorf("%s: %w", name, err)
	}
	if hdr.Typeflag != tar.TypeReg {
		return nil
	}
	return writeContents(ctx, d.l, n, name, d.tw)
}

// tarHeader returns the header of node n under name, or nil for a
// socket, which a tar stream does not carry. A file's header is that of
// its contents; the caller turns the second and later names of a
// hard-linked file into links.
func tarHeader(n *tree.Node, name string) *tar.Header {
	h := &tar.Header{
		Name:    name,
		Mode:    int64(n.Mode),
		Uid:     int(n.UID),
		Gid:     int(n.GID),
		Uname:   n.User,
		Gname:   n.Group,
		ModTime: time.Unix(0, n.MTime),
		Format:  tar.FormatPAX,
	}
	if n.ATime != 0 {
		h.AccessTime = time.Unix(0, n.ATime)
	}
	if len(n.Xattrs) > 0 {
		h.PAXRecords = make(map[string]string, len(n.Xattrs))
		for _, x := range n.Xattrs {
			h.PAXRecords["SCHILY.xattr."+x.Name] = string(x.Value)
		}
	}
	switch n.Type {
	case tree.File:
		h.Typeflag, h.Size = tar.TypeReg, int64(n.Size)
	case tree.Dir:
		h.Typeflag, h.Name = tar.TypeDir, name+"/"
	case tree.Symlink:
		h.Typeflag, h.Linkname = tar.TypeSymlink, n.LinkTarget
	case tree.CharDevice, tree.BlockDevice:
		h.Typeflag = tar.TypeChar
		if n.Type == tree.BlockDevice {
			h.Typeflag = tar.TypeBlock
		}
		h.Devmajor, h.Devminor = int64(unix.Major(n.Rdev)), int64(unix.Minor(n.Rdev))
	case tree.FIFO:
		h.Typeflag = tar.TypeFifo
	default:
		return nil
	}
	return h
}
