package backup

import (
	"archive/tar"
	"context"
	"errors"
	"fmt"
	"io"
	"path"
	"slices"
	"strings"

	"github.com/cairnbackup/cairn/chunker"
	"github.com/cairnbackup/cairn/repo/blob"
	"github.com/cairnbackup/cairn/repo/tree"
	"golang.org/x/sys/unix"
)

// tarNode is one entry of a tar stream being assembled into trees.
type tarNode struct {
	node     tree.Node
	children map[string]*tarNode
	linkTo   *tarNode // a hardlink entry: take this node's contents
}

// Tar backs up a tar stream (GNU, PAX or ustar; long names, PAX headers
// and extended attributes as SCHILY.xattr records) as a tree: the entries
// become the snapshot's root. A leading "/" is removed from names; an
// entry whose name has a ".." component, or a hardlink to an entry not
// seen before, is skipped with a warning, and so is one with a name no
// file system holds (a component over NAME_MAX, 255 bytes): every restore
// of it would fail. Paths longer than PATH_MAX are kept: restores create
// them one directory at a time. Directories the stream implies but does
// not list get mode 0755. Memory: every entry's node (not its data) is
// held until the stream ends.
func Tar(ctx context.Context, up Uploader, r io.Reader, o Options) (*Result, error) {
	return TarInto(ctx, up, r, "", o)
}

