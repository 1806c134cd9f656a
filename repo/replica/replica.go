package replica

import (
	"bufio"
	"bytes"
	"context"
	"errors"
	"fmt"
	"hash"
	"io"
	"log/slog"
	"maps"
	"slices"
	"sort"
	"sync"
	"sync/atomic"
	"time"

	"github.com/cairnbackup/cairn/repo"
	"github.com/cairnbackup/cairn/repo/blob"
	"github.com/cairnbackup/cairn/repo/internal/crashpoint"
	"github.com/cairnbackup/cairn/repo/prune"
	"github.com/cairnbackup/cairn/repo/snapshot"
	"github.com/cairnbackup/cairn/repo/storage"
	"github.com/minio/sha256-simd"
	"golang.org/x/sync/errgroup"
)

// DefaultTransfers is how many objects a run copies at once.
const DefaultTransfers = 4

// Options configure [Run].
type Options struct {
	// Name is the replica's name (replicas: in the configuration), under
	// which the primary's index keeps its marks.
	Name string
	// Transfers is how many objects are copied at once; default
	// DefaultTransfers.
	Transfers int
	// DeleteAfter, when positive, deletes from the replica what the
	// primary no longer has, once it was first seen missing at least
	// this long ago. Zero deletes nothing.
	DeleteAfter time.Duration
	// Now is the clock; nil means time.Now.
	Now func() time.Time
	// Progress, if set, is updated as the run goes.
	Progress *Progress
	// Logger receives what the run notices; nil discards it.
	Logger *slog.Logger
	// Seeded is what opening the replica for copying wrote (keys and
	// config), counted in the report.
	Seeded repo.Seeded
}

// Progress is how far a run is: bytes of the objects to copy.
type Progress struct {
	Bytes, Total atomic.Uint64
}

// Skipped is a snapshot a run did not copy, and why.
type Skipped struct {
	ID     blob.ID `json:"id"`
	Reason string  `json:"reason"`
}

// Failure is an object a run could not copy.
type Failure struct {
	Object string `json:"object"`
	Error  string `json:"error"`
}

// Report says what a run did.
type Report struct {
	Replica  string    `json:"replica"`
	Location string    `json:"location"`
	Started  time.Time `json:"started"`
	// Listed is when the primary's snapshots were listed: the replica
	// holds every snapshot the primary had then, but those in Left and
	// Failed.
	Listed   time.Time     `json:"listed"`
	Ended    time.Time     `json:"ended"`
	Duration time.Duration `json:"duration_ns"`

	Objects     int     `json:"objects_copied"`
	Bytes       int64   `json:"bytes_copied"`
	Packs       int     `json:"packs_copied"`
	Snapshots   int     `json:"snapshots_copied"`
	Drills      int     `json:"drills_copied"`
	Keys        int     `json:"keys_and_config_copied"`
	Repaired    int     `json:"objects_repaired"` // copied again in place of a damaged copy on the replica
	MBPerSecond float64 `json:"mb_per_second"`

	// Forgotten are snapshots listed at the start whose file was gone
	// when their turn came (forgotten on the primary meanwhile).
	Forgotten []Skipped `json:"forgotten,omitempty"`
	// Left are snapshots not copied because data they need is not on
	// the replica (a pack could not be copied); the next run tries again.
	Left   []Skipped `json:"left,omitempty"`
	Failed []Failure `json:"failed,omitempty"`
	// LagBytes is what the replica lacks at Ended: the packs of the
	// primary's index and the snapshots listed at the start that are not
	// on it.
	LagBytes int64 `json:"lag_bytes"`

	Deleted      int   `json:"deleted"`
	DeletedBytes int64 `json:"deleted_bytes"`
	// PendingDeletes are objects of the replica the primary no longer
	// has, waiting for their delay (with DeleteAfter).
	PendingDeletes int `json:"pending_deletes"`
	// Stored is what the replica holds at the end: packs and bytes.
	StoredPacks int   `json:"stored_packs"`
	StoredBytes int64 `json:"stored_bytes"`
}

