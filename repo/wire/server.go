package wire

import (
	"context"
	"encoding/binary"
	"errors"
	"fmt"
	"io"
	"slices"
	"strings"
	"sync"
	"time"

	"github.com/cairnbackup/cairn/repo/blob"
	"github.com/cairnbackup/cairn/repo/pack"
	"github.com/cairnbackup/cairn/repo/snapshot"
	"github.com/cairnbackup/cairn/repo/tree"
	"golang.org/x/sync/semaphore"
)

// Backend is what a Server needs from the repository. The appliance
// adapts *repo.Repository to it.
type Backend interface {
	// Info describes the repository to clients.
	Info() Info
	// ListSnapshots returns the snapshots of node (all nodes if node is
	// "") and plan (all if ""), oldest first, as encoded records.
	ListSnapshots(ctx context.Context, node, plan string) ([]SnapshotItem, error)
	// LoadBlob returns a blob's verified plaintext.
	LoadBlob(ctx context.Context, h blob.Handle, buf []byte) ([]byte, error)
	// Begin starts storing the blobs of one snapshot.
	Begin() Store
}

// Store receives the blobs and the snapshot of one push. *repo.Session
// satisfies it.
type Store interface {
	Known(h blob.Handle) (bool, error)
	SavePrepared(ctx context.Context, h blob.Handle, c pack.Compression, payload []byte, rawLen int, scratch []byte) (bool, []byte, error)
	Flush(ctx context.Context) error
	Commit(ctx context.Context, sn *snapshot.Snapshot) (blob.ID, error)
	Abort()
}

// Info is what a Welcome tells a client about the repository.
type Info struct {
	Repo                         blob.ID
	ChunkMin, ChunkAvg, ChunkMax uint32
	ChunkerSeed                  [32]byte
}

// SessionConfig describes the node a server session serves.
type SessionConfig struct {
	Node        string
	Perms       Perm
	Isolated    bool
	MaxBatch    int
	IdleTimeout time.Duration
	// Buffers is how many PutBlob frames may be in verification at once
	// (each holds one frame body); zero means 3.
	Buffers int
	// Blobs, if set, is shared by every session of a process: it bounds
	// the memory of PutBlob frames being read, verified and stored across
	// all of them, so many nodes sending the largest blobs at once cannot
	// exhaust the appliance's memory.
	Blobs *BlobBudget
	// Now is the server's clock (nil: time.Now). A committed snapshot's
	// time must lie within [session start − ClockSkew, Now + ClockSkew];
	// otherwise the server dates it at the session's start (see
	// PushStats.Redated). ClockSkew zero means snapshot.ClockSkew.
	Now       func() time.Time
	ClockSkew time.Duration
	// Authorized, if set, is asked before each request (Hello included)
	// whether the node may still make it: the appliance revokes a
	// session whose key or permissions a reloaded configuration took
	// away. Its error ends the session with a permission error. It must
	// be cheap: it runs once per frame.
	Authorized func() error
}

// BlobBudget bounds the memory that PutBlob frames of the sessions sharing
// it take at once: a frame's cost (its body and the copies made while it
// is verified and stored, estimated from its header) is taken before its
// body is read and given back when the blob is stored. A session waiting
// for budget reads nothing more, so its node is paced by the stream's
// flow control.
type BlobBudget struct {
	sem  *semaphore.Weighted
	size int64
}

// NewBlobBudget returns a BlobBudget of size bytes; it is raised to what
// the largest frame costs, so any single frame fits.
func NewBlobBudget(size int64) *BlobBudget {
	size = max(size, 4*MaxBlobBody+2*blob.MaxSize)
	return &BlobBudget{sem: semaphore.NewWeighted(size), size: size}
}

