// Package restore writes a snapshot's files back to a directory, through
// an [os.Root] so that nothing can be written outside the target even if
// a tree were hostile (the tree decoder already refuses bad names; this is
// the second wall). Entries already in the target are replaced, never
// written through: an existing symlink is removed, not followed.
//
// # Verification
//
// Every blob is authenticated and re-hashed by the loader; every file's
// whole-file SHA-256 is recomputed from the bytes written and compared
// with the hash recorded at backup time. A mismatch is an error naming the
// file, never a silent difference, and a file that cannot be restored
// (damaged or missing data, a mismatch) is removed from the target with
// every hardlink made to it: what a restore leaves is verified. [Verify] compares an existing directory
// with a snapshot without writing anything.
//
// # What is restored
//
// Files (holes of sparse files are skipped over, so the result is sparse
// again), directories, symlinks, hardlinks (as links), FIFOs, and as root
// device nodes and ownership; modes, access and modification times, and
// extended attributes (POSIX ACLs among them). Directory metadata is set
// after their contents.
//
// # Concurrency and memory
//
// One walker creates directories and small entries and hands files to
// workers (one per CPU) that read chunks ahead in parallel. Memory: per
// worker a read-ahead window of chunks, a shared blob cache (64 MiB) so a
// chunk used by many files is loaded once, and one record per directory
// for its metadata. From an object store (a [snapfs.BatchLoader] whose
// reads are requests) a planner between the walker and the workers reads
// ahead instead, many blobs per request, within 32 MiB of plaintext
// (plan.go, which states the whole bound).
package restore

import (
	"context"
	"errors"
	"fmt"
	"hash"
	"os"
	"path"
	"runtime"
	"strings"
	"sync"
	"sync/atomic"
	"syscall"
	"time"

	"github.com/cairnbackup/cairn/repo/blob"
	"github.com/cairnbackup/cairn/repo/caps"
	"github.com/cairnbackup/cairn/repo/filter"
	"github.com/cairnbackup/cairn/repo/internal/crashpoint"
	"github.com/cairnbackup/cairn/repo/snapfs"
	"github.com/cairnbackup/cairn/repo/tree"
	"github.com/minio/sha256-simd"
	"golang.org/x/sync/errgroup"
	"golang.org/x/sys/unix"
)

// Options configure a restore.
type Options struct {
	// Include, if not empty, restores only matching paths (and the
	// directories leading to them); Exclude leaves matching paths out.
	// Paths are inside the snapshot, with a leading "/".
	Include, Exclude *filter.Matcher
	// Workers restoring files in parallel; zero means GOMAXPROCS.
	Workers int
	// Progress, if set, is updated as files are restored.
	Progress *Progress
	// Paths, for Verify, are the snapshot's own paths (what was backed
	// up, absolute). Entries the snapshot lacks are reported, and
	// directories' metadata compared, only at and below them: the
	// directories leading to them (a node's /, /srv above /srv/git) are
	// the target's business. Nil compares everything below the target.
	Paths []string
}

// Progress counts what a running restore has done.
type Progress struct {
	Files atomic.Uint64
	Bytes atomic.Uint64
}

// Result counts what was restored.
type Result struct {
	Files, Dirs, Symlinks, Hardlinks, Others uint64
	Bytes                                    uint64
	Warnings                                 []string
}

// ReadAhead is how many chunks of a file are loaded ahead of the one
// being written.
const ReadAhead = 4

// CacheSize is the budget of the blob cache shared by a restore's
// workers; it keeps chunks of at most CacheEntry bytes (the small files
// a tree holds many copies of). Larger chunks are loaded straight into
// the worker's buffer, without a copy into the cache.
const (
	CacheSize  = 16 << 20
	CacheEntry = 256 << 10
)

// MismatchError reports a restored file whose contents do not hash to the
// SHA-256 recorded at backup time.
type MismatchError struct {
	Path      string
	Want, Got blob.ID
}

func (e *MismatchError) Error() string {
	return fmt.Sprintf("%s: contents hash to %s, but the backup recorded %s", e.Path, e.Got, e.Want)
}

