package fuse

import (
	"context"
	"errors"
	"fmt"
	"io"
	"sync"
	"syscall"

	"github.com/cairnbackup/cairn/repo/blob"
	"github.com/cairnbackup/cairn/repo/snapfs"
	"github.com/cairnbackup/cairn/repo/tree"
	"github.com/hanwen/go-fuse/v2/fs"
	"github.com/hanwen/go-fuse/v2/fuse"
)

// handle is one open file. The blob loader of its snapfs.File is the
// handle itself, which keeps a small window of whole chunks (those
// fetched ahead, the one being read and the one before it), so a chunk
// read in many requests comes out of the shared cache once. A read that
// lies inside one stored chunk is answered straight from the window,
// without a copy; the others (across chunks, holes) are assembled by
// [snapfs.File.ReadAt].
//
// Every load goes through the shared [snapfs.Cache] with the mount's
// context, never a request's: an interrupted request must not fail the
// load for other readers waiting on the same blob.
type handle struct {
	fsys    *filesys
	e       *entry
	file    *snapfs.File
	content []tree.Chunk
	offs    []int64

	mu       sync.Mutex
	next     int64 // where a sequential read starts: the end of the previous one
	aheadTo  int   // chunks below this index were fetched ahead (or needed no fetching)
	inflight int   // read-ahead loads running
	closed   bool
	slots    []*slot // at most window() of them
	tick     uint64
	failures int // failed reads; only the first is logged
	wg       sync.WaitGroup
}

// slot holds one chunk in a handle's window. data and err are set
// before done is closed and never change afterwards, so a reader that
// saw done closed may use data without the lock, even after the slot
// was evicted.
type slot struct {
	id   blob.ID
	done chan struct{}
	data []byte
	err  error
	used bool   // a read took it (fetched-ahead slots are false until then)
	tick uint64 // last use
}

func (s *slot) ready() bool {
	select {
	case <-s.done:
		return true
	default:
		return false
	}
}

var (
	_ fs.FileReader   = (*handle)(nil)
	_ fs.FileReleaser = (*handle)(nil)
)

func newHandle(f *filesys, e *entry, offs []int64) (*handle, error) {
	h := &handle{fsys: f, e: e, content: e.node.Content, offs: offs}
	file, err := snapfs.OpenFile(h, e.node)
	if err != nil {
		return nil, err
	}
	h.file = file
	return h, nil
}

// window is the number of chunks a handle keeps: those fetched ahead,
// the one being read and the one before it.
func (h *handle) window() int { return h.fsys.ahead + 2 }

// Read reads len(dest) bytes at off. A read that starts where the
// previous one ended is sequential and starts fetching the next chunks
// ahead. Holes read as zeros. A chunk that cannot be loaded (damaged or
// missing) fails the read with EIO and is logged; the other chunks, and
// the other files, still read.
func (h *handle) Read(ctx context.Context, dest []byte, off int64) (fuse.ReadResult, syscall.Errno) {
	if off < 0 {
		return nil, syscall.EINVAL
	}
	if off >= h.file.Size() || len(dest) == 0 {
		return fuse.ReadResultData(nil), 0
	}
	h.mu.Lock()
	seq := off == h.next
	h.next = off + int64(len(dest))
	h.mu.Unlock()
	i := chunkAt(h.offs, off)
	if seq {
		h.readAhead(i)
	}
	if data, ok, err := h.within(ctx, i, off, len(dest)); ok {
		return fuse.ReadResultData(data), 0
	} else if err != nil {
		return nil, h.readError(ctx, off, err)
	}
	n, err := h.file.ReadAt(ctx, dest, off)
	if err != nil && !errors.Is(err, io.EOF) {
		return nil, h.readError(ctx, off, err)
	}
	return fuse.ReadResultData(dest[:n]), 0
}

// within serves a read that lies inside one stored chunk straight from
// the window, without copying: the reply points into the chunk, which
// is never written to again. ok is false when the read spans chunks or
// falls in a hole; [snapfs.File.ReadAt] then assembles it.
func (h *handle) within(ctx context.Context, i int, off int64, n int) (data []byte, ok bool, err error) {
	if i >= len(h.content) || h.content[i].ID.IsZero() {
		return nil, false, nil
	}
	c := h.content[i]
	start := off - h.offs[i]
	end := min(start+int64(n), int64(c.Size))
	if start+int64(n) > int64(c.Size) && h.offs[i+1] < h.file.Size() {
		return nil, false, nil // continues into the next chunk
	}
	data, err = h.LoadBlob(ctx, blob.Handle{ID: c.ID, Type: blob.Data}, nil)
	if err != nil {
		return nil, false, err
	}
	if uint64(len(data)) != c.Size {
		return nil, false, fmt.Errorf("chunk %s is %d bytes, the tree says %d: %w", c.ID.Short(), len(data), c.Size, blob.ErrCorrupt)
	}
	return data[start:end], true, nil
}

// readError turns a failed read into EINTR when the request was
// interrupted, and otherwise logs it and answers EIO.
func (h *handle) readError(ctx context.Context, off int64, err error) syscall.Errno {
	if ctx.Err() != nil {
		return syscall.EINTR
	}
	if h.fsys.ctx.Err() != nil {
		return syscall.EIO // the mount is stopping: nothing is damaged
	}
	h.fail(off, err)
	return syscall.EIO
}