// OK reports whether the run copied everything it set out to.
func (r *Report) OK() bool { return len(r.Failed) == 0 && len(r.Left) == 0 }

// run is one replication in progress.
type run struct {
	src, dst *repo.Repository
	o        Options
	rep      *Report
	log      *slog.Logger
	hold     *repo.PackHold

	dstObjs map[storage.Kind]map[string]int64 // the replica's listing
	damaged map[storage.Handle]bool           // marked damaged on the replica
	mu      sync.Mutex                        // guards rep, present, repaired
	present map[blob.ID]bool                  // packs on the replica (listed or copied)
	fixed   []repo.ReplicaMark                // damaged marks whose object was copied again
}

// Run copies to the replica dst (opened with repo.Repository.OpenReplica
// and Copy) what it lacks of src; see the package documentation. An error
// means the run stopped (the replica is consistent, and the next run
// goes on from there); objects that could not be copied are in the
// report's Failed, and the run goes on without them.
func Run(ctx context.Context, src, dst *repo.Repository, o Options) (*Report, error) {
	if o.Now == nil {
		o.Now = time.Now
	}
	if o.Transfers <= 0 {
		o.Transfers = DefaultTransfers
	}
	if o.Logger == nil {
		o.Logger = slog.New(slog.DiscardHandler)
	}
	if o.Progress == nil {
		o.Progress = &Progress{}
	}
	x := &run{src: src, dst: dst, o: o, log: o.Logger, present: map[blob.ID]bool{}, damaged: map[storage.Handle]bool{}}
	x.rep = &Report{Replica: o.Name, Location: dst.Place().String(), Started: o.Now(), Keys: o.Seeded.Objects,
		Objects: o.Seeded.Objects, Bytes: o.Seeded.Bytes}
	x.hold = src.HoldPacks()
	defer x.hold.Close()
	err := x.run(ctx)
	x.rep.Duration = o.Now().Sub(x.rep.Started)
	if s := x.rep.Duration.Seconds(); s > 0 {
		x.rep.MBPerSecond = float64(x.rep.Bytes) / 1e6 / s
	}
	return x.rep, err
}