// Is makes a mismatch count as corruption.
func (e *MismatchError) Is(target error) bool { return target == blob.ErrCorrupt }

type restorer struct {
	l      snapfs.BlobLoader
	root   *os.Root
	target string
	o      Options
	asRoot bool      // owners are restored: CAP_CHOWN (root, or the appliance's unit)
	mknod  bool      // device nodes are restored: CAP_MKNOD
	chain  *dirChain // the walker's open directories (write.go)

	mu     sync.Mutex
	res    Result
	errs   []error
	links  map[uint64]string   // hardlink ID → first restored path
	linked map[uint64][]string // hardlink ID → the further names linked to it
	failed map[uint64]bool     // hardlink IDs whose file could not be restored
	dirs   []dirMeta           // in creation order; metadata set in reverse
}

type dirMeta struct {
	p    string
	node tree.Node
}

type fileJob struct {
	p    string
	node *tree.Node
	f    *outFile // created (empty) by the walker, so hardlinks to it can be made at once
	feed *feed    // the file's chunks, when a planner reads ahead (plan.go)
}

// Run restores the node at sub (a path inside the snapshot, "" or "/"
// for everything) of the snapshot whose root tree is root into target,
// which is created if needed. The snapshot root's entries, or the entry at
// sub, are created directly in target. Files that cannot be restored are
// reported together at the end; the others are restored.
func Run(ctx context.Context, l snapfs.BlobLoader, root blob.ID, sub string, target string, o Options) (*Result, error) {
	node, err := snapfs.Lookup(ctx, l, root, sub)
	if err != nil {
		return nil, err
	}
	if o.Workers <= 0 {
		o.Workers = runtime.GOMAXPROCS(0)
	}
	if k, ok := l.(packKeeper); ok {
		var release func()
		ctx, release = k.KeepPacksOpen(ctx)
		defer release()
	}
	if o.Progress == nil {
		o.Progress = &Progress{}
	}
	if err := os.MkdirAll(target, 0o700); err != nil {
		return nil, fmt.Errorf("restore: %w", err)
	}
	r, err := os.OpenRoot(target)
	if err != nil {
		return nil, fmt.Errorf("restore: %w", err)
	}
	defer r.Close()
	chain, err := newDirChain(target)
	if err != nil {
		return nil, fmt.Errorf("restore: %w", err)
	}
	defer chain.close()
	rs := &restorer{chain: chain, l: snapfs.NewCache(l, CacheSize).KeepAtMost(CacheEntry), root: r, target: target, o: o, asRoot: caps.Have(caps.Chown), mknod: caps.Have(caps.Mknod),
		links: map[uint64]string{}, linked: map[uint64][]string{}, failed: map[uint64]bool{}}
	base := "/" + strings.Trim(path.Clean("/"+sub), "/")
	if base == "/" {
		base = ""
	}

	g, gctx := errgroup.WithContext(ctx)
	walked := make(chan fileJob, 2*o.Workers) // walker → workers, or → planner
	jobs := walked
	var pl *planner
	if bl, ok := l.(snapfs.BatchLoader); ok && bl.BatchReads() {
		pl = newPlanner(bl)
		jobs = make(chan fileJob, planFiles) // planner → workers
		g.Go(func() error { return pl.run(gctx, walked, jobs) })
	}
	for range o.Workers {
		g.Go(func() error {
			for j := range jobs {
				if err := rs.file(gctx, j); err != nil {
					rs.fail(err)
					rs.discard(j.p, j.node)
				}
			}
			return nil
		})
	}
	g.Go(func() error {
		defer close(walked)
		if node.Name == "" { // the snapshot root: restore its contents
			return rs.dir(gctx, node.Subtree, ".", base, walked)
		}
		return rs.entry(gctx, &node, node.Name, base, walked)
	})
	err = g.Wait()
	if pl != nil && testPlanned != nil {
		testPlanned(pl.stats)
	}
	if err != nil {
		return nil, err
	}
	// Directory metadata last, deepest first, so writing their contents
	// does not change their times and read-only directories are filled
	// before they become read-only.
	for i := len(rs.dirs) - 1; i >= 0; i-- {
		d := rs.dirs[i]
		if err := rs.dirMeta(d.p, &d.node); err != nil {
			rs.fail(err)
		}
	}
	if len(rs.errs) > 0 {
		return &rs.res, &Error{Errs: rs.errs}
	}
	return &rs.res, nil
}

