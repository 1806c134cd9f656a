package repo

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"os"
	"slices"
	"sync"
	"time"

	"github.com/cairnbackup/cairn/repo/blob"
	"github.com/cairnbackup/cairn/repo/internal/crashpoint"
	"github.com/cairnbackup/cairn/repo/internal/durable"
	"github.com/cairnbackup/cairn/repo/internal/index"
	"github.com/cairnbackup/cairn/repo/snapshot"
	"github.com/cairnbackup/cairn/repo/storage"
	"golang.org/x/sync/errgroup"
)

// SnapshotFiles returns the IDs of the files in snapshots/, sorted: the
// snapshots as storage has them, which is what check walks. The index's
// list ([Repository.Snapshots]) lags a crash or a lost file until the
// next open. Files whose names are not snapshot IDs are reported to the
// log and skipped.
func (r *Repository) SnapshotFiles(ctx context.Context) ([]blob.ID, error) {
	var out []blob.ID
	err := r.be.List(ctx, storage.Snapshot, func(name string, _ int64) error {
		id, err := blob.ParseID(name)
		if err != nil {
			r.log.Warn("ignoring a file in snapshots/ that is not named like a snapshot", "name", name)
			return nil
		}
		out = append(out, id)
		return nil
	})
	if err != nil {
		return nil, err
	}
	slices.SortFunc(out, func(a, b blob.ID) int { return bytes.Compare(a[:], b[:]) })
	return out, nil
}

// listSnapshotFiles is [Repository.SnapshotFiles] as a set.
func (r *Repository) listSnapshotFiles(ctx context.Context) (map[blob.ID]bool, error) {
	ids, err := r.SnapshotFiles(ctx)
	if err != nil {
		return nil, err
	}
	out := make(map[blob.ID]bool, len(ids))
	for _, id := range ids {
		out[id] = true
	}
	return out, nil
}

// errReconcileWrites is reconcile's answer on an index opened read-only
// that it would have to change.
var errReconcileWrites = errors.New("the index differs from packs/ or snapshots/")

// reconcile brings the index in line with packs/ and snapshots/ after a
// crash or a lost index: packs on disk but not indexed are indexed from
// their headers, indexed packs no longer on disk are forgotten, and the
// snapshot list follows the snapshot files. On an index opened
// read-only it changes nothing and returns errReconcileWrites when it
// would.
func (r *Repository) reconcile(ctx context.Context) error {
	onDisk, err := r.StoredPacks(ctx)
	if err != nil {
		return err
	}
	gone := make(map[blob.ID]bool)
	indexed := make(map[blob.ID]bool, len(onDisk))
	err = r.idx.Packs(func(id blob.ID, info index.PackInfo) error {
		size, ok := onDisk[id]
		switch {
		case !ok:
			gone[id] = true
		case size == info.Size:
			indexed[id] = true
		}
		return nil
	})
	if err != nil {
		return err
	}
	var missing []blob.ID
	if r.idx.ReadOnly() && (len(gone) > 0 || len(indexed) < len(onDisk)) {
		return errReconcileWrites
	}
	if len(gone) > 0 {
		for id := range gone {
			r.log.Error("a pack in the index is missing on disk; run cairn check to see what it affects", "pack", id.String())
		}
		stale, err := r.idx.RemovePacks(gone, true, r.now())
		if err != nil {
			return err
		}
		if len(stale) > 0 {
			// Some of those blobs may have a second copy in another
			// pack (stored by concurrent sessions): read every
			// header again so they are found.
			r.log.Warn("re-reading pack headers to find other copies of the lost blobs", "blobs", len(stale))
			indexed = map[blob.ID]bool{}
		}
	}
	for id := range onDisk {
		if !indexed[id] {
			missing = append(missing, id)
		}
	}
	if len(missing) > 0 {
		r.log.Info("indexing packs not yet in the index", "count", len(missing))
		if _, err := r.indexPacks(ctx, r.idx, missing); err != nil {
			return err
		}
	}
	return r.reconcileSnapshots(ctx, r.idx)
}