func (x *run) run(ctx context.Context) error {
	// 1. What the primary has: its snapshot files first (the list this
	// run copies), then the replica, once.
	srcSnaps, err := list(ctx, x.src.Backend(), storage.Snapshot)
	if err != nil {
		return fmt.Errorf("list the primary's snapshots: %w", err)
	}
	x.rep.Listed = x.o.Now()
	x.dstObjs = map[storage.Kind]map[string]int64{}
	for _, k := range []storage.Kind{storage.Packs, storage.Snapshot, storage.Drills, storage.Keys} {
		if x.dstObjs[k], err = list(ctx, x.dst.Backend(), k); err != nil {
			return fmt.Errorf("list replica %s: %w", x.dst.Place(), err)
		}
	}
	marks, err := x.src.ReplicaMarks(x.o.Name, repo.ReplicaDamaged)
	if err != nil {
		return err
	}
	for _, m := range marks {
		x.damaged[m.Handle] = true
	}
	for name := range x.dstObjs[storage.Packs] {
		if id, err := blob.ParseID(name); err == nil && !x.damaged[packHandle(id)] {
			x.present[id] = true
		}
	}

	// 2. The snapshots to copy, and the packs their trees need, held.
	var want []snapshot.Entry
	entries, err := x.snapshotEntries(ctx, srcSnaps)
	if err != nil {
		return err
	}
	for _, e := range entries {
		h := storage.Handle{Kind: storage.Snapshot, Name: e.ID.String()}
		if size, ok := x.dstObjs[storage.Snapshot][h.Name]; !ok || size != srcSnaps[h.Name] || x.damaged[h] {
			want = append(want, e)
		}
	}
	needs, err := x.walk(ctx, want)
	if err != nil {
		return err
	}

	// 3. Packs: every pack of the primary the replica lacks.
	type job struct {
		id      blob.ID
		size    int64
		replace bool
	}
	var jobs []job
	queued := map[blob.ID]bool{}
	var total uint64
	err = x.src.PackRecords(func(p repo.PackRecord) error {
		if x.present[p.ID] && x.dstObjs[storage.Packs][p.ID.String()] == p.Size {
			return nil
		}
		_, listed := x.dstObjs[storage.Packs][p.ID.String()]
		jobs = append(jobs, job{id: p.ID, size: p.Size, replace: listed})
		queued[p.ID] = true
		total += uint64(p.Size)
		return nil
	})
	if err != nil {
		return err
	}
	for id := range needs.packs {
		if !x.present[id] && !queued[id] {
			// Moved by a prune since the index was read: held, and
			// still on disk until this run ends.
			jobs = append(jobs, job{id: id, size: -1})
		}
	}
	sort.Slice(jobs, func(i, j int) bool { return bytes.Compare(jobs[i].id[:], jobs[j].id[:]) < 0 })
	x.o.Progress.Total.Add(total)
	g, gctx := errgroup.WithContext(ctx)
	g.SetLimit(x.o.Transfers)
	for _, j := range jobs {
		g.Go(func() error {
			err := x.copyPack(gctx, j.id, j.replace)
			if gctx.Err() != nil {
				return gctx.Err()
			}
			return x.failed(packHandle(j.id), err)
		})
	}
	if err := g.Wait(); err != nil {
		return err
	}
	crashpoint.Hit("replicate-packs-done")

	// 4. Drill reports, then the snapshots whose data is all there.
	drills, err := list(ctx, x.src.Backend(), storage.Drills)
	if err != nil {
		return fmt.Errorf("list the primary's drill reports: %w", err)
	}
	var small []storage.Handle
	for _, name := range slices.Sorted(maps.Keys(drills)) {
		h := storage.Handle{Kind: storage.Drills, Name: name}
		if size, ok := x.dstObjs[storage.Drills][name]; !ok || size != drills[name] || x.damaged[h] {
			small = append(small, h)
		}
	}
	if err := x.copySmall(ctx, small); err != nil {
		return err
	}
	small = small[:0]
	for _, e := range want {
		if missing := needs.lacking(e.ID, x.presentSet()); missing != "" {
			x.rep.Left = append(x.rep.Left, Skipped{ID: e.ID, Reason: missing})
			continue
		}
		small = append(small, storage.Handle{Kind: storage.Snapshot, Name: e.ID.String()})
	}
	if err := x.copySmall(ctx, small); err != nil {
		return err
	}
	if err := x.src.DeleteReplicaMarks(x.o.Name, repo.ReplicaDamaged, x.fixed); err != nil {
		return err
	}

	// 5. Deletions.
	if err := x.deletions(ctx, srcSnaps, drills); err != nil {
		return err
	}
	for name, size := range x.dstObjs[storage.Packs] {
		if id, err := blob.ParseID(name); err == nil && x.present[id] {
			x.rep.StoredPacks++
			x.rep.StoredBytes += size
		}
	}
	return x.lag(srcSnaps)
}

// lag is what the replica lacks at the end of the run: the packs of the
// primary's index and the snapshots listed at the start that are not on
// it.
func (x *run) lag(srcSnaps map[string]int64) error {
	x.rep.LagBytes = 0
	err := x.src.PackRecords(func(p repo.PackRecord) error {
		if !x.present[p.ID] {
			x.rep.LagBytes += p.Size
		}
		return nil
	})
	for name, size := range srcSnaps {
		if _, ok := x.dstObjs[storage.Snapshot][name]; !ok {
			x.rep.LagBytes += size
		}
	}
	x.rep.Ended = x.o.Now()
	return err
}

// deletionOrder: snapshots before the packs they need.
var deletionOrder = []storage.Kind{storage.Snapshot, storage.Drills, storage.Keys, storage.Packs}