// acquire takes n bytes, waiting until they are free or ctx ends.
func (b *BlobBudget) acquire(ctx context.Context, n int) (release func(), err error) {
	if b == nil {
		return func() {}, nil
	}
	w := min(int64(n), b.size)
	if err := b.sem.Acquire(ctx, w); err != nil {
		return nil, err
	}
	var once sync.Once
	return func() { once.Do(func() { b.sem.Release(w) }) }, nil
}

// putBlobCost estimates the memory a PutBlob frame of n body bytes takes
// until it is stored: the body and three more copies of the payload as it
// is sealed (plaintext envelope, sealed envelope) and copied into its
// pack; for a compressed payload also the plaintext it is decompressed to
// for verification and the decoder's window, each up to its RawLength
// (read from the body's header before the body is).
func putBlobCost(r *Reader, n int) int {
	h, err := r.PeekBody(putBlobHeader)
	if err != nil || len(h) < putBlobHeader {
		return 4*n + 2*blob.MaxSize
	}
	if h[HandleSize] == CompressionRaw {
		return 4 * n
	}
	return 4*n + 2*min(int(binary.BigEndian.Uint32(h[HandleSize+1:])), blob.MaxSize)
}

// keepBufMax is the largest frame buffer a session keeps for the next
// frame; a larger one (a rare large blob) is left to the garbage
// collector rather than held for the rest of the session.
const keepBufMax = 4 << 20

func recycle(body []byte) []byte {
	if cap(body) > keepBufMax {
		return nil
	}
	return body[:0]
}

// NodeError is the failure a client reported by ending its session with
// an Error frame: its push failed on its side (a source it could not
// read, a before command that failed). Message is the node's text,
// bounded by the frame (4096 bytes); it is the node's word, not the
// appliance's.
type NodeError struct {
	Message string
}

func (e *NodeError) Error() string { return "the node reported: " + e.Message }

// PushStats is what a session did, for the appliance's log line.
type PushStats struct {
	Snapshots   []blob.ID
	BlobsSent   uint64 // PutBlob frames received
	BytesSent   uint64 // their payload bytes
	BlobsStored uint64 // new to the repository
	// Pushed says the node asked which blobs to send, sent one or
	// committed a snapshot: the session was a backup, not only a
	// listing or a restore.
	Pushed bool
	// Plans are the plans of the commits the session received, in
	// order: Plans[i] is the plan of Snapshots[i]; one more is the plan
	// of a commit that failed.
	Plans []string
	// Listed are the plans the session's ListSnapshots named (each
	// once, in order): what a session that failed before a commit
	// worked on.
	Listed []string

	// Redated are the snapshots the server dated itself: the node's
	// clock is off.
	Redated []Redated
}

// packKeeper is a Backend that can keep the packs a session reads open
// until it ends (a repository in a directory).
type packKeeper interface {
	KeepPacksOpen(ctx context.Context) (context.Context, func())
}