// packKeeper is a loader that can keep the packs it reads open while a
// restore runs ([repo.Repository] from a directory): a chunk then costs
// one pread, not an open and a close around it.
type packKeeper interface {
	KeepPacksOpen(ctx context.Context) (context.Context, func())
}

// Error lists the entries a restore could not restore.
type Error struct{ Errs []error }

func (e *Error) Error() string {
	var b strings.Builder
	fmt.Fprintf(&b, "restore: %d entries could not be restored:", len(e.Errs))
	for i, err := range e.Errs {
		if i == 20 {
			fmt.Fprintf(&b, "\n  … and %d more", len(e.Errs)-20)
			break
		}
		b.WriteString("\n  ")
		b.WriteString(err.Error())
	}
	return b.String()
}

// Unwrap returns every error, so errors.Is finds blob.ErrCorrupt.
func (e *Error) Unwrap() []error { return e.Errs }

func (rs *restorer) fail(err error) {
	rs.mu.Lock()
	rs.errs = append(rs.errs, err)
	rs.mu.Unlock()
}

func (rs *restorer) warn(format string, args ...any) {
	rs.mu.Lock()
	rs.res.Warnings = append(rs.res.Warnings, fmt.Sprintf(format, args...))
	rs.mu.Unlock()
}

// selected applies the include and exclude filters to snapshot path sp.
// descend says whether a directory that is not itself selected may hold
// selected entries.
func (rs *restorer) selected(sp string, isDir bool) (take, descend bool) {
	if rs.o.Exclude != nil {
		if ok, _ := rs.o.Exclude.Match(sp, isDir); ok {
			return false, false
		}
	}
	if rs.o.Include == nil || rs.o.Include.Empty() {
		return true, true
	}
	if ok, _ := rs.o.Include.Match(sp, isDir); ok {
		return true, true
	}
	return false, isDir && rs.o.Include.CouldMatchBelow(sp)
}

// dir restores the contents of directory tree id at target path p
// (snapshot path sp), walking with [snapfs.Walk]. The walk leaves out
// the directories the filters or their names leave out (their entries
// still come to entry, which reports a name too long); below a
// directory that could not be made nothing is restored.
func (rs *restorer) dir(ctx context.Context, id blob.ID, p, sp string, jobs chan<- fileJob) error {
	skip := func(e snapfs.Entry) bool {
		_, descend := rs.selected(sp+"/"+e.Path, true)
		return !descend || len(e.Node.Name) > unix.NAME_MAX
	}
	for e, err := range snapfs.Walk(ctx, rs.l, id, snapfs.WalkOptions{Skip: skip}) {
		var te *snapfs.TreeError
		switch {
		case errors.As(err, &te) && ctx.Err() == nil:
			rs.fail(fmt.Errorf("%s: %w", path.Join(p, te.Path), te.Err))
			continue
		case err != nil:
			return err
		}
		n := e.Node
		if n.Type == tree.Dir && !skip(e) {
			if !rs.enterDir(path.Join(p, e.Path), n) {
				e.SkipDir()
			}
			continue
		}
		if err := rs.entry(ctx, n, path.Join(p, e.Path), sp+"/"+e.Path, jobs); err != nil {
			return err
		}
	}
	return nil
}

// enterDir makes directory n at target path p, its metadata set last
// (Run); false if it could not be made.
func (rs *restorer) enterDir(p string, n *tree.Node) bool {
	if err := rs.mkdir(p); err != nil {
		rs.fail(err)
		return false
	}
	rs.mu.Lock()
	rs.dirs = append(rs.dirs, dirMeta{p: p, node: *n})
	rs.res.Dirs++
	rs.mu.Unlock()
	return true
}

