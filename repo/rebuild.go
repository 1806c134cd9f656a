package repo

import (
	"bufio"
	"bytes"
	"context"
	"errors"
	"fmt"
	"io"
	"os"
	"slices"
	"sync"
	"time"

	"github.com/cairnbackup/cairn/repo/blob"
	"github.com/cairnbackup/cairn/repo/internal/crashpoint"
	"github.com/cairnbackup/cairn/repo/internal/durable"
	"github.com/cairnbackup/cairn/repo/internal/index"
	"github.com/cairnbackup/cairn/repo/pack"
	"github.com/cairnbackup/cairn/repo/snapshot"
	"github.com/cairnbackup/cairn/repo/storage"
	"github.com/minio/sha256-simd"
	"golang.org/x/sync/errgroup"
)

// ReadPackHeader reads and decodes the header of pack id.
func (r *Repository) ReadPackHeader(ctx context.Context, id blob.ID) ([]pack.Entry, int64, error) {
	f, err := r.be.Open(ctx, r.packHandle(id))
	if err != nil {
		return nil, 0, err
	}
	defer f.Close()
	entries, err := pack.ReadHeader(newTailReader(f, f.Size()), f.Size(), r.key)
	var fe *pack.FormatError
	if errors.As(err, &fe) {
		fe.Pack = id.Short()
	}
	return entries, f.Size(), err
}

// listPacks returns the size of every pack file, by ID. Files whose
// names are not pack IDs are reported to the log and skipped.
func (r *Repository) listPacks(ctx context.Context) (map[blob.ID]int64, error) {
	out := make(map[blob.ID]int64)
	err := r.be.List(ctx, storage.Packs, func(name string, size int64) error {
		id, err := blob.ParseID(name)
		if err != nil {
			r.log.Warn("ignoring a file in packs/ that is not named like a pack", "name", name)
			return nil
		}
		out[id] = size
		return nil
	})
	return out, err
}

func (r *Repository) listSnapshotFiles(ctx context.Context) (map[blob.ID]bool, error) {
	out := make(map[blob.ID]bool)
	err := r.be.List(ctx, storage.Snapshot, func(name string, _ int64) error {
		id, err := blob.ParseID(name)
		if err != nil {
			r.log.Warn("ignoring a file in snapshots/ that is not named like a snapshot", "name", name)
			return nil
		}
		out[id] = true
		return nil
	})
	return out, err
}

