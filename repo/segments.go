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

// Reading small blobs from an object store.
//
// Every read from an object store is a request with a round trip. A
// restore of many small files reads their blobs one after the other, and
// those blobs lie one after the other in their packs (the backup wrote
// them in the same order), so [Repository.LoadBlob] reads a blob smaller
// than [segmentSmall] from an object store as part of a segment of its
// pack of up to [segmentSize] bytes starting at the blob, and keeps the
// last [segmentCount] segments: the following blobs of the pack come
// from memory. Larger blobs are read alone, as from a directory (whose
// reads cost no round trip and go through the page cache). Packs never
// change, and every blob is still authenticated and re-hashed, so a
// cached segment cannot serve anything a fresh read would not.
//
// Memory: at most segmentCount segments of segmentSize bytes (32 MiB),
// plus the segments being read.

const (
	segmentSize  = 4 << 20
	segmentSmall = 512 << 10
	segmentCount = 8
)

// segment is a range of a pack read from the store.
type segment struct {
	pack blob.ID
	off  int64
	size int64 // the pack's size
	data []byte
}

// segmentCache holds the segments most recently read, newest last.
type segmentCache struct {
	mu   sync.Mutex
	segs []*segment
}

func (c *segmentCache) find(pack blob.ID, off, n int64) *segment {
	c.mu.Lock()
	defer c.mu.Unlock()
	for i := len(c.segs) - 1; i >= 0; i-- {
		s := c.segs[i]
		if s.pack == pack && off >= s.off && off+n <= s.off+int64(len(s.data)) {
			c.segs = append(append(c.segs[:i:i], c.segs[i+1:]...), s) // most recently used last
			return s
		}
	}
	return nil
}

func (c *segmentCache) add(s *segment) {
	c.mu.Lock()
	defer c.mu.Unlock()
	if len(c.segs) == segmentCount {
		c.segs = append(c.segs[:0:0], c.segs[1:]...)
	}
	c.segs = append(c.segs, s)
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
// segment: a cached one, or one read now.
func (r *Repository) segmentFor(ctx context.Context, id blob.ID, off, n int64) (storage.File, error) {
	if s := r.segments.find(id, off, n); s != nil {
		return s, nil
	}
	f, err := r.be.Open(ctx, r.packHandle(id))
	if err != nil {
		return nil, err
	}
	defer f.Close()
	end := min(f.Size(), off+max(n, segmentSize))
	if off > end {
		off = end // the caller finds the blob outside the pack
	}
	s := &segment{pack: id, off: off, size: f.Size(), data: make([]byte, end-off)}
	m, err := f.ReadAt(s.data, off)
	if err != nil && !(errors.Is(err, io.EOF) && m == len(s.data)) {
		return nil, err
	}
	r.segments.add(s)
	return s, nil
}