// Serve runs one session on rw for the node described by sc until the
// client says Bye, the stream ends, ctx is cancelled or an error ends it.
// Every PutBlob payload is decompressed and re-hashed before it is stored;
// a mismatch ends the session with an Error and nothing of that blob is
// kept. A snapshot is acknowledged only after it is durable, and only if
// every blob its trees reference is stored and the node may reference
// (see trust.go). Memory: Buffers frame bodies (those above 4 MiB are not
// kept between frames; with sc.Blobs, what all sessions' blobs take
// together is bounded) plus the blob IDs the node may reference: whole
// IDs of trees, 8-byte prefixes of chunks (see [blob.IDSet]); each set
// holds only IDs of blobs the repository has. A session silent for
// sc.IdleTimeout, between frames or inside one, is ended.
func Serve(ctx context.Context, rw io.ReadWriter, b Backend, sc SessionConfig) (PushStats, error) {
	if sc.Buffers <= 0 {
		sc.Buffers = 3
	}
	if sc.MaxBatch <= 0 || sc.MaxBatch > MaxHandles {
		sc.MaxBatch = 4096
	}
	if k, ok := b.(packKeeper); ok {
		// The blobs a restore --from loads come pack after pack.
		var release func()
		ctx, release = k.KeepPacksOpen(ctx)
		defer release()
	}
	ctx, cancel := context.WithCancelCause(ctx)
	defer cancel(nil)
	s := &session{
		b: b, sc: sc, ctx: ctx, cancel: cancel,
		w:     NewWriter(rw),
		trees: map[blob.ID]bool{},
		bufs:  make(chan []byte, sc.Buffers),
	}
	s.start = s.now()
	for range sc.Buffers {
		s.bufs <- nil
	}
	if c, ok := rw.(io.Closer); ok {
		s.close = func() { c.Close() }
	}
	s.r = NewReader(&aliveReader{r: rw, s: s})
	s.cond = sync.NewCond(&s.mu)
	if sc.IdleTimeout > 0 {
		// An idle stream is closed under the reader (when it can be),
		// so a stalled client cannot hold a session forever.
		s.idle = time.AfterFunc(sc.IdleTimeout, func() {
			cancel(fmt.Errorf("no frame for %s: idle timeout", sc.IdleTimeout))
			if c, ok := rw.(io.Closer); ok {
				c.Close()
			}
		})
		defer s.idle.Stop()
	}
	err := s.run()
	cancel(err)
	s.wait()
	s.reporters.Wait() // the client gets the Error before the stream ends
	if s.store != nil {
		s.store.Abort()
	}
	return s.stats, err
}

type session struct {
	b      Backend
	sc     SessionConfig
	ctx    context.Context
	cancel context.CancelCauseFunc
	r      *Reader
	w      *Writer
	wmu    sync.Mutex
	idle   *time.Timer
	start  time.Time // when the session began, by the server's clock
	// version is the protocol version picked in the handshake.
	version uint16

	// trees and data are the blobs this node may load: those reachable
	// from its own snapshots, learnt as it lists and walks them. present
	// are the chunks have-blobs told it the repository has (never for an
	// isolated node). See trust.go for what each lets the node reference.
	tmu     sync.Mutex
	trees   map[blob.ID]bool
	data    blob.IDSet
	present blob.IDSet

	store Store
	bufs  chan []byte
	// blobBuf holds the plaintext of the blob being sent (loadBlob, on
	// the session's goroutine only): at most one blob, reused.
	blobBuf []byte
	close   func() // closes the stream under a blocked reader; may be nil

	mu        sync.Mutex
	cond      *sync.Cond
	verifying int
	failed    error
	reported  bool           // an Error frame was sent
	reporters sync.WaitGroup // goroutines sending an Error frame
	sent      sentSet        // blobs this node sent in this session
	stats     PushStats
}

// codedError is reported to the client with its code.
type codedError struct {
	code ErrorCode
	msg  string
}

func (e *codedError) Error() string { return e.msg }

func coded(code ErrorCode, format string, args ...any) error {
	return &codedError{code: code, msg: fmt.Sprintf(format, args...)}
}

func (s *session) send(t Type, body ...[]byte) error {
	s.wmu.Lock()
	defer s.wmu.Unlock()
	if err := s.w.WriteFrame(t, body...); err != nil {
		return err
	}
	return s.w.Flush()
}

// aliveReader restarts the session's idle timer whenever bytes arrive,
// so that the idle timeout is on silence: a large frame that arrives
// slowly but steadily is not cut off. Only the session's run goroutine
// reads, and only while the timer runs (waiting for a frame or inside
// one), so restarting it here never re-arms a stopped timer.
type aliveReader struct {
	r io.Reader
	s *session
}

func (a *aliveReader) Read(p []byte) (int, error) {
	n, err := a.r.Read(p)
	if n > 0 && a.s.idle != nil {
		a.s.idle.Reset(a.s.sc.IdleTimeout)
	}
	return n, err
}

// fail reports err to the client (best effort, once) and returns it.
func (s *session) fail(err error) error {
	s.report(err)
	return err
}