// entry restores node n at target path p (snapshot path sp).
func (rs *restorer) entry(ctx context.Context, n *tree.Node, p, sp string, jobs chan<- fileJob) error {
	if err := ctx.Err(); err != nil {
		return err
	}
	take, descend := rs.selected(sp, n.Type == tree.Dir)
	if !take && !descend {
		return nil
	}
	if len(n.Name) > unix.NAME_MAX {
		// The tree format allows names up to tree.MaxNameLen; older
		// versions stored tar members no file system can hold.
		rs.fail(fmt.Errorf("%s: not restored: the name is %d bytes, longer than a file system allows (%d)", p, len(n.Name), unix.NAME_MAX))
		return nil
	}
	switch n.Type {
	case tree.Dir:
		if !rs.enterDir(p, n) {
			return nil
		}
		return rs.dir(ctx, n.Subtree, p, sp, jobs)
	case tree.File:
		if !take {
			return nil
		}
		if n.HardlinkID != 0 {
			// Linking happens under the lock that discard takes, so a
			// name is never linked to a file being removed.
			rs.mu.Lock()
			first, ok := rs.links[n.HardlinkID]
			var err error
			switch {
			case !ok:
				rs.links[n.HardlinkID] = p
			case rs.failed[n.HardlinkID]:
				err = fmt.Errorf("%s: not restored: a hardlink of %s, which could not be restored", p, first)
			default:
				err = rs.replace(p)
				if err == nil {
					err = rs.root.Link(first, p)
				}
				if err != nil {
					err = fmt.Errorf("%s: hardlink to %s: %w", p, first, err)
				} else {
					rs.linked[n.HardlinkID] = append(rs.linked[n.HardlinkID], p)
					rs.res.Hardlinks++
				}
			}
			rs.mu.Unlock()
			if ok {
				if err != nil {
					rs.fail(err)
				}
				return nil
			}
		}
		f, err := rs.create(p)
		if err != nil {
			rs.fail(fmt.Errorf("%s: %w", p, err))
			return nil
		}
		select {
		case jobs <- fileJob{p: p, node: n, f: f}:
		case <-ctx.Done():
			f.close()
			return ctx.Err()
		}
		return nil
	}
	if !take {
		return nil
	}
	if err := rs.special(p, n); err != nil {
		rs.fail(err)
	}
	return nil
}

// discard removes file p, which could not be restored, and the hardlinks
// made to it, so that no name in the target holds bytes that were not
// verified; each removed hardlink is reported too.
func (rs *restorer) discard(p string, n *tree.Node) {
	rs.mu.Lock()
	rs.root.Remove(p)
	var names []string
	if n.HardlinkID != 0 {
		rs.failed[n.HardlinkID] = true
		names = rs.linked[n.HardlinkID]
		for _, q := range names {
			rs.root.Remove(q)
			rs.res.Hardlinks--
		}
	}
	rs.mu.Unlock()
	for _, q := range names {
		rs.fail(fmt.Errorf("%s: not restored: a hardlink of %s, which could not be restored", q, p))
	}
}

// replace removes whatever is at p (but a directory), so that a new
// entry is created rather than written through an existing symlink.
func (rs *restorer) replace(p string) error {
	fi, err := rs.root.Lstat(p)
	if errors.Is(err, os.ErrNotExist) {
		return nil
	}
	if err != nil {
		return err
	}
	if fi.IsDir() {
		return fmt.Errorf("%s: a directory is in the way", p)
	}
	return rs.root.Remove(p)
}

// special creates a symlink, FIFO, device node or socket placeholder.
func (rs *restorer) special(p string, n *tree.Node) error {
	if err := rs.replace(p); err != nil {
		return err
	}
	switch n.Type {
	case tree.Symlink:
		if err := rs.root.Symlink(n.LinkTarget, p); err != nil {
			return err
		}
		rs.mu.Lock()
		rs.res.Symlinks++
		rs.mu.Unlock()
		return rs.meta(p, n)
	case tree.FIFO, tree.BlockDevice, tree.CharDevice:
		mode := n.Type.ModeBits()
		if n.Type != tree.FIFO && !rs.mknod {
			rs.warn("%s: device node not restored: only root can create it (CAP_MKNOD)", p)
			return nil
		}
		err := rs.atParent(p, func(dirfd int, name string) error {
			return unix.Mknodat(dirfd, name, mode|0o600, int(n.Rdev))
		})
		if err != nil {
			return fmt.Errorf("%s: %w", p, err)
		}
	case tree.Socket:
		// A socket cannot be restored meaningfully; its owner recreates it.
		return nil
	}
	rs.mu.Lock()
	rs.res.Others++
	rs.mu.Unlock()
	return rs.meta(p, n)
}

