package restore

import (
	"context"
	"fmt"
	"iter"
	"sync"

	"github.com/cairnbackup/cairn/repo/blob"
	"github.com/cairnbackup/cairn/repo/snapfs"
	"github.com/cairnbackup/cairn/repo/tree"
)

// Reading ahead from an object store.
//
// From a directory a worker loads each chunk of its file when it comes
// to it (with [ReadAhead] in flight): a read costs no round trip. From a
// loader whose reads are requests ([snapfs.BatchLoader] with BatchReads,
// an object store) a restore plans instead. A planner stands between the
// walker and the workers. It passes each file on, in the walker's order,
// and then admits the file's chunks one by one into the plan, each
// counted against [planBudget] bytes of plaintext; a chunk whose blob is
// already planned takes no more room. Admitted chunks wait, and are
// asked of the loader together with one LoadBlobs call (a batch), which
// reads the blobs of a pack that lie close together with one request
// and opens them in parallel. A batch is sent when
//
//   - a worker waits for one of its chunks,
//   - it has reached [planBatch] bytes,
//   - the planner would wait (for the next file, for a worker to take a
//     file, or for room) while fewer than [planBatches] batches are
//     being read, or
//   - the walker is done.
//
// So while the workers are busy and the store answers, the plan grows
// and batches get large; when a worker runs dry it is sent at once.
// Workers take their file's chunks from the plan in order, write them as
// from a directory, and release each one; a blob's room is given back
// when the last chunk that admitted it is released. Where the loader
// can ([snapfs.UnhashedBatchLoader]) data blobs are loaded without being
// hashed, and every file restored from the plan, of one chunk too, is
// hashed whole against its recorded hash: each byte is hashed once. A
// worker that gives up on a file (a damaged blob) releases the rest of its
// chunks and the planner admits no more of them; the loader reports a
// damaged blob alone, so the other files of its batch restore.
//
// The planner runs at most [planFiles] files ahead of the workers: each
// is created empty and open, waiting in the queue to the workers.
//
// Progress: the planner admits in file order and the workers take files
// in that order, so the oldest admitted chunk always belongs to a file a
// worker has or will take next, and a chunk admitted into a full budget
// waits only for chunks before it to be written. A chunk larger than the
// whole budget is admitted when nothing else is held.
//
// # Memory
//
// At most planBudget (32 MiB) of plaintext is held, or one chunk when it
// alone is larger (8 MiB with the default chunker); a chunk whose tree
// claims more than a blob can hold fails its file and takes no room.
// Besides it: what the loader reads at once (the repository: at most
// eight stretches of at most 4 MiB, or one blob, being read, and 32 MiB
// of segments kept; see repo/batch.go), one record per chunk of the
// files queued for the workers (at most planFiles), and the goroutines
// of the batches being read, which hold only their lists of blobs. So
// a restore from an object store stays under about 200 MiB whatever
// the snapshot's size (peak RSS 190–200 MiB in make bench-s3).

// Planner limits; tests change planBudget.
var (
	planBudget  int64 = 32 << 20
	planBatch   int64 = 8 << 20
	planBatches       = 2
	planFiles         = 256
)

// testPlanned, when set, is called at the end of a planned restore with
// the planner's accounting.
var testPlanned func(planStats)

// planner plans the reads of a restore through a BatchLoader.
type planner struct {
	load     func(context.Context, []blob.Handle, func(int, []byte, error)) error // the loader's LoadBlobs, or LoadBlobsUnhashed
	unhashed bool                                                                 // load does not hash data blobs: files hash themselves
	budget   int64
	// signal wakes the planner: a worker waits for a chunk, a batch
	// was read, room was given back. Capacity 1: signals merge.
	signal chan struct{}
	wg     sync.WaitGroup // batches being read

	mu      sync.Mutex
	entries map[blob.ID]*entry // planned blobs not yet given back
	pending []*entry           // admitted, not yet asked of the loader
	pendSz  int64              // their bytes
	want    bool               // a worker waits for a chunk not yet asked for
	reading int                // batches being read
	stats   planStats
}

// planStats is the planner's own accounting, for tests.
type planStats struct {
	Held, Peak      int64 // plaintext bytes held now, and at most
	Batches, Blobs  int   // LoadBlobs calls, blobs asked for
	Admitted, Joins int   // chunks admitted; of them, those whose blob was planned already
}

// entry is one planned blob.
type entry struct {
	h         blob.Handle
	size      int64
	refs      int  // admitted chunks not yet released
	asked     bool // in a batch
	delivered bool
	done      chan struct{} // closed once data or err is set
	data      []byte
	err       error
}

