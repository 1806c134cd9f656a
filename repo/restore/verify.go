package restore

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"io"
	"os"
	"path"
	"slices"
	"sort"
	"strings"
	"sync"
	"syscall"
	"time"

	"github.com/cairnbackup/cairn/repo/blob"
	"github.com/cairnbackup/cairn/repo/caps"
	"github.com/cairnbackup/cairn/repo/internal/xattr"
	"github.com/cairnbackup/cairn/repo/snapfs"
	"github.com/cairnbackup/cairn/repo/tree"
	"github.com/minio/sha256-simd"
	"golang.org/x/sync/errgroup"
	"golang.org/x/sys/unix"
)

// Difference is one way a directory differs from a snapshot.
type Difference struct {
	Path string `json:"path"`
	What string `json:"what"`
}

func (d Difference) String() string { return d.Path + ": " + d.What }

// Verify compares target with the node at sub of the snapshot whose root
// tree is root, as Run would have restored it, without writing anything:
// types, modes, sizes, modification times, symlink targets, extended
// attributes, hardlink groups, owners (when run as root), and every
// file's contents against its recorded SHA-256. Entries in target that
// the snapshot does not have are reported too, inside o.Paths (see
// [Options]). Include and Exclude apply as for Run.
func Verify(ctx context.Context, l snapfs.BlobLoader, root blob.ID, sub string, target string, o Options) ([]Difference, error) {
	node, err := snapfs.Lookup(ctx, l, root, sub)
	if err != nil {
		return nil, err
	}
	r, err := os.OpenRoot(target)
	if err != nil {
		return nil, fmt.Errorf("verify: %w", err)
	}
	defer r.Close()
	if o.Workers <= 0 {
		o.Workers = 2
	}
	if o.Paths != nil {
		own := make([]string, len(o.Paths))
		for i, p := range o.Paths {
			own[i] = path.Clean("/" + p)
		}
		o.Paths = own
	}
	v := &verifier{l: l, root: r, o: o, asRoot: caps.Have(caps.Chown), links: map[uint64]linkSeen{}}
	base := "/" + strings.Trim(path.Clean("/"+sub), "/")
	if base == "/" {
		base = ""
	}
	g, gctx := errgroup.WithContext(ctx)
	jobs := make(chan fileJob, 2*o.Workers)
	for range o.Workers {
		g.Go(func() error {
			for j := range jobs {
				v.hash(gctx, j.p, j.node)
			}
			return nil
		})
	}
	g.Go(func() error {
		defer close(jobs)
		if node.Name == "" {
			return v.dir(gctx, node.Subtree, ".", base, jobs)
		}
		enter, err := v.entry(gctx, &node, node.Name, base, jobs)
		if enter && err == nil {
			return v.dir(gctx, node.Subtree, node.Name, base, jobs)
		}
		return err
	})
	if err := g.Wait(); err != nil {
		return nil, err
	}
	sort.Slice(v.diffs, func(i, j int) bool {
		if v.diffs[i].Path != v.diffs[j].Path {
			return v.diffs[i].Path < v.diffs[j].Path
		}
		return v.diffs[i].What < v.diffs[j].What
	})
	return v.diffs, nil
}

type linkSeen struct {
	path  string
	inode uint64
}

type verifier struct {
	l      snapfs.BlobLoader
	root   *os.Root
	o      Options
	asRoot bool // owners are compared: the restore could set them (CAP_CHOWN)

	mu    sync.Mutex
	diffs []Difference
	links map[uint64]linkSeen
}

func (v *verifier) diff(p, format string, args ...any) {
	v.mu.Lock()
	v.diffs = append(v.diffs, Difference{Path: p, What: fmt.Sprintf(format, args...)})
	v.mu.Unlock()
}

