package snapfs

import (
	"container/list"
	"context"
	"sync"

	"github.com/cairnbackup/cairn/repo/blob"
)

// Cache is a [BlobLoader] that keeps recently loaded blobs in memory, up
// to a byte budget, and loads a blob wanted by several callers at once
// only once. Restore uses it so a chunk shared by many files is fetched
// once; the FUSE mount uses it as its blob cache. Safe for concurrent use.
type Cache struct {
	l      BlobLoader
	budget int

	mu      sync.Mutex
	size    int
	lru     *list.List // of *cacheEntry, most recent first
	entries map[blob.ID]*list.Element
	loading map[blob.ID]*inflight
}

type cacheEntry struct {
	id   blob.ID
	typ  blob.Type
	data []byte
}

type inflight struct {
	done chan struct{}
	data []byte
	err  error
}

// NewCache wraps l with a cache of at most budget bytes of plaintext.
func NewCache(l BlobLoader, budget int) *Cache {
	return &Cache{l: l, budget: budget, lru: list.New(), entries: map[blob.ID]*list.Element{}, loading: map[blob.ID]*inflight{}}
}

// LoadBlob implements [BlobLoader]: it appends the blob's plaintext to
// buf[:0], from the cache when it can.
func (c *Cache) LoadBlob(ctx context.Context, h blob.Handle, buf []byte) ([]byte, error) {
	c.mu.Lock()
	if el, ok := c.entries[h.ID]; ok && el.Value.(*cacheEntry).typ == h.Type {
		c.lru.MoveToFront(el)
		out := append(buf[:0], el.Value.(*cacheEntry).data...)
		c.mu.Unlock()
		return out, nil
	}
	if f, ok := c.loading[h.ID]; ok {
		c.mu.Unlock()
		select {
		case <-f.done:
		case <-ctx.Done():
			return buf[:0], ctx.Err()
		}
		if f.err != nil {
			return buf[:0], f.err
		}
		return append(buf[:0], f.data...), nil
	}
	f := &inflight{done: make(chan struct{})}
	c.loading[h.ID] = f
	c.mu.Unlock()

	data, err := c.l.LoadBlob(ctx, h, nil)
	f.data, f.err = data, err
	c.mu.Lock()
	delete(c.loading, h.ID)
	if err == nil && len(data) <= c.budget/4 {
		c.insert(h, data)
	}
	c.mu.Unlock()
	close(f.done)
	if err != nil {
		return buf[:0], err
	}
	return append(buf[:0], data...), nil
}

func (c *Cache) insert(h blob.Handle, data []byte) {
	if _, ok := c.entries[h.ID]; ok {
		return
	}
	c.entries[h.ID] = c.lru.PushFront(&cacheEntry{id: h.ID, typ: h.Type, data: data})
	c.size += len(data)
	for c.size > c.budget {
		el := c.lru.Back()
		e := el.Value.(*cacheEntry)
		c.lru.Remove(el)
		delete(c.entries, e.id)
		c.size -= len(e.data)
	}
}

// Size returns the bytes held.
func (c *Cache) Size() int {
	c.mu.Lock()
	defer c.mu.Unlock()
	return c.size
}