func newPlanner(l snapfs.BatchLoader) *planner {
	p := &planner{load: l.LoadBlobs, budget: planBudget, signal: make(chan struct{}, 1), entries: map[blob.ID]*entry{}}
	if u, ok := l.(snapfs.UnhashedBatchLoader); ok {
		p.load, p.unhashed = u.LoadBlobsUnhashed, true
	}
	return p
}

func (p *planner) wake() {
	select {
	case p.signal <- struct{}{}:
	default:
	}
}

// run passes the files from in to out, planning their chunks, until in
// is closed or ctx ends. It returns once every batch has been read. Once
// ctx has ended it still passes on (unplanned) every file the walker
// created, so that the workers fail and remove them as without a planner.
func (p *planner) run(ctx context.Context, in <-chan fileJob, out chan<- fileJob) (err error) {
	defer p.wg.Wait()
	defer close(out)
	defer func() {
		if err != nil {
			for j := range in {
				out <- j
			}
		}
	}()
	for {
		j, ok, err := p.next(ctx, in)
		if err != nil {
			return err
		}
		if !ok {
			p.mu.Lock()
			p.send(ctx)
			p.mu.Unlock()
			return nil
		}
		j.feed = &feed{p: p, node: j.node, slots: make([]*entry, len(j.node.Content)), more: make(chan struct{}, 1)}
		if err := p.pass(ctx, out, j); err != nil {
			j.feed = nil
			out <- j
			return err
		}
		for i, c := range j.node.Content {
			if c.ID.IsZero() {
				continue
			}
			if err := p.admit(ctx, j.feed, i, c); err != nil {
				return err
			}
		}
	}
}

// idle sends what is pending if a worker waits for it or too few
// batches are being read; the planner is about to wait.
func (p *planner) idle(ctx context.Context) {
	p.mu.Lock()
	if p.want || p.reading < planBatches {
		p.send(ctx)
	}
	p.mu.Unlock()
}

// next returns the walker's next file.
func (p *planner) next(ctx context.Context, in <-chan fileJob) (fileJob, bool, error) {
	for {
		select {
		case j, ok := <-in:
			return j, ok, nil
		default:
		}
		p.idle(ctx)
		select {
		case j, ok := <-in:
			return j, ok, nil
		case <-p.signal:
		case <-ctx.Done():
			return fileJob{}, false, ctx.Err()
		}
	}
}

// pass hands j to the workers.
func (p *planner) pass(ctx context.Context, out chan<- fileJob, j fileJob) error {
	for {
		select {
		case out <- j:
			return nil
		default:
		}
		p.idle(ctx)
		select {
		case out <- j:
			return nil
		case <-p.signal:
		case <-ctx.Done():
			return ctx.Err()
		}
	}
}

// admit plans chunk i of f's file.
func (p *planner) admit(ctx context.Context, f *feed, i int, c tree.Chunk) error {
	h := blob.Handle{ID: c.ID, Type: blob.Data}
	size := int64(c.Size)
	p.mu.Lock()
	defer p.mu.Unlock()
	if c.Size > blob.MaxSize {
		// No blob is that large: the tree is damaged. Nothing to read.
		e := &entry{h: h, refs: 1, asked: true, delivered: true, done: make(chan struct{}),
			err: fmt.Errorf("chunk %s: the tree says %d bytes, more than a blob can hold: %w", c.ID.Short(), c.Size, blob.ErrCorrupt)}
		close(e.done)
		f.slots[i] = e
		f.notify()
		return nil
	}
	for {
		if f.stop {
			return nil
		}
		if e := p.entries[c.ID]; e != nil {
			e.refs++
			p.stats.Admitted++
			p.stats.Joins++
			f.slots[i] = e
			f.notify()
			return nil
		}
		if p.stats.Held == 0 || p.stats.Held+size <= p.budget {
			break
		}
		// No room: wait for a worker to release a chunk. Room comes
		// back as the workers write what was read; a worker that
		// waits for a pending chunk has it sent.
		if p.want {
			p.send(ctx)
		}
		p.mu.Unlock()
		select {
		case <-p.signal:
		case <-ctx.Done():
			p.mu.Lock()
			return ctx.Err()
		}
		p.mu.Lock()
	}
	e := &entry{h: h, size: size, refs: 1, done: make(chan struct{})}
	p.entries[c.ID] = e
	p.stats.Held += size
	p.stats.Peak = max(p.stats.Peak, p.stats.Held)
	p.stats.Admitted++
	p.pending = append(p.pending, e)
	p.pendSz += size
	f.slots[i] = e
	f.notify()
	if p.want || p.pendSz >= planBatch {
		p.send(ctx)
	}
	return nil
}

