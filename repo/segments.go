package repo

import (
	"context"
	"errors"
	"fmt"
	"io"
	"sync"

	"github.com/cairnbackup/cairn/repo/blob"
	"github.com/cairnbackup/cairn/repo/storage"
)

// Ranges of packs read from an object store.
//
// Every read from an object store is a request with a round trip, so what
// was read is kept for a while in segments: ranges of packs, found again
// by any reader that needs bytes within one.
//
//   - [Repository.LoadBlob] reads a blob smaller than [segmentSmall],
//     where a segment of its pack kept or being read lies within
//     segmentSize of it, as part of the segment of the pack that holds
//     it: the [segmentSize] bytes from a multiple of segmentSize
//     (further, for a blob that crosses the next multiple; less at the
//     pack's end), leaving out what is held already on either side. A
//     restore of many small files, or a walk of many trees, then costs a
//     request per segment instead of one per blob, whatever the order
//     (forward for files, root first and so backward for trees). A
//     small blob far from anything read is read alone, as the kernel
//     starts a file's read-ahead small: it is mostly a file that shares
//     its contents with one backed up long before, and the 4 MiB around
//     it would be read for nothing (a restore of datagen.Bench read
//     720-790 MB for 517 MB of packs that way, 600-620 MB this way).
//     Larger blobs are read alone, as from a directory (whose reads cost
//     no round trip and go through the page cache).
//   - [Repository.LoadBlobs] reads stretches of packs (batch.go); it keeps
//     each as a segment, so the blobs between the ones it was asked for
//     (another file's, backed up at the same time and restored next) are
//     found there rather than read again; it reads a stretch as short as
//     a small blob as LoadBlob reads that blob.
//
// A segment being read is shared: a reader that needs bytes it will hold
// waits for it instead of asking the store again, so readers that miss at
// the same moment (a restore's workers, LoadBlobs' stretches) cost one
// request. Packs never change, and every blob is still authenticated and
// re-hashed, so a kept segment cannot serve anything a fresh read would
// not.
//
// Memory: the segments kept hold at most [segmentCacheSize] bytes (the
// least recently used go first; a range larger than a quarter of that is
// not kept), plus the segments being read.

const (
	segmentSize      = 4 << 20
	segmentSmall     = 512 << 10
	segmentCacheSize = 32 << 20
)

// testSegmentWait, when set, is called whenever a reader waits for a
// segment another is reading.
var testSegmentWait func()

// segment is a range of a pack read from the store.
type segment struct {
	pack  blob.ID
	off   int64
	size  int64 // the pack's size
	data  []byte
	ready chan struct{} // closed once data (or err) is set
	err   error
}

// segmentCache holds the segments most recently used, newest last, and
// those being read.
type segmentCache struct {
	mu      sync.Mutex
	segs    []*segment
	bytes   int // held by segs
	loading []*segment
}

func (s *segment) covers(pack blob.ID, off, n int64) bool {
	return s.pack == pack && off >= s.off && off+n <= s.off+int64(len(s.data))
}

// find returns a segment that holds or will hold n bytes at off of pack.
// Called with c.mu held.
func (c *segmentCache) find(pack blob.ID, off, n int64) *segment {
	for i := len(c.segs) - 1; i >= 0; i-- {
		s := c.segs[i]
		if s.covers(pack, off, n) {
			c.segs = append(append(c.segs[:i:i], c.segs[i+1:]...), s) // most recently used last
			return s
		}
	}
	for _, s := range c.loading {
		if s.covers(pack, off, n) {
			return s
		}
	}
	return nil
}

// near reports whether a segment kept or being read lies within
// segmentSize of the n bytes at off of pack. Called with c.mu held.
func (c *segmentCache) near(pack blob.ID, off, n int64) bool {
	for _, l := range [][]*segment{c.segs, c.loading} {
		for _, s := range l {
			if s.pack == pack && s.off-segmentSize < off+n && off < s.off+int64(len(s.data))+segmentSize {
				return true
			}
		}
	}
	return false
}