// reconcile brings the index in line with packs/ and snapshots/ after a
// crash or a lost index: packs on disk but not indexed are indexed from
// their headers, indexed packs no longer on disk are forgotten, and the
// snapshot list follows the snapshot files.
func (r *Repository) reconcile(ctx context.Context) error {
	onDisk, err := r.listPacks(ctx)
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
	onDisk, err := r.listPacks(ctx)
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
		if rep.KeptBlobs, err = carryOver(idx, old, rep.UnreadablePacks, onDisk); err != nil {
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
func carryOver(idx, old *index.Index, bad []UnreadablePack, sizes map[blob.ID]int64) (int, error) {
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
		if err := idx.AddPack(id, index.PackInfo{Size: sizes[id], Blobs: len(entries), Created: time.Now()}, entries); err != nil {
			return kept, err
		}
		kept += len(entries)
	}
	return kept, nil
}

// PackReport is the result of reading one pack completely.
type PackReport struct {
	ID      blob.ID
	Size    int64
	Err     error        // the pack as a whole: missing, unreadable header, wrong hash
	Entries []pack.Entry // from the header, when it could be read
	Damaged []DamagedBlob
}

// DamagedBlob is a blob that failed to open or re-hash.
type DamagedBlob struct {
	blob.Handle
	Err error
}

// VerifyPack reads pack id from start to end once: it checks that the file
// hashes to its name, reads the header, and opens and re-hashes every
// blob. Memory: one blob envelope and one plaintext at a time, and a
// read buffer of verifyReadSize.
func (r *Repository) VerifyPack(ctx context.Context, id blob.ID) PackReport {
	rep := PackReport{ID: id}
	f, err := r.be.Open(ctx, r.packHandle(id))
	if err != nil {
		rep.Err = err
		return rep
	}
	defer f.Close()
	rep.Size = f.Size()
	entries, herr := pack.ReadHeader(f, f.Size(), r.key)
	var fe *pack.FormatError
	if errors.As(herr, &fe) {
		fe.Pack = id.Short()
	}
	rep.Entries = entries
	h := sha256.New()
	br := bufio.NewReaderSize(io.NewSectionReader(f, 0, f.Size()), r.verifyReadSize())
	var pos int64
	var env, plain, scratch []byte
	for _, e := range entries {
		if err := ctx.Err(); err != nil {
			rep.Err = err
			return rep
		}
		if n, err := io.CopyN(h, br, int64(e.Offset)-pos); err != nil {
			rep.Err = fmt.Errorf("pack %s: read at %d: %w", id.Short(), pos+n, err)
			return rep
		}
		env = grow(env, int(e.Length))
		if _, err := io.ReadFull(br, env); err != nil {
			rep.Err = fmt.Errorf("pack %s: read at %d: %w", id.Short(), e.Offset, err)
			return rep
		}
		h.Write(env)
		pos = int64(e.Offset) + int64(e.Length)
		plain, scratch, err = pack.OpenBlob(plain[:0], r.key, e.Handle, int(e.RawLength), env, scratch)
		if err != nil {
			rep.Damaged = append(rep.Damaged, DamagedBlob{Handle: e.Handle, Err: err})
		}
	}
	if _, err := io.Copy(h, br); err != nil {
		rep.Err = fmt.Errorf("pack %s: read: %w", id.Short(), err)
		return rep
	}
	switch {
	case herr != nil:
		rep.Err = herr
	case blob.ID(h.Sum(nil)) != id:
		rep.Err = fmt.Errorf("pack %s: file does not hash to its name: %w", id.Short(), blob.ErrCorrupt)
	}
	return rep
}

// MarkVerified records that pack id was completely verified now.
func (r *Repository) MarkVerified(id blob.ID) error {
	return r.idx.SetVerified(id, r.now())
}

// Packs calls fn for every indexed pack.
func (r *Repository) Packs(fn func(id blob.ID, size int64, blobs int) error) error {
	return r.idx.Packs(func(id blob.ID, info index.PackInfo) error { return fn(id, info.Size, info.Blobs) })
}

// PackSizes lists every pack file on disk with its size.
func (r *Repository) PackSizes(ctx context.Context) (map[blob.ID]int64, error) {
	return r.listPacks(ctx)
}

// IndexedBlobs calls fn for every blob in the index.
func (r *Repository) IndexedBlobs(fn func(h blob.Handle, loc Location) error) error {
	return r.idx.Blobs(fn)
}

// LostPacks calls fn for every pack the index once listed and that was
// found missing on disk.
func (r *Repository) LostPacks(fn func(id blob.ID, when time.Time) error) error {
	return r.idx.LostPacks(fn)
}

// JobRunsKept is how many runs of each job the history keeps: recording
// a run removes the job's older ones, so what reads the history (status,
// the metrics, cairn jobs) costs the same however long the appliance ran.
const JobRunsKept = 100

// PutJobRun records a run of a scheduled job (disposable history) and
// keeps the job's newest [JobRunsKept] runs.
func (r *Repository) PutJobRun(job string, start time.Time, value []byte) error {
	return r.idx.PutJobRun(job, start, value, JobRunsKept)
}

// JobRuns calls fn with recorded runs, newest first per job.
func (r *Repository) JobRuns(job string, limit int, fn func(job string, value []byte) bool) error {
	return r.idx.JobRuns(job, limit, fn)
}

// VerifiedTimes calls fn with each pack's last full verification time.
func (r *Repository) VerifiedTimes(fn func(id blob.ID, t time.Time) error) error {
	return r.idx.VerifiedTimes(fn)
}

// HeaderReaders is how many pack headers to read at once: two from a
// directory (the disk is the bound), sixteen from an object store (each
// read waits a round trip; a header read holds at most [tailSize] bytes).
func (r *Repository) HeaderReaders() int {
	if r.local != nil {
		return 2
	}
	return 16
}

// PackReaders is how many packs to read whole at once (check
// --read-data): two from a directory, four from an object store, where
// each read also waits a round trip.
func (r *Repository) PackReaders() int {
	if r.local != nil {
		return 2
	}
	return 4
}

// verifyReadSize is the size of VerifyPack's reads: 1 MiB from a
// directory, 8 MiB (one request for half a full pack) from an object
// store.
func (r *Repository) verifyReadSize() int {
	if r.local != nil {
		return 1 << 20
	}
	return 8 << 20
}

// tailSize is how much of a pack's end one read fetches when its header
// is read: the footer and, for packs of up to about a thousand blobs, the
// whole header, in one request instead of two.
const tailSize = 64 << 10

// tailReader serves reads within a file's last tailSize bytes from one
// read of them; other reads go to the file.
type tailReader struct {
	f     io.ReaderAt
	start int64 // offset of tail in the file
	tail  []byte
	err   error
	read  bool
}

func newTailReader(f io.ReaderAt, size int64) *tailReader {
	return &tailReader{f: f, start: max(0, size-tailSize)}
}

func (t *tailReader) ReadAt(p []byte, off int64) (int, error) {
	if off < t.start {
		return t.f.ReadAt(p, off)
	}
	if !t.read {
		t.read = true
		end := t.start + tailSize
		if sz, ok := t.f.(interface{ Size() int64 }); ok {
			end = sz.Size()
		}
		t.tail = make([]byte, end-t.start)
		n, err := t.f.ReadAt(t.tail, t.start)
		t.tail = t.tail[:n]
		if err != nil && !errors.Is(err, io.EOF) {
			t.err = err
		}
	}
	if t.err != nil {
		return 0, t.err
	}
	rel := off - t.start
	if rel >= int64(len(t.tail)) {
		return 0, io.EOF
	}
	n := copy(p, t.tail[rel:])
	if n < len(p) {
		return n, io.EOF
	}
	return n, nil
}