// reconcileSnapshots brings the index's snapshot list in line with
// snapshots/: a file without an entry is added from the file. An entry
// without a file is removed only when the snapshot was being forgotten
// (a forget interrupted between deleting the file and the entry); any
// other such entry is a snapshot whose file was lost, and its entry (the
// full record) is kept so that check reports it and repair index writes
// the file back. A forget mark whose file is still there is cleared: that
// forget did not happen.
func (r *Repository) reconcileSnapshots(ctx context.Context, idx *index.Index) error {
	files, err := r.listSnapshotFiles(ctx)
	if err != nil {
		return err
	}
	forgetting := map[blob.ID]bool{}
	err = idx.Forgetting(func(id blob.ID, _ time.Time) error {
		forgetting[id] = true
		return nil
	})
	if err != nil {
		return err
	}
	var forgotten, lost []blob.ID
	err = idx.Snapshots(func(id blob.ID, _ []byte) error {
		switch {
		case files[id]:
			delete(files, id)
		case forgetting[id]:
			forgotten = append(forgotten, id)
		default:
			lost = append(lost, id)
		}
		return nil
	})
	if err != nil {
		return err
	}
	if idx.ReadOnly() && (len(forgotten) > 0 || len(forgetting) > 0 || len(files) > 0) {
		return errReconcileWrites
	}
	for _, id := range forgotten {
		if err := idx.RemoveSnapshot(id); err != nil {
			return err
		}
		delete(forgetting, id)
	}
	for id := range forgetting { // the file is still there, or nothing is
		if err := idx.ClearForgetting(id); err != nil {
			return err
		}
	}
	for _, id := range lost {
		r.log.Error("a snapshot in the index is missing its file; run cairn check, and cairn repair index to write it back from the index", "snapshot", id.String())
	}
	for id := range files {
		plain, err := r.readSnapshotFile(ctx, id)
		if err != nil {
			r.log.Warn("snapshot file unreadable; not listed", "snapshot", id.Short(), "err", err)
			continue
		}
		if err := idx.AddSnapshot(id, plain); err != nil {
			return err
		}
	}
	return nil
}

// MissingSnapshot is a snapshot the index knows whose file is missing.
type MissingSnapshot struct {
	ID blob.ID
	// Snapshot is the index's copy of the record, nil when that copy is
	// damaged (does not hash to ID or does not decode): then the
	// snapshot is lost.
	Snapshot *snapshot.Snapshot
}

// MissingSnapshots returns the snapshots the index lists whose files are
// missing, except those being forgotten. It lists the files before it
// reads the index, so a forget running meanwhile is never taken for a
// loss.
func (r *Repository) MissingSnapshots(ctx context.Context) ([]MissingSnapshot, error) {
	files, err := r.listSnapshotFiles(ctx)
	if err != nil {
		return nil, err
	}
	var out []MissingSnapshot
	err = r.idx.Snapshots(func(id blob.ID, rec []byte) error {
		if files[id] {
			return nil
		}
		m := MissingSnapshot{ID: id}
		if blob.Hash(rec) == id {
			m.Snapshot, _ = snapshot.Decode(rec)
		}
		out = append(out, m)
		return nil
	})
	if err != nil {
		return nil, err
	}
	forgetting := map[blob.ID]bool{}
	err = r.idx.Forgetting(func(id blob.ID, _ time.Time) error {
		forgetting[id] = true
		return nil
	})
	if err != nil {
		return nil, err
	}
	return slices.DeleteFunc(out, func(m MissingSnapshot) bool { return forgetting[m.ID] }), nil
}

// UnreadablePack names a pack whose header could not be read.
type UnreadablePack struct {
	ID  blob.ID
	Err error
}

// indexPacks reads the headers of packs (two at a time) and adds them to
// idx. Packs whose header cannot be read are returned, not indexed.
func (r *Repository) indexPacks(ctx context.Context, idx *index.Index, ids []blob.ID) ([]UnreadablePack, error) {
	var (
		mu  sync.Mutex
		bad []UnreadablePack
	)
	g, ctx := errgroup.WithContext(ctx)
	g.SetLimit(r.HeaderReaders())
	for _, id := range ids {
		g.Go(func() error {
			entries, size, err := r.ReadPackHeader(ctx, id)
			if err != nil {
				if ctx.Err() != nil {
					return ctx.Err()
				}
				r.log.Warn("pack header unreadable; its blobs are not indexed", "pack", id.Short(), "err", err)
				mu.Lock()
				bad = append(bad, UnreadablePack{ID: id, Err: err})
				mu.Unlock()
				return nil
			}
			// The time a pack was written is not recorded in it: a
			// pack indexed now counts as new, which only makes prune
			// keep it longer.
			return idx.AddPack(id, index.PackInfo{Size: size, Blobs: len(entries), Created: r.now()}, packBlobs(id, entries))
		})
	}
	return bad, g.Wait()
}