// report sends err as an Error frame unless one was sent already, and
// says whether it sent it.
func (s *session) report(err error) bool {
	s.mu.Lock()
	done := s.reported
	s.reported = true
	s.mu.Unlock()
	if done {
		return false
	}
	var ce *codedError
	code, msg := CodeInternal, err.Error()
	if errors.As(err, &ce) {
		code, msg = ce.code, ce.msg
	}
	if len(msg) > 4000 {
		msg = strings.ToValidUTF8(msg[:4000], "")
	}
	s.send(TypeError, (&ErrorMsg{Code: code, Message: msg}).Append(nil))
	return true
}

func (s *session) run() error {
	t, body, err := s.r.Next(nil)
	if errors.Is(err, ErrProtocol) {
		return s.fail(coded(CodeProtocol, "%v", err))
	}
	if err != nil {
		if cause := context.Cause(s.ctx); cause != nil {
			return s.fail(cause) // the idle timeout
		}
		return fmt.Errorf("wire: read hello: %w", err)
	}
	if t != TypeHello {
		return s.fail(coded(CodeProtocol, "expected hello, got %s", t))
	}
	if err := s.authorized(); err != nil {
		return s.fail(err)
	}
	h, err := DecodeHello(body)
	if err != nil {
		return s.fail(coded(CodeProtocol, "%v", err))
	}
	s.version = min(h.MaxVersion, Version)
	if s.version < h.MinVersion || s.version < MinVersion {
		return s.fail(coded(CodeUnsupported, "no common protocol version: the client speaks %d to %d, the server %d to %d", h.MinVersion, h.MaxVersion, MinVersion, Version))
	}
	if h.Node != "" && h.Node != s.sc.Node {
		return s.fail(coded(CodePermissionDenied, "this key belongs to node %s, not %s", s.sc.Node, h.Node))
	}
	info := s.b.Info()
	wel := &Welcome{Version: s.version, Node: s.sc.Node, Perms: s.sc.Perms, Repo: info.Repo,
		ChunkMin: info.ChunkMin, ChunkAvg: info.ChunkAvg, ChunkMax: info.ChunkMax, ChunkerSeed: info.ChunkerSeed,
		Isolated: s.sc.Isolated, MaxBatch: uint32(s.sc.MaxBatch), MaxInflight: 8}
	if err := s.send(TypeWelcome, wel.Append(nil)); err != nil {
		return err
	}
	for {
		if s.idle != nil {
			s.idle.Reset(s.sc.IdleTimeout)
		}
		if err := s.err(); err != nil {
			return s.fail(err)
		}
		// A PutBlob body goes to a verification goroutine, so every
		// frame is read into a buffer of its own from the bounded set.
		var buf []byte
		select {
		case buf = <-s.bufs:
		case <-s.ctx.Done():
			return s.fail(context.Cause(s.ctx))
		}
		release := func() {}
		if pt, n, err := s.r.Peek(); err == nil && pt == TypePutBlob {
			// A blob's memory is budgeted before its body is read;
			// waiting for budget is not silence.
			if s.idle != nil {
				s.idle.Stop()
			}
			if release, err = s.sc.Blobs.acquire(s.ctx, putBlobCost(s.r, n)); err != nil {
				s.bufs <- buf
				return s.fail(context.Cause(s.ctx))
			}
			if s.idle != nil {
				s.idle.Reset(s.sc.IdleTimeout) // the body must keep coming
			}
		}
		t, body, err := s.r.Next(buf)
		if s.idle != nil {
			// The limit is on silence between frames, not on how
			// long a request (a commit's flush and walk) takes.
			s.idle.Stop()
		}
		if err != nil {
			release()
			s.bufs <- buf
			if cause := context.Cause(s.ctx); cause != nil {
				return cause
			}
			if errors.Is(err, io.EOF) {
				return errors.New("wire: the client went away without saying bye")
			}
			if errors.Is(err, ErrProtocol) {
				return s.fail(coded(CodeProtocol, "%v", err))
			}
			return err
		}
		if err := s.authorized(); err != nil {
			release()
			s.bufs <- recycle(body)
			return s.fail(err)
		}
		if t == TypePutBlob || t == TypeHaveBlobs || t == TypeCommit {
			s.mu.Lock()
			s.stats.Pushed = true
			s.mu.Unlock()
		}
		if t == TypePutBlob {
			if err := s.putBlob(body, release); err != nil {
				return s.fail(err)
			}
			continue
		}
		release()
		err = s.handle(t, body)
		s.bufs <- recycle(body)
		if t == TypeBye && err == nil {
			// A blob still being verified may yet be refused.
			s.wait()
			if err = s.err(); err == nil {
				return nil
			}
		}
		if err != nil {
			return s.fail(err)
		}
	}
}