// clip narrows [start, end), a range of pack around the n bytes at off,
// so that it leaves out what segments kept or being read hold on either
// side of those bytes: nothing is read twice while it is held. Called
// with c.mu held.
func (c *segmentCache) clip(pack blob.ID, off, n, start, end int64) (int64, int64) {
	for _, l := range [][]*segment{c.segs, c.loading} {
		for _, s := range l {
			if s.pack != pack {
				continue
			}
			if e := s.off + int64(len(s.data)); e <= off && e > start {
				start = e
			}
			if s.off >= off+n && s.off < end {
				end = s.off
			}
		}
	}
	return start, end
}

// done moves s from the segments being read to those kept, unless its
// read failed or it is too large to keep. Called with c.mu held.
func (c *segmentCache) done(s *segment) {
	for i, l := range c.loading {
		if l == s {
			c.loading = append(c.loading[:i], c.loading[i+1:]...)
			break
		}
	}
	if s.err != nil || len(s.data) > segmentCacheSize/4 {
		return
	}
	c.segs = append(c.segs, s)
	c.bytes += len(s.data)
	n := 0
	for c.bytes > segmentCacheSize {
		c.bytes -= len(c.segs[n].data)
		c.segs[n] = nil
		n++
	}
	c.segs = append(c.segs[:0], c.segs[n:]...)
}

// ReadAt reads from the segment, at offsets of the pack.
func (s *segment) ReadAt(p []byte, off int64) (int, error) {
	rel := off - s.off
	if rel < 0 || rel+int64(len(p)) > int64(len(s.data)) {
		return 0, fmt.Errorf("pack %s: bytes %d-%d are outside the segment read", s.pack.Short(), off, off+int64(len(p)))
	}
	return copy(p, s.data[rel:]), nil
}

func (s *segment) Size() int64  { return s.size }
func (s *segment) Close() error { return nil }

// segmentFor returns a file that serves n bytes at off of pack id from a
// segment: one kept, one being read (once it is), or the segment that
// holds them, read now.
func (r *Repository) segmentFor(ctx context.Context, id blob.ID, off, n int64) (storage.File, error) {
	return r.packRange(ctx, id, off, n, func(size int64) (int64, int64) {
		if !r.segments.near(id, off, n) {
			return off, off + n
		}
		start := off / segmentSize * segmentSize
		return start, min(size, max(start+segmentSize, off+n))
	})
}

// packRange returns a segment that holds n bytes at off of pack id: one
// kept, one being read (once it is), or else one read now, of the range
// span gives for the pack's size (which must hold off+n, as far as the
// pack does).
func (r *Repository) packRange(ctx context.Context, id blob.ID, off, n int64, span func(size int64) (start, end int64)) (storage.File, error) {
	c := &r.segments
	for {
		c.mu.Lock()
		s := c.find(id, off, n)
		c.mu.Unlock()
		if s == nil {
			break
		}
		select {
		case <-s.ready:
		default:
			if testSegmentWait != nil {
				testSegmentWait()
			}
			select {
			case <-s.ready:
			case <-ctx.Done():
				return nil, ctx.Err()
			}
		}
		if s.err == nil {
			return s, nil
		}
		// The read it waited for failed (its reader may have been
		// cancelled): look again, and read itself.
	}
	f, err := r.be.Open(ctx, r.packHandle(id))
	if err != nil {
		return nil, err
	}
	defer f.Close()
	c.mu.Lock()
	if s := c.find(id, off, n); s != nil {
		c.mu.Unlock() // another reader was quicker
		return r.packRange(ctx, id, off, n, span)
	}
	start, end := span(f.Size())
	end = min(end, f.Size())
	start = min(start, end) // the caller finds its bytes outside the pack
	start, end = c.clip(id, off, n, start, end)
	s := &segment{pack: id, off: start, size: f.Size(), data: make([]byte, end-start), ready: make(chan struct{})}
	c.loading = append(c.loading, s)
	c.mu.Unlock()
	m, err := f.ReadAt(s.data, start)
	if err != nil && !(errors.Is(err, io.EOF) && m == len(s.data)) {
		s.err = err
	}
	c.mu.Lock()
	c.done(s)
	c.mu.Unlock()
	close(s.ready)
	if s.err != nil {
		return nil, s.err
	}
	return s, nil
}