// deletions deletes (with DeleteAfter) the replica's objects that the
// primary no longer has and that were first seen missing at least
// DeleteAfter ago. Missing means forgotten or pruned: a snapshot the
// primary's index still lists, or a pack it recorded as lost, is damage
// on the primary that the replica can heal, never a deletion. Nothing
// is deleted in a run that left something behind.
func (x *run) deletions(ctx context.Context, srcSnaps, srcDrills map[string]int64) error {
	if x.o.DeleteAfter <= 0 {
		return nil
	}
	srcPacks, err := list(ctx, x.src.Backend(), storage.Packs)
	if err != nil {
		return fmt.Errorf("list the primary's packs: %w", err)
	}
	srcKeys, err := list(ctx, x.src.Backend(), storage.Keys)
	if err != nil {
		return fmt.Errorf("list the primary's keys: %w", err)
	}
	keep := map[storage.Handle]bool{}
	err = x.src.PackRecords(func(p repo.PackRecord) error {
		keep[packHandle(p.ID)] = true
		return nil
	})
	if err != nil {
		return err
	}
	err = x.src.LostPacks(func(id blob.ID, _ time.Time) error {
		keep[packHandle(id)] = true
		return nil
	})
	if err != nil {
		return err
	}
	listed, err := x.src.Snapshots(ctx, snapshot.Filter{})
	if err != nil {
		return err
	}
	for _, e := range listed {
		keep[storage.Handle{Kind: storage.Snapshot, Name: e.ID.String()}] = true
	}
	have := map[storage.Kind]map[string]int64{storage.Packs: srcPacks, storage.Snapshot: srcSnaps, storage.Drills: srcDrills, storage.Keys: srcKeys}
	marks, err := x.src.ReplicaMarks(x.o.Name, repo.ReplicaGone)
	if err != nil {
		return err
	}
	first := map[storage.Handle]time.Time{}
	for _, m := range marks {
		first[m.Handle] = m.Time
	}
	now := x.o.Now()
	var add, clear []repo.ReplicaMark
	var due []storage.Handle
	gone := map[storage.Handle]bool{}
	for _, k := range deletionOrder {
		for _, name := range slices.Sorted(maps.Keys(x.dstObjs[k])) {
			h := storage.Handle{Kind: k, Name: name}
			if _, ok := have[k][name]; ok || keep[h] {
				continue
			}
			gone[h] = true
			t, ok := first[h]
			switch {
			case !ok:
				add = append(add, repo.ReplicaMark{Handle: h, Time: now})
			case now.Sub(t) >= x.o.DeleteAfter:
				due = append(due, h)
			}
		}
	}
	for h := range first {
		if !gone[h] {
			clear = append(clear, repo.ReplicaMark{Handle: h})
		}
	}
	if err := x.src.SetReplicaMarks(x.o.Name, repo.ReplicaGone, add, false); err != nil {
		return err
	}
	if err := x.src.DeleteReplicaMarks(x.o.Name, repo.ReplicaGone, clear); err != nil {
		return err
	}
	x.rep.PendingDeletes = len(gone)
	if !x.rep.OK() || len(due) == 0 {
		return nil
	}
	if err := x.dst.ConfirmOwner(ctx); err != nil {
		return err
	}
	var done []repo.ReplicaMark
	defer func() { x.src.DeleteReplicaMarks(x.o.Name, repo.ReplicaGone, done) }()
	for _, h := range due {
		if err := x.dst.Backend().Delete(ctx, h); err != nil {
			return fmt.Errorf("replica %s: delete %s: %w", x.dst.Place(), h, err)
		}
		crashpoint.Hit("replicate-deleted")
		x.rep.Deleted++
		x.rep.DeletedBytes += x.dstObjs[h.Kind][h.Name]
		x.rep.PendingDeletes--
		delete(x.dstObjs[h.Kind], h.Name)
		if h.Kind == storage.Packs {
			if id, err := blob.ParseID(h.Name); err == nil {
				delete(x.present, id)
			}
		}
		done = append(done, repo.ReplicaMark{Handle: h})
	}
	return nil
}

