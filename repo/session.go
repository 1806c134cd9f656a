package repo

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"sync"
	"time"

	"github.com/cairnbackup/cairn/repo/blob"
	"github.com/cairnbackup/cairn/repo/internal/crashpoint"
	"github.com/cairnbackup/cairn/repo/internal/index"
	"github.com/cairnbackup/cairn/repo/pack"
	"github.com/cairnbackup/cairn/repo/snapshot"
	"github.com/cairnbackup/cairn/repo/storage"
)

// Session stores the blobs of one backup or push and commits its
// snapshot. Its methods are safe for concurrent use, so a pipeline's
// workers can share one Session.
//
// # Write order
//
// A blob goes into an open pack buffered in memory (one for data, one for
// trees). When a pack reaches the size target, or the next blob would
// take it past it, it is written (temporary file, fsync, link, fsync
// dir) and then indexed, by a goroutine of its own while the workers go
// on (see startWrite); until then its blobs are pending, found by Known
// and kept by a prune. A failed write fails the session. [Session.Commit]
// writes the remaining packs, syncs the index, and only then writes the
// snapshot file. So a snapshot file never names data that is not
// durable, and a crash before Commit leaves no snapshot; the packs it did
// write stay, are indexed at the next open, and are reused by the next
// backup.
//
// # Memory
//
// At most one open pack per blob type (each at most the pack size, or
// one blob alone), packWriters packs being written (a worker that fills
// a pack while that many are in flight waits), and one idle data pack
// buffer kept for reuse (freePacks).
//
// A Session that failed stays failed: every later call returns its first
// error.
type Session struct {
	r *Repository

	// wctx is the context of the session's pack writes: no caller's,
	// as a write is the session's (storePack); Abort ends it
	// (stopWrites) if they take longer than packWriteGrace.
	wctx       context.Context
	stopWrites context.CancelFunc

	mu      sync.Mutex
	cond    *sync.Cond           // signalled when a pack write ends
	open    [3]*openPack         // by blob type
	pending map[blob.Handle]bool // added but not yet indexed
	writing int                  // full packs taken from open: waiting to be written, or being written
	running int                  // pack writes under way (at most packWriters)
	err     error                // sticky failure
	stats   SessionStats
	done    bool                 // committed or aborted: no more adds
	relied  map[blob.Handle]bool // blobs the repository told this session it has: prune keeps them until the session ends
	repack  bool                 // a prune's session: blobs are added even if indexed, and their entries move to the new packs
}

// SessionStats counts what a session stored.
type SessionStats struct {
	BlobsAdded  uint64 // new blobs (not known to the repository before)
	BytesAdded  uint64 // their plaintext bytes
	StoredAdded uint64 // their bytes as stored (compressed and sealed)
	Packs       uint64 // packs written
}

// Added returns the figures a snapshot's summary records: new blobs,
// their plaintext bytes, their stored bytes.
func (st SessionStats) Added() (blobs, bytes, stored uint64) {
	return st.BlobsAdded, st.BytesAdded, st.StoredAdded
}

// openPack is a pack being filled: its Writer builds it in memory.
type openPack struct {
	w *pack.Writer
}

// freePacks recycles the buffers and writers of data packs, at most
// cap(freePacks) of them. A backup closes a 16 MiB pack several times a
// second; allocating each buffer afresh was nearly all of the memory a
// backup allocated (1.26 GB for the 1.5 GiB peers data set), and with
// it the kernel's page faults and zeroing. One idle buffer is enough:
// the open pack takes it when the pack being written is done.
var freePacks = make(chan *openPack, 1)

// packHeaderReserve is room for the sealed header and footer of a pack
// of 4096 entries; a data pack of more is written before its header
// would outgrow it (add: Writer.Fits), so its buffer never grows.
const packHeaderReserve = 4096*pack.EntrySize + pack.FooterSize + pack.MinEnvelope

// PackBufferSize is the memory one data pack takes while it is filled
// and written: what a session holds per pack in flight.
func (r *Repository) PackBufferSize() int { return r.openPackSize() }

// SessionPackMemory is the most memory the data packs of a busy session
// take: the open one, those being written (packWriters: one to a
// directory, two to an object store) and one idle for reuse.
func (r *Repository) SessionPackMemory() int64 {
	return int64(r.packWriters()+2) * int64(r.openPackSize())
}

// openPackSize is the capacity a data pack's buffer is allocated with:
// a pack is written before a blob would take it past PackSize, so a
// pack is at most PackSize plus its header, or one blob alone (a chunk
// of the chunker's maximum, if that is larger).
func (r *Repository) openPackSize() int {
	return max(r.cfg.PackSize, pack.PrefixSize+pack.MinEnvelope+r.cfg.Chunker.Max) + packHeaderReserve
}