// authorized asks SessionConfig.Authorized whether the node may still
// make requests.
func (s *session) authorized() error {
	if s.sc.Authorized == nil {
		return nil
	}
	if err := s.sc.Authorized(); err != nil {
		return coded(CodePermissionDenied, "%v", err)
	}
	return nil
}

func (s *session) err() error {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.failed
}

func (s *session) handle(t Type, body []byte) error {
	switch t {
	case TypeBye:
		return decoded(body, DecodeBye, func(*Bye) error { return nil })
	case TypeListSnapshots:
		return decoded(body, DecodeListSnapshots, s.listSnapshots)
	case TypeLoadBlob:
		return decoded(body, DecodeLoadBlob, s.loadBlob)
	case TypeHaveBlobs:
		return decoded(body, DecodeHaveBlobs, s.haveBlobs)
	case TypeCommit:
		return decoded(body, DecodeCommit, s.commit)
	case TypeError:
		return decoded(body, DecodeError, s.clientFailed)
	}
	return coded(CodeProtocol, "unexpected %s from a client", t)
}

// decoded decodes a frame's body with decode and hands the message to
// handle; a body that does not decode is a protocol error.
func decoded[M any](body []byte, decode func([]byte) (M, error), handle func(M) error) error {
	m, err := decode(body)
	if err != nil {
		return coded(CodeProtocol, "%v", err)
	}
	return handle(m)
}

// clientFailed ends the session when the client reports that its push
// failed on its side. Nothing is answered.
func (s *session) clientFailed(m *ErrorMsg) error {
	s.mu.Lock()
	s.reported = true
	s.mu.Unlock()
	return &NodeError{Message: m.Message}
}

func (s *session) listSnapshots(m *ListSnapshots) error {
	if m.Plan != "" && !slices.Contains(s.stats.Listed, m.Plan) && len(s.stats.Listed) < 64 {
		s.mu.Lock()
		s.stats.Listed = append(s.stats.Listed, m.Plan)
		s.mu.Unlock()
	}
	node := s.sc.Node
	if s.sc.Perms.Has(PermAdmin) {
		node = ""
	}
	items, err := s.b.ListSnapshots(s.ctx, node, m.Plan)
	if err != nil {
		return err
	}
	s.tmu.Lock()
	for _, it := range items {
		if sn, err := snapshot.Decode(it.Record); err == nil {
			s.trees[sn.Tree] = true
		}
	}
	s.tmu.Unlock()
	const page = 16 << 20 // of records per frame
	for start := 0; ; {
		size, end := 0, start
		for end < len(items) && (end == start || size+len(items[end].Record)+64 < page) {
			size += len(items[end].Record) + 64
			end++
		}
		msg := &Snapshots{Req: m.Req, More: end < len(items), Items: items[start:end]}
		if err := s.send(TypeSnapshots, msg.Append(nil)); err != nil {
			return err
		}
		if end >= len(items) {
			return nil
		}
		start = end
	}
}

