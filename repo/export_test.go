package repo

import (
	"context"
	"time"

	"github.com/cairnbackup/cairn/repo/blob"
	"github.com/cairnbackup/cairn/repo/storage"
)

// CacheSnapshotRecord replaces the index's cached record of snapshot id,
// as damage to the index would.
func (r *Repository) CacheSnapshotRecord(id blob.ID, record []byte) error {
	return r.idx.AddSnapshot(id, record)
}

// RefreshLock rewrites the heartbeat of an object-store repository's
// lock now, as its heartbeat does every LockHeartbeat.
func (r *Repository) RefreshLock(ctx context.Context) error {
	return r.owner.refresh(ctx)
}

// SetLockHeartbeat makes repositories opened from now on refresh their
// lock object every d, until the test ends.
func SetLockHeartbeat(t interface{ Cleanup(func()) }, d time.Duration) {
	old := heartbeatInterval
	heartbeatInterval = d
	t.Cleanup(func() { heartbeatInterval = old })
}

// SegmentCacheSize is the bound of what the segments keep.
const SegmentCacheSize = segmentCacheSize

// SegmentBytes returns how many bytes r's segments keep now.
func SegmentBytes(r *Repository) int {
	r.segments.mu.Lock()
	defer r.segments.mu.Unlock()
	return r.segments.bytes
}

// OnSegmentWait has fn called, until the test ends, whenever a reader
// finds the segment it needs being read by another and waits for it.
func OnSegmentWait(t interface{ Cleanup(func()) }, fn func()) {
	testSegmentWait = fn
	t.Cleanup(func() { testSegmentWait = nil })
}

// WrapBackend puts wrap's backend between r and its storage.
func WrapBackend(r *Repository, wrap func(storage.Backend) storage.Backend) {
	r.be = wrap(r.be)
}

// PackWrites returns how many of s's full packs wait to be written or
// are being written.
func PackWrites(s *Session) int {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.writing
}

// OnPackWriteWait has fn called, until the test ends, whenever a session
// waits for a pack write to end before it starts another.
func OnPackWriteWait(t interface{ Cleanup(func()) }, fn func()) {
	testPackWriteWait = fn
	t.Cleanup(func() { testPackWriteWait = nil })
}