func packHandle(id blob.ID) storage.Handle {
	return storage.Handle{Kind: storage.Packs, Name: id.String()}
}

// list returns the names and sizes of the objects of kind k.
func list(ctx context.Context, be storage.Backend, k storage.Kind) (map[string]int64, error) {
	out := map[string]int64{}
	err := be.List(ctx, k, func(name string, size int64) error {
		out[name] = size
		return nil
	})
	return out, err
}

// replicaError is an error of the replica's storage: the run stops on it
// (the replica is unreachable, full, or refuses), where an object the
// primary cannot give (damaged, unreadable) is only left out.
type replicaError struct{ err error }

func (e *replicaError) Error() string { return e.err.Error() }
func (e *replicaError) Unwrap() error { return e.err }

// failed notes an object that could not be copied, and returns the error
// that stops the run when it was the replica's.
func (x *run) failed(h storage.Handle, err error) error {
	var re *replicaError
	switch {
	case err == nil:
		return nil
	case errors.As(err, &re):
		return re.err
	}
	x.fail(h.String(), err)
	return nil
}

func (x *run) fail(object string, err error) {
	x.log.Warn("replication: not copied", "replica", x.o.Name, "object", object, "err", err)
	x.mu.Lock()
	x.rep.Failed = append(x.rep.Failed, Failure{Object: object, Error: err.Error()})
	x.mu.Unlock()
}

func (x *run) presentSet() map[blob.ID]bool {
	x.mu.Lock()
	defer x.mu.Unlock()
	return maps.Clone(x.present)
}

// snapshotEntries returns the records of the snapshot files listed,
// oldest first: from the index, or from the file when the index has
// none (a commit whose record was not cached yet when it was read).
func (x *run) snapshotEntries(ctx context.Context, files map[string]int64) ([]snapshot.Entry, error) {
	all, err := x.src.Snapshots(ctx, snapshot.Filter{})
	if err != nil {
		return nil, err
	}
	var out []snapshot.Entry
	seen := map[string]bool{}
	for _, e := range all {
		if _, ok := files[e.ID.String()]; ok {
			out = append(out, e)
			seen[e.ID.String()] = true
		}
	}
	for name := range files {
		if seen[name] {
			continue
		}
		id, err := blob.ParseID(name)
		if err != nil {
			continue
		}
		sn, err := x.src.LoadSnapshot(ctx, id)
		if err != nil {
			if ctx.Err() != nil {
				return nil, ctx.Err()
			}
			x.fail("snapshots/"+name, err)
			continue
		}
		out = append(out, snapshot.Entry{ID: id, Snapshot: sn})
	}
	snapshot.Sort(out)
	return out, nil
}

// needs is what the walk found: every pack the snapshots to copy need,
// and what stopped the walk of some of them.
type needs struct {
	packs  map[blob.ID]bool
	broken map[blob.ID]string // snapshot → why its walk stopped
	// per snapshot, when some pack could not be copied: filled by
	// lacking, which walks that snapshot again alone
	walk func(id blob.ID, present map[blob.ID]bool) string
}

// lacking returns "" when every pack snapshot id needs is present, else
// what it lacks.
func (n *needs) lacking(id blob.ID, present map[blob.ID]bool) string {
	if why, ok := n.broken[id]; ok {
		return why
	}
	all := true
	for p := range n.packs {
		if !present[p] {
			all = false
			break
		}
	}
	if all {
		return ""
	}
	return n.walk(id, present)
}

// errNotIndexed ends a walk at a blob the primary's index does not know.
type errNotIndexed struct{ h blob.Handle }

func (e *errNotIndexed) Error() string {
	return fmt.Sprintf("blob %s is not in the primary's index", e.h)
}

