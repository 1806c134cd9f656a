package wire

import (
	"context"
	"errors"
	"fmt"
	"io"
	"runtime"
	"strings"
	"sync"
	"sync/atomic"
	"time"

	"github.com/cairnbackup/cairn/repo/blob"
	"github.com/cairnbackup/cairn/repo/internal/crashpoint"
	"github.com/cairnbackup/cairn/repo/pack"
	"github.com/cairnbackup/cairn/repo/snapshot"
)

// Client speaks the protocol to an appliance over one stream. It is safe
// for concurrent use: requests are pipelined and replies are matched by
// request number.
type Client struct {
	rw      io.ReadWriteCloser // the stream itself (Close, Abort)
	w       *Writer
	wmu     sync.Mutex
	welcome Welcome

	mu      sync.Mutex
	next    uint32
	waiting map[uint32]*waiter
	dead    error // set once the session is over
	done    chan struct{}

	// The bound on the server's silence (see DialTimeout).
	timeout time.Duration
	epoch   time.Time
	heard   atomic.Int64 // since epoch: when the server last sent or took bytes
	waits   int          // writes in progress, and the handshake; under mu
	watch   *time.Timer
	cut     error       // why the client ended the session itself; under mu
	stopCtx func() bool // stops the abort on ctx
}

type reply struct {
	t    Type
	body []byte
}

// waiter receives the replies to one request; gone is closed when the
// caller stopped waiting, so the reader never blocks on a full channel.
type waiter struct {
	ch   chan reply
	gone chan struct{}
}

// ErrClosed is returned by calls on a client whose session ended
// without an error from the server: the stream ended (the server closed
// it, or went away), at a frame boundary or inside a frame.
var ErrClosed = errors.New("wire: session closed")

// ErrSilent is matched (errors.Is) by the error of a session the client
// ended because the server was silent for longer than the timeout given
// to DialTimeout while the client waited for it.
var ErrSilent = errors.New("the server was silent")

// Aborter is a stream that can also be torn down at once (a network
// connection closed, a process killed), where Close may wait for an
// orderly end. A client ends a session it cuts short (a timeout, a
// cancelled context) with Abort when its stream has one, else with
// Close.
type Aborter interface {
	Abort() error
}

// Dial is DialTimeout without a bound on the server's silence.
func Dial(ctx context.Context, rw io.ReadWriteCloser, client, node string) (*Client, error) {
	return DialTimeout(ctx, rw, client, node, 0)
}

// DialTimeout performs the handshake on rw and starts reading replies.
//
// Whenever the client waits for the server (for the Welcome, for a reply
// to a request, for the stream to take a write) and the server neither
// sends a byte nor takes one for timeout, the client ends the session:
// every call returns an error matching ErrSilent. While the client waits
// for nothing (it reads files, compresses) there is no limit, and a
// server that answers or reads slowly but steadily is not cut off. Zero
// means no limit.
//
// Cancelling ctx ends the session at once, in the handshake or later:
// the stream is aborted and every call returns ctx's error. The caller
// closes rw if DialTimeout fails.
func DialTimeout(ctx context.Context, rw io.ReadWriteCloser, client, node string, timeout time.Duration) (*Client, error) {
	c := &Client{rw: rw, waiting: map[uint32]*waiter{}, done: make(chan struct{}), timeout: timeout, epoch: time.Now()}
	c.w = NewWriter(progress{c})
	r := NewReader(progress{c})
	c.begin() // waiting for the Welcome
	if timeout > 0 {
		c.mu.Lock() // check reads c.watch under mu
		c.watch = time.AfterFunc(timeout, c.check)
		c.mu.Unlock()
	}
	c.stopCtx = context.AfterFunc(ctx, func() { c.abort(ctx.Err()) })
	w, err := c.handshake(r, client, node)
	c.end()
	if err != nil {
		c.mu.Lock()
		if c.cut != nil {
			err = c.cut
		}
		c.dead = err
		c.mu.Unlock()
		c.stopCtx()
		close(c.done)
		return nil, err
	}
	c.welcome = *w
	go c.readLoop(r)
	return c, nil
}

