package repo

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"os"
	"slices"
	"strings"
	"sync"
	"time"

	"github.com/cairnbackup/cairn/repo/blob"
	"github.com/cairnbackup/cairn/repo/internal/index"
	"github.com/cairnbackup/cairn/repo/seal"
	"github.com/cairnbackup/cairn/repo/snapshot"
	"github.com/cairnbackup/cairn/repo/storage"
)

// Replicas.
//
// A replica is the same repository in another place: the same config
// (so the same ID), the same wrapped keys (so the same key file or
// passphrase opens it), and copies of the packs, snapshots and drill
// reports, all byte for byte as the primary stored them. Anyone can open
// one with [Open] and the primary's key file. The appliance opens its
// replicas with [Repository.OpenReplica], which needs no key file: the
// primary's master key in memory is the authority on what is a replica
// of it.

// ReplicaOptions configure [Repository.OpenReplica].
type ReplicaOptions struct {
	// CacheDir holds an object-store replica's index and local lock;
	// required for an object store (the primary's default cache
	// directory is named by the same repository ID, and a cache
	// directory serves one location).
	CacheDir string
	// S3 reaches an object-store replica.
	S3 S3Access
	// Logger receives what the replica notices on its own; nil discards it.
	Logger *slog.Logger
	// Now is the clock; nil means time.Now.
	Now func() time.Time
	// Copy opens the replica to copy into it: a directory that does not
	// exist yet is created, a replica that holds nothing yet gets the
	// primary's keys and then its config, keys it lacks are copied and a
	// damaged config or key is replaced. The index is not opened.
	// Without Copy the replica must hold a config, and its index is
	// opened (and rebuilt from its objects when the cache is empty).
	Copy bool
}

// Seeded counts what OpenReplica with Copy wrote: keys and the config.
type Seeded struct {
	Objects int
	Bytes   int64
}

// OpenReplica opens the copy of r at location (a directory or an
// object-store URL, see [ParsePlace]) as a repository of its own,
// unlocked with r's master key. It takes the replica's lock (a second
// opener, such as a replication while a drill reads the replica, gets
// [ErrLocked]) and cleans what interrupted writes left there. A
// location that holds another repository, or objects that are not a
// copy of r's, is refused. The returned repository reads and writes
// only the replica; close it when done.
func (r *Repository) OpenReplica(ctx context.Context, location string, o ReplicaOptions) (*Repository, Seeded, error) {
	var seeded Seeded
	if o.Logger == nil {
		o.Logger = slog.New(slog.DiscardHandler)
	}
	if o.Now == nil {
		o.Now = time.Now
	}
	loc, err := ParsePlace(location, "")
	if err != nil {
		return nil, seeded, err
	}
	if loc.String() == r.loc.String() || sameDir(loc.Dir(), r.loc.Dir()) {
		return nil, seeded, fmt.Errorf("replica %s is the repository itself", loc)
	}
	be, err := loc.backend(ctx, o.S3)
	if err != nil {
		return nil, seeded, err
	}
	rr := &Repository{
		loc: loc, be: be, cfg: r.cfg, master: r.master, key: r.key, table: r.table, level: r.level,
		log: o.Logger, now: o.Now,
	}
	sealedCfg, err := storage.ReadAll(ctx, be, storage.Handle{Kind: storage.Config}, 1<<20)
	switch {
	case errors.Is(err, storage.ErrNotExist) && !o.Copy:
		return nil, seeded, fmt.Errorf("replica %s holds no repository yet (cairn replicate copies one there)", loc)
	case err != nil && !errors.Is(err, storage.ErrNotExist):
		return nil, seeded, fmt.Errorf("replica %s: %w", loc, err)
	}
	if l, ok := be.(*storage.Local); ok {
		if o.Copy && sealedCfg == nil {
			if err := checkEmptyDir(loc.Dir()); err != nil {
				return nil, seeded, err
			}
			if err := os.MkdirAll(loc.Dir(), 0o700); err != nil {
				return nil, seeded, fmt.Errorf("replica: %w", err)
			}
		}
		if err := l.Init(); err != nil {
			return nil, seeded, fmt.Errorf("replica %s: %w", loc, err)
		}
		rr.local, rr.cache = l, loc.Dir()
	} else {
		if o.CacheDir == "" {
			return nil, seeded, fmt.Errorf("replica %s: no cache directory for its index", loc)
		}
		rr.cache = o.CacheDir
	}
	if err := rr.lockRepository(ctx); err != nil {
		return nil, seeded, fmt.Errorf("replica %s: %w", loc, err)
	}
	fail := func(err error) (*Repository, Seeded, error) {
		rr.Close()
		return nil, seeded, err
	}
	if err := rr.cleanInterrupted(ctx); err != nil {
		return fail(fmt.Errorf("replica %s: %w", loc, err))
	}
	if seeded, err = rr.checkReplica(ctx, r, sealedCfg, o.Copy); err != nil {
		return fail(err)
	}
	if o.Copy {
		return rr, seeded, nil
	}
	if err := rr.openIndex(); err != nil {
		return fail(fmt.Errorf("replica %s: %w", loc, err))
	}
	if err := rr.forgetDeleted(ctx); err != nil {
		return fail(fmt.Errorf("replica %s: %w", loc, err))
	}
	if err := rr.reconcile(ctx); err != nil {
		return fail(fmt.Errorf("replica %s: %w", loc, err))
	}
	return rr, seeded, nil
}