// RebuildReport says what RebuildIndex found.
type RebuildReport struct {
	Packs               int
	Blobs               int
	Snapshots           int
	UnreadablePacks     []UnreadablePack // header unreadable
	KeptBlobs           int              // blobs of unreadable packs carried over from the old index
	UnreadableSnapshots []UnreadablePack
	// RecoveredSnapshots had a damaged file that was rewritten from the
	// old index's copy of the record (which hashes to the snapshot's ID).
	RecoveredSnapshots []UnreadablePack
}

// RebuildIndex builds a fresh index from the packs and snapshot files, in
// a new directory, and swaps it in when complete. A pack whose header
// cannot be read keeps the entries the old index had for it (if the old
// index can be opened), since its blobs may still read perfectly well:
// each is authenticated and re-hashed on every read anyway. Verification
// times (disposable) start afresh. Not safe to call concurrently with
// anything else on the repository.
func (r *Repository) RebuildIndex(ctx context.Context) (*RebuildReport, error) {
	old := r.idx
	r.idx = nil
	if old == nil {
		if _, err := os.Stat(r.indexDir()); err == nil {
			if o, err := index.Open(r.indexDir(), r.indexOptions()); err == nil {
				old = o
			} else {
				r.log.Warn("the old index does not open; rebuilding from packs alone", "err", err)
			}
		}
	}
	rep, err := r.buildNewIndex(ctx, old)
	if old != nil {
		if cerr := old.Close(); err == nil && cerr != nil {
			err = cerr
		}
	}
	if err == nil {
		err = r.swapIndex()
	}
	if oerr := r.openIndex(); err == nil {
		err = oerr
	}
	if err != nil {
		return nil, fmt.Errorf("rebuild index: %w", err)
	}
	return rep, nil
}

func (r *Repository) buildNewIndex(ctx context.Context, old *index.Index) (*RebuildReport, error) {
	newDir := r.indexDir() + ".new"
	if err := os.RemoveAll(newDir); err != nil {
		return nil, err
	}
	idx, err := index.Open(newDir, r.indexOptions())
	if err != nil {
		return nil, err
	}
	rep, err := r.fillIndex(ctx, idx, old)
	if cerr := idx.Close(); err == nil {
		err = cerr
	}
	if err != nil {
		os.RemoveAll(newDir)
		return nil, err
	}
	return rep, nil
}

// swapIndex replaces index/ with index.new/.
func (r *Repository) swapIndex() error {
	newDir, oldDir := r.indexDir()+".new", r.indexDir()+".old"
	if err := os.RemoveAll(oldDir); err != nil {
		return err
	}
	crashpoint.Hit("rebuild-before-swap")
	if err := os.Rename(r.indexDir(), oldDir); err != nil && !errors.Is(err, os.ErrNotExist) {
		return err
	}
	crashpoint.Hit("rebuild-mid-swap")
	if err := os.Rename(newDir, r.indexDir()); err != nil {
		return err
	}
	if err := durable.SyncDir(r.cache); err != nil {
		return err
	}
	return os.RemoveAll(oldDir)
}