// handshake sends Hello and reads the server's Welcome.
func (c *Client) handshake(r *Reader, client, node string) (*Welcome, error) {
	h := &Hello{MinVersion: MinVersion, MaxVersion: Version, Client: client, Node: node}
	if err := c.w.WriteFrame(TypeHello, h.Append(nil)); err != nil {
		return nil, err
	}
	if err := c.w.Flush(); err != nil {
		return nil, err
	}
	t, body, err := r.Next(nil)
	if err != nil {
		if errors.Is(err, io.EOF) || errors.Is(err, io.ErrUnexpectedEOF) {
			return nil, ErrClosed
		}
		return nil, fmt.Errorf("wire: handshake: %w", err)
	}
	switch t {
	case TypeWelcome:
	case TypeError:
		if m, err := DecodeError(body); err == nil {
			return nil, m
		}
		return nil, fmt.Errorf("wire: handshake: bad error frame")
	default:
		return nil, fmt.Errorf("wire: handshake: expected welcome, got %s", t)
	}
	w, err := DecodeWelcome(body)
	if err != nil {
		return nil, err
	}
	if w.Version < MinVersion || w.Version > Version {
		return nil, fmt.Errorf("wire: the server chose protocol version %d; this client speaks %d to %d", w.Version, MinVersion, Version)
	}
	return w, nil
}

// progress is the stream as the client's reader and writer see it: every
// byte read, and every piece of a write the stream takes, shows that the
// server is alive. A write is cut into pieces so that a large frame
// taken slowly but steadily shows progress.
type progress struct{ c *Client }

// writePiece is the most written to the stream at once.
const writePiece = 64 << 10

func (p progress) Read(b []byte) (int, error) {
	n, err := p.c.rw.Read(b)
	if n > 0 {
		p.c.alive()
	}
	return n, err
}

func (p progress) Write(b []byte) (int, error) {
	p.c.begin()
	defer p.c.end()
	n := 0
	for n < len(b) {
		k, err := p.c.rw.Write(b[n:min(len(b), n+writePiece)])
		n += k
		if k > 0 {
			p.c.alive()
		}
		if err != nil {
			return n, err
		}
	}
	return n, nil
}

func (c *Client) now() int64 { return int64(time.Since(c.epoch)) }

// alive records that the server sent or took bytes.
func (c *Client) alive() { c.heard.Store(c.now()) }

// busy reports whether the client waits for the server; c.mu is held.
func (c *Client) busy() bool { return c.waits > 0 || len(c.waiting) > 0 }

// begin marks a wait for the server that is not a request (a write, the
// handshake); the server's silence counts from the first wait.
func (c *Client) begin() {
	c.mu.Lock()
	if !c.busy() {
		c.alive()
	}
	c.waits++
	c.mu.Unlock()
}

func (c *Client) end() {
	c.mu.Lock()
	c.waits--
	c.mu.Unlock()
}

// check runs when the silence timer fires: it ends a session whose
// server has been silent for the timeout while the client waited, and
// otherwise sets the timer for the earliest moment that could happen.
func (c *Client) check() {
	c.mu.Lock()
	if c.dead != nil || c.cut != nil {
		c.mu.Unlock()
		return
	}
	next := c.timeout
	if c.busy() {
		quiet := time.Duration(c.now() - c.heard.Load())
		if quiet >= c.timeout {
			c.mu.Unlock()
			c.abort(fmt.Errorf("wire: %w for %s", ErrSilent, c.timeout))
			return
		}
		next = c.timeout - quiet
	}
	c.watch.Reset(next)
	c.mu.Unlock()
}

// abort ends the session at once with err, unless it ended already.
func (c *Client) abort(err error) {
	c.mu.Lock()
	over := c.dead != nil || c.cut != nil
	if !over {
		c.cut = err
	}
	c.mu.Unlock()
	if over {
		return
	}
	if a, ok := c.rw.(Aborter); ok {
		a.Abort()
	} else {
		c.rw.Close()
	}
}

// Err returns why the session ended, or nil while it lasts.
func (c *Client) Err() error {
	c.mu.Lock()
	defer c.mu.Unlock()
	return c.dead
}

// Welcome returns what the server said about itself and this node.
func (c *Client) Welcome() Welcome { return c.welcome }

