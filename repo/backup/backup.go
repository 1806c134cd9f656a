// Package backup turns file trees on disk into trees and blobs handed to
// an [Uploader]: the local repository's session, or (later) a wire client
// pushing to the appliance.
//
// # What is stored
//
// The snapshot's root tree mirrors the absolute paths backed up: backing
// up /srv/data gives the root a directory "srv" holding "data", with the
// metadata of the real directories along the way. Each file is cut into
// chunks by the repository's chunker; its whole-file SHA-256 is computed
// from the bytes actually read and recorded in its node.
//
// # Memory
//
// One chunk buffer of the chunker's maximum size, the chunker's read
// buffer, and the decoded listings of the directories on the path being
// walked: independent of the number of files and of the repository size.
//
// This first version walks and reads sequentially; the parallel pipeline
// replaces Run's internals without changing its contract.
package backup

import (
	"context"
	"errors"
	"fmt"
	"io"
	"os"
	"os/user"
	"path/filepath"
	"slices"
	"strconv"
	"strings"
	"syscall"
	"time"

	"github.com/cairnbackup/cairn/chunker"
	"github.com/cairnbackup/cairn/repo/blob"
	"github.com/cairnbackup/cairn/repo/snapshot"
	"github.com/cairnbackup/cairn/repo/tree"
	"github.com/minio/sha256-simd"
)

// Uploader stores blobs. *repo.Session satisfies it.
type Uploader interface {
	// SaveBlob stores data as a blob of type t unless it is stored
	// already, and returns its ID and whether it was new.
	SaveBlob(ctx context.Context, t blob.Type, data []byte) (blob.ID, bool, error)
}

// Options configure Run.
type Options struct {
	Params chunker.Params
	Table  *chunker.Table
	Now    func() time.Time
}

// Result is what Run made.
type Result struct {
	Tree    blob.ID
	Summary snapshot.Summary
}

type backuper struct {
	up     Uploader
	o      Options
	chunk  []byte
	ch     *chunker.Chunker
	sum    snapshot.Summary
	users  map[uint32]string
	groups map[uint32]string
}

// Run backs up paths (made absolute and cleaned) and returns the root
// tree. Files that cannot be read are skipped and reported as warnings
// in the summary; errors from the uploader or the context end the run.
func Run(ctx context.Context, up Uploader, paths []string, o Options) (*Result, error) {
	if len(paths) == 0 {
		return nil, errors.New("backup: no paths given")
	}
	if o.Now == nil {
		o.Now = time.Now
	}
	start := o.Now()
	b := &backuper{
		up: up, o: o,
		chunk:  make([]byte, 0, o.Params.Max),
		ch:     chunker.New(nil, o.Params, o.Table),
		users:  map[uint32]string{},
		groups: map[uint32]string{},
	}
	root := &pathNode{}
	for _, p := range paths {
		abs, err := filepath.Abs(p)
		if err != nil {
			return nil, fmt.Errorf("backup: %w", err)
		}
		if _, err := os.Lstat(abs); err != nil {
			return nil, fmt.Errorf("backup: %w", err)
		}
		root.add(abs)
	}
	id, err := b.virtual(ctx, root, "/")
	if err != nil {
		return nil, err
	}
	b.sum.Duration = o.Now().Sub(start)
	return &Result{Tree: id, Summary: b.sum}, nil
}

// pathNode is one component of the absolute paths being backed up.
type pathNode struct {
	children map[string]*pathNode
	leaf     bool // back up everything below
}

func (n *pathNode) add(abs string) {
	cur := n
	for _, part := range strings.Split(strings.Trim(abs, "/"), "/") {
		if cur.leaf {
			return
		}
		if part == "" {
			continue
		}
		if cur.children == nil {
			cur.children = map[string]*pathNode{}
		}
		next := cur.children[part]
		if next == nil {
			next = &pathNode{}
			cur.children[part] = next
		}
		cur = next
	}
	cur.leaf = true
	cur.children = nil
}

// virtual stores the tree of a directory on the way to the backed-up
// paths: it holds only the components that lead to them.
func (b *backuper) virtual(ctx context.Context, pn *pathNode, abs string) (blob.ID, error) {
	if pn.leaf {
		return b.dir(ctx, abs)
	}
	names := make([]string, 0, len(pn.children))
	for name := range pn.children {
		names = append(names, name)
	}
	slices.Sort(names)
	var t tree.Tree
	for _, name := range names {
		child := pn.children[name]
		p := filepath.Join(abs, name)
		fi, err := os.Lstat(p)
		if err != nil {
			return blob.ID{}, fmt.Errorf("backup: %w", err)
		}
		n, err := b.node(name, fi)
		if err != nil {
			return blob.ID{}, err
		}
		switch {
		case !child.leaf && n.Type != tree.Dir:
			return blob.ID{}, fmt.Errorf("backup: %s is not a directory", p)
		case !child.leaf:
			if n.Subtree, err = b.virtual(ctx, child, p); err != nil {
				return blob.ID{}, err
			}
			b.sum.Dirs++
		default:
			if ok, err := b.fill(ctx, p, &n); err != nil || !ok {
				if err != nil {
					return blob.ID{}, err
				}
				continue
			}
		}
		t.Nodes = append(t.Nodes, n)
	}
	return b.saveTree(ctx, &t, abs)
}