// atParent calls fn with a descriptor of p's directory, opened inside the
// root, and p's last component.
func (rs *restorer) atParent(p string, fn func(dirfd int, name string) error) error {
	d, err := rs.root.Open(path.Dir(p))
	if err != nil {
		return err
	}
	defer d.Close()
	return fn(int(d.Fd()), path.Base(p))
}

// file writes the contents of j's file, created empty by the walker and
// open, verifies them and sets its metadata. Its chunks come from the
// plan when a planner reads ahead, else through the loader.
func (rs *restorer) file(ctx context.Context, j fileJob) error {
	p, n, f := j.p, j.node, j.f
	defer f.close()
	if j.feed != nil {
		defer j.feed.close()
	}
	sf, err := snapfs.OpenFile(rs.l, n)
	if err != nil {
		return fmt.Errorf("%s: %w", p, err)
	}
	// A file of one chunk hashes to that chunk's ID, which the loader
	// checked against the bytes it gave: hashing them again would
	// compute the same SHA-256 twice. Any other file is hashed whole
	// against its recorded hash, so its chunks are loaded without each
	// being hashed as well, where the loader offers that (a repository,
	// not an appliance: snapfs.UnhashedLoader); a plan loads all chunks
	// so where it can, and then a file of one chunk is hashed too. When
	// the whole does not match, blame loads the chunks again, hashed, to
	// name the wrong one.
	whole := len(n.Content) != 1 || n.Content[0].ID != n.FileHash
	chunks := sf.Chunks(ctx, ReadAhead)
	if whole {
		chunks = sf.Unhashed().Chunks(ctx, ReadAhead)
	}
	if j.feed != nil {
		chunks = j.feed.Chunks(ctx)
		whole = whole || j.feed.p.unhashed
	}
	var h hash.Hash
	if whole {
		h = sha256.New()
	}
	var end int64 // where the data written ends
	for c, err := range chunks {
		if err != nil {
			return fmt.Errorf("%s: %w", p, err)
		}
		if c.Hole {
			if h != nil {
				if err := hashZeros(h, c.Size); err != nil {
					return err
				}
			}
			continue
		}
		if err := f.writeAt(c.Data, c.Offset); err != nil {
			return fmt.Errorf("%s: %w", p, &os.PathError{Op: "write", Path: p, Err: err})
		}
		end = c.Offset + int64(len(c.Data))
		if h != nil {
			h.Write(c.Data)
		}
		rs.o.Progress.Bytes.Add(uint64(len(c.Data)))
	}
	if end != sf.Size() { // a hole at the end, or nothing written
		if err := unix.Ftruncate(f.fd, sf.Size()); err != nil {
			return fmt.Errorf("%s: %w", p, &os.PathError{Op: "truncate", Path: p, Err: err})
		}
	}
	if h != nil {
		if got := blob.ID(h.Sum(nil)); got != n.FileHash {
			if err := blame(ctx, sf); err != nil {
				return fmt.Errorf("%s: %w", p, err)
			}
			return &MismatchError{Path: p, Want: n.FileHash, Got: got}
		}
	}
	if err := rs.fileMeta(p, n, f.fd); err != nil {
		return err
	}
	if err := f.close(); err != nil {
		return fmt.Errorf("%s: %w", p, &os.PathError{Op: "close", Path: p, Err: err})
	}
	rs.mu.Lock()
	rs.res.Files++
	rs.res.Bytes += n.Size
	rs.mu.Unlock()
	rs.o.Progress.Files.Add(1)
	crashpoint.Hit("restore-file-done")
	return nil
}

