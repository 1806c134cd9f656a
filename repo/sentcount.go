package repo

import (
	"context"
	"fmt"
	"sync"

	"github.com/cairnbackup/cairn/repo/blob"
	"github.com/cairnbackup/cairn/repo/pack"
	"github.com/cairnbackup/cairn/repo/snapshot"
)

// SentCounter stores blobs through a [Session] like the session itself,
// but its [SentCounter.Stats] count every distinct blob handed to it as
// added, with the plaintext and stored size it has: the figures a push
// of the same blobs into an empty repository reports. They depend on the
// blobs alone, never on what the repository held before, so they can be
// shown to an isolated node without telling it what other nodes stored.
// Storage is deduplicated as usual.
//
// Cost: every distinct blob is compressed, also one the repository has
// already (whose size must be counted without looking at the stored
// copy, which another node may have compressed differently). Memory:
// the 8-byte prefixes of the distinct blobs ([blob.IDSet]); two blobs of
// one push sharing a prefix are counted once, which only the pushing node
// could arrange and which tells it nothing.
type SentCounter struct {
	s *Session

	mu    sync.Mutex
	seen  [3]blob.IDSet // by blob type
	stats SessionStats
}

// CountSent returns a SentCounter storing through s.
func (s *Session) CountSent() *SentCounter { return &SentCounter{s: s} }

// Known reports whether the repository or the session has blob h (see
// [Session.Known]); it counts nothing.
func (c *SentCounter) Known(h blob.Handle) (bool, error) { return c.s.Known(h) }

// SaveBlob stores data as a blob of type t unless the repository has it
// already, as [Session.SaveBlob] does, and counts it if this counter has
// not seen it before. added says whether the repository stored it now.
func (c *SentCounter) SaveBlob(ctx context.Context, t blob.Type, data []byte) (id blob.ID, added bool, err error) {
	if !t.Valid() {
		return blob.Hash(data), false, fmt.Errorf("blob: invalid type %d", t)
	}
	h := blob.Handle{ID: blob.Hash(data), Type: t}
	c.mu.Lock()
	first := !c.seen[t].Has(h.ID)
	c.seen[t].Add(h.ID)
	c.mu.Unlock()
	if !first {
		return c.s.SaveBlob(ctx, t, data)
	}
	if len(data) > blob.MaxSize {
		return h.ID, false, fmt.Errorf("blob %s: %d bytes is more than the limit of %d", h, len(data), blob.MaxSize)
	}
	bp := payloadPool.Get().(*[]byte)
	payload, comp := pack.Compress((*bp)[:0], data, c.s.r.level)
	size := uint64(len(payload) + pack.MinEnvelope) // as pack.SealBlob makes it
	known, err := c.s.Known(h)
	if err == nil && !known {
		added, err = c.s.add(h, comp, payload, len(data))
	}
	*bp = payload
	if cap(payload) <= 16<<20 {
		payloadPool.Put(bp)
	}
	if err != nil {
		return h.ID, added, err
	}
	c.mu.Lock()
	c.stats.BlobsAdded++
	c.stats.BytesAdded += uint64(len(data))
	c.stats.StoredAdded += size
	c.mu.Unlock()
	return h.ID, added, nil
}

// Stats returns the figures counted so far. Packs is not counted: how
// many packs a push wrote depends on what the repository held.
func (c *SentCounter) Stats() SessionStats {
	c.mu.Lock()
	defer c.mu.Unlock()
	return c.stats
}

// Added returns what Stats counts, as a snapshot's summary records it
// (backup.Target).
func (c *SentCounter) Added() (blobs, bytes, stored uint64) { return c.Stats().Added() }

// Flush is the session's [Session.Flush].
func (c *SentCounter) Flush(ctx context.Context) error { return c.s.Flush(ctx) }

// Commit is the session's [Session.Commit].
func (c *SentCounter) Commit(ctx context.Context, sn *snapshot.Snapshot) (blob.ID, error) {
	return c.s.Commit(ctx, sn)
}