// forgetDeleted removes from a replica's index the packs and snapshots
// no longer in its storage. Replication (delete: after) deletes objects
// of a replica without its index, so on a replica a pack or snapshot
// that went is a deletion, not damage (reconcile would keep a snapshot
// whose file went, and record a pack that went as lost). A copy the
// replica lost by damage is copied again by the next replication from
// the primary's listing either way.
func (r *Repository) forgetDeleted(ctx context.Context) error {
	onDisk, err := r.StoredPacks(ctx)
	if err != nil {
		return err
	}
	gone := map[blob.ID]bool{}
	err = r.idx.Packs(func(id blob.ID, _ index.PackInfo) error {
		if _, ok := onDisk[id]; !ok {
			gone[id] = true
		}
		return nil
	})
	if err != nil {
		return err
	}
	if _, err := r.idx.RemovePacks(gone, false, r.now()); err != nil {
		return err
	}
	files, err := r.listSnapshotFiles(ctx)
	if err != nil {
		return err
	}
	var stale []blob.ID
	err = r.idx.Snapshots(func(id blob.ID, _ []byte) error {
		if !files[id] {
			stale = append(stale, id)
		}
		return nil
	})
	if err != nil {
		return err
	}
	for _, id := range stale {
		if err := r.idx.RemoveSnapshot(id); err != nil {
			return err
		}
	}
	return nil
}

func sameDir(a, b string) bool {
	if a == "" || b == "" {
		return false
	}
	sa, err1 := os.Stat(a)
	sb, err2 := os.Stat(b)
	return err1 == nil && err2 == nil && os.SameFile(sa, sb)
}

// checkEmptyDir refuses to make a replica in a directory that holds
// anything but what a replica being created holds (an interrupted first
// copy leaves its kinds' directories, its lock, its keys and the
// temporary file of the write it was killed in).
func checkEmptyDir(dir string) error {
	entries, err := os.ReadDir(dir)
	if errors.Is(err, os.ErrNotExist) {
		return nil
	}
	if err != nil {
		return fmt.Errorf("replica: %w", err)
	}
	for _, e := range entries {
		switch {
		case e.Name() == string(storage.Keys), e.Name() == string(storage.Packs), e.Name() == string(storage.Snapshot), e.Name() == string(storage.Drills), e.Name() == "lock":
		case strings.HasPrefix(e.Name(), storage.TempPrefix): // a write interrupted: removed once locked
		default:
			return fmt.Errorf("replica %s is not empty and holds no cairn repository (it holds %s): give a directory of its own", dir, e.Name())
		}
	}
	return nil
}

// keyObjects reads every wrapped key of a backend: name to contents.
// Keys are small (a few hundred bytes) and few.
func keyObjects(ctx context.Context, be storage.Backend) (map[string][]byte, error) {
	var names []string
	err := be.List(ctx, storage.Keys, func(name string, _ int64) error {
		names = append(names, name)
		return nil
	})
	if err != nil {
		return nil, err
	}
	out := make(map[string][]byte, len(names))
	for _, n := range names {
		b, err := storage.ReadAll(ctx, be, storage.Handle{Kind: storage.Keys, Name: n}, seal.MaxWrappedSize)
		if errors.Is(err, storage.ErrNotExist) {
			continue
		}
		if err != nil {
			return nil, err
		}
		out[n] = b
	}
	return out, nil
}

