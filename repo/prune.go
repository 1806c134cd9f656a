package repo

import (
	"context"
	"errors"
	"fmt"
	"sync"
	"time"

	"github.com/cairnbackup/cairn/repo/blob"
	"github.com/cairnbackup/cairn/repo/internal/crashpoint"
	"github.com/cairnbackup/cairn/repo/pack"
	"github.com/cairnbackup/cairn/repo/storage"
)

// pruneState is what the repository tracks while a prune runs.
type pruneState struct {
	mu     sync.Mutex
	start  time.Time
	relied map[blob.Handle]bool // blobs sessions were told exist since the prune started
}

// ErrPruneRunning is returned by BeginPrune while another prune runs.
var ErrPruneRunning = errors.New("a prune is running already")

// Pruning is a prune in progress: what it may and may not delete. Sessions
// keep pushing while it runs; see [Repository.BeginPrune].
type Pruning struct {
	r  *Repository
	st *pruneState
	// Cutoff: packs written at or after it are never deleted (they may
	// hold blobs of sessions still in flight).
	Cutoff time.Time
	// Protected are the blobs that sessions in flight at the start rely
	// on or added.
	Protected []blob.Handle
}

// BeginPrune starts a prune. From now until End, every blob any session
// is told exists is recorded, and DropPacks keeps the packs holding them;
// packs written after the oldest session still in flight began are kept;
// and what sessions in flight relied on or added is returned in
// Protected.
func (r *Repository) BeginPrune() (*Pruning, error) {
	r.smu.Lock()
	defer r.smu.Unlock()
	if r.pruning != nil {
		return nil, ErrPruneRunning
	}
	st := &pruneState{start: r.now(), relied: map[blob.Handle]bool{}}
	p := &Pruning{r: r, st: st, Cutoff: st.start}
	for s, started := range r.sessions {
		if started.Before(p.Cutoff) {
			p.Cutoff = started
		}
		p.Protected = s.appendInFlight(p.Protected)
	}
	r.pruning = st
	return p, nil
}

// End finishes the prune.
func (p *Pruning) End() {
	p.r.smu.Lock()
	p.r.pruning = nil
	p.r.smu.Unlock()
}

func (r *Repository) relyDuringPrune(h blob.Handle) {
	r.smu.Lock()
	st := r.pruning
	r.smu.Unlock()
	if st != nil {
		st.mu.Lock()
		st.relied[h] = true
		st.mu.Unlock()
	}
}

// NewRepackSession returns a session for a prune: CopyBlob adds blobs to
// it even though they are indexed, and when its packs are written the
// index entries of their blobs move to them.
func (r *Repository) NewRepackSession() *Session {
	s := r.NewSession()
	s.repack = true
	return s
}

// CopyBlob reads blob h (authenticated and re-hashed) from its current
// pack and adds it, compressed as it was, to the repack session s.
func (r *Repository) CopyBlob(ctx context.Context, s *Session, h blob.Handle) error {
	loc, ok, err := r.idx.Lookup(h)
	if err != nil {
		return err
	}
	if !ok {
		return fmt.Errorf("blob %s: %w", h, blob.ErrNotFound)
	}
	f, err := r.be.Open(ctx, r.packHandle(loc.Pack))
	if err != nil {
		return err
	}
	defer f.Close()
	env := make([]byte, loc.Length)
	if _, err := f.ReadAt(env, int64(loc.Offset)); err != nil {
		return fmt.Errorf("blob %s: read pack %s: %w", h, loc.Pack.Short(), err)
	}
	c, payload, err := pack.OpenEnvelope(r.key, h, int(loc.RawLength), env)
	if err != nil {
		return fmt.Errorf("pack %s offset %d: %w", loc.Pack.Short(), loc.Offset, err)
	}
	_, err = s.add(h, c, payload, int(loc.RawLength))
	return err
}

// FinishRepack writes the repack session's packs and makes the index
// durable, so their blobs' entries point to the new packs before any old
// pack is deleted.
func (r *Repository) FinishRepack(ctx context.Context, s *Session) error {
	if err := s.flush(true); err != nil {
		return err
	}
	s.end()
	return r.idx.Sync()
}

// DropPacks removes packs from the repository: first from the index, then
// their files. A pack that holds a blob some session was told exists
// since the prune began (and whose entry still points to that pack) is
// kept, and so is one a replication holds ([PackHold]) and one written at
// or after the cutoff; DropPacks returns
// the packs it dropped. The index change happens under the gate, so no
// session is told a blob exists while its pack is going.
func (p *Pruning) DropPacks(ctx context.Context, packs map[blob.ID]int64) (dropped map[blob.ID]int64, err error) {
	r := p.r
	if err := r.confirmOwner(ctx); err != nil {
		return nil, err
	}
	r.gate.Lock()
	p.st.mu.Lock()
	keep := map[blob.ID]bool{}
	for h := range p.st.relied {
		if loc, ok, _ := r.idx.Lookup(h); ok {
			keep[loc.Pack] = true
		}
	}
	p.st.mu.Unlock()
	r.held(keep)
	dropped = map[blob.ID]int64{}
	drop := map[blob.ID]bool{}
	for id, size := range packs {
		if !keep[id] {
			dropped[id] = size
			drop[id] = true
		}
	}
	_, err = r.idx.RemovePacks(drop, false, r.now())
	if err == nil {
		err = r.idx.Sync()
	}
	r.gate.Unlock()
	if err != nil {
		return nil, err
	}
	crashpoint.Hit("prune-after-index")
	for id := range dropped {
		if err := r.be.Delete(ctx, r.packHandle(id)); err != nil {
			return dropped, err
		}
		crashpoint.Hit("prune-mid-delete")
	}
	return dropped, nil
}

// DeleteSnapshot removes a snapshot: it marks the snapshot in the index
// as being forgotten (durably), deletes its file (the truth), then removes
// its index entry and the mark. An index entry without a file is
// otherwise a lost snapshot (see [Repository.MissingSnapshots]); with the
// mark it is a forget that a crash interrupted, which the next open
// finishes. A crash before the file is deleted leaves the snapshot whole:
// the next open clears the mark.
func (r *Repository) DeleteSnapshot(ctx context.Context, id blob.ID) error {
	if err := r.deleteSnapshotFile(ctx, id); err != nil {
		return err
	}
	crashpoint.Hit("forget-before-index")
	return r.idx.RemoveSnapshot(id)
}

// deleteSnapshotFile marks snapshot id as being forgotten and deletes its
// file: the first two steps of DeleteSnapshot.
func (r *Repository) deleteSnapshotFile(ctx context.Context, id blob.ID) error {
	if err := r.confirmOwner(ctx); err != nil {
		return err
	}
	if err := r.idx.MarkForgetting(id, r.now()); err != nil {
		return err
	}
	if err := r.idx.Sync(); err != nil {
		return err
	}
	crashpoint.Hit("forget-before-delete")
	if err := r.be.Delete(ctx, storage.Handle{Kind: storage.Snapshot, Name: id.String()}); err != nil {
		if cerr := r.idx.ClearForgetting(id); cerr != nil {
			r.log.Warn("snapshot not deleted, and its forget mark not cleared (the next open clears it)", "snapshot", id.Short(), "err", cerr)
		}
		return err
	}
	return nil
}