// send asks the loader for the pending blobs, as one batch read in a
// goroutine of its own. Called with p.mu held.
func (p *planner) send(ctx context.Context) {
	p.want = false
	if len(p.pending) == 0 {
		return
	}
	batch := p.pending
	p.pending, p.pendSz = nil, 0
	for _, e := range batch {
		e.asked = true
	}
	p.reading++
	p.stats.Batches++
	p.stats.Blobs += len(batch)
	p.wg.Add(1)
	go func() {
		defer p.wg.Done()
		hs := make([]blob.Handle, len(batch))
		for i, e := range batch {
			hs[i] = e.h
		}
		err := p.load(ctx, hs, func(i int, data []byte, err error) { p.deliver(batch[i], data, err) })
		if err == nil {
			err = ctx.Err()
		}
		for _, e := range batch {
			p.mu.Lock()
			missed := !e.delivered
			p.mu.Unlock()
			if missed {
				if err == nil {
					err = fmt.Errorf("blob %s: not loaded", e.h)
				}
				p.deliver(e, nil, err)
			}
		}
		p.mu.Lock()
		p.reading--
		p.mu.Unlock()
		p.wake()
	}()
}

// deliver sets e's data (or error) and wakes the workers waiting for it.
func (p *planner) deliver(e *entry, data []byte, err error) {
	if err == nil && int64(len(data)) != e.size {
		data, err = nil, fmt.Errorf("chunk %s is %d bytes, the tree says %d: %w", e.h.ID.Short(), len(data), e.size, blob.ErrCorrupt)
	}
	p.mu.Lock()
	e.data, e.err, e.delivered = data, err, true
	if e.refs == 0 {
		p.drop(e)
	}
	p.mu.Unlock()
	close(e.done)
}

// release gives back one admitted chunk of e. Called with p.mu held.
func (p *planner) release(e *entry) {
	e.refs--
	if e.refs == 0 && e.delivered {
		p.drop(e)
	}
}

// drop forgets e, which no admitted chunk needs: its room is given back.
// Called with p.mu held.
func (p *planner) drop(e *entry) {
	if p.entries[e.h.ID] == e {
		delete(p.entries, e.h.ID)
		p.stats.Held -= e.size
		p.wake()
	}
	e.data = nil
}

// feed is one file's chunks in the plan.
type feed struct {
	p    *planner
	node *tree.Node
	more chan struct{} // a chunk was admitted; capacity 1

	// Under p.mu:
	slots []*entry // by chunk: admitted and not yet released
	stop  bool     // the worker gave up on the file: admit no more
}

func (f *feed) notify() {
	select {
	case f.more <- struct{}{}:
	default:
	}
}

// Chunks yields the file's chunks in order, as [snapfs.File.Chunks]
// does, from the plan; Data is valid until the next iteration. When the
// iteration ends, early or not, every chunk of the file still held is
// released.
func (f *feed) Chunks(ctx context.Context) iter.Seq2[snapfs.Chunk, error] {
	return func(yield func(snapfs.Chunk, error) bool) {
		defer f.close()
		off := int64(0)
		for i, c := range f.node.Content {
			ck := snapfs.Chunk{Offset: off, Size: int64(c.Size), Hole: c.ID.IsZero()}
			off += int64(c.Size)
			if !ck.Hole {
				e, err := f.wait(ctx, i)
				if err == nil {
					ck.Data, err = e.data, e.err
				}
				if err == nil && uint64(len(ck.Data)) != c.Size {
					err = fmt.Errorf("chunk %s is %d bytes, the tree says %d: %w", c.ID.Short(), len(ck.Data), c.Size, blob.ErrCorrupt)
				}
				if err != nil {
					yield(ck, err)
					return
				}
			}
			if !yield(ck, nil) {
				return
			}
			if !ck.Hole {
				f.p.mu.Lock()
				f.p.release(f.slots[i])
				f.slots[i] = nil
				f.p.mu.Unlock()
			}
		}
	}
}

// wait returns the entry of chunk i once its blob is loaded. While the
// chunk is not yet asked of the loader it asks the planner to send.
func (f *feed) wait(ctx context.Context, i int) (*entry, error) {
	p := f.p
	for {
		p.mu.Lock()
		e := f.slots[i]
		ask := e == nil || !e.asked
		if ask {
			p.want = true
		}
		p.mu.Unlock()
		if ask {
			p.wake()
		}
		if e != nil {
			select {
			case <-e.done:
				return e, nil
			default:
			}
			select {
			case <-e.done:
				return e, nil
			case <-ctx.Done():
				return nil, ctx.Err()
			}
		}
		select {
		case <-f.more:
		case <-ctx.Done():
			return nil, ctx.Err()
		}
	}
}

// close releases every chunk of the file still held and stops the
// planner admitting more.
func (f *feed) close() {
	f.p.mu.Lock()
	defer f.p.mu.Unlock()
	f.stop = true
	for i, e := range f.slots {
		if e != nil {
			f.p.release(e)
			f.slots[i] = nil
		}
	}
}