// walk walks the trees of want, holding the pack of every blob, and
// returns the packs they need. A snapshot whose walk stops (forgotten
// meanwhile, or a tree or blob the primary lacks) is noted; its partial
// walk does not count for the others (the set of trees seen restarts).
func (x *run) walk(ctx context.Context, want []snapshot.Entry) (*needs, error) {
	n := &needs{packs: map[blob.ID]bool{}, broken: map[blob.ID]string{}}
	entries := map[blob.ID]snapshot.Entry{}
	seen := map[blob.ID]struct{}{}
	for _, e := range want {
		entries[e.ID] = e
		err := prune.Reach(ctx, x.src, e.Tree, seen, func(h blob.Handle) error {
			loc, ok, err := x.hold.Locate(h)
			if err != nil {
				return err
			}
			if !ok {
				return &errNotIndexed{h}
			}
			n.packs[loc.Pack] = true
			if x.present[loc.Pack] {
				x.hold.Release(loc.Pack) // on the replica already: not needed from the primary
			}
			return nil
		})
		if err != nil {
			if ctx.Err() != nil {
				return nil, ctx.Err()
			}
			var te *prune.TreeError
			var ni *errNotIndexed
			if !errors.As(err, &te) && !errors.As(err, &ni) {
				return nil, err
			}
			n.broken[e.ID] = err.Error()
			seen = map[blob.ID]struct{}{}
		}
	}
	n.walk = func(id blob.ID, present map[blob.ID]bool) string {
		missing := ""
		err := prune.Reach(ctx, x.src, entries[id].Tree, map[blob.ID]struct{}{}, func(h blob.Handle) error {
			loc, ok, err := x.hold.Locate(h)
			if err != nil {
				return err
			}
			if !ok {
				return &errNotIndexed{h}
			}
			if !present[loc.Pack] {
				missing = fmt.Sprintf("pack %s (%s) is not on the replica", loc.Pack.Short(), h)
				return errStop
			}
			return nil
		})
		switch {
		case errors.Is(err, errStop):
			return missing
		case err != nil:
			return err.Error()
		}
		return ""
	}
	return n, nil
}

var errStop = errors.New("stop")

// hashReader hashes what it reads and, at the end, fails unless the
// bytes were exactly size bytes hashing to id: the storage then
// abandons the write, so a pack that does not hash to its name is never
// stored under it.
type hashReader struct {
	r    io.Reader
	h    hash.Hash
	id   blob.ID
	size int64
	n    int64
	prog *Progress
	what string // where the pack is read from: "" is the primary
	// srcErr is the error reading the source gave, if any: the object
	// could not be read, as opposed to written.
	srcErr error
}

func (r *hashReader) Read(p []byte) (int, error) {
	n, err := r.r.Read(p)
	if err != nil && err != io.EOF {
		r.srcErr = fmt.Errorf("read pack %s: %w", r.id.Short(), err)
	}
	r.h.Write(p[:n])
	r.n += int64(n)
	r.prog.Bytes.Add(uint64(n))
	if err == io.EOF {
		switch {
		case r.n != r.size:
			return n, fmt.Errorf("pack %s: read %d bytes of %d", r.id.Short(), r.n, r.size)
		case blob.ID(r.h.Sum(nil)) != r.id && r.what != "":
			return n, fmt.Errorf("pack %s %s does not hash to its name (%w)", r.id.Short(), r.what, blob.ErrCorrupt)
		case blob.ID(r.h.Sum(nil)) != r.id:
			return n, fmt.Errorf("pack %s on the primary does not hash to its name: it is damaged (%w); not copied (cairn repair packs heals it from a replica with a good copy)", r.id.Short(), blob.ErrCorrupt)
		}
	}
	return n, err
}