// loadBlob serves a tree reachable from the node's own snapshots or, with
// read permission, a data blob of such a tree. Admin may load anything.
func (s *session) loadBlob(m *LoadBlob) error {
	h := m.Handle
	s.tmu.Lock()
	allowed := s.sc.Perms.Has(PermAdmin) ||
		h.Type == blob.Tree && s.trees[h.ID] ||
		h.Type == blob.Data && s.sc.Perms.Has(PermRead) && s.data.Has(h.ID)
	s.tmu.Unlock()
	if !allowed && h.Type == blob.Data && !s.sc.Perms.Has(PermRead) {
		return coded(CodePermissionDenied, "node %s may not load data blobs: it needs the read permission", s.sc.Node)
	}
	if !allowed {
		return coded(CodePermissionDenied, "blob %s is not part of node %s's snapshots", h, s.sc.Node)
	}
	if st, ok := s.b.(storedLoader); ok && s.version >= 2 && h.Type == blob.Data {
		// A data blob goes as stored: the node decompresses and
		// re-hashes it (stored.go). A tree is decoded here first.
		return s.loadStored(st, m)
	}
	return s.loadPlain(m)
}

// loadPlain answers m with the blob's plaintext; the caller checked that
// the node may load it.
func (s *session) loadPlain(m *LoadBlob) error {
	h := m.Handle
	// The buffer is the session's: the blob is sent before the next
	// request is read.
	data, err := s.b.LoadBlob(s.ctx, h, s.blobBuf)
	if cap(data) <= blob.MaxSize {
		s.blobBuf = data[:0]
	}
	if errors.Is(err, blob.ErrNotFound) {
		return coded(CodeNotFound, "%v", err)
	}
	if err != nil {
		return err
	}
	if h.Type == blob.Tree {
		if t, err := tree.Decode(data); err == nil {
			s.tmu.Lock()
			for _, n := range t.Nodes {
				switch n.Type {
				case tree.Dir:
					s.trees[n.Subtree] = true
				case tree.File:
					for _, c := range n.Content {
						s.data.Add(c.ID)
					}
				}
			}
			s.tmu.Unlock()
		}
	}
	msg := &Blob{Req: m.Req, Data: data}
	return s.send(TypeBlob, msg.AppendHead(nil), msg.Data)
}

// storedLoader is a Backend that can give a blob as stored, authenticated
// but neither decompressed nor re-hashed (a repository).
type storedLoader interface {
	// LoadStored appends the content of blob h's envelope, once it
	// authenticates, to buf[:0]: one compression byte, then the payload.
	// It also returns the plaintext's length.
	LoadStored(ctx context.Context, h blob.Handle, buf []byte) ([]byte, int, error)
}

// loadStored answers m with a StoredBlob; the caller checked that the
// node may load it.
func (s *session) loadStored(st storedLoader, m *LoadBlob) error {
	env, rawLen, err := st.LoadStored(s.ctx, m.Handle, s.blobBuf)
	if cap(env) <= blob.MaxSize+1 {
		s.blobBuf = env[:0]
	}
	if errors.Is(err, blob.ErrNotFound) {
		return coded(CodeNotFound, "%v", err)
	}
	if err != nil {
		return err
	}
	if len(env) < 1 || rawLen < 0 || payloadProblem(env[0], uint64(rawLen), len(env)-1) != "" {
		// Stored in a form the protocol does not carry (a zstd frame
		// no shorter than its plaintext): send the plaintext.
		return s.loadPlain(m)
	}
	msg := &StoredBlob{Req: m.Req, Compression: env[0], RawLength: uint32(rawLen), Payload: env[1:]}
	return s.send(TypeStoredBlob, msg.AppendHead(nil), msg.Payload)
}

func (s *session) ensureStore() error {
	if !s.sc.Perms.Has(PermPush) && !s.sc.Perms.Has(PermAdmin) {
		return coded(CodePermissionDenied, "node %s may not push", s.sc.Node)
	}
	if s.store == nil {
		s.store = s.b.Begin()
	}
	return nil
}