func (c *Client) readLoop(r *Reader) {
	var err error
	for {
		var t Type
		var body []byte
		t, body, err = r.NextWhole(wholeReply)
		if err != nil {
			break
		}
		if t == TypeError {
			m, derr := DecodeError(body)
			if derr != nil {
				err = derr
			} else {
				err = m
			}
			break
		}
		req, ok := replyReq(t, body)
		if !ok {
			err = fmt.Errorf("wire: unexpected %s from the server: %w", t, ErrProtocol)
			break
		}
		c.mu.Lock()
		w, known := c.waiting[req]
		c.mu.Unlock()
		if !known && req > c.lastReq() {
			err = fmt.Errorf("wire: reply to unknown request %d: %w", req, ErrProtocol)
			break
		}
		if w != nil {
			select {
			case w.ch <- reply{t: t, body: body}:
			case <-w.gone: // the caller gave up: drop the reply
			}
		}
	}
	if errors.Is(err, io.EOF) || errors.Is(err, io.ErrUnexpectedEOF) {
		err = ErrClosed
	}
	c.mu.Lock()
	if c.cut != nil {
		err = c.cut // the stream ended because the client cut it
	}
	c.dead = err
	for req, w := range c.waiting {
		close(w.ch)
		delete(c.waiting, req)
	}
	c.mu.Unlock()
	close(c.done)
}

// wholeReply is the longest reply body the client allocates at once
// when its header arrives (the largest chunk of the default chunker
// parameters, and a header): a restore's blobs arrive without copies.
const wholeReply = 8<<20 + 64

// replyReq extracts the request number every reply starts with.
func replyReq(t Type, body []byte) (uint32, bool) {
	switch t {
	case TypeSnapshots, TypeBlob, TypeStoredBlob, TypeHave, TypeCommitted:
		if len(body) < 4 {
			return 0, false
		}
		return uint32(body[0])<<24 | uint32(body[1])<<16 | uint32(body[2])<<8 | uint32(body[3]), true
	}
	return 0, false
}

// start registers a request and returns its number and reply channel.
func (c *Client) start(buffered int) (uint32, chan reply, error) {
	c.mu.Lock()
	defer c.mu.Unlock()
	if c.dead != nil {
		return 0, nil, c.dead
	}
	if !c.busy() {
		c.alive()
	}
	c.next++
	w := &waiter{ch: make(chan reply, buffered), gone: make(chan struct{})}
	c.waiting[c.next] = w
	return c.next, w.ch, nil
}

func (c *Client) lastReq() uint32 {
	c.mu.Lock()
	defer c.mu.Unlock()
	return c.next
}

// finish forgets a request; replies still arriving for it are dropped.
func (c *Client) finish(req uint32) {
	c.mu.Lock()
	if w, ok := c.waiting[req]; ok {
		close(w.gone)
		delete(c.waiting, req)
	}
	c.mu.Unlock()
}

func (c *Client) send(t Type, body []byte, flush bool) error {
	return c.sendParts(t, flush, body)
}

// sendParts is send of a frame whose body is the parts one after the
// other.
func (c *Client) sendParts(t Type, flush bool, parts ...[]byte) error {
	c.wmu.Lock()
	err := c.w.WriteFrame(t, parts...)
	if err == nil && flush {
		err = c.w.Flush()
	}
	c.wmu.Unlock()
	if err != nil {
		return c.why(err)
	}
	return nil
}

// whyWait bounds how long a failed write waits for the server's reason.
const whyWait = 5 * time.Second

// why explains a failed write. A server that ends a session sends an
// Error frame and then closes the stream, so a client still sending gets
// a write error ("EOF", "closed pipe") that says nothing; the reason the
// session ended (the server's Error, read by then or just after, the
// stream's end, a timeout) is the one to report.
func (c *Client) why(err error) error {
	select {
	case <-c.done:
	case <-time.After(whyWait):
	}
	c.mu.Lock()
	defer c.mu.Unlock()
	if c.dead != nil {
		return c.dead
	}
	return err
}

