// Package backup turns file trees on disk, a single stream, or a tar
// stream into trees and blobs handed to an [Uploader]: the local
// repository's session, or a client pushing to the appliance.
//
// # What is stored
//
// The snapshot's root tree mirrors the absolute paths backed up: backing
// up /srv/data gives the root a directory "srv" holding "data", with the
// metadata of the real directories along the way. Each file is cut into
// chunks by the repository's chunker; its whole-file SHA-256 is computed
// from the bytes actually read and recorded in its node, with its type,
// mode, owner IDs and names, three times, size, inode and device,
// extended attributes (POSIX ACLs among them), symlink target, device
// number, and a hardlink ID shared by all names of one inode. Holes of
// sparse files are recorded as holes, not read as data.
//
// # Pipeline
//
// One walker goroutine lists directories in name order, compares each
// file with the parent snapshot, and queues the files that must be read,
// opened and with their start asked of the kernel ahead (prefetch).
// Workers (one per CPU) read and chunk files and compute their whole-file
// hashes; blob workers (one per CPU) hash, deduplicate, compress and store
// the chunks. The walker saves each directory's tree once all its entries
// are done, in post-order, so a directory is finished after everything
// in it.
//
// # Memory
//
// Bounded independently of the number of files and the repository size:
//   - chunk buffers: workers+2 buffers of twice the chunker's average
//     chunk size (2 MiB by default: 8 MiB on 2 CPUs), allocated as
//     needed; the few larger chunks take a buffer of up to the maximum
//     chunk size (8 MiB) that is dropped once the chunk is stored;
//   - one chunker read buffer (256 KiB) per file worker;
//   - queues of fixed capacity: 64 files (each an open descriptor, its
//     first MiB asked of the kernel ahead: page cache, not heap) and
//     2×workers chunks;
//   - one open directory (and its listing, while the walker is in it) per
//     level of depth, at most MaxDepth levels;
//   - directory listings waiting to be saved: at most maxPendingNodes
//     (65 536) nodes (about 20 MiB) beyond the directory being listed;
//   - the uploader's own buffers (for a local session: two open packs).
package backup

import (
	"context"
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"runtime"
	"slices"
	"strings"
	"sync"
	"sync/atomic"
	"time"

	"github.com/cairnbackup/cairn/chunker"
	"github.com/cairnbackup/cairn/repo/blob"
	"github.com/cairnbackup/cairn/repo/filter"
	"github.com/cairnbackup/cairn/repo/snapfs"
	"github.com/cairnbackup/cairn/repo/snapshot"
	"github.com/cairnbackup/cairn/repo/tree"
	"golang.org/x/sync/errgroup"
	"golang.org/x/sys/unix"
)

// Uploader stores blobs. *repo.Session satisfies it. It must be safe for
// concurrent use.
type Uploader interface {
	// SaveBlob stores data as a blob of type t unless it is stored
	// already, and returns its ID and whether it was new.
	SaveBlob(ctx context.Context, t blob.Type, data []byte) (blob.ID, bool, error)
	// Known reports whether blob h is stored already.
	Known(h blob.Handle) (bool, error)
}

// Options configure a backup.
type Options struct {
	Params chunker.Params
	Table  *chunker.Table
	// Parent is the root tree of the snapshot to compare with: files
	// whose size, mtime, ctime and inode match it are not read again.
	// Loader loads its trees. Zero Parent means none.
	Parent blob.ID
	Loader snapfs.BlobLoader
	// ForceRead reads every file even if the parent says it is unchanged.
	ForceRead bool
	// Exclude leaves out matching paths; ExcludeCaches leaves out the
	// contents of directories holding a valid CACHEDIR.TAG;
	// OneFileSystem does not descend into other file systems.
	Exclude       *filter.Matcher
	ExcludeCaches bool
	OneFileSystem bool
	// Workers is the number of file readers and of blob workers; zero
	// means GOMAXPROCS.
	Workers int
	// Progress, if set, is updated while the backup runs.
	Progress *Progress
	Now      func() time.Time
}

