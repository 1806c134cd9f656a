package repo

import (
	"context"
	"sync"

	"github.com/cairnbackup/cairn/repo/blob"
	"github.com/cairnbackup/cairn/repo/storage"
)

// Keeping packs open while a restore reads them.
//
// From a directory, LoadBlob opens the blob's pack, reads the blob and
// closes the pack: nine system calls around the one pread (os.Open's
// openat, fstat, fcntl and epoll_ctl, then close), for every chunk. A
// restore reads the chunks of one pack after another, so while a reader
// holds [Repository.KeepPacksOpen], the last [openPacksMax] packs read
// stay open and are read again from the same descriptor. Packs are
// immutable (named by their contents); a pack removed while open (a
// prune) is read as it was, as a reader that had it open would.
// Bound: openPacksMax descriptors, whatever the number of holders; none
// once every holder released.

const openPacksMax = 16

// openPacks is the repository's set of packs kept open.
type openPacks struct {
	mu    sync.Mutex
	holds int
	files map[blob.ID]*keptPack
	tick  uint64
}

type keptPack struct {
	f       storage.File
	refs    int    // reads in progress
	used    uint64 // tick of the last use, for eviction
	evicted bool   // closed by the last reader out
}

// KeepPacksOpen keeps packs read from a directory open until release
// is called (see openpacks.go). It does nothing for an object store.
func (r *Repository) KeepPacksOpen() (release func()) {
	if r.local == nil {
		return func() {}
	}
	op := &r.open
	op.mu.Lock()
	op.holds++
	if op.files == nil {
		op.files = map[blob.ID]*keptPack{}
	}
	op.mu.Unlock()
	var once sync.Once
	return func() {
		once.Do(func() {
			op.mu.Lock()
			defer op.mu.Unlock()
			op.holds--
			if op.holds > 0 {
				return
			}
			for id, p := range op.files {
				op.evict(id, p)
			}
		})
	}
}

// evict forgets p; it is closed now, or by its last reader. Called with
// op.mu held.
func (op *openPacks) evict(id blob.ID, p *keptPack) {
	delete(op.files, id)
	p.evicted = true
	if p.refs == 0 {
		p.f.Close()
	}
}

// readPack opens pack id of a directory repository for one read; done
// ends the read.
func (r *Repository) readPack(ctx context.Context, id blob.ID) (f storage.File, done func(), err error) {
	op := &r.open
	op.mu.Lock()
	if op.holds == 0 {
		op.mu.Unlock()
		f, err := r.be.Open(ctx, r.packHandle(id))
		if err != nil {
			return nil, nil, err
		}
		return f, func() { f.Close() }, nil
	}
	p := op.files[id]
	if p == nil {
		op.mu.Unlock()
		f, err := r.be.Open(ctx, r.packHandle(id))
		if err != nil {
			return nil, nil, err
		}
		op.mu.Lock()
		if q := op.files[id]; q != nil || op.holds == 0 {
			// Opened meanwhile by another reader, or released: read
			// this once.
			op.mu.Unlock()
			return f, func() { f.Close() }, nil
		}
		if len(op.files) >= openPacksMax {
			var oldID blob.ID
			var old *keptPack
			for id, q := range op.files {
				if old == nil || q.used < old.used {
					oldID, old = id, q
				}
			}
			op.evict(oldID, old)
		}
		p = &keptPack{f: f}
		op.files[id] = p
	}
	op.tick++
	p.used = op.tick
	p.refs++
	op.mu.Unlock()
	return p.f, func() {
		op.mu.Lock()
		p.refs--
		if p.refs == 0 && p.evicted {
			p.f.Close()
		}
		op.mu.Unlock()
	}, nil
}