// wait returns the next reply on ch, or the session's error.
func (c *Client) wait(ctx context.Context, ch chan reply) (reply, error) {
	select {
	case r, ok := <-ch:
		if !ok {
			c.mu.Lock()
			err := c.dead
			c.mu.Unlock()
			return reply{}, err
		}
		return r, nil
	case <-ctx.Done():
		return reply{}, ctx.Err()
	}
}

// ListSnapshots returns this node's snapshots of plan ("" for all).
func (c *Client) ListSnapshots(ctx context.Context, plan string) ([]SnapshotItem, error) {
	req, ch, err := c.start(4)
	if err != nil {
		return nil, err
	}
	defer c.finish(req)
	if err := c.send(TypeListSnapshots, (&ListSnapshots{Req: req, Plan: plan}).Append(nil), true); err != nil {
		return nil, err
	}
	var items []SnapshotItem
	for {
		r, err := c.wait(ctx, ch)
		if err != nil {
			return nil, err
		}
		if r.t != TypeSnapshots {
			return nil, fmt.Errorf("wire: expected snapshots, got %s: %w", r.t, ErrProtocol)
		}
		m, err := DecodeSnapshots(r.body)
		if err != nil {
			return nil, err
		}
		items = append(items, m.Items...)
		if !m.More {
			return items, nil
		}
	}
}

// LoadBlob fetches a blob and checks that it hashes to its ID. It makes
// the client a BlobLoader for parent trees.
func (c *Client) LoadBlob(ctx context.Context, h blob.Handle, buf []byte) ([]byte, error) {
	req, ch, err := c.start(1)
	if err != nil {
		return buf[:0], err
	}
	defer c.finish(req)
	if err := c.send(TypeLoadBlob, (&LoadBlob{Req: req, Handle: h}).Append(nil), true); err != nil {
		return buf[:0], err
	}
	r, err := c.wait(ctx, ch)
	if err != nil {
		return buf[:0], err
	}
	data, err := c.blobReply(r, h)
	if err != nil {
		return buf[:0], err
	}
	return append(buf[:0], data...), nil
}

// Commit sends the snapshot record and waits until the server reports it
// durable.
func (c *Client) Commit(ctx context.Context, record []byte) (blob.ID, error) {
	req, ch, err := c.start(1)
	if err != nil {
		return blob.ID{}, err
	}
	defer c.finish(req)
	if err := c.send(TypeCommit, (&Commit{Req: req, Record: record}).Append(nil), true); err != nil {
		return blob.ID{}, err
	}
	r, err := c.wait(ctx, ch)
	if err != nil {
		return blob.ID{}, err
	}
	m, err := DecodeCommitted(r.body)
	if err != nil {
		return blob.ID{}, err
	}
	return m.Snapshot, nil
}

// Fail ends the session with an Error (code internal) carrying why the
// push failed on this side, instead of Bye, and closes the stream: the
// appliance records the push as failed with msg (at most 4000 bytes
// are sent). Like Close, a silent server holds it no longer than the
// timeout.
func (c *Client) Fail(msg string) error {
	if len(msg) > 4000 {
		msg = strings.ToValidUTF8(msg[:4000], "")
	}
	c.begin()
	c.send(TypeError, (&ErrorMsg{Code: CodeInternal, Message: msg}).Append(nil), true)
	err := c.rw.Close()
	<-c.done
	c.end()
	c.stopCtx()
	return err
}

// Close says bye and closes the stream; a silent server holds it no
// longer than the timeout.
func (c *Client) Close() error {
	c.begin()
	c.send(TypeBye, nil, true)
	err := c.rw.Close()
	<-c.done
	c.end()
	c.stopCtx()
	return err
}

// Uploader sends blobs for one push. SaveBlob only hashes the blob and
// queues a copy; a batcher asks the server which queued blobs it lacks
// (thousands per question, several questions in flight) and compressors
// send only those, so there is no round trip per blob. Memory: at most
// Budget bytes of queued plaintext, plus one compressed payload per
// compressor.
type Uploader struct {
	c     *Client
	level pack.Level

	queue chan *item
	todo  chan *item // missing on the server: compress and send

	mu       sync.Mutex
	cond     *sync.Cond
	seen     map[blob.Handle]bool // queued or sent this push
	budget   int                  // bytes of plaintext that may still be queued
	pending  int                  // items queued, asked about or being sent
	err      error
	stats    UploadStats
	wg       sync.WaitGroup
	inflight chan struct{}
}