// dir stores the tree of a directory and everything below it.
func (b *backuper) dir(ctx context.Context, abs string) (blob.ID, error) {
	if err := ctx.Err(); err != nil {
		return blob.ID{}, err
	}
	entries, err := readDir(abs)
	if err != nil {
		b.warn("%s: %v", abs, err)
	}
	var t tree.Tree
	for _, e := range entries {
		p := filepath.Join(abs, e.Name())
		if err := tree.CheckName(e.Name()); err != nil {
			b.warn("%s: skipped: %v", p, err)
			continue
		}
		fi, err := os.Lstat(p)
		if err != nil {
			b.warn("%s: %v", p, err)
			continue
		}
		n, err := b.node(e.Name(), fi)
		if err != nil {
			return blob.ID{}, err
		}
		ok, err := b.fill(ctx, p, &n)
		if err != nil {
			return blob.ID{}, err
		}
		if ok {
			t.Nodes = append(t.Nodes, n)
		}
	}
	return b.saveTree(ctx, &t, abs)
}

// fill stores what node n at path p refers to: a file's chunks or a
// directory's tree. It returns false when the entry is skipped.
func (b *backuper) fill(ctx context.Context, p string, n *tree.Node) (bool, error) {
	var err error
	switch n.Type {
	case tree.Dir:
		n.Subtree, err = b.dir(ctx, p)
		b.sum.Dirs++
	case tree.File:
		var ok bool
		ok, err = b.file(ctx, p, n)
		if err == nil && !ok {
			return false, nil
		}
		b.sum.Files++
		b.sum.FilesNew++
		b.sum.Bytes += n.Size
	case tree.Symlink:
		n.LinkTarget, err = os.Readlink(p)
		if err != nil {
			b.warn("%s: %v", p, err)
			return false, nil
		}
		n.Size = uint64(len(n.LinkTarget))
		// Reading a link updates its access time, so recording it
		// would make every backup's tree differ: symlinks carry none.
		n.ATime = 0
		b.sum.Others++
	default:
		b.sum.Others++
	}
	return err == nil, err
}

func (b *backuper) saveTree(ctx context.Context, t *tree.Tree, abs string) (blob.ID, error) {
	data, err := tree.Encode(nil, t)
	if err != nil {
		return blob.ID{}, fmt.Errorf("backup: %s: %w", abs, err)
	}
	id, _, err := b.up.SaveBlob(ctx, blob.Tree, data)
	return id, err
}

func (b *backuper) warn(format string, args ...any) {
	b.sum.Warnings = append(b.sum.Warnings, fmt.Sprintf(format, args...))
}

// file reads a regular file, stores its chunks and fills Content, Size
// and FileHash. It returns false (and a warning) if the file cannot be
// read.
func (b *backuper) file(ctx context.Context, p string, n *tree.Node) (bool, error) {
	f, err := openNoAtime(p, 0)
	if err != nil {
		b.warn("%s: %v", p, err)
		return false, nil
	}
	defer f.Close()
	h := sha256.New()
	b.ch.Reset(io.TeeReader(f, h))
	n.Content = n.Content[:0]
	var size uint64
	for {
		b.chunk, err = b.ch.Next(b.chunk)
		if errors.Is(err, io.EOF) {
			break
		}
		if err != nil {
			b.warn("%s: %v", p, err)
			return false, nil
		}
		id, _, err := b.up.SaveBlob(ctx, blob.Data, b.chunk)
		if err != nil {
			return false, err
		}
		n.Content = append(n.Content, tree.Chunk{ID: id, Size: uint64(len(b.chunk))})
		size += uint64(len(b.chunk))
	}
	if size != n.Size {
		b.warn("%s: changed while being read (size %d at start, %d read)", p, n.Size, size)
	}
	n.Size = size
	n.FileHash = blob.ID(h.Sum(nil))
	b.sum.BytesRead += size
	return true, nil
}

// node fills the metadata of an entry from its lstat result.
func (b *backuper) node(name string, fi os.FileInfo) (tree.Node, error) {
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
		return n, fmt.Errorf("backup: %s: unknown file type %v", name, m)
	}
	st, ok := fi.Sys().(*syscall.Stat_t)
	if !ok {
		n.MTime = fi.ModTime().UnixNano()
		return n, nil
	}
	n.UID, n.GID = st.Uid, st.Gid
	n.User, n.Group = b.userName(st.Uid), b.groupName(st.Gid)
	n.MTime = st.Mtim.Nano()
	n.ATime = st.Atim.Nano()
	n.CTime = st.Ctim.Nano()
	n.Inode = st.Ino
	n.DeviceID = st.Dev
	n.Links = st.Nlink
	if n.Type == tree.BlockDevice || n.Type == tree.CharDevice {
		n.Rdev = st.Rdev
	}
	return n, nil
}

func (b *backuper) userName(uid uint32) string {
	if name, ok := b.users[uid]; ok {
		return name
	}
	name := ""
	if u, err := user.LookupId(strconv.FormatUint(uint64(uid), 10)); err == nil {
		name = u.Username
	}
	b.users[uid] = name
	return name
}

func (b *backuper) groupName(gid uint32) string {
	if name, ok := b.groups[gid]; ok {
		return name
	}
	name := ""
	if g, err := user.LookupGroupId(strconv.FormatUint(uint64(gid), 10)); err == nil {
		name = g.Name
	}
	b.groups[gid] = name
	return name
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

// readDir lists a directory sorted by name, without touching its atime.
func readDir(p string) ([]os.DirEntry, error) {
	f, err := openNoAtime(p, syscall.O_DIRECTORY)
	if err != nil {
		return nil, err
	}
	defer f.Close()
	entries, err := f.ReadDir(-1)
	slices.SortFunc(entries, func(a, b os.DirEntry) int { return strings.Compare(a.Name(), b.Name()) })
	return entries, err
}
