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
	l        BlobLoader
	budget   int
	maxEntry int // larger blobs are not kept

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
	done   chan struct{}
	data   []byte
	err    error
	reload bool // the blob was not kept: a waiter loads it itself
}

// NewCache wraps l with a cache of at most budget bytes of plaintext.
func NewCache(l BlobLoader, budget int) *Cache {
	return &Cache{l: l, budget: budget, maxEntry: budget / 4, lru: list.New(), entries: map[blob.ID]*list.Element{}, loading: map[blob.ID]*inflight{}}
}

// KeepAtMost makes c keep only blobs of at most n bytes (a quarter of
// its budget unless set) and returns c. A larger blob is loaded straight
// into the caller's buffer, without a copy: a restore keeps the small
// chunks that many files share and streams the large ones.
func (c *Cache) KeepAtMost(n int) *Cache {
	c.maxEntry = min(n, c.budget)
	return c
}

// LoadBlob implements [BlobLoader]: it appends the blob's plaintext to
// buf[:0], from the cache when it can.
func (c *Cache) LoadBlob(ctx context.Context, h blob.Handle, buf []byte) ([]byte, error) {
	c.mu.Lock()
	if out, ok := c.held(h, buf); ok {
		c.mu.Unlock()
		return out, nil
	}
	if f, ok := c.loading[h.ID]; ok {
		c.mu.Unlock()
		return c.await(ctx, f, h, buf, c.l.LoadBlob)
	}
	f := &inflight{done: make(chan struct{})}
	c.loading[h.ID] = f
	c.mu.Unlock()

	// Loaded into the caller's buffer; a blob that is kept is copied.
	data, err := c.l.LoadBlob(ctx, h, buf)
	keep := err == nil && len(data) <= c.maxEntry
	if keep {
		f.data = append([]byte(nil), data...)
	} else if err == nil {
		f.reload = true // data is the caller's buffer, not to be shared
	}
	f.err = err
	c.mu.Lock()
	delete(c.loading, h.ID)
	if keep {
		c.insert(h, f.data)
	}
	c.mu.Unlock()
	close(f.done)
	return data, err
}

// held appends blob h's plaintext to buf[:0] if the cache holds it.
// c.mu is held.
func (c *Cache) held(h blob.Handle, buf []byte) ([]byte, bool) {
	el, ok := c.entries[h.ID]
	if !ok || el.Value.(*cacheEntry).typ != h.Type {
		return buf, false
	}
	c.lru.MoveToFront(el)
	return append(buf[:0], el.Value.(*cacheEntry).data...), true
}

// await waits for the load f of h by another caller and appends its
// result to buf[:0]; if that caller did not keep the blob, it loads it
// with load.
func (c *Cache) await(ctx context.Context, f *inflight, h blob.Handle, buf []byte, load func(context.Context, blob.Handle, []byte) ([]byte, error)) ([]byte, error) {
	select {
	case <-f.done:
	case <-ctx.Done():
		return buf[:0], ctx.Err()
	}
	if f.reload {
		return load(ctx, h, buf)
	}
	if f.err != nil {
		return buf[:0], f.err
	}
	return append(buf[:0], f.data...), nil
}

// LoadBlobUnhashed implements [UnhashedLoader]. A blob held, or being
// loaded by LoadBlob, comes from there (it was hashed); any other is
// loaded through the wrapped loader's LoadBlobUnhashed (its LoadBlob if
// it has none) and neither kept nor handed to other callers, who expect
// hashed blobs.
func (c *Cache) LoadBlobUnhashed(ctx context.Context, h blob.Handle, buf []byte) ([]byte, error) {
	load := c.l.LoadBlob
	if u, ok := c.l.(UnhashedLoader); ok {
		load = u.LoadBlobUnhashed
	}
	c.mu.Lock()
	if out, ok := c.held(h, buf); ok {
		c.mu.Unlock()
		return out, nil
	}
	f, ok := c.loading[h.ID]
	c.mu.Unlock()
	if ok {
		return c.await(ctx, f, h, buf, load)
	}
	return load(ctx, h, buf)
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