// UploadStats counts what an Uploader did.
type UploadStats struct {
	Blobs     uint64 // blobs handed to SaveBlob
	Sent      uint64 // blobs the server lacked, sent
	BytesSent uint64 // their compressed bytes
	BytesRaw  uint64 // their plaintext bytes
}

type item struct {
	h    blob.Handle
	data []byte
}

// Budget bounds the plaintext an Uploader holds queued. 32 MiB keeps a
// push as fast as 64 did (a cold push of the 1.54 GiB peers tree over
// loopback: 12.1-14.1 s both) at 145-159 MiB peak RSS instead of
// 184-220; it holds four of the largest chunks, and more than a fast
// link's bandwidth-delay product.
const Budget = 32 << 20

// NewUploader starts an uploader; Close it (after Flush) to stop its
// goroutines.
func (c *Client) NewUploader(level pack.Level) *Uploader {
	u := &Uploader{
		c: c, level: level,
		queue:    make(chan *item, 1024),
		todo:     make(chan *item, 64),
		seen:     map[blob.Handle]bool{},
		budget:   Budget,
		inflight: make(chan struct{}, max(1, int(c.welcome.MaxInflight))),
	}
	u.cond = sync.NewCond(&u.mu)
	u.wg.Add(1)
	go u.batcher()
	for range runtime.GOMAXPROCS(0) {
		u.wg.Add(1)
		go u.compressor()
	}
	return u
}

// Known reports true: the server checks at commit that every referenced
// blob is stored, so reusing a parent's chunk list costs no round trip.
// The node may reference those chunks: it loaded the parent's trees from
// the server in this session, which makes them its own there.
func (u *Uploader) Known(blob.Handle) (bool, error) { return true, nil }

// SaveBlob queues data for sending unless this push queued it already,
// and returns its ID. It blocks while the queue is full.
func (u *Uploader) SaveBlob(ctx context.Context, t blob.Type, data []byte) (blob.ID, bool, error) {
	h := blob.Handle{ID: blob.Hash(data), Type: t}
	u.mu.Lock()
	defer u.mu.Unlock()
	if u.err != nil {
		return h.ID, false, u.err
	}
	u.stats.Blobs++
	if u.seen[h] {
		return h.ID, false, nil
	}
	for u.budget < len(data) && u.pending > 0 && u.err == nil {
		u.cond.Wait()
	}
	if u.err != nil {
		return h.ID, false, u.err
	}
	u.seen[h] = true
	u.budget -= len(data)
	u.pending++
	it := &item{h: h, data: append([]byte(nil), data...)}
	u.mu.Unlock()
	select {
	case u.queue <- it:
	case <-ctx.Done():
		u.mu.Lock()
		u.done(it)
		return h.ID, false, ctx.Err()
	}
	u.mu.Lock()
	return h.ID, true, nil
}

// done releases an item's budget; u.mu is held.
func (u *Uploader) done(it *item) {
	u.budget += len(it.data)
	u.pending--
	u.cond.Broadcast()
}

func (u *Uploader) fail(err error) {
	u.mu.Lock()
	if u.err == nil {
		u.err = err
	}
	u.cond.Broadcast()
	u.mu.Unlock()
}

// batcher groups queued blobs into have-blobs questions.
func (u *Uploader) batcher() {
	defer u.wg.Done()
	defer close(u.todo)
	maxBatch := max(1, int(u.c.welcome.MaxBatch))
	var inner sync.WaitGroup
	defer inner.Wait()
	if testHookBatcherStart != nil {
		testHookBatcherStart()
	}
	for it := range u.queue {
		batch := []*item{it}
	fill:
		for len(batch) < maxBatch {
			select {
			case more, ok := <-u.queue:
				if !ok {
					break fill
				}
				batch = append(batch, more)
			default:
				break fill
			}
		}
		u.inflight <- struct{}{}
		inner.Add(1)
		go func() {
			defer inner.Done()
			defer func() { <-u.inflight }()
			u.ask(batch)
		}()
	}
}