// blame loads the chunks of a file whose contents did not match its
// recorded hash again, each checked against its ID, and returns the
// first error: which chunk is wrong, if one is.
func blame(ctx context.Context, sf *snapfs.File) error {
	for _, err := range sf.Chunks(ctx, ReadAhead) {
		if err != nil {
			return err
		}
	}
	return nil
}

var zeros = make([]byte, 1<<20)

func hashZeros(h interface{ Write([]byte) (int, error) }, n int64) error {
	for n > 0 {
		k := min(n, int64(len(zeros)))
		h.Write(zeros[:k])
		n -= k
	}
	return nil
}

// meta sets owner (with CAP_CHOWN), extended attributes, mode and times
// of p by its path: a directory whose descriptor the chain cannot give,
// and symlinks, FIFOs and devices (symlinks get owner, xattrs and times
// without following the link). Files get theirs through their
// descriptor (fileMeta).
func (rs *restorer) meta(p string, n *tree.Node) error {
	if rs.asRoot {
		if err := rs.root.Lchown(p, int(n.UID), int(n.GID)); err != nil {
			return fmt.Errorf("%s: %w", p, err)
		}
	}
	if len(n.Xattrs) > 0 {
		if err := rs.xattrs(p, n); err != nil {
			rs.warn("%s: extended attributes: %v", p, err)
		}
	}
	if n.Type == tree.Symlink {
		return rs.atParent(p, func(dirfd int, name string) error {
			ts := []unix.Timespec{unix.NsecToTimespec(n.MTime), unix.NsecToTimespec(n.MTime)}
			if err := unix.UtimesNanoAt(dirfd, name, ts, unix.AT_SYMLINK_NOFOLLOW); err != nil {
				return fmt.Errorf("%s: %w", p, err)
			}
			return nil
		})
	}
	// chmod after chown: chown clears setuid and setgid bits.
	if err := rs.root.Chmod(p, FileMode(n.Mode)); err != nil {
		return fmt.Errorf("%s: %w", p, err)
	}
	if err := rs.root.Chtimes(p, time.Unix(0, n.ATime), time.Unix(0, n.MTime)); err != nil {
		return fmt.Errorf("%s: %w", p, err)
	}
	return nil
}

// setXattrs sets n's extended attributes on fd.
func (rs *restorer) setXattrs(fd int, n *tree.Node) error {
	var errs []error
	for _, x := range n.Xattrs {
		if err := unix.Fsetxattr(fd, x.Name, x.Value, 0); err != nil {
			errs = append(errs, fmt.Errorf("%s: %w", x.Name, err))
		}
	}
	return errors.Join(errs...)
}

func (rs *restorer) xattrs(p string, n *tree.Node) error {
	switch {
	case n.Type == tree.Dir:
		d, err := rs.root.Open(p)
		if err != nil {
			return err
		}
		defer d.Close()
		return rs.setXattrs(int(d.Fd()), n)
	default:
		// Symlinks, FIFOs and devices cannot be opened safely: name
		// them through the directory's descriptor, without following.
		return rs.atParent(p, func(dirfd int, name string) error {
			lp := fmt.Sprintf("/proc/self/fd/%d/%s", dirfd, name)
			var errs []error
			for _, x := range n.Xattrs {
				if err := unix.Lsetxattr(lp, x.Name, x.Value, 0); err != nil {
					errs = append(errs, fmt.Errorf("%s: %w", x.Name, err))
				}
			}
			return errors.Join(errs...)
		})
	}
}

// FileMode converts stored permission bits (with setuid, setgid and
// sticky) to an [os.FileMode].
func FileMode(m uint32) os.FileMode {
	fm := os.FileMode(m & 0o777)
	if m&syscall.S_ISUID != 0 {
		fm |= os.ModeSetuid
	}
	if m&syscall.S_ISGID != 0 {
		fm |= os.ModeSetgid
	}
	if m&syscall.S_ISVTX != 0 {
		fm |= os.ModeSticky
	}
	return fm
}