// TarInto is Tar with the stream's entries placed in a directory called
// dir at the snapshot root; dir "" is Tar. The directory takes the owner,
// mode, times and extended attributes of the archive's root member ("./"
// or ".", as `tar c -C DIR .` writes it), or without one mode 0755, owner
// 0:0 and the current time. Without dir the stream's entries are the
// snapshot's root, which has no metadata of its own, so a root member's is
// not kept.
func TarInto(ctx context.Context, up Uploader, r io.Reader, dir string, o Options) (*Result, error) {
	if dir != "" {
		if err := checkRootName(dir); err != nil {
			return nil, err
		}
	}
	return run(ctx, up, o, func(ctx context.Context, w *walker) (blob.ID, error) {
		root := &tarNode{node: tree.Node{Type: tree.Dir, Mode: 0o755}, children: map[string]*tarNode{}}
		tr := tar.NewReader(r)
		ch := chunker.New(nil, w.o.Params, w.o.Table)
		links := map[*tarNode]uint64{}
		var rootMeta *tree.Node // the archive's root member, "./"
		strippedSlash := false
		for {
			if err := ctx.Err(); err != nil {
				return blob.ID{}, err
			}
			hdr, err := tr.Next()
			if errors.Is(err, io.EOF) {
				break
			}
			if err != nil {
				return blob.ID{}, fmt.Errorf("backup: tar: %w", err)
			}
			if hdr.Typeflag == tar.TypeXGlobalHeader {
				continue
			}
			name, stripped, err := tarName(hdr.Name)
			if stripped && !strippedSlash {
				strippedSlash = true
				w.warn("tar: removed the leading \"/\" from member names")
			}
			if err != nil {
				w.warn("tar: %q: skipped: %v", hdr.Name, err)
				continue
			}
			if name == "" { // the archive's root directory itself
				if hdr.Typeflag != tar.TypeDir {
					w.warn("tar: %q: skipped: the archive's root is not a directory", hdr.Name)
					continue
				}
				n, err := tarMeta(hdr, dir, w)
				if err != nil {
					w.warn("tar: %q: skipped: %v", hdr.Name, err)
					continue
				}
				rootMeta = &n
				continue
			}
			if err := fsName(name); err != nil {
				w.warn("tar: %q: skipped: %v", hdr.Name, err)
				continue
			}
			n, err := tarMeta(hdr, path.Base(name), w)
			if err != nil {
				w.warn("tar: %q: skipped: %v", hdr.Name, err)
				continue
			}
			parent := root.dir(path.Dir(name), hdr)
			if parent == nil {
				w.warn("tar: %q: skipped: a parent is not a directory", hdr.Name)
				continue
			}
			tn := &tarNode{node: n}
			switch hdr.Typeflag {
			case tar.TypeReg, tar.TypeGNUSparse: // archive/tar reports old-style (TypeRegA) files as TypeReg
				tn.node.Type = tree.File
				if err := w.p.readStream(ch, tr, &tn.node, hdr.Name); err != nil {
					return blob.ID{}, err
				}
				w.sum.Files++
				w.sum.FilesNew++
				w.sum.Bytes += tn.node.Size
				w.o.Progress.Files.Add(1)
				w.o.Progress.Bytes.Add(tn.node.Size)
			case tar.TypeLink:
				target, _, err := tarName(hdr.Linkname)
				var t *tarNode
				if err == nil {
					t = root.lookup(target)
				}
				if t == nil || t.node.Type != tree.File {
					w.warn("tar: %q: skipped: hardlink to %q, which is not an earlier file", hdr.Name, hdr.Linkname)
					continue
				}
				id, ok := links[t]
				if !ok {
					id = uint64(len(links) + 1)
					links[t] = id
					t.node.HardlinkID = id
				}
				tn.node = t.node
				tn.node.Name = path.Base(name)
				tn.node.HardlinkID = id
				tn.linkTo = t
				w.sum.Files++
				w.sum.FilesUnchanged++
			case tar.TypeDir:
				tn.node.Type = tree.Dir
				if old := parent.children[tn.node.Name]; old != nil && old.node.Type == tree.Dir {
					tn.children = old.children // a directory listed after its contents
				} else {
					tn.children = map[string]*tarNode{}
				}
				w.sum.Dirs++
			case tar.TypeSymlink:
				tn.node.Type = tree.Symlink
				tn.node.LinkTarget = hdr.Linkname
				tn.node.Size = uint64(len(hdr.Linkname))
				if hdr.Linkname == "" || len(hdr.Linkname) > tree.MaxLinkTargetLen {
					w.warn("tar: %q: skipped: bad symlink target", hdr.Name)
					continue
				}
				w.sum.Others++
			case tar.TypeChar, tar.TypeBlock:
				tn.node.Type = tree.CharDevice
				if hdr.Typeflag == tar.TypeBlock {
					tn.node.Type = tree.BlockDevice
				}
				tn.node.Rdev = unix.Mkdev(uint32(hdr.Devmajor), uint32(hdr.Devminor))
				w.sum.Others++
			case tar.TypeFifo:
				tn.node.Type = tree.FIFO
				w.sum.Others++
			default:
				w.warn("tar: %q: skipped: entry type %q is not supported", hdr.Name, hdr.Typeflag)
				continue
			}
			parent.children[tn.node.Name] = tn
		}
		if dir != "" {
			now := w.o.Now().UnixNano()
			top := tree.Node{Name: dir, Type: tree.Dir, Mode: 0o755, MTime: now, ATime: now, CTime: now}
			if rootMeta != nil {
				top = *rootMeta
				top.Name, top.Type = dir, tree.Dir
			}
			root = &tarNode{node: tree.Node{Type: tree.Dir, Mode: 0o755}, children: map[string]*tarNode{
				dir: {node: top, children: root.children},
			}}
		}
		return w.saveTarTree(ctx, root, "/")
	})
}

// tarName cleans a member name: "./a/b/" → "a/b". It reports whether a
// leading "/" was removed and refuses ".." components and bad names.
func tarName(name string) (string, bool, error) {
	stripped := strings.HasPrefix(name, "/")
	name = strings.TrimLeft(name, "/")
	var parts []string
	for part := range strings.SplitSeq(name, "/") {
		switch part {
		case "", ".":
			continue
		case "..":
			return "", stripped, errors.New(`the name has a ".." component`)
		}
		if err := tree.CheckName(part); err != nil {
			return "", stripped, err
		}
		parts = append(parts, part)
	}
	return strings.Join(parts, "/"), stripped, nil
}

// fsName refuses a member name (cleaned, relative) with a component
// longer than NAME_MAX, which no Linux file system holds. The tree format
// allows longer names (up to [tree.MaxNameLen]), but a snapshot whose
// files cannot be restored is no backup.
func fsName(name string) error {
	for part := range strings.SplitSeq(name, "/") {
		if len(part) > unix.NAME_MAX {
			return fmt.Errorf("the name %q is %d bytes, longer than a file system allows (%d)", part, len(part), unix.NAME_MAX)
		}
	}
	return nil
}

