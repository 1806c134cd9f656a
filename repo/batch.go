package repo

import (
	"cmp"
	"context"
	"errors"
	"fmt"
	"slices"
	"sync"

	"github.com/cairnbackup/cairn/repo/blob"
	"github.com/cairnbackup/cairn/repo/internal/index"
	"github.com/cairnbackup/cairn/repo/storage"
)

// Reading many blobs at once.
//
// A reader that knows which blobs it needs next (a restore) asks for
// them together with [Repository.LoadBlobs]. Blobs that lie in a segment
// kept or being read (segments.go) come from it. The others are grouped
// by pack and sorted by offset; blobs of a pack at most batchGap apart
// are read with one request for the whole stretch, of at most batchRange
// bytes (a larger blob is read alone), the bytes between them included:
// on an object store a request costs a round trip, and the bytes between
// two blobs are mostly another file's, backed up at the same time and
// restored next; the stretch is kept as a segment, so that file finds
// them there. Every blob of a stretch is then authenticated,
// decompressed and re-hashed on its own, exactly as LoadBlob does, so a
// damaged blob fails alone and the others of its stretch load.
//
// Memory: at most batchReaders stretches (8; 2 on a directory) are read
// and opened at once per repository, whatever the number of callers,
// each of at most batchRange (4 MiB) bytes or one blob larger than that
// (8 MiB with the default chunker), with one decryption buffer each: at
// most 8 × 16 MiB in flight with the largest blobs, 8 × 8 MiB with
// typical ones. Once read, a stretch is a segment, kept within the
// segments' bound (32 MiB, segments.go). The plaintext given to fn is
// the caller's to bound (a restore's planner counts it against its
// budget before asking).

const (
	batchRange = 4 << 20
	batchGap   = 256 << 10
)

// batchReaders is how many stretches LoadBlobs reads at once: eight
// from an object store (each request waits a round trip; the store's
// own CPU is the bound beyond that), two from a directory.
func (r *Repository) batchReaders() int { return r.readers(2, 8) }

// readers is how many reads to run at once: local for a directory,
// remote for an object store.
func (r *Repository) readers(local, remote int) int {
	if r.local != nil {
		return local
	}
	return remote
}

// batchState holds what LoadBlobs calls share.
type batchState struct {
	once  sync.Once
	slots chan struct{} // one per stretch being read
}

// BatchReads reports whether [Repository.LoadBlobs] is cheaper than
// loading blobs one at a time: true for an object store, where every
// read is a request with a round trip.
func (r *Repository) BatchReads() bool { return r.local == nil }

// wanted is one blob of a LoadBlobs call and where it is stored.
type wanted struct {
	i   int // its place in the caller's list
	h   blob.Handle
	loc index.Location
}

// stretch is a range of one pack read with one request, or a segment
// that holds its blobs already.
type stretch struct {
	pack     blob.ID
	off, end int64
	blobs    []wanted // by offset
	first    int      // the lowest place in the caller's list
	seg      *segment // kept or being read; nil: read the stretch
}

// LoadBlobs loads the blobs hs and calls fn once for each with its
// verified plaintext, which fn may keep, or with the error
// [Repository.LoadBlob] gives for it. Stretches are read in the order
// the caller needs them (by the lowest index of a blob in each), up to
// the repository's limit at once, and fn is called from several
// goroutines at once. It returns when every call of fn has returned; if
// ctx ends first it returns ctx's error, and blobs not yet loaded get no
// call.
func (r *Repository) LoadBlobs(ctx context.Context, hs []blob.Handle, fn func(i int, data []byte, err error)) error {
	return r.loadBlobs(ctx, hs, fn, true)
}

// LoadBlobsUnhashed is LoadBlobs for a reader that hashes every byte it
// gets against a hash it trusts: data blobs are authenticated and
// decompressed but not hashed, as by [Repository.LoadBlobUnhashed].
func (r *Repository) LoadBlobsUnhashed(ctx context.Context, hs []blob.Handle, fn func(i int, data []byte, err error)) error {
	return r.loadBlobs(ctx, hs, fn, false)
}

