package snapfs

import (
	"context"
	"fmt"
	"iter"
	"path"
	"sync"
	"sync/atomic"

	"github.com/cairnbackup/cairn/repo/blob"
	"github.com/cairnbackup/cairn/repo/tree"
)

// DefaultReadAhead is how many trees [Walk] reads ahead of the walk when
// [WalkOptions.ReadAhead] is 0.
const DefaultReadAhead = 8

// heldFactor×ReadAhead is how many trees read ahead a walk holds at
// most, read or being read.
const heldFactor = 4

// WalkOptions say how [Walk] walks. The zero value walks every tree
// wherever it is met, reading up to [DefaultReadAhead] trees ahead.
type WalkOptions struct {
	// Seen, when not nil, holds the trees walked so far, and the walk
	// adds every tree it enters: a directory whose tree is in it is
	// yielded with [Entry.Seen] set and its contents are not yielded
	// again, so each tree is read once. Share one Seen between the
	// walks of several snapshots to read each tree once among them all
	// (they share most of their trees). A root already in Seen yields
	// nothing. Because the walk is depth first and a tree cannot hold
	// itself, a directory met with Seen set was walked to its end before.
	Seen map[blob.ID]struct{}
	// Skip, when not nil, is asked about every directory when the tree
	// listing it is read, before any entry of that tree is yielded and
	// before anything below it is read ahead: true leaves its contents
	// out (its own entry is still yielded). It is called from the walk's
	// goroutine. [Entry.SkipDir] decides later, when the directory's
	// entry is yielded.
	Skip func(Entry) bool
	// Leave asks for one more entry after the contents of each directory
	// the walk entered, the root last (with Node nil), with [Entry.Leave]
	// set, even when its tree could not be read: the place to sum up a
	// directory.
	Leave bool
	// ReadAhead is how many trees may be read ahead of the walk at once,
	// the next ones in walk order first (at most four times as many are
	// held until the walk gets to them); 0 means [DefaultReadAhead], a
	// negative number none.
	// With read-ahead the loader is called from several goroutines.
	ReadAhead int
}

// Entry is one node met by [Walk].
type Entry struct {
	// Path is the node's path relative to the walk's root, without a
	// leading slash ("" for the root itself: an error reading it, or
	// its Leave).
	Path string
	// Node is the node, nil for the root itself.
	Node *tree.Node
	// Tree is the tree listing Node; on an error or with Leave, the
	// tree of the directory itself.
	Tree blob.ID
	// Dir is the decoded tree Tree: Node's listing with its siblings,
	// or with Leave the directory's own listing (nil when it could not
	// be read, and on an error); a caller can judge a directory by all
	// it holds.
	Dir *tree.Tree
	// Seen marks a directory whose tree was walked before
	// ([WalkOptions.Seen]): its contents do not follow.
	Seen bool
	// Leave marks the end of a directory's contents
	// ([WalkOptions.Leave]).
	Leave bool

	w *walker
}

// SkipDir, called while a directory's entry is being yielded, leaves
// the directory's contents out (like [io/fs.SkipDir]): for a decision
// only the caller's handling of the entry can make (the directory could
// not be made, or is missing in a target being compared). Its tree may
// have been read ahead already, nothing below it is. Call it only in
// the loop body handling e; for other entries it does nothing.
func (e Entry) SkipDir() {
	if e.w != nil && e.Node != nil && e.Node.Type == tree.Dir && !e.Leave {
		e.w.skipDir = true
	}
}

// TreeError is a tree [Walk] could not load or decode: what lies below
// the directory at Path is unknown.
type TreeError struct {
	Path string  // the directory, relative to the walk's root ("" for the root)
	Tree blob.ID // its tree
	Err  error   // from the loader or [tree.Decode]
}

func (e *TreeError) Error() string { return fmt.Sprintf("%s: %v", displayPath(e.Path), e.Err) }
func (e *TreeError) Unwrap() error { return e.Err }