// Progress counts what a running backup has done. Read it with the
// atomic loads while the backup runs.
type Progress struct {
	Files     atomic.Uint64 // files finished (read or unchanged)
	Dirs      atomic.Uint64
	Bytes     atomic.Uint64 // size of files finished
	BytesRead atomic.Uint64 // bytes read from disk so far
}

// Result is what a backup made.
type Result struct {
	Tree     blob.ID
	Summary  snapshot.Summary
	Excludes []snapshot.Exclude
}

// maxPendingNodes bounds the directory entries held while their
// directories wait for files being read.
const maxPendingNodes = 1 << 16

// MaxDepth is how many directory levels below a backed-up path the
// walker descends. It holds one open descriptor (and a few stack frames)
// per level it is in, and nobody else bounds the depth: a path of
// single-letter names reaches PATH_MAX at about 2000 levels, but the
// walker, reaching each directory through its parent, never meets that
// limit. A directory deeper than this is recorded, without its entries,
// with a warning.
const MaxDepth = 1024

// CacheDirTagSignature starts a valid CACHEDIR.TAG file
// (https://bford.info/cachedir/).
const CacheDirTagSignature = "Signature: 8a477f597d28d172789f06886806bc55"

// Run backs up paths (made absolute and cleaned). Files that cannot be
// read are skipped and reported as warnings in the summary; errors from
// the uploader or the context end the run.
func Run(ctx context.Context, up Uploader, paths []string, o Options) (*Result, error) {
	if len(paths) == 0 {
		return nil, errors.New("backup: no paths given")
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
	if err := checkProc(); err != nil {
		return nil, err
	}
	return run(ctx, up, o, func(ctx context.Context, w *walker) (blob.ID, error) {
		var parent *tree.Tree
		if !o.Parent.IsZero() {
			parent = w.loadParent(ctx, o.Parent)
		}
		d, err := openRoot()
		if err != nil {
			return blob.ID{}, fmt.Errorf("backup: %w", err)
		}
		defer d.Close()
		return w.virtual(ctx, root, d, "/", parent)
	})
}

// run sets up the pipeline around walk, which produces the root tree.
// walk gets the pipeline's context, which ends when any stage fails: a
// walker waiting for a stage that has stopped must not wait forever.
func run(ctx context.Context, up Uploader, o Options, walk func(ctx context.Context, w *walker) (blob.ID, error)) (*Result, error) {
	if o.Now == nil {
		o.Now = time.Now
	}
	if o.Workers <= 0 {
		o.Workers = runtime.GOMAXPROCS(0)
	}
	if o.Progress == nil {
		o.Progress = &Progress{}
	}
	if o.Table == nil {
		return nil, errors.New("backup: no chunker table")
	}
	if err := o.Params.Validate(); err != nil {
		return nil, err
	}
	start := o.Now()
	g, gctx := errgroup.WithContext(ctx)
	p := newPipeline(gctx, up, o)
	p.start(g)
	w := &walker{p: p, o: o, owners: newOwners(), excluded: map[string]uint64{}, links: map[uint64]*future{}}
	var root blob.ID
	g.Go(func() error {
		defer p.closeJobs()
		var err error
		root, err = walk(gctx, w)
		return err
	})
	err := g.Wait()
	p.closeQueued()
	if err != nil {
		return nil, err
	}
	res := &Result{Tree: root, Summary: w.sum}
	res.Summary.Warnings = append(res.Summary.Warnings, p.warnings()...)
	res.Summary.BytesRead = p.bytesRead.Load()
	sn, sc := p.skippedNew.Load(), p.skippedChanged.Load()
	res.Summary.Files -= sn + sc
	res.Summary.FilesNew -= sn
	res.Summary.FilesChanged -= sc
	res.Summary.Duration = o.Now().Sub(start)
	rules := make([]string, 0, len(w.excluded))
	for r := range w.excluded {
		rules = append(rules, r)
	}
	slices.Sort(rules)
	for _, r := range rules {
		res.Excludes = append(res.Excludes, snapshot.Exclude{Rule: r, Count: w.excluded[r]})
	}
	return res, nil
}

// future is a node whose contents (file chunks, or a directory's tree)
// are being produced elsewhere.
type future struct {
	done   chan struct{}
	node   tree.Node
	skip   bool    // the entry could not be read: leave it out
	linkTo *future // a further name of a hardlinked file: take its contents
}

func newFuture(n tree.Node) *future { return &future{done: make(chan struct{}), node: n} }

func resolved(n tree.Node) *future {
	f := newFuture(n)
	close(f.done)
	return f
}

// pendingDir is a directory whose entries are all listed but not all done.
type pendingDir struct {
	abs      string
	self     *future
	children []*future
}

func (d *pendingDir) ready() bool {
	for _, c := range d.children {
		select {
		case <-c.done:
		default:
			return false
		}
	}
	return true
}

// walker lists directories and assembles trees. It runs in one goroutine.
type walker struct {
	p        *pipeline
	o        Options
	owners   *owners
	sum      snapshot.Summary
	excluded map[string]uint64
	links    map[uint64]*future // first name of each hardlinked inode
	pending  []*pendingDir      // post-order FIFO
	nodes    int                // entries held in pending
	rootDev  uint64
	depth    int // directories being listed (dir calls under way)
}

func (w *walker) warn(format string, args ...any) {
	w.sum.Warnings = append(w.sum.Warnings, fmt.Sprintf(format, args...))
}

func (w *walker) loadParent(ctx context.Context, id blob.ID) *tree.Tree {
	if w.o.Loader == nil || id.IsZero() {
		return nil
	}
	t, err := snapfs.LoadTree(ctx, w.o.Loader, id)
	if err != nil {
		// Without the parent's tree every file here is read again:
		// slower, never wrong.
		return nil
	}
	return t
}

func parentNode(parent *tree.Tree, name string) *tree.Node {
	if parent == nil {
		return nil
	}
	i, ok := slices.BinarySearchFunc(parent.Nodes, name, func(n tree.Node, name string) int { return strings.Compare(n.Name, name) })
	if !ok {
		return nil
	}
	return &parent.Nodes[i]
}

// pathNode is one component of the absolute paths being backed up.
type pathNode struct {
	children map[string]*pathNode
	leaf     bool // back up everything below
}

func (n *pathNode) add(abs string) {
	cur := n
	for part := range strings.SplitSeq(strings.Trim(abs, "/"), "/") {
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

// virtual stores the tree of directory abs (open as d) on the way to the
// backed-up paths: it holds only the components that lead to them.
func (w *walker) virtual(ctx context.Context, pn *pathNode, d *os.File, abs string, parent *tree.Tree) (blob.ID, error) {
	dir := int(d.Fd())
	if pn.leaf {
		// "/" itself is backed up.
		st, err := fstat(d)
		if err != nil {
			return blob.ID{}, fmt.Errorf("backup: %s: %w", abs, err)
		}
		w.rootDev = st.Dev
		self := newFuture(tree.Node{Type: tree.Dir})
		if err := w.dir(ctx, d, abs, parent, self); err != nil {
			return blob.ID{}, err
		}
		if err := w.drain(ctx, drainAll); err != nil {
			return blob.ID{}, err
		}
		return self.node.Subtree, nil
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
		st, err := lstatAt(dir, name, p)
		if err != nil {
			return blob.ID{}, fmt.Errorf("backup: %w", err)
		}
		n, err := statNode(name, st, w.owners)
		if err != nil {
			return blob.ID{}, fmt.Errorf("backup: %s: %w", p, err)
		}
		pnode := parentNode(parent, name)
		var psub *tree.Tree
		if pnode != nil && pnode.Type == tree.Dir {
			psub = w.loadParent(ctx, pnode.Subtree)
		}
		if child.leaf {
			w.rootDev = n.DeviceID
			f, err := w.entry(ctx, dir, name, p, n, pnode, psub)
			if err != nil {
				return blob.ID{}, err
			}
			if err := w.drain(ctx, drainAll); err != nil {
				return blob.ID{}, err
			}
			<-f.done
			if n, ok := f.result(); ok {
				t.Nodes = append(t.Nodes, n)
			}
			continue
		}
		if n.Type != tree.Dir {
			return blob.ID{}, fmt.Errorf("backup: %s is not a directory", p)
		}
		if n.Xattrs, err = readXattrs(dir, name); err != nil {
			w.warn("%s: %v", p, err)
		}
		sub, err := openDirAt(dir, name, p, n.DeviceID, n.Inode)
		if err != nil {
			return blob.ID{}, fmt.Errorf("backup: %s: %w", p, err)
		}
		n.Subtree, err = w.virtual(ctx, child, sub, p, psub)
		sub.Close()
		if err != nil {
			return blob.ID{}, err
		}
		w.sum.Dirs++
		t.Nodes = append(t.Nodes, n)
	}
	return w.saveTree(ctx, &t, abs)
}

// entry handles entry name of directory dir (path p), whose lstat gave
// n, and returns its future.
func (w *walker) entry(ctx context.Context, dir int, name, p string, n tree.Node, pnode *tree.Node, psub *tree.Tree) (*future, error) {
	var err error
	if !w.o.ForceRead && sameInode(&n, pnode) {
		n.Xattrs = pnode.Xattrs
	} else if n.Xattrs, err = readXattrs(dir, name); err != nil {
		w.warn("%s: %v", p, err)
	}
	switch n.Type {
	case tree.Dir:
		f := newFuture(n)
		if w.o.OneFileSystem && n.DeviceID != w.rootDev {
			w.excluded["--one-file-system"]++
			return f, w.emptyDir(ctx, f, p)
		}
		if w.depth >= MaxDepth {
			w.warn("%s: %d directory levels below the backed-up path: what it holds is not backed up", p, w.depth)
			return f, w.emptyDir(ctx, f, p)
		}
		sub, err := openDirAt(dir, name, p, n.DeviceID, n.Inode)
		switch {
		case errors.Is(err, errReplacedDir):
			w.warn("%s: %v", p, err)
			return &future{done: closedChan, skip: true}, nil
		case err != nil:
			w.warn("%s: %v", p, err) // recorded without its entries
		default:
			defer sub.Close()
		}
		return f, w.dir(ctx, sub, p, psub, f)
	case tree.File:
		return w.file(ctx, dir, name, p, n, pnode)
	case tree.Symlink:
		n.LinkTarget, err = readlinkAt(dir, name, p)
		if err != nil {
			w.warn("%s: %v", p, err)
			return &future{done: closedChan, skip: true}, nil
		}
		n.Size = uint64(len(n.LinkTarget))
	}
	w.sum.Others++
	return resolved(n), nil
}

var closedChan = func() chan struct{} { c := make(chan struct{}); close(c); return c }()

// emptyDir resolves f, directory p, as a directory whose entries are
// left out.
func (w *walker) emptyDir(ctx context.Context, f *future, p string) error {
	var err error
	f.node.Subtree, err = w.saveTree(ctx, &tree.Tree{}, p)
	close(f.done)
	w.sum.Dirs++
	return err
}

// file queues regular file name of directory dir (path p) for reading,
// or resolves it from the parent snapshot or from an earlier name of the
// same inode.
func (w *walker) file(ctx context.Context, dir int, name, p string, n tree.Node, pnode *tree.Node) (*future, error) {
	w.sum.Files++
	w.sum.Bytes += n.Size
	if n.HardlinkID != 0 {
		if first, ok := w.links[n.HardlinkID]; ok {
			f := newFuture(n)
			f.linkTo = first
			close(f.done)
			w.sum.FilesUnchanged++
			return f, nil
		}
	}
	var f *future
	switch {
	case pnode != nil && pnode.Type == tree.File && !w.o.ForceRead && unchanged(&n, pnode) && w.allKnown(pnode):
		n.Content, n.FileHash = pnode.Content, pnode.FileHash
		w.sum.FilesUnchanged++
		w.o.Progress.Files.Add(1)
		w.o.Progress.Bytes.Add(n.Size)
		f = resolved(n)
	default:
		changed := pnode != nil && pnode.Type == tree.File
		if changed {
			w.sum.FilesChanged++
		} else {
			w.sum.FilesNew++
		}
		f = newFuture(n)
		file, openErr := prefetch(dir, name, p, n.Size)
		if err := w.p.submit(ctx, fileJob{path: p, file: file, openErr: openErr, f: f, changed: changed}); err != nil {
			return nil, err
		}
	}
	if n.HardlinkID != 0 {
		w.links[n.HardlinkID] = f
	}
	return f, nil
}

// sameInode reports whether n is the inode the parent snapshot recorded
// as p with its metadata untouched since: setting or removing an
// extended attribute (as every other change of an inode, and a
// directory's entries) sets the inode's ctime, which no user can set
// back. Its extended attributes are then the parent's, and an unchanged
// backup need not list and read them (two to three system calls per
// entry).
func sameInode(n, p *tree.Node) bool {
	return p != nil && p.Type == n.Type && n.CTime == p.CTime && n.Inode == p.Inode && n.DeviceID == p.DeviceID
}

func unchanged(n, p *tree.Node) bool {
	return n.Size == p.Size && n.MTime == p.MTime && n.CTime == p.CTime && n.Inode == p.Inode
}

// allKnown reports whether every chunk the parent lists is stored, so
// reusing the parent's list cannot reference missing data.
func (w *walker) allKnown(p *tree.Node) bool {
	for _, c := range p.Content {
		if c.ID.IsZero() {
			continue
		}
		if ok, err := w.p.up.Known(blob.Handle{ID: c.ID, Type: blob.Data}); err != nil || !ok {
			return false
		}
	}
	return true
}

// dir lists directory abs, open as d (nil if it could not be opened: it
// is recorded without entries), queues its entries and appends it to
// the pending FIFO; self is resolved when its tree is saved.
func (w *walker) dir(ctx context.Context, d *os.File, abs string, parent *tree.Tree, self *future) error {
	if err := ctx.Err(); err != nil {
		return err
	}
	w.sum.Dirs++
	w.o.Progress.Dirs.Add(1)
	w.depth++
	defer func() { w.depth-- }()
	pd := &pendingDir{abs: abs, self: self}
	var names []string
	var dir int
	cacheDir := false
	if d != nil {
		var err error
		dir = int(d.Fd())
		if names, err = readDirNames(d); err != nil {
			w.warn("%s: %v", abs, err)
		}
		cacheDir = w.o.ExcludeCaches && isCacheDir(dir)
	}
	for _, name := range names {
		p, st, rule, err := w.o.admit(dir, abs, name, cacheDir)
		switch {
		case rule != "":
			w.excluded[rule]++
			continue
		case err != nil:
			w.warn("%s: %v", p, err)
			continue
		}
		n, err := statNode(name, st, w.owners)
		if err != nil {
			w.warn("%s: %v", p, err)
			continue
		}
		pnode := parentNode(parent, name)
		var psub *tree.Tree
		if n.Type == tree.Dir && pnode != nil && pnode.Type == tree.Dir {
			psub = w.loadParent(ctx, pnode.Subtree)
		}
		f, err := w.entry(ctx, dir, name, p, n, pnode, psub)
		if err != nil {
			return err
		}
		pd.children = append(pd.children, f)
	}
	w.pending = append(w.pending, pd)
	w.nodes += len(pd.children)
	mode := drainReady
	if w.nodes > maxPendingNodes {
		mode = drainHalf
	}
	return w.drain(ctx, mode)
}

// admit decides whether entry name of directory abs, open as dir (whose
// contents a CACHEDIR.TAG leaves out when cacheDir), is backed up: it
// returns the entry's path and lstat, or the exclude rule that leaves it
// out, or why it cannot be (a name a tree cannot hold, an lstat that
// failed). The backup and Scan decide alike through it.
func (o *Options) admit(dir int, abs, name string, cacheDir bool) (p string, st *unix.Stat_t, rule string, err error) {
	p = filepath.Join(abs, name)
	if cacheDir && name != "CACHEDIR.TAG" {
		return p, nil, "--exclude-caches", nil
	}
	if err := tree.CheckName(name); err != nil {
		return p, nil, "", fmt.Errorf("skipped: %w", err)
	}
	if st, err = lstatAt(dir, name, p); err != nil {
		return p, nil, "", err
	}
	if o.Exclude != nil {
		if ok, r := o.Exclude.Match(p, st.Mode&unix.S_IFMT == unix.S_IFDIR); ok {
			return p, nil, r.String(), nil
		}
	}
	return p, st, "", nil
}

// How far drain goes.
const (
	drainReady = iota // save what is ready, wait for nothing
	drainHalf         // wait until at most half of maxPendingNodes are held
	drainAll          // wait until nothing is pending
)

// isCacheDir reports whether directory dir holds a valid CACHEDIR.TAG: a
// regular file (not a link to one elsewhere; not a FIFO, whose open or
// read would wait for a writer) that starts with the signature.
func isCacheDir(dir int) bool {
	f, err := openAt(dir, "CACHEDIR.TAG", "CACHEDIR.TAG", unix.O_NONBLOCK)
	if err != nil {
		return false
	}
	defer f.Close()
	if st, err := fstat(f); err != nil || st.Mode&unix.S_IFMT != unix.S_IFREG {
		return false
	}
	b := make([]byte, len(CacheDirTagSignature))
	n, _ := f.Read(b)
	return string(b[:n]) == CacheDirTagSignature
}

// drain saves the trees of pending directories whose entries are all
// done, oldest first; mode says whether and how long to wait for the
// others.
func (w *walker) drain(ctx context.Context, mode int) error {
	for len(w.pending) > 0 {
		if mode == drainHalf && w.nodes <= maxPendingNodes/2 {
			return nil
		}
		d := w.pending[0]
		if !d.ready() {
			if mode == drainReady {
				return nil
			}
			for _, c := range d.children {
				select {
				case <-c.done:
				case <-ctx.Done():
					return ctx.Err()
				}
			}
		}
		t := tree.Tree{Nodes: make([]tree.Node, 0, len(d.children))}
		for _, c := range d.children {
			if n, ok := c.result(); ok {
				t.Nodes = append(t.Nodes, n)
			}
		}
		id, err := w.saveTree(ctx, &t, d.abs)
		if err != nil {
			return err
		}
		d.self.node.Subtree = id
		close(d.self.done)
		w.pending = w.pending[1:]
		w.nodes -= len(d.children)
	}
	return nil
}

// result returns the finished node of a done future, and false if the
// entry is to be left out. A further name of a hardlinked inode takes the
// contents read for its first name.
func (f *future) result() (tree.Node, bool) {
	if f.linkTo != nil {
		<-f.linkTo.done
		if f.linkTo.skip {
			return tree.Node{}, false
		}
		copyContents(&f.node, &f.linkTo.node)
	}
	return f.node, !f.skip
}

// copyContents gives a further name of a hardlinked inode the contents
// read for its first name.
func copyContents(dst, src *tree.Node) {
	dst.Content, dst.FileHash, dst.Size = src.Content, src.FileHash, src.Size
}

func (w *walker) saveTree(ctx context.Context, t *tree.Tree, abs string) (blob.ID, error) {
	data, err := tree.Encode(nil, t)
	if err != nil {
		return blob.ID{}, fmt.Errorf("backup: %s: %w", abs, err)
	}
	id, _, err := w.p.up.SaveBlob(ctx, blob.Tree, data)
	return id, err
}

// warnings collects what the workers noticed.
type warnings struct {
	mu   sync.Mutex
	list []string
}

func (ws *warnings) add(format string, args ...any) {
	ws.mu.Lock()
	ws.list = append(ws.list, fmt.Sprintf(format, args...))
	ws.mu.Unlock()
}