func (r *Repository) fillIndex(ctx context.Context, idx, old *index.Index) (*RebuildReport, error) {
	onDisk, err := r.StoredPacks(ctx)
	if err != nil {
		return nil, err
	}
	ids := make([]blob.ID, 0, len(onDisk))
	for id := range onDisk {
		ids = append(ids, id)
	}
	rep := &RebuildReport{}
	rep.UnreadablePacks, err = r.indexPacks(ctx, idx, ids)
	if err != nil {
		return nil, err
	}
	if old != nil && len(rep.UnreadablePacks) > 0 {
		if rep.KeptBlobs, err = carryOver(idx, old, rep.UnreadablePacks, onDisk, r.now()); err != nil {
			return nil, err
		}
	}
	err = idx.Packs(func(_ blob.ID, info index.PackInfo) error {
		rep.Packs++
		rep.Blobs += info.Blobs
		return nil
	})
	if err != nil {
		return nil, err
	}
	files, err := r.listSnapshotFiles(ctx)
	if err != nil {
		return nil, err
	}
	for id := range files {
		plain, err := r.readSnapshotFile(ctx, id)
		if err != nil {
			rec, rerr := r.recoverSnapshot(ctx, old, id)
			if rerr != nil {
				rep.UnreadableSnapshots = append(rep.UnreadableSnapshots, UnreadablePack{ID: id, Err: fmt.Errorf("%w; %w", err, rerr)})
				continue
			}
			rep.RecoveredSnapshots = append(rep.RecoveredSnapshots, UnreadablePack{ID: id, Err: fmt.Errorf("its file was damaged: %w", err)})
			plain = rec
		}
		if err := idx.AddSnapshot(id, plain); err != nil {
			return nil, err
		}
		rep.Snapshots++
	}
	// Snapshots the old index lists whose files are missing: written back
	// from the index's copy, unless they were being forgotten.
	if old != nil {
		forgetting := map[blob.ID]bool{}
		if err := old.Forgetting(func(id blob.ID, _ time.Time) error { forgetting[id] = true; return nil }); err != nil {
			r.log.Warn("the old index's forget marks do not read; snapshots it lists without a file are written back", "err", err)
		}
		var missing []blob.ID
		err := old.Snapshots(func(id blob.ID, _ []byte) error {
			if !files[id] && !forgetting[id] {
				missing = append(missing, id)
			}
			return nil
		})
		if err != nil {
			r.log.Warn("the old index's snapshot list does not read; snapshots whose files are missing cannot be written back", "err", err)
		}
		for _, id := range missing {
			rec, rerr := r.recoverSnapshot(ctx, old, id)
			if rerr != nil {
				rep.UnreadableSnapshots = append(rep.UnreadableSnapshots, UnreadablePack{ID: id, Err: fmt.Errorf("its file is missing, and %w", rerr)})
				continue
			}
			rep.RecoveredSnapshots = append(rep.RecoveredSnapshots, UnreadablePack{ID: id, Err: errors.New("its file was missing")})
			if err := idx.AddSnapshot(id, rec); err != nil {
				return nil, err
			}
			rep.Snapshots++
		}
	}
	return rep, idx.Sync()
}

// recoverSnapshot rewrites the damaged or missing file of snapshot id
// from the old index's copy of its record, if there is one that hashes to
// id (so it is exactly the record that was saved), and returns the
// record. The file is replaced atomically: a crash leaves the damaged
// file (or none) or the good one.
func (r *Repository) recoverSnapshot(ctx context.Context, old *index.Index, id blob.ID) ([]byte, error) {
	if old == nil {
		return nil, errors.New("no index to recover it from")
	}
	rec, ok, err := old.Snapshot(id)
	if err != nil {
		return nil, err
	}
	if !ok || blob.Hash(rec) != id {
		return nil, errors.New("the index has no intact copy of it")
	}
	sealed := r.key.Seal(nil, rec, snapshotAAD(id))
	if err := r.be.(replacer).Replace(ctx, storage.Handle{Kind: storage.Snapshot, Name: id.String()}, bytes.NewReader(sealed)); err != nil {
		return nil, err
	}
	return rec, nil
}

// carryOver copies the old index's entries for packs whose headers cannot
// be read into the new index, and returns how many blobs it kept.
func carryOver(idx, old *index.Index, bad []UnreadablePack, sizes map[blob.ID]int64, now time.Time) (int, error) {
	byPack := map[blob.ID][]index.BlobEntry{}
	for _, p := range bad {
		byPack[p.ID] = nil
	}
	err := old.Blobs(func(h blob.Handle, loc index.Location) error {
		if entries, ok := byPack[loc.Pack]; ok {
			byPack[loc.Pack] = append(entries, index.BlobEntry{Handle: h, Loc: loc})
		}
		return nil
	})
	if err != nil {
		return 0, err
	}
	kept := 0
	for id, entries := range byPack {
		if len(entries) == 0 {
			continue
		}
		if err := idx.AddPack(id, index.PackInfo{Size: sizes[id], Blobs: len(entries), Created: now}, entries); err != nil {
			return kept, err
		}
		kept += len(entries)
	}
	return kept, nil
}