// Walk visits every node below the directory tree root, depth first, in
// name order, a directory before its contents. It is the one walk over
// snapshot trees: ls, diff, find, stats, status, drills, check, prune's
// mark and replication, restore, verify and dump use it. A tree that cannot be
// loaded is yielded as a *[TreeError] naming the directory, and the walk
// goes on with the rest; once ctx ends, its error is yielded and the walk
// stops. Names need no checking here: every tree passes [tree.Decode],
// which rejects "", ".", "..", names with "/" or NUL, unsorted and
// duplicate entries.
//
// Memory: the trees of the directories on the path being walked, and at
// most 4×o.ReadAhead trees read ahead (each at most [blob.MaxSize], in
// practice a few KiB); Seen, about 40 bytes per tree.
func Walk(ctx context.Context, l BlobLoader, root blob.ID, o WalkOptions) iter.Seq2[Entry, error] {
	return func(yield func(Entry, error) bool) {
		if o.Seen != nil {
			if _, ok := o.Seen[root]; ok {
				return
			}
		}
		ctx, cancel := context.WithCancel(ctx)
		w := &walker{ctx: ctx, l: l, o: o, limit: o.ReadAhead, yield: yield}
		defer w.wg.Wait() // reads ahead the walk did not get to end with ctx
		defer cancel()
		if w.limit == 0 {
			w.limit = DefaultReadAhead
		}
		if o.Seen != nil {
			w.byID = map[blob.ID]*ahead{}
		}
		w.dir(nil, root, "", nil)
	}
}

// walker is one walk. Only the walk's goroutine touches its fields; the
// goroutines reading ahead only fill in their *ahead, close its done and
// lower inflight.
type walker struct {
	ctx   context.Context
	l     BlobLoader
	o     WalkOptions
	limit int
	yield func(Entry, error) bool

	held     int                // reads ahead started and not yet taken by the walk
	skipDir  bool               // the caller asked to skip the directory just yielded
	inflight atomic.Int32       // reads ahead started and not yet done
	levels   []*level           // one per directory being walked, root first
	byID     map[blob.ID]*ahead // with Seen: reads ahead not yet taken, so one tree is read once
	wg       sync.WaitGroup
}

// level is the subdirectories of one directory being walked that the
// walk has not reached yet, in order; those before next were started (or
// taken through another level).
type level struct {
	q    []*ahead
	next int
}

// ahead is a tree read ahead of the walk (or to be).
type ahead struct {
	id      blob.ID
	started bool
	taken   bool
	counted bool // counted in held
	done    chan struct{}
	t       *tree.Tree
	err     error
}