func (s *session) haveBlobs(m *HaveBlobs) error {
	if len(m.Handles) > s.sc.MaxBatch {
		return coded(CodeLimitExceeded, "have-blobs of %d handles exceeds the limit %d", len(m.Handles), s.sc.MaxBatch)
	}
	if err := s.ensureStore(); err != nil {
		return err
	}
	has := make([]bool, len(m.Handles))
	for i, h := range m.Handles {
		ok, err := s.have(h)
		if err != nil {
			return err
		}
		has[i] = ok
	}
	return s.send(TypeHave, (&Have{Req: m.Req, Has: has}).Append(nil))
}

// putBlob hands a blob to a verification goroutine; body is the frame's own
// buffer and goes back to the pool, and its budget is released, when
// verification is done.
func (s *session) putBlob(body []byte, release func()) error {
	m, err := DecodePutBlob(body)
	if err != nil {
		release()
		s.bufs <- recycle(body)
		return coded(CodeProtocol, "%v", err)
	}
	if err := s.ensureStore(); err != nil {
		release()
		s.bufs <- recycle(body)
		return err
	}
	s.mu.Lock()
	s.verifying++
	s.stats.BlobsSent++
	s.stats.BytesSent += uint64(len(m.Payload))
	s.mu.Unlock()
	store := s.store
	go func() {
		added, _, err := store.SavePrepared(s.ctx, m.Handle, pack.Compression(m.Compression), m.Payload, int(m.RawLength), nil)
		s.bufs <- recycle(body)
		release()
		s.mu.Lock()
		defer s.mu.Unlock()
		s.verifying--
		if err == nil {
			s.sent.add(m.Handle)
		}
		if added {
			s.stats.BlobsStored++
		}
		if err != nil && s.failed == nil {
			if errors.Is(err, blob.ErrCorrupt) {
				err = coded(CodeBadBlob, "%v", err)
			}
			s.failed = err
			s.cancel(err)
			// Tell the client now, not when its next frame arrives,
			// and end the stream under the reader.
			s.reporters.Add(1)
			go func() {
				defer s.reporters.Done()
				if s.report(err) && s.close != nil {
					s.close()
				}
			}()
		}
		s.cond.Broadcast()
	}()
	return nil
}

// wait blocks until no blob is being verified.
func (s *session) wait() {
	s.mu.Lock()
	for s.verifying > 0 {
		s.cond.Wait()
	}
	s.mu.Unlock()
}

func (s *session) commit(m *Commit) error {
	if err := s.ensureStore(); err != nil {
		return err
	}
	s.wait()
	if err := s.err(); err != nil {
		return err
	}
	sn, err := snapshot.Decode(m.Record)
	if err != nil {
		return coded(CodeProtocol, "commit: %v", err)
	}
	s.mu.Lock()
	s.stats.Plans = append(s.stats.Plans, sn.Plan)
	s.mu.Unlock()
	if sn.Node != s.sc.Node && !s.sc.Perms.Has(PermAdmin) {
		return coded(CodePermissionDenied, "node %s may not commit a snapshot of node %s", s.sc.Node, sn.Node)
	}
	nodeTime, redated := s.boundTime(sn)
	// Make this push's blobs readable, then check that the snapshot is
	// complete before it is acknowledged.
	if err := s.store.Flush(s.ctx); err != nil {
		return err
	}
	if err := s.complete(sn.Tree); err != nil {
		return err
	}
	id, err := s.store.Commit(s.ctx, sn)
	s.store = nil
	if err != nil {
		return err
	}
	if redated {
		s.noteRedated(id, nodeTime, sn)
	}
	s.mu.Lock()
	s.stats.Snapshots = append(s.stats.Snapshots, id)
	s.mu.Unlock()
	s.tmu.Lock()
	s.trees[sn.Tree] = true
	s.tmu.Unlock()
	return s.send(TypeCommitted, (&Committed{Req: m.Req, Snapshot: id}).Append(nil))
}