// checkRootName checks the name a stream or tar stream is stored under
// at the snapshot root: one name, not "." or "..", that a file system
// can hold.
func checkRootName(name string) error {
	err := tree.CheckName(name)
	if err == nil {
		err = fsName(name)
	}
	if err != nil {
		return fmt.Errorf("backup: root name: %w", err)
	}
	return nil
}

func tarMeta(hdr *tar.Header, name string, w *walker) (tree.Node, error) {
	n := tree.Node{
		Name: name, Mode: uint32(hdr.Mode) & 0o7777,
		UID: uint32(hdr.Uid), GID: uint32(hdr.Gid), User: hdr.Uname, Group: hdr.Gname,
		MTime: hdr.ModTime.UnixNano(),
	}
	if hdr.Uid < 0 || hdr.Gid < 0 || int64(hdr.Uid) > 1<<32-1 || int64(hdr.Gid) > 1<<32-1 {
		return n, errors.New("owner ID out of range")
	}
	if len(n.User) > tree.MaxOwnerLen || len(n.Group) > tree.MaxOwnerLen {
		return n, errors.New("owner name too long")
	}
	if !hdr.AccessTime.IsZero() {
		n.ATime = hdr.AccessTime.UnixNano()
	}
	if !hdr.ChangeTime.IsZero() {
		n.CTime = hdr.ChangeTime.UnixNano()
	}
	for k, v := range hdr.PAXRecords {
		if name, ok := strings.CutPrefix(k, "SCHILY.xattr."); ok {
			if name == "" || len(name) > tree.MaxXattrNameLen || len(v) > tree.MaxXattrValueLen {
				w.warn("tar: %q: extended attribute %q left out: too large", hdr.Name, name)
				continue
			}
			n.Xattrs = append(n.Xattrs, tree.Xattr{Name: name, Value: []byte(v)})
		}
	}
	slices.SortFunc(n.Xattrs, func(a, b tree.Xattr) int { return strings.Compare(a.Name, b.Name) })
	if len(n.Xattrs) > tree.MaxXattrs {
		return n, errors.New("too many extended attributes")
	}
	return n, nil
}

// dir returns the directory at p (slash-separated, "." for the root),
// creating missing ones with default metadata; nil if a component is not
// a directory.
func (t *tarNode) dir(p string, hdr *tar.Header) *tarNode {
	cur := t
	if p == "." || p == "" {
		return cur
	}
	for part := range strings.SplitSeq(p, "/") {
		next := cur.children[part]
		if next == nil {
			next = &tarNode{
				node:     tree.Node{Name: part, Type: tree.Dir, Mode: 0o755, MTime: hdr.ModTime.UnixNano()},
				children: map[string]*tarNode{},
			}
			cur.children[part] = next
		}
		if next.node.Type != tree.Dir {
			return nil
		}
		cur = next
	}
	return cur
}

func (t *tarNode) lookup(p string) *tarNode {
	cur := t
	for part := range strings.SplitSeq(p, "/") {
		if cur.children == nil {
			return nil
		}
		cur = cur.children[part]
		if cur == nil {
			return nil
		}
	}
	return cur
}

// saveTarTree stores the trees below t, deepest first.
func (w *walker) saveTarTree(ctx context.Context, t *tarNode, p string) (blob.ID, error) {
	names := make([]string, 0, len(t.children))
	for name := range t.children {
		names = append(names, name)
	}
	slices.Sort(names)
	out := tree.Tree{Nodes: make([]tree.Node, 0, len(names))}
	for _, name := range names {
		c := t.children[name]
		if c.linkTo != nil {
			hid := c.node.HardlinkID
			c.node = c.linkTo.node
			c.node.Name, c.node.HardlinkID = name, hid
		}
		if c.node.Type == tree.Dir {
			id, err := w.saveTarTree(ctx, c, path.Join(p, name))
			if err != nil {
				return blob.ID{}, err
			}
			c.node.Subtree = id
		}
		out.Nodes = append(out.Nodes, c.node)
	}
	return w.saveTree(ctx, &out, p)
}