// checkReplica decides whether the replica rr is a copy of r (its config
// opens with r's key and names r's ID; or, when its config is missing or
// damaged, it holds one of r's wrapped keys byte for byte, or nothing at
// all), and with copy writes what it lacks of r's keys and config: keys
// first, then the config, which marks a complete repository, as Init
// writes them.
func (rr *Repository) checkReplica(ctx context.Context, r *Repository, sealedCfg []byte, copy bool) (Seeded, error) {
	var seeded Seeded
	ours, err := keyObjects(ctx, r.be)
	if err != nil {
		return seeded, err
	}
	theirs, err := keyObjects(ctx, rr.be)
	if err != nil {
		return seeded, fmt.Errorf("replica %s: %w", rr.loc, err)
	}
	shared := false
	for n, b := range theirs {
		if bytes.Equal(ours[n], b) {
			shared = true
		}
	}
	configOK := false
	if sealedCfg != nil {
		plain, err := r.master.DataKey().Open(nil, sealedCfg, []byte(configAAD))
		if err == nil {
			cfg, err := decodeConfig(plain)
			if err != nil {
				return seeded, fmt.Errorf("replica %s: %w", rr.loc, err)
			}
			if cfg.ID != r.cfg.ID {
				return seeded, fmt.Errorf("replica %s holds another repository (%s), not a copy of %s", rr.loc, cfg.ID.Short(), r.cfg.ID.Short())
			}
			configOK = true
		} else if !shared {
			return seeded, fmt.Errorf("replica %s holds a repository that this repository's key does not open: it is not a copy of it", rr.loc)
		} else if !copy {
			rr.log.Warn("the replica's config is damaged; the next replication writes it back", "replica", rr.loc.String())
		}
	} else if !shared {
		for _, k := range []storage.Kind{storage.Packs, storage.Snapshot, storage.Drills} {
			found := ""
			errFound := errors.New("found")
			err := rr.be.List(ctx, k, func(name string, _ int64) error {
				found = name
				return errFound
			})
			if err != nil && !errors.Is(err, errFound) {
				return seeded, fmt.Errorf("replica %s: %w", rr.loc, err)
			}
			if found != "" {
				return seeded, fmt.Errorf("replica %s holds %s but no config and none of this repository's keys: it is not a copy of it", rr.loc, rr.loc.describe(k, found))
			}
		}
	}
	if !copy {
		return seeded, nil
	}
	names := slices.Sorted(func(yield func(string) bool) {
		for n := range ours {
			if !yield(n) {
				return
			}
		}
	})
	for _, n := range names {
		b := ours[n]
		if have, ok := theirs[n]; ok && bytes.Equal(have, b) {
			continue
		}
		h := storage.Handle{Kind: storage.Keys, Name: n}
		if err := CheckObject(r, h, b); err != nil {
			rr.log.Warn("a key of the primary is damaged and is not copied", "key", n, "err", err)
			continue
		}
		if err := putOrReplace(ctx, rr.be, h, b, theirs[n] != nil); err != nil {
			return seeded, fmt.Errorf("replica %s: %w", rr.loc, err)
		}
		seeded.Objects++
		seeded.Bytes += int64(len(b))
	}
	if !configOK {
		b, err := storage.ReadAll(ctx, r.be, storage.Handle{Kind: storage.Config}, 1<<20)
		if err != nil {
			return seeded, err
		}
		if err := putOrReplace(ctx, rr.be, storage.Handle{Kind: storage.Config}, b, sealedCfg != nil); err != nil {
			return seeded, fmt.Errorf("replica %s: %w", rr.loc, err)
		}
		seeded.Objects++
		seeded.Bytes += int64(len(b))
	}
	return seeded, nil
}

// putOrReplace stores b as h: a Put, or with replace (a damaged copy is
// there) a Replace.
func putOrReplace(ctx context.Context, be storage.Backend, h storage.Handle, b []byte, replace bool) error {
	if replace {
		rp, ok := be.(replacer)
		if !ok {
			return fmt.Errorf("%s: this storage cannot replace an object", h)
		}
		return rp.Replace(ctx, h, bytes.NewReader(b))
	}
	err := be.Put(ctx, h, bytes.NewReader(b))
	if errors.Is(err, storage.ErrExist) {
		return nil
	}
	return err
}

// Replace puts b in place of the object h, which may be damaged or
// missing: the name holds the old object or the new one whenever the
// process dies. Only repairs and replication use it, with a copy they
// verified.
func (r *Repository) Replace(ctx context.Context, h storage.Handle, body io.Reader) error {
	rp, ok := r.be.(replacer)
	if !ok {
		return fmt.Errorf("%s: this storage cannot replace an object", h)
	}
	return rp.Replace(ctx, h, body)
}