// own reports whether snapshot path sp ("" for the root) is one of the
// snapshot's own paths or lies below one.
func (v *verifier) own(sp string) bool {
	if v.o.Paths == nil {
		return true
	}
	sp = path.Clean("/" + sp)
	for _, p := range v.o.Paths {
		if sp == p || p == "/" || strings.HasPrefix(sp, p+"/") {
			return true
		}
	}
	return false
}

func (v *verifier) selected(sp string, isDir bool) (take, descend bool) {
	rs := restorer{o: v.o}
	return rs.selected(sp, isDir)
}

// dir compares the contents of directory tree id with target path p
// (snapshot path sp), walking with [snapfs.Walk]: each entry, then at
// the end of each directory what the target holds that it does not.
func (v *verifier) dir(ctx context.Context, id blob.ID, p, sp string, jobs chan<- fileJob) error {
	at := func(e snapfs.Entry) (string, string) { // target and snapshot paths
		if e.Path == "" {
			return p, sp
		}
		return path.Join(p, e.Path), sp + "/" + e.Path
	}
	skip := func(e snapfs.Entry) bool {
		_, tsp := at(e)
		_, descend := v.selected(tsp, true)
		return !descend
	}
	for e, err := range snapfs.Walk(ctx, v.l, id, snapfs.WalkOptions{Skip: skip, Leave: true}) {
		var te *snapfs.TreeError
		switch {
		case errors.As(err, &te) && ctx.Err() == nil:
			return fmt.Errorf("%s: %w", path.Join(p, te.Path), te.Err)
		case err != nil:
			return err
		}
		tp, tsp := at(e)
		if e.Leave {
			v.extra(tp, tsp, e.Dir)
			continue
		}
		enter, err := v.entry(ctx, e.Node, tp, tsp, jobs)
		if err != nil {
			return err
		}
		if !enter {
			e.SkipDir()
		}
	}
	return nil
}

// extra reports what directory p (snapshot path sp, listing t) holds in
// the target that the snapshot does not.
func (v *verifier) extra(p, sp string, t *tree.Tree) {
	if !v.own(sp) {
		return // a directory leading to the snapshot's paths: its other entries are not the snapshot's
	}
	names := map[string]bool{}
	for i := range t.Nodes {
		names[t.Nodes[i].Name] = true
	}
	f, err := v.root.Open(p)
	if err != nil {
		return // reported by the directory's own entry
	}
	defer f.Close()
	have, _ := f.Readdirnames(-1)
	slices.Sort(have)
	for _, name := range have {
		if !names[name] {
			if take, _ := v.selected(sp+"/"+name, false); take {
				v.diff(path.Join(p, name), "not in the snapshot")
			}
		}
	}
}

// entry compares node n with target path p (snapshot path sp); for a
// directory, enter says whether what it holds is to be compared.
func (v *verifier) entry(ctx context.Context, n *tree.Node, p, sp string, jobs chan<- fileJob) (enter bool, err error) {
	if err := ctx.Err(); err != nil {
		return false, err
	}
	take, descend := v.selected(sp, n.Type == tree.Dir)
	if !take && !descend {
		return false, nil
	}
	fi, err := v.root.Lstat(p)
	if err != nil {
		v.diff(p, "missing")
		return false, nil
	}
	st := fi.Sys().(*syscall.Stat_t)
	if got := tree.TypeOfMode(st.Mode); got != n.Type {
		v.diff(p, "type %s, the snapshot has %s", got, n.Type)
		return false, nil
	}
	if n.Type == tree.Dir {
		if take && v.own(sp) {
			v.meta(p, n, fi, st)
		}
		return true, nil
	}
	if !take {
		return false, nil
	}
	v.meta(p, n, fi, st)
	switch n.Type {
	case tree.Symlink:
		if t, err := v.root.Readlink(p); err != nil || t != n.LinkTarget {
			v.diff(p, "link target %q, the snapshot has %q", t, n.LinkTarget)
		}
	case tree.File:
		if uint64(fi.Size()) != n.Size {
			v.diff(p, "size %d, the snapshot has %d", fi.Size(), n.Size)
			return false, nil
		}
		if n.HardlinkID != 0 {
			v.mu.Lock()
			first, ok := v.links[n.HardlinkID]
			if !ok {
				v.links[n.HardlinkID] = linkSeen{path: p, inode: st.Ino}
			}
			v.mu.Unlock()
			if ok {
				if first.inode != st.Ino {
					v.diff(p, "not a hardlink of %s", first.path)
				}
				return false, nil // same contents as the first name
			}
		}
		select {
		case jobs <- fileJob{p: p, node: n}: // verify opens it itself
		case <-ctx.Done():
			return false, ctx.Err()
		}
	case tree.BlockDevice, tree.CharDevice:
		if st.Rdev != n.Rdev {
			v.diff(p, "device %d:%d, the snapshot has %d:%d", unix.Major(st.Rdev), unix.Minor(st.Rdev), unix.Major(n.Rdev), unix.Minor(n.Rdev))
		}
	}
	return false, nil
}

