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
// closes the pack: eight system calls around the one pread (os.Open's
// openat, fstat, four fcntl and an epoll_ctl, then close), for every
// chunk. A restore reads the chunks of one pack after another, so a
// reader that calls [Repository.KeepPacksOpen] gets a context in which
// the last [openPacksMax] packs it read stay open and are read again
// from the same descriptor, until it releases them. The packs are kept
// per holder (a restore, a wire session), never shared with other
// readers of the repository: a check or a drill running beside it opens
// its packs afresh. Packs are immutable (named by their contents); a
// pack removed while held (a prune) is read as it was, as by a reader
// that had it open, and its space is freed at release.
// Bound: openPacksMax descriptors per holder; none after release.

const openPacksMax = 16

type packHolderKey struct{}

// packHolder is one holder's set of open packs.
type packHolder struct {
	r        *Repository
	mu       sync.Mutex
	files    map[blob.ID]*keptPack
	tick     uint64
	released bool
}

type keptPack struct {
	f       storage.File
	refs    int    // reads in progress
	used    uint64 // tick of the last use, for eviction
	evicted bool   // closed by the last reader out
}

// KeepPacksOpen returns a context in which LoadBlob keeps the packs it
// reads from a directory open until release is called (see
// openpacks.go). For an object store it returns ctx unchanged.
func (r *Repository) KeepPacksOpen(ctx context.Context) (context.Context, func()) {
	if r.local == nil {
		return ctx, func() {}
	}
	h := &packHolder{r: r, files: map[blob.ID]*keptPack{}}
	return context.WithValue(ctx, packHolderKey{}, h), func() {
		h.mu.Lock()
		defer h.mu.Unlock()
		h.released = true
		for id, p := range h.files {
			h.evict(id, p)
		}
	}
}

// evict forgets p; it is closed now, or by its last reader. Called with
// h.mu held.
func (h *packHolder) evict(id blob.ID, p *keptPack) {
	delete(h.files, id)
	p.evicted = true
	if p.refs == 0 {
		p.f.Close()
	}
}

// readPack opens pack id of a directory repository for one read; done
// ends the read.
func (r *Repository) readPack(ctx context.Context, id blob.ID) (f storage.File, done func(), err error) {
	h, _ := ctx.Value(packHolderKey{}).(*packHolder)
	if h == nil || h.r != r {
		f, err := r.be.Open(ctx, r.packHandle(id))
		if err != nil {
			return nil, nil, err
		}
		return f, func() { f.Close() }, nil
	}
	h.mu.Lock()
	p := h.files[id]
	if p == nil {
		h.mu.Unlock()
		f, err := r.be.Open(ctx, r.packHandle(id))
		if err != nil {
			return nil, nil, err
		}
		h.mu.Lock()
		if h.files[id] != nil || h.released {
			// Opened meanwhile by another of its readers, or
			// released: read this once.
			h.mu.Unlock()
			return f, func() { f.Close() }, nil
		}
		if len(h.files) >= openPacksMax {
			var oldID blob.ID
			var old *keptPack
			for id, q := range h.files {
				if old == nil || q.used < old.used {
					oldID, old = id, q
				}
			}
			h.evict(oldID, old)
		}
		p = &keptPack{f: f}
		h.files[id] = p
	}
	h.tick++
	p.used = h.tick
	p.refs++
	h.mu.Unlock()
	return p.f, func() {
		h.mu.Lock()
		p.refs--
		if p.refs == 0 && p.evicted {
			p.f.Close()
		}
		h.mu.Unlock()
	}, nil
}