// PutBack puts body, a verified copy of object h from elsewhere (a
// replica), in place of this repository's damaged or missing copy
// ([Repository.Replace]: the name holds the old object or the new one
// whenever the process dies), then brings the index in line: a pack the
// index no longer lists (dropped as lost when it was found missing) is
// indexed again from its header, which clears its lost mark; a
// snapshot's record is cached again.
func (r *Repository) PutBack(ctx context.Context, h storage.Handle, body io.Reader) error {
	if err := r.confirmOwner(ctx); err != nil {
		return err
	}
	if err := r.Replace(ctx, h, body); err != nil {
		return err
	}
	id, err := blob.ParseID(h.Name)
	switch {
	case err != nil:
		return nil
	case h.Kind == storage.Packs:
		if _, ok, err := r.idx.Pack(id); err != nil || ok {
			return err
		}
		entries, size, err := r.ReadPackHeader(ctx, id)
		if err != nil {
			return err
		}
		return r.idx.AddPack(id, index.PackInfo{Size: size, Blobs: len(entries), Created: r.now()}, packBlobs(id, entries))
	case h.Kind == storage.Snapshot:
		plain, err := r.readSnapshotFile(ctx, id)
		if err != nil {
			return err
		}
		return r.idx.AddSnapshot(id, plain)
	}
	return nil
}

// Storage returns the storage of location (a directory or an object
// store), to read objects from it: a replica a repair fetches a copy
// from. It takes no lock and checks nothing of what the location holds.
func Storage(ctx context.Context, location string, a S3Access) (storage.Backend, error) {
	loc, err := ParsePlace(location, "")
	if err != nil {
		return nil, err
	}
	return loc.backend(ctx, a)
}

// CheckObject verifies the contents b of a small object h of r's
// repository (or of a copy of it): a snapshot record or a drill report
// must authenticate with the repository key and hash to its name, a
// wrapped key named by a SHA-256 must hash to it, the config must
// authenticate. Packs are checked as they are copied (their name is the
// SHA-256 of their bytes). An error wraps [blob.ErrCorrupt].
func CheckObject(r *Repository, h storage.Handle, b []byte) error {
	switch h.Kind {
	case storage.Config:
		if _, err := r.master.DataKey().Open(nil, b, []byte(configAAD)); err != nil {
			return blob.Corrupt(fmt.Errorf("config does not authenticate: %w", err))
		}
		return nil
	case storage.Keys:
		if id, err := blob.ParseID(h.Name); err == nil && blob.Hash(b) != id {
			return blob.Corrupt(fmt.Errorf("key %s does not hash to its name", h.Name))
		}
		if _, err := seal.DecodeWrapped(b); err != nil {
			return blob.Corrupt(fmt.Errorf("key %s: %w", h.Name, err))
		}
		return nil
	case storage.Packs:
		id, err := blob.ParseID(h.Name)
		if err != nil || blob.Hash(b) != id {
			return blob.Corrupt(fmt.Errorf("pack %s does not hash to its name", h.Name))
		}
		return nil
	}
	id, err := blob.ParseID(h.Name)
	if err != nil {
		return blob.Corrupt(fmt.Errorf("%s: not named by an ID", h))
	}
	aad := recordAAD(h.Kind, id)
	if h.Kind == storage.Snapshot {
		aad = snapshotAAD(id)
	}
	plain, err := r.key.Open(nil, b, aad)
	if err != nil {
		return blob.Corrupt(fmt.Errorf("%s: %w", h, err))
	}
	if blob.Hash(plain) != id {
		return blob.Corrupt(fmt.Errorf("%s: record does not match its name", h))
	}
	if h.Kind == storage.Snapshot {
		if _, err := snapshot.Decode(plain); err != nil {
			return blob.Corrupt(fmt.Errorf("%s: %w", h, err))
		}
	}
	return nil
}

// MaxSmallObject bounds the snapshot records, drill reports, keys and
// configs replication and repairs read whole into memory.
const MaxSmallObject = MaxRecordSize + seal.Overhead

// ConfirmOwner checks, for an object store, that this process still
// owns the repository's lock object (a directory's flock cannot be lost):
// call it before deleting.
func (r *Repository) ConfirmOwner(ctx context.Context) error { return r.confirmOwner(ctx) }

// Holding packs.