func (r *Repository) loadBlobs(ctx context.Context, hs []blob.Handle, fn func(i int, data []byte, err error), rehash bool) error {
	r.batch.once.Do(func() { r.batch.slots = make(chan struct{}, r.batchReaders()) })
	ws := make([]wanted, 0, len(hs))
	for i, h := range hs {
		loc, ok, err := r.idx.Lookup(h)
		switch {
		case err != nil:
			fn(i, nil, err)
		case !ok:
			fn(i, nil, fmt.Errorf("blob %s: %w", h, blob.ErrNotFound))
		case !plausible(loc):
			fn(i, nil, implausible(h, loc))
		default:
			ws = append(ws, wanted{i: i, h: h, loc: loc})
		}
	}
	byPack := map[blob.ID][]wanted{}
	var stretches []*stretch
	kept := map[*segment]*stretch{}
	r.segments.mu.Lock()
	for _, w := range ws {
		seg := r.segments.find(w.loc.Pack, int64(w.loc.Offset), int64(w.loc.Length))
		if seg == nil {
			byPack[w.loc.Pack] = append(byPack[w.loc.Pack], w)
			continue
		}
		s := kept[seg]
		if s == nil {
			s = &stretch{pack: w.loc.Pack, seg: seg, first: w.i}
			kept[seg] = s
			stretches = append(stretches, s)
		}
		s.blobs = append(s.blobs, w)
	}
	r.segments.mu.Unlock()
	for id, ws := range byPack {
		slices.SortFunc(ws, func(a, b wanted) int { return cmp.Compare(a.loc.Offset, b.loc.Offset) })
		var s *stretch
		for _, w := range ws {
			off, end := int64(w.loc.Offset), int64(w.loc.Offset)+int64(w.loc.Length)
			if s == nil || off-s.end > batchGap || max(end, s.end)-s.off > batchRange {
				s = &stretch{pack: id, off: off, end: end, first: w.i}
				stretches = append(stretches, s)
			}
			s.end = max(s.end, end)
			s.first = min(s.first, w.i)
			s.blobs = append(s.blobs, w)
		}
	}
	slices.SortFunc(stretches, func(a, b *stretch) int { return cmp.Compare(a.first, b.first) })
	var wg sync.WaitGroup
	defer wg.Wait()
	for _, s := range stretches {
		select {
		case r.batch.slots <- struct{}{}:
		case <-ctx.Done():
			return ctx.Err()
		}
		wg.Add(1)
		go func() {
			defer wg.Done()
			defer func() { <-r.batch.slots }()
			r.readStretch(ctx, s, fn, rehash)
		}()
	}
	wg.Wait()
	return ctx.Err()
}

// readStretch reads s with one request (or takes its segment) and opens
// each of its blobs (rehash is openEnvelope's). A failure to open or
// read the pack is each blob's error, worded as LoadBlob words it.
func (r *Repository) readStretch(ctx context.Context, s *stretch, fn func(int, []byte, error), rehash bool) {
	f, err := r.stretchFile(ctx, s)
	if err != nil {
		for _, w := range s.blobs {
			if errors.Is(err, storage.ErrNotExist) {
				fn(w.i, nil, fmt.Errorf("blob %s: pack %s is missing: %w", w.h, s.pack.Short(), blob.ErrNotFound))
			} else {
				fn(w.i, nil, err)
			}
		}
		return
	}
	defer f.Close()
	// Blobs the pack is too short for fail alone; the rest is read.
	lo, hi := int64(-1), int64(0)
	for _, w := range s.blobs {
		if off, end := int64(w.loc.Offset), int64(w.loc.Offset)+int64(w.loc.Length); end <= f.Size() {
			if lo < 0 {
				lo = off
			}
			lo, hi = min(lo, off), max(hi, end)
		}
	}
	var (
		buf  []byte
		rerr error
	)
	if seg, ok := f.(*segment); ok && lo >= 0 && seg.covers(s.pack, lo, hi-lo) {
		buf = seg.data[lo-seg.off : hi-seg.off]
	} else if lo >= 0 {
		buf = make([]byte, hi-lo)
		if _, err := f.ReadAt(buf, lo); err != nil {
			rerr = err
		}
	}
	for _, w := range s.blobs {
		off := int64(w.loc.Offset)
		switch {
		case off+int64(w.loc.Length) > f.Size():
			fn(w.i, nil, fmt.Errorf("blob %s: pack %s is %d bytes, too short for the blob at %d+%d: %w",
				w.h, s.pack.Short(), f.Size(), w.loc.Offset, w.loc.Length, blob.ErrCorrupt))
		case rerr != nil:
			fn(w.i, nil, fmt.Errorf("blob %s: read pack %s: %w", w.h, s.pack.Short(), rerr))
		default:
			env := buf[off-lo : off-lo+int64(w.loc.Length)]
			data, err := r.openEnvelope(w.loc, w.h, env, make([]byte, 0, w.loc.RawLength), rehash)
			if err != nil {
				fn(w.i, nil, err)
			} else {
				fn(w.i, data, nil)
			}
		}
	}
}

// stretchFile returns where s's blobs are read from: its segment, once
// read; on an object store a segment read now (the whole stretch, kept
// for the blobs between; a stretch as short as a small blob as that
// blob's segment); on a directory the pack itself.
func (r *Repository) stretchFile(ctx context.Context, s *stretch) (storage.File, error) {
	if s.seg != nil {
		select {
		case <-s.seg.ready:
		case <-ctx.Done():
			return nil, ctx.Err()
		}
		if s.seg.err == nil {
			return s.seg, nil
		}
		// Its read failed: read the blobs' stretch now.
		s.off, s.end = int64(s.blobs[0].loc.Offset), 0
		for _, w := range s.blobs {
			s.off = min(s.off, int64(w.loc.Offset))
			s.end = max(s.end, int64(w.loc.Offset)+int64(w.loc.Length))
		}
	}
	switch {
	case r.local != nil:
		return r.be.Open(ctx, r.packHandle(s.pack))
	case s.end-s.off < segmentSmall:
		return r.segmentFor(ctx, s.pack, s.off, s.end-s.off)
	default:
		return r.packRange(ctx, s.pack, s.off, s.end-s.off, func(int64) (int64, int64) { return s.off, s.end })
	}
}