// treePackStart is the capacity a tree pack's buffer starts with. Tree
// blobs are small and a backup has few of them (about 2 MiB of trees for
// 40 000 files), so tree packs grow as needed rather than take a data
// pack's buffer.
const treePackStart = 256 << 10

// newOpenPack returns an empty pack for blobs of type t. A data pack's
// buffer holds a full pack without growing (openPackSize).
func (r *Repository) newOpenPack(t blob.Type) *openPack {
	if t != blob.Data {
		return &openPack{w: pack.NewWriter(make([]byte, 0, treePackStart), r.key)}
	}
	select {
	case op := <-freePacks:
		if cap(op.w.Bytes()) == r.openPackSize() { // not another repository's size
			op.w.Reset(op.w.Bytes(), r.key)
			return op
		}
	default:
	}
	return &openPack{w: pack.NewWriter(make([]byte, 0, r.openPackSize()), r.key)}
}

// recycle offers op's buffer for another data pack. Only buffers of
// exactly the size newOpenPack allocates are kept: one that grew held an
// unusually large blob (up to 64 MiB, which a hostile node can send at
// will) and would stay that large for good, and a tree pack's is small.
func (r *Repository) recycle(op *openPack) {
	if cap(op.w.Bytes()) != r.openPackSize() {
		return
	}
	select {
	case freePacks <- op:
	default:
	}
}

// NewSession starts a session.
func (r *Repository) NewSession() *Session {
	s := &Session{r: r, pending: make(map[blob.Handle]bool), relied: make(map[blob.Handle]bool)}
	s.cond = sync.NewCond(&s.mu)
	s.wctx, s.stopWrites = context.WithCancel(context.Background())
	r.smu.Lock()
	if r.sessions == nil {
		r.sessions = map[*Session]time.Time{}
	}
	r.sessions[s] = r.now()
	r.smu.Unlock()
	return s
}

// end unregisters the session: prune no longer protects what it relied on.
func (s *Session) end() {
	s.stopWrites()
	s.r.smu.Lock()
	delete(s.r.sessions, s)
	s.r.smu.Unlock()
}

// appendInFlight appends to hs what a prune beginning now must keep for
// the session: the blobs it was told exist and those it added that are
// not yet indexed.
func (s *Session) appendInFlight(hs []blob.Handle) []blob.Handle {
	s.mu.Lock()
	defer s.mu.Unlock()
	for h := range s.relied {
		hs = append(hs, h)
	}
	for h := range s.pending {
		hs = append(hs, h)
	}
	return hs
}

// Known reports whether the repository or this session already has blob
// h, so the caller need not send or compress it.
func (s *Session) Known(h blob.Handle) (bool, error) {
	s.mu.Lock()
	ok := s.pending[h]
	s.mu.Unlock()
	if ok {
		return true, nil
	}
	// Looking up and recording that the session relies on the blob
	// happen together, under the gate, so a prune cannot drop the blob
	// in between.
	s.r.gate.RLock()
	defer s.r.gate.RUnlock()
	_, ok, err := s.r.idx.Lookup(h)
	if ok && err == nil {
		s.mu.Lock()
		s.relied[h] = true
		s.mu.Unlock()
		s.r.relyDuringPrune(h)
	}
	return ok, err
}

// SaveBlob stores plaintext data as a blob of type t unless the
// repository already has it, and returns its ID and whether it was added.
func (s *Session) SaveBlob(ctx context.Context, t blob.Type, data []byte) (blob.ID, bool, error) {
	h := blob.Handle{ID: blob.Hash(data), Type: t}
	if known, err := s.Known(h); err != nil || known {
		return h.ID, false, err
	}
	if len(data) > blob.MaxSize {
		return h.ID, false, fmt.Errorf("blob %s: %d bytes is more than the limit of %d", h, len(data), blob.MaxSize)
	}
	bp := payloadPool.Get().(*[]byte)
	payload, c := pack.Compress((*bp)[:0], data, s.r.level)
	added, err := s.add(h, c, payload, len(data))
	*bp = payload
	if cap(payload) <= 16<<20 {
		payloadPool.Put(bp)
	}
	return h.ID, added, err
}

// payloadPool recycles compression output: add copies the payload into
// the pack, so the buffer is free again once add returns.
var payloadPool = sync.Pool{New: func() any { return new([]byte) }}