// PackHold keeps packs from being dropped by prune while it is open:
// replication holds the packs a snapshot needs from the moment it learns
// where they are until it copied them, so a prune running meanwhile
// (which may move their blobs to new packs and drop the old ones) keeps
// them until a later prune. Safe for concurrent use.
type PackHold struct {
	r     *Repository
	mu    sync.Mutex
	packs map[blob.ID]struct{}
}

// HoldPacks returns an empty hold; Close it when done.
func (r *Repository) HoldPacks() *PackHold {
	h := &PackHold{r: r, packs: map[blob.ID]struct{}{}}
	r.smu.Lock()
	if r.holds == nil {
		r.holds = map[*PackHold]struct{}{}
	}
	r.holds[h] = struct{}{}
	r.smu.Unlock()
	return h
}

// Locate looks blob b up in the index and holds the pack it is in. The
// lookup and the hold happen under the gate prune's DropPacks takes, so
// either the pack found is held before prune decides, or prune dropped it
// first and the index already names the blob's new pack (or, for a blob
// of a forgotten snapshot, none: ok is false).
func (h *PackHold) Locate(b blob.Handle) (Location, bool, error) {
	h.r.gate.RLock()
	defer h.r.gate.RUnlock()
	loc, ok, err := h.r.idx.Lookup(b)
	if ok && err == nil {
		h.mu.Lock()
		h.packs[loc.Pack] = struct{}{}
		h.mu.Unlock()
	}
	return loc, ok, err
}

// Hold holds pack id if the index still lists it, and reports whether
// it does.
func (h *PackHold) Hold(id blob.ID) (bool, error) {
	h.r.gate.RLock()
	defer h.r.gate.RUnlock()
	_, ok, err := h.r.idx.Pack(id)
	if ok && err == nil {
		h.mu.Lock()
		h.packs[id] = struct{}{}
		h.mu.Unlock()
	}
	return ok, err
}

// Release lets prune drop pack id again.
func (h *PackHold) Release(id blob.ID) {
	h.mu.Lock()
	delete(h.packs, id)
	h.mu.Unlock()
}

// Close releases every pack.
func (h *PackHold) Close() {
	h.r.smu.Lock()
	delete(h.r.holds, h)
	h.r.smu.Unlock()
}

// held adds the packs of every open hold to keep. The caller holds the
// gate for writing.
func (r *Repository) held(keep map[blob.ID]bool) {
	r.smu.Lock()
	defer r.smu.Unlock()
	for h := range r.holds {
		h.mu.Lock()
		for id := range h.packs {
			keep[id] = true
		}
		h.mu.Unlock()
	}
}

// Replica marks: what replication remembers about a replica's objects
// between runs, in the index (disposable).

// ReplicaTag says what a [ReplicaMark] records.
type ReplicaTag byte

// The tags of replica marks.
const (
	// ReplicaDamaged: the object was found damaged on the replica (by
	// its verification); the next replication copies it again.
	ReplicaDamaged ReplicaTag = 'd'
	// ReplicaGone: the replica's object was first seen missing on this
	// repository (forgotten or pruned) at Time.
	ReplicaGone ReplicaTag = 'g'
)

// ReplicaMark is an object of a replica and a time.
type ReplicaMark struct {
	storage.Handle
	Time time.Time
}

func toIndexMarks(ms []ReplicaMark) []index.ReplicaMark {
	out := make([]index.ReplicaMark, len(ms))
	for i, m := range ms {
		out[i] = index.ReplicaMark{Kind: string(m.Kind), Name: m.Name, Time: m.Time}
	}
	return out
}

// SetReplicaMarks records marks for replica; an existing mark keeps its
// time unless overwrite is set.
func (r *Repository) SetReplicaMarks(replica string, tag ReplicaTag, marks []ReplicaMark, overwrite bool) error {
	return r.idx.SetReplicaMarks(replica, byte(tag), toIndexMarks(marks), overwrite)
}

// DeleteReplicaMarks removes marks of replica.
func (r *Repository) DeleteReplicaMarks(replica string, tag ReplicaTag, marks []ReplicaMark) error {
	return r.idx.DeleteReplicaMarks(replica, byte(tag), toIndexMarks(marks))
}

// ReplicaMarks returns the marks of replica under tag.
func (r *Repository) ReplicaMarks(replica string, tag ReplicaTag) ([]ReplicaMark, error) {
	var out []ReplicaMark
	err := r.idx.ReplicaMarks(replica, byte(tag), func(m index.ReplicaMark) error {
		out = append(out, ReplicaMark{Handle: storage.Handle{Kind: storage.Kind(m.Kind), Name: m.Name}, Time: m.Time})
		return nil
	})
	return out, err
}