// stamp shows a time in nanoseconds since 1970 as UTC RFC 3339 with as
// many fractional digits as it has.
func stamp(ns int64) string { return time.Unix(0, ns).UTC().Format(time.RFC3339Nano) }

func (v *verifier) meta(p string, n *tree.Node, fi os.FileInfo, st *syscall.Stat_t) {
	if n.Type != tree.Symlink {
		if got := uint32(st.Mode & 0o7777); got != n.Mode {
			v.diff(p, "mode %04o, the snapshot has %04o", got, n.Mode)
		}
	}
	if v.asRoot && (st.Uid != n.UID || st.Gid != n.GID) {
		v.diff(p, "owner %d:%d, the snapshot has %d:%d", st.Uid, st.Gid, n.UID, n.GID)
	}
	if mt := st.Mtim.Nano(); mt != n.MTime {
		v.diff(p, "mtime %s, the snapshot has %s", stamp(mt), stamp(n.MTime))
	}
	if n.Type == tree.Socket {
		return
	}
	got, err := v.xattrs(p)
	if err != nil {
		v.diff(p, "extended attributes unreadable: %v", err)
		return
	}
	if !equalXattrs(got, n.Xattrs) {
		v.diff(p, "extended attributes %s, the snapshot has %s", xattrNames(got), xattrNames(n.Xattrs))
	}
}

func (v *verifier) xattrs(p string) ([]tree.Xattr, error) {
	d, err := v.root.Open(path.Dir(p))
	if err != nil {
		return nil, err
	}
	defer d.Close()
	return xattr.ReadAt(int(d.Fd()), path.Base(p))
}

func equalXattrs(a, b []tree.Xattr) bool {
	return slices.EqualFunc(a, b, func(x, y tree.Xattr) bool { return x.Name == y.Name && bytes.Equal(x.Value, y.Value) })
}

func xattrNames(xs []tree.Xattr) string {
	names := make([]string, len(xs))
	for i, x := range xs {
		names[i] = x.Name
	}
	return "[" + strings.Join(names, " ") + "]"
}

// hash compares a file's contents with its recorded SHA-256.
func (v *verifier) hash(ctx context.Context, p string, n *tree.Node) {
	f, err := v.root.Open(p)
	if err != nil {
		v.diff(p, "unreadable: %v", err)
		return
	}
	defer f.Close()
	h := sha256.New()
	if _, err := io.Copy(h, &ctxReader{ctx: ctx, r: f}); err != nil {
		v.diff(p, "unreadable: %v", err)
		return
	}
	if got := blob.ID(h.Sum(nil)); got != n.FileHash {
		v.diff(p, "contents hash to %s, the snapshot recorded %s", got, n.FileHash)
	}
}

type ctxReader struct {
	ctx context.Context
	r   io.Reader
}

func (c *ctxReader) Read(p []byte) (int, error) {
	if err := c.ctx.Err(); err != nil {
		return 0, err
	}
	return c.r.Read(p)
}