// copyPack streams pack id from the primary to the replica.
func (x *run) copyPack(ctx context.Context, id blob.ID, replace bool) error {
	h := packHandle(id)
	f, err := x.src.Backend().Open(ctx, h)
	if err != nil {
		if errors.Is(err, storage.ErrNotExist) && x.dropped(id) {
			return nil
		}
		return err
	}
	defer f.Close()
	hr := &hashReader{r: io.NewSectionReader(f, 0, f.Size()), h: sha256.New(), id: id, size: f.Size(), prog: x.o.Progress}
	body := bufio.NewReaderSize(hr, 1<<20)
	if replace {
		err = x.dst.Replace(ctx, h, body)
	} else {
		err = x.dst.Backend().Put(ctx, h, body)
		if errors.Is(err, storage.ErrExist) {
			err = nil
		}
	}
	if err != nil {
		switch {
		case errors.Is(err, blob.ErrCorrupt):
			return err
		case hr.srcErr != nil && x.dropped(id):
			return nil // pruned while it was being read
		case hr.srcErr != nil:
			return hr.srcErr
		}
		return &replicaError{err}
	}
	crashpoint.Hit("replicate-pack-copied")
	x.hold.Release(id)
	x.mu.Lock()
	defer x.mu.Unlock()
	x.present[id] = true
	x.dstObjs[storage.Packs][id.String()] = f.Size()
	x.rep.Objects++
	x.rep.Packs++
	x.rep.Bytes += f.Size()
	if x.damaged[h] || replace {
		x.rep.Repaired++
		x.fixed = append(x.fixed, repo.ReplicaMark{Handle: h})
	}
	return nil
}

func newBytesReader(b []byte) io.Reader { return bytes.NewReader(b) }

// dropped reports whether pack id is no longer in the primary's index
// (a prune dropped it: the snapshots that needed it were forgotten).
func (x *run) dropped(id blob.ID) bool {
	ok, err := x.hold.Hold(id)
	if ok {
		x.hold.Release(id)
	}
	return err == nil && !ok
}

// copySmall copies small objects (drill reports, snapshots), each read
// whole, checked and written, several at once.
func (x *run) copySmall(ctx context.Context, hs []storage.Handle) error {
	g, gctx := errgroup.WithContext(ctx)
	g.SetLimit(x.o.Transfers)
	for _, h := range hs {
		g.Go(func() error {
			err := x.copyOne(gctx, h)
			if gctx.Err() != nil {
				return gctx.Err()
			}
			return x.failed(h, err)
		})
	}
	return g.Wait()
}

func (x *run) copyOne(ctx context.Context, h storage.Handle) error {
	b, err := storage.ReadAll(ctx, x.src.Backend(), h, repo.MaxSmallObject)
	if errors.Is(err, storage.ErrNotExist) {
		if h.Kind == storage.Snapshot {
			id, _ := blob.ParseID(h.Name)
			x.mu.Lock()
			x.rep.Forgotten = append(x.rep.Forgotten, Skipped{ID: id, Reason: "forgotten on the primary during this run"})
			x.mu.Unlock()
		}
		return nil
	}
	if err != nil {
		return err
	}
	if err := repo.CheckObject(x.src, h, b); err != nil {
		return fmt.Errorf("on the primary: %w; not copied", err)
	}
	x.o.Progress.Total.Add(uint64(len(b)))
	x.mu.Lock()
	size, listed := x.dstObjs[h.Kind][h.Name]
	x.mu.Unlock()
	replace := listed && (size != int64(len(b)) || x.damaged[h])
	if replace {
		err = x.dst.Replace(ctx, h, bytes.NewReader(b))
	} else {
		err = x.dst.Backend().Put(ctx, h, bytes.NewReader(b))
		if errors.Is(err, storage.ErrExist) {
			err = nil
		}
	}
	if err != nil {
		return &replicaError{err}
	}
	x.o.Progress.Bytes.Add(uint64(len(b)))
	if h.Kind == storage.Snapshot {
		crashpoint.Hit("replicate-snapshot-copied")
	}
	x.mu.Lock()
	defer x.mu.Unlock()
	x.dstObjs[h.Kind][h.Name] = int64(len(b))
	x.rep.Objects++
	x.rep.Bytes += int64(len(b))
	switch h.Kind {
	case storage.Snapshot:
		x.rep.Snapshots++
	case storage.Drills:
		x.rep.Drills++
	}
	if replace || x.damaged[h] {
		x.rep.Repaired++
		x.fixed = append(x.fixed, repo.ReplicaMark{Handle: h})
	}
	return nil
}