// testHookBatcherStart, set only by tests, runs before the batcher reads
// its queue.
var testHookBatcherStart func()

// ask sends one have-blobs question and routes the answers.
func (u *Uploader) ask(batch []*item) {
	release := func(items []*item) {
		u.mu.Lock()
		for _, it := range items {
			u.done(it)
		}
		u.mu.Unlock()
	}
	req, ch, err := u.c.start(1)
	if err != nil {
		u.fail(err)
		release(batch)
		return
	}
	defer u.c.finish(req)
	hs := make([]blob.Handle, len(batch))
	for i, it := range batch {
		hs[i] = it.h
	}
	if err := u.c.send(TypeHaveBlobs, (&HaveBlobs{Req: req, Handles: hs}).Append(nil), true); err != nil {
		u.fail(err)
		release(batch)
		return
	}
	r, err := u.c.wait(context.Background(), ch)
	var have *Have
	if err == nil {
		have, err = DecodeHave(r.body)
	}
	if err == nil && len(have.Has) != len(batch) {
		err = fmt.Errorf("wire: have answers %d of %d blobs: %w", len(have.Has), len(batch), ErrProtocol)
	}
	if err != nil {
		u.fail(err)
		release(batch)
		return
	}
	var known []*item
	for i, it := range batch {
		if have.Has[i] {
			known = append(known, it)
		} else {
			u.todo <- it
		}
	}
	release(known)
}

// compressor compresses missing blobs and sends them.
func (u *Uploader) compressor() {
	defer u.wg.Done()
	var payload, head []byte
	for it := range u.todo {
		var c pack.Compression
		payload, c = pack.Compress(payload[:0], it.data, u.level)
		m := &PutBlob{Handle: it.h, Compression: uint8(c), RawLength: uint32(len(it.data)), Payload: payload}
		head = m.AppendHead(head[:0])
		err := u.c.sendParts(TypePutBlob, false, head, payload)
		crashpoint.Hit("wire-put-blob")
		u.mu.Lock()
		if err == nil {
			u.stats.Sent++
			u.stats.BytesSent += uint64(len(payload))
			u.stats.BytesRaw += uint64(len(it.data))
		} else if u.err == nil {
			u.err = err
		}
		u.done(it)
		u.mu.Unlock()
	}
}

// Flush waits until every queued blob was asked about and, if missing,
// sent; then it flushes the stream.
func (u *Uploader) Flush(ctx context.Context) error {
	stop := context.AfterFunc(ctx, func() { u.fail(ctx.Err()) })
	defer stop()
	u.mu.Lock()
	for u.pending > 0 && u.err == nil {
		u.cond.Wait()
	}
	err := u.err
	u.mu.Unlock()
	if err != nil {
		return err
	}
	u.c.wmu.Lock()
	err = u.c.w.Flush()
	u.c.wmu.Unlock()
	if err != nil {
		return u.c.why(err)
	}
	return nil
}

// Close stops the uploader's goroutines. Call Flush first to send
// everything.
func (u *Uploader) Close() {
	close(u.queue)
	u.wg.Wait()
}

// Added returns what the push added, as its snapshot's summary records
// it: the blobs the appliance lacked and were sent, their plaintext
// bytes and their compressed bytes (backup.Target).
func (u *Uploader) Added() (blobs, bytes, stored uint64) {
	st := u.Stats()
	return st.Sent, st.BytesRaw, st.BytesSent
}

// Commit sends the snapshot record (Client.Commit) once Flush has sent
// every blob, and returns the ID the appliance stored it under: the
// record's own, or another when the appliance dated the record itself
// because this node's clock is off (see clock.go).
func (u *Uploader) Commit(ctx context.Context, sn *snapshot.Snapshot) (blob.ID, error) {
	rec, _, err := snapshot.Encode(sn)
	if err != nil {
		return blob.ID{}, err
	}
	return u.c.Commit(ctx, rec)
}

// Stats returns what the uploader did so far.
func (u *Uploader) Stats() UploadStats {
	u.mu.Lock()
	defer u.mu.Unlock()
	return u.stats
}