// dir walks directory dir, tree id (a, when not nil, is its read ahead;
// node its entry, nil for the root). It returns false when the walk
// stops.
func (w *walker) dir(a *ahead, id blob.ID, dir string, node *tree.Node) bool {
	if err := w.ctx.Err(); err != nil {
		w.yield(Entry{Path: dir}, err)
		return false
	}
	if w.o.Seen != nil {
		w.o.Seen[id] = struct{}{}
	}
	t, err := w.take(a, id)
	if err != nil {
		if w.ctx.Err() != nil {
			w.yield(Entry{Path: dir}, w.ctx.Err())
			return false
		}
		if !w.yield(Entry{Path: dir, Tree: id}, &TreeError{Path: dir, Tree: id, Err: err}) {
			return false
		}
		return w.leave(dir, id, node, nil)
	}
	// Decide which subdirectories to enter and queue them for reading
	// ahead, before yielding anything of this tree.
	var subs []*ahead // by node index; nil: not entered (or seen)
	var skip []bool
	lv := &level{}
	for i := range t.Nodes {
		n := &t.Nodes[i]
		if n.Type != tree.Dir {
			continue
		}
		if subs == nil {
			subs, skip = make([]*ahead, len(t.Nodes)), make([]bool, len(t.Nodes))
		}
		if w.o.Skip != nil && w.o.Skip(Entry{Path: path.Join(dir, n.Name), Node: n, Tree: id, Dir: t}) {
			skip[i] = true
			continue
		}
		if w.seen(n.Subtree) {
			continue
		}
		s := w.byID[n.Subtree] // nil map without Seen: every place reads its own
		if s == nil {
			s = &ahead{id: n.Subtree}
			if w.byID != nil {
				w.byID[n.Subtree] = s
			}
		}
		subs[i] = s
		lv.q = append(lv.q, s)
	}
	w.levels = append(w.levels, lv)
	defer func() { w.levels = w.levels[:len(w.levels)-1] }()
	w.fill()
	for i := range t.Nodes {
		n := &t.Nodes[i]
		e := Entry{Path: path.Join(dir, n.Name), Node: n, Tree: id, Dir: t, w: w}
		enter := n.Type == tree.Dir && !skip[i]
		if enter {
			if subs[i] != nil && len(lv.q) > 0 && lv.q[0] == subs[i] {
				lv.q = lv.q[1:]
				lv.next = max(lv.next-1, 0)
			}
			e.Seen = w.seen(n.Subtree)
		}
		w.skipDir = false
		if !w.yield(e, nil) {
			return false
		}
		switch {
		case enter && !e.Seen && w.skipDir:
			w.release(subs[i])
		case enter && !e.Seen:
			if !w.dir(subs[i], n.Subtree, e.Path, n) {
				return false
			}
		}
	}
	return w.leave(dir, id, node, t)
}

func (w *walker) leave(dir string, id blob.ID, node *tree.Node, t *tree.Tree) bool {
	if !w.o.Leave {
		return true
	}
	return w.yield(Entry{Path: dir, Node: node, Tree: id, Dir: t, Leave: true}, nil)
}

func (w *walker) seen(id blob.ID) bool {
	if w.o.Seen == nil {
		return false
	}
	_, ok := w.o.Seen[id]
	return ok
}

// take returns tree id: its read ahead when one was started, otherwise
// read now.
func (w *walker) take(a *ahead, id blob.ID) (*tree.Tree, error) {
	if a != nil {
		a.taken = true
		if w.byID != nil {
			delete(w.byID, id)
		}
		if a.started {
			select {
			case <-a.done:
			case <-w.ctx.Done():
				return nil, w.ctx.Err()
			}
			w.release(a)
			return a.t, a.err
		}
	}
	return LoadTree(w.ctx, w.l, id)
}

// release stops counting read ahead a as held: the walk took it, or
// passed its directory by (its read ends with the walk's context).
func (w *walker) release(a *ahead) {
	if a != nil && a.counted {
		a.counted = false
		w.held--
	}
}

// fill starts reading ahead, the deepest level first (the walk gets
// there next), while fewer than limit reads are in progress and fewer
// than heldFactor×limit are held. Reads done but not taken do not count
// against limit: trees read ahead at a shallow level (the walk gets
// there after everything below the directory it is in) would otherwise
// hold every slot and leave the walk below to read one tree at a time.
func (w *walker) fill() {
	room := func() bool { return w.held < heldFactor*w.limit && int(w.inflight.Load()) < w.limit }
	for d := len(w.levels) - 1; d >= 0 && room(); d-- {
		lv := w.levels[d]
		for ; lv.next < len(lv.q) && room(); lv.next++ {
			a := lv.q[lv.next]
			if a.started || a.taken {
				continue
			}
			a.started, a.done, a.counted = true, make(chan struct{}), true
			w.held++
			w.inflight.Add(1)
			w.wg.Add(1)
			go func() {
				defer w.wg.Done()
				defer close(a.done)
				defer w.inflight.Add(-1)
				a.t, a.err = LoadTree(w.ctx, w.l, a.id)
			}()
		}
	}
}