// SavePrepared stores a blob that a node already compressed: payload is
// the blob's data compressed as c says, rawLen its plaintext length. The
// payload is decompressed and re-hashed first; a payload that does not
// hash to h.ID is refused with an error wrapping [blob.ErrCorrupt] and
// nothing of it is stored. A compressed payload must be smaller than its
// plaintext (otherwise it must be sent raw), so every stored envelope
// stays within what pack readers accept.
func (s *Session) SavePrepared(ctx context.Context, h blob.Handle, c pack.Compression, payload []byte, rawLen int, scratch []byte) (added bool, scratchOut []byte, err error) {
	if !h.Type.Valid() {
		return false, scratch, fmt.Errorf("blob %s: invalid type", h)
	}
	if c == pack.Zstd && len(payload) >= rawLen {
		return false, scratch, fmt.Errorf("blob %s: compressed payload of %d bytes is not smaller than its %d-byte plaintext: %w", h, len(payload), rawLen, blob.ErrCorrupt)
	}
	if c == pack.Raw && len(payload) == rawLen && blob.Hash(payload) == h.ID {
		// A raw payload is its plaintext: verified where it is, not
		// copied (a 64 MiB blob would cost 64 MiB more). Anything
		// else is verified, and refused, by VerifyPayload.
	} else if scratch, err = pack.VerifyPayload(scratch[:0], h, c, rawLen, payload); err != nil {
		return false, scratch, err
	}
	if known, err := s.Known(h); err != nil || known {
		return false, scratch, err
	}
	added, err = s.add(h, c, payload, rawLen)
	return added, scratch, err
}

func (s *Session) add(h blob.Handle, c pack.Compression, payload []byte, rawLen int) (bool, error) {
	if !h.Type.Valid() {
		return false, fmt.Errorf("blob %s: invalid type", h)
	}
	s.mu.Lock()
	defer s.mu.Unlock()
	var op *openPack
	for {
		// Checked again after every wait for a pack write (startWrite
		// lets go of s.mu): meanwhile another worker may have added
		// the blob or opened the next pack, or Commit may have taken
		// the open packs.
		if s.err != nil {
			return false, s.err
		}
		if s.done {
			return false, errors.New("session: add after commit or abort")
		}
		if s.pending[h] {
			return false, nil
		}
		op = s.open[h.Type]
		if op == nil || op.w.Count() == 0 || op.w.Size()+int64(pack.MinEnvelope+len(payload)) <= int64(s.r.cfg.PackSize) && (h.Type != blob.Data || op.w.Fits(len(payload))) {
			break
		}
		// The blob would overflow the open pack (its size, or for a
		// data pack the buffer it is built in, which is reused and
		// must not grow: a pack of many small blobs needs more header
		// than the buffer's reserve, and growing it copied the pack,
		// and dropped the buffer for a new one): that pack is written
		// first, and the blob begins the next.
		s.open[h.Type] = nil
		s.startWrite(op)
	}
	if op == nil {
		op = s.r.newOpenPack(h.Type)
		s.open[h.Type] = op
	}
	e, err := op.w.Add(h, c, payload, rawLen)
	if err != nil {
		s.err = err
		return false, err
	}
	s.pending[h] = true
	s.stats.BlobsAdded++
	s.stats.BytesAdded += uint64(rawLen)
	s.stats.StoredAdded += uint64(e.Length)
	if op.w.Size() >= int64(s.r.cfg.PackSize) || op.w.Count() >= pack.WriterMaxEntries {
		s.open[h.Type] = nil
		s.startWrite(op)
	}
	return true, nil
}

// startWrite writes the full pack op in a goroutine of its own, so the
// blob worker that filled it goes on hashing and compressing while the
// pack goes to the store (an fsync on a disk, a round trip of 16 MiB to
// an object store). At most packWriters writes are under way: the
// caller waits for one to end before it starts another, so a store
// slower than the workers holds them back and memory stays bounded. A
// write that fails fails the session; the next add, Flush or Commit
// returns its error, and no pack is written after it. op counts in
// s.writing from here, so Flush and Abort wait for it while it waits
// for its turn too. s.mu is held.
func (s *Session) startWrite(op *openPack) {
	s.writing++
	for s.running >= s.r.packWriters() && s.err == nil {
		if testPackWriteWait != nil {
			testPackWriteWait()
		}
		s.cond.Wait()
	}
	if s.err != nil {
		s.writing-- // the session has failed: no more packs
		s.cond.Broadcast()
		return
	}
	s.running++
	go s.writePack(op)
}

// testPackWriteWait, if set, is called whenever startWrite waits for a
// write to end (export_test.go).
var testPackWriteWait func()

// writePack finishes op, stores it, indexes its blobs and drops them
// from the pending set. startWrite has counted it in s.writing and
// s.running. The write is the session's, not the call's that filled the
// pack, and no caller's context ends it (storePack): a pipeline's ends
// when the pipeline does, before Commit, and a push's blobs stay stored
// when the node leaves without a commit.
func (s *Session) writePack(op *openPack) error {
	err := s.r.storePack(s.wctx, op, s.repack)
	s.mu.Lock()
	defer s.mu.Unlock()
	s.running--
	s.writing--
	s.cond.Broadcast()
	if err != nil {
		if s.err == nil {
			s.err = err
		}
		return err
	}
	s.stats.Packs++
	for _, e := range op.w.Entries() {
		delete(s.pending, e.Handle)
	}
	s.r.recycle(op)
	return nil
}