// fail logs the first read error of the handle; Release reports how
// many more there were.
func (h *handle) fail(off int64, err error) {
	h.mu.Lock()
	first := h.failures == 0
	h.failures++
	h.mu.Unlock()
	if first {
		h.fsys.log.Error("read failed: damaged or missing data", "snapshot", h.e.snap.Short(), "path", "/"+h.e.path, "offset", off, "err", err)
	}
}

// Release waits for the handle's read-ahead loads to end.
func (h *handle) Release(context.Context) syscall.Errno {
	h.mu.Lock()
	h.closed = true
	failures := h.failures
	h.mu.Unlock()
	h.wg.Wait()
	if failures > 1 {
		h.fsys.log.Error("more reads failed on the same file", "snapshot", h.e.snap.Short(), "path", "/"+h.e.path, "count", failures-1)
	}
	h.mu.Lock()
	h.slots = nil
	h.mu.Unlock()
	return 0
}

// readAhead starts loading the chunks after chunk i, up to the
// read-ahead distance, that are not loaded or loading yet. At most
// Options.ReadAhead loads run per handle; a chunk that finds no free
// place is fetched by a later read.
func (h *handle) readAhead(i int) {
	h.mu.Lock()
	defer h.mu.Unlock()
	end := min(i+1+h.fsys.ahead, len(h.content))
	for j := max(i+1, h.aheadTo); j < end && !h.closed; j++ {
		c := h.content[j]
		if c.ID.IsZero() || h.find(c.ID) != nil {
			h.aheadTo = j + 1
			continue
		}
		if h.inflight >= h.fsys.ahead {
			return
		}
		s := h.insert(c.ID, false)
		if s == nil {
			return
		}
		h.wg.Add(1)
		started := h.fsys.goBackground(func() {
			defer h.wg.Done()
			data, err := h.fsys.cache.LoadBlob(h.fsys.ctx, blob.Handle{ID: c.ID, Type: blob.Data}, nil)
			h.mu.Lock()
			h.inflight--
			h.mu.Unlock()
			h.finish(s, data, err)
		})
		if !started {
			h.wg.Done()
			h.removeLocked(s)
			close(s.done)
			return
		}
		h.inflight++
		h.aheadTo = j + 1
	}
}

// LoadBlob implements [snapfs.BlobLoader] for the handle's File: from
// the window when the chunk is there (waiting for a load in flight),
// otherwise from the shared cache, keeping the result in the window. The
// returned slice is never written to again; buf is not used.
func (h *handle) LoadBlob(ctx context.Context, bh blob.Handle, _ []byte) ([]byte, error) {
	h.mu.Lock()
	if s := h.find(bh.ID); s != nil {
		h.tick++
		s.tick, s.used = h.tick, true
		h.mu.Unlock()
		select {
		case <-s.done:
		case <-ctx.Done():
			return nil, ctx.Err()
		}
		if s.err != nil {
			return nil, s.err
		}
		return s.data, nil
	}
	s := h.insert(bh.ID, true)
	h.mu.Unlock()
	data, err := h.fsys.cache.LoadBlob(h.fsys.ctx, bh, nil)
	if s != nil {
		h.finish(s, data, err)
	}
	if err != nil {
		return nil, err
	}
	return data, nil
}

// finish completes slot s; a failed load leaves the window, so the
// next read tries again.
func (h *handle) finish(s *slot, data []byte, err error) {
	s.data, s.err = data, err
	close(s.done)
	if err != nil {
		h.remove(s)
	}
}

// find returns the slot of chunk id, or nil. The caller holds h.mu.
func (h *handle) find(id blob.ID) *slot {
	for _, s := range h.slots {
		if s.id == id {
			return s
		}
	}
	return nil
}

// insert adds a slot for chunk id, evicting a finished one if the
// window is full: preferably a chunk already read, the least recently
// used. It returns nil when every slot is still loading. The caller
// holds h.mu.
func (h *handle) insert(id blob.ID, used bool) *slot {
	if h.closed {
		return nil
	}
	if len(h.slots) >= h.window() {
		victim := -1
		for k, s := range h.slots {
			if !s.ready() {
				continue
			}
			if victim < 0 {
				victim = k
				continue
			}
			v := h.slots[victim]
			if s.used != v.used && s.used || s.used == v.used && s.tick < v.tick {
				victim = k
			}
		}
		if victim < 0 {
			return nil
		}
		h.slots = append(h.slots[:victim], h.slots[victim+1:]...)
	}
	h.tick++
	s := &slot{id: id, done: make(chan struct{}), used: used, tick: h.tick}
	h.slots = append(h.slots, s)
	return s
}

// remove takes s out of the window if it is there.
func (h *handle) remove(s *slot) {
	h.mu.Lock()
	defer h.mu.Unlock()
	h.removeLocked(s)
}

func (h *handle) removeLocked(s *slot) {
	for k, x := range h.slots {
		if x == s {
			h.slots = append(h.slots[:k], h.slots[k+1:]...)
			return
		}
	}
}

// goBackground runs fn in a goroutine the mount waits for at shutdown;
// it returns false (and does not run fn) once the mount has stopped.
func (f *filesys) goBackground(fn func()) bool {
	f.bgMu.Lock()
	defer f.bgMu.Unlock()
	if f.stopped {
		return false
	}
	f.wg.Add(1)
	go func() {
		defer f.wg.Done()
		fn()
	}()
	return true
}

// stop cancels the mount's context and waits for its background loads.
func (f *filesys) stop() {
	f.bgMu.Lock()
	f.stopped = true
	f.bgMu.Unlock()
	f.cancel()
	f.wg.Wait()
}