// storePack finishes a pack, writes it durably and indexes it. ctx is
// the session's, not the context of the operation that filled the pack:
// once begun, a pack write runs to its end, within the backend's own
// timeouts and retries (and packWriteGrace after an Abort), so that the
// pack is then both stored and indexed, or neither. On an object store a request the
// client gives up on may still be carried out (the store had the whole
// body when the client hung up), and a pack in the bucket but not in the
// index stays unindexed until the next open: check reports it, and a
// node killed mid-push made exactly that. Waiting for the answer, and
// asking again when it is lost, settles what the store holds.
func (r *Repository) storePack(ctx context.Context, op *openPack, move bool) error {
	id, size, err := op.w.Finish()
	if err != nil {
		return err
	}
	if err := r.checkSpace(size); err != nil {
		return fmt.Errorf("pack %s: %w", id.Short(), err)
	}
	err = r.be.Put(ctx, r.packHandle(id), bytes.NewReader(op.w.Bytes()))
	if err != nil && !errors.Is(err, storage.ErrExist) {
		return fmt.Errorf("pack %s: %w", id.Short(), err)
	}
	crashpoint.Hit("after-pack-stored")
	info := index.PackInfo{Size: size, Blobs: op.w.Count(), Created: r.now()}
	add := r.idx.AddPack
	if move {
		add = r.idx.MovePack
	}
	return add(id, info, packBlobs(id, op.w.Entries()))
}

func packBlobs(id blob.ID, entries []pack.Entry) []index.BlobEntry {
	out := make([]index.BlobEntry, len(entries))
	for i, e := range entries {
		out[i] = index.BlobEntry{Handle: e.Handle, Loc: index.Location{Pack: id, Offset: e.Offset, Length: e.Length, RawLength: e.RawLength, Type: e.Type}}
	}
	return out
}

// Flush writes every open pack and waits for pack writes in flight, so
// that every blob added before Flush was called is durable and indexed.
// The writes are the session's: ctx does not end them (see writePack).
func (s *Session) Flush(context.Context) error {
	return s.flush(false)
}

// flush is Flush; with end set it also closes the session to further
// adds in the same critical section that takes the open packs, so no
// blob can slip into a pack that is never written.
func (s *Session) flush(end bool) error {
	s.mu.Lock()
	defer s.mu.Unlock()
	if end {
		s.done = true
	}
	// s.open is read afresh for each type: startWrite may wait, and
	// meanwhile a worker (unless the session is done) may open a pack.
	for t := range s.open {
		if op := s.open[t]; op != nil {
			s.open[t] = nil
			s.startWrite(op)
		}
	}
	for s.writing > 0 {
		s.cond.Wait()
	}
	return s.err
}

// Stats returns what the session has stored so far.
func (s *Session) Stats() SessionStats {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.stats
}

// Added returns what the session added so far, as a snapshot's summary
// records it: new blobs, their plaintext bytes, their stored bytes
// (backup.Target).
func (s *Session) Added() (blobs, bytes, stored uint64) { return s.Stats().Added() }

// Commit makes every blob durable, then writes the snapshot record, and
// returns its ID. Only when Commit returns without error is the snapshot
// saved. The session takes no more blobs afterwards, even if Commit
// fails.
func (s *Session) Commit(ctx context.Context, sn *snapshot.Snapshot) (blob.ID, error) {
	defer s.end()
	if err := s.flush(true); err != nil {
		return blob.ID{}, err
	}
	return s.r.saveSnapshot(ctx, sn)
}

// Abort ends the session without a snapshot. Blobs in packs not yet
// full are dropped; full packs are written (Abort waits for them, also
// for those waiting for their turn), stay and are reused later. Writes
// still under way packWriteGrace after Abort began are ended: a store
// that stalls holds Abort that long at most.
func (s *Session) Abort() {
	grace := time.AfterFunc(packWriteGrace, s.stopWrites)
	defer grace.Stop()
	s.mu.Lock()
	s.done = true
	s.open = [3]*openPack{}
	for s.writing > 0 {
		s.cond.Wait()
	}
	s.mu.Unlock()
	s.end()
}

// packWriteGrace is how long Abort lets pack writes go on.
const packWriteGrace = 2 * time.Minute

// packWriters is how many packs a session writes at once (startWrite):
// one to a directory, where a write is mostly the fsync and one in flight
// already overlaps it with the workers (two or three measured the same);
// two to an object store, where a pack's upload is a round trip the store
// spends CPU on (two gave 13 % more first-backup throughput to SeaweedFS
// on loopback than writes made by the workers themselves; four no more
// than two and 30 MiB more RSS).
func (r *Repository) packWriters() int {
	if r.local == nil {
		return 2
	}
	return 1
}
