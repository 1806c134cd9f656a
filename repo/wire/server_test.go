package wire_test

import (
	"bytes"
	"encoding/binary"
	"errors"
	"fmt"
	"io"
	"net"
	"path/filepath"
	"slices"
	"sync"
	"testing"
	"time"

	"github.com/cairnbackup/cairn/repo"
	"github.com/cairnbackup/cairn/repo/appliance"
	"github.com/cairnbackup/cairn/repo/backup"
	"github.com/cairnbackup/cairn/repo/blob"
	"github.com/cairnbackup/cairn/repo/pack"
	"github.com/cairnbackup/cairn/repo/repotest"
	"github.com/cairnbackup/cairn/repo/snapshot"
	"github.com/cairnbackup/cairn/repo/tree"
	"github.com/cairnbackup/cairn/repo/wire"
)

// backend is the appliance's adapter of a repository to wire.Backend.
type backend = appliance.Backend

// config is the session configuration of most tests: node lyra, a small
// MaxBatch, and an idle timeout long enough never to fire.
func config(perms wire.Perm) wire.SessionConfig {
	return wire.SessionConfig{Node: "lyra", Perms: perms, MaxBatch: 64, IdleTimeout: time.Minute}
}

// session is one wire.Serve on the server end of a net.Pipe. The test
// owns the goroutine: cleanup closes the client end and waits for Serve
// to return.
type session struct {
	conn  net.Conn // the client's end
	srv   *countingConn
	done  chan struct{}
	stats wire.PushStats
	err   error
}

func serve(t testing.TB, r *repo.Repository, sc wire.SessionConfig) *session {
	t.Helper()
	cli, srv := net.Pipe()
	s := &session{conn: cli, srv: &countingConn{Conn: srv}, done: make(chan struct{})}
	go func() {
		defer close(s.done)
		s.stats, s.err = wire.Serve(t.Context(), s.srv, backend{R: r}, sc)
		// Like the appliance, end the stream with the session.
		srv.Close()
	}()
	t.Cleanup(func() {
		cli.Close()
		<-s.done
	})
	return s
}

// wait blocks until Serve returns and returns what it returned.
func (s *session) wait() (wire.PushStats, error) {
	<-s.done
	return s.stats, s.err
}

// countingConn counts the frames the server reads, by type, by parsing
// the frame headers in the bytes that go by.
type countingConn struct {
	net.Conn
	mu     sync.Mutex
	counts map[wire.Type]int
	hdr    [wire.HeaderSize]byte
	nhdr   int    // header bytes of the current frame seen so far
	skip   uint64 // body bytes of the current frame still to come
	// batches are the handle counts of the have-blobs frames, read from
	// the first 8 body bytes (req and count).
	batches []int
	head    []byte // the start of a have-blobs body, while it is read
}

func (c *countingConn) Read(p []byte) (int, error) {
	n, err := c.Conn.Read(p)
	c.mu.Lock()
	c.scan(p[:n])
	c.mu.Unlock()
	return n, err
}

func (c *countingConn) scan(b []byte) {
	if c.counts == nil {
		c.counts = map[wire.Type]int{}
	}
	for len(b) > 0 {
		if c.skip > 0 {
			k := min(uint64(len(b)), c.skip)
			if c.head != nil {
				c.head = append(c.head, b[:min(k, uint64(8-len(c.head)))]...)
				if len(c.head) == 8 {
					c.batches = append(c.batches, int(binary.BigEndian.Uint32(c.head[4:])))
					c.head = nil
				}
			}
			c.skip -= k
			b = b[k:]
			continue
		}
		k := copy(c.hdr[c.nhdr:], b)
		c.nhdr += k
		b = b[k:]
		if c.nhdr < wire.HeaderSize {
			continue
		}
		c.counts[wire.Type(c.hdr[4])]++
		c.skip = uint64(binary.BigEndian.Uint32(c.hdr[:4])) - 1
		c.nhdr = 0
		if wire.Type(c.hdr[4]) == wire.TypeHaveBlobs {
			c.head = make([]byte, 0, 8)
		}
	}
}

// haveBatches returns the handle counts of the have-blobs frames the
// server read, in order.
func (c *countingConn) haveBatches() []int {
	c.mu.Lock()
	defer c.mu.Unlock()
	return slices.Clone(c.batches)
}

// count returns how many frames of type t the server read.
func (c *countingConn) count(t wire.Type) int {
	c.mu.Lock()
	defer c.mu.Unlock()
	return c.counts[t]
}

// rawClient writes frames by hand and reads the server's frames in a
// goroutine of its own (a net.Pipe write blocks until the other end
// reads, so reading must never wait for writing).
type rawClient struct {
	t      *testing.T
	conn   net.Conn
	w      *wire.Writer
	frames chan frame
}

type frame struct {
	t    wire.Type
	body []byte
	err  error
}

func newRawClient(t *testing.T, s *session) *rawClient {
	t.Helper()
	c := &rawClient{t: t, conn: s.conn, w: wire.NewWriter(s.conn), frames: make(chan frame, 16)}
	go func() {
		defer close(c.frames)
		r := wire.NewReader(s.conn)
		for {
			typ, body, err := r.Next(nil)
			c.frames <- frame{t: typ, body: body, err: err}
			if err != nil {
				return
			}
		}
	}()
	t.Cleanup(func() {
		s.conn.Close()
		for range c.frames {
		}
	})
	return c
}

// send writes one frame and flushes it; it returns when the server has
// read it.
func (c *rawClient) send(typ wire.Type, body []byte) {
	c.t.Helper()
	if err := c.w.WriteFrame(typ, body); err != nil {
		c.t.Fatalf("write %s: %v", typ, err)
	}
	if err := c.w.Flush(); err != nil {
		c.t.Fatalf("flush %s: %v", typ, err)
	}
}

// trySend is send for a frame the server may never read: it may have
// ended the session (and closed the stream) already.
func (c *rawClient) trySend(typ wire.Type, body []byte) {
	c.t.Helper()
	err := c.w.WriteFrame(typ, body)
	if err == nil {
		err = c.w.Flush()
	}
	if err != nil && !errors.Is(err, io.ErrClosedPipe) {
		c.t.Fatalf("write %s: %v", typ, err)
	}
}

// sendBytes writes b as it is, for frames WriteFrame refuses to write.
func (c *rawClient) sendBytes(b []byte) {
	c.t.Helper()
	if _, err := c.conn.Write(b); err != nil {
		c.t.Fatalf("write: %v", err)
	}
}

func (c *rawClient) next() frame {
	c.t.Helper()
	f, ok := <-c.frames
	if !ok {
		c.t.Fatal("no more frames")
	}
	return f
}

// expect reads the next frame, which must be of type typ.
func (c *rawClient) expect(typ wire.Type) []byte {
	c.t.Helper()
	f := c.next()
	if f.err != nil {
		c.t.Fatalf("expected %s, got %v", typ, f.err)
	}
	if f.t != typ {
		msg := ""
		if f.t == wire.TypeError {
			if m, err := wire.DecodeError(f.body); err == nil {
				msg = ": " + m.Error()
			}
		}
		c.t.Fatalf("expected %s, got %s%s", typ, f.t, msg)
	}
	return f.body
}

// expectError reads an Error frame with exactly this code and message,
// then the end of the stream: an Error ends the session.
func (c *rawClient) expectError(code wire.ErrorCode, msg string) {
	c.t.Helper()
	m, err := wire.DecodeError(c.expect(wire.TypeError))
	if err != nil {
		c.t.Fatal(err)
	}
	if m.Code != code || m.Message != msg {
		c.t.Fatalf("error (%s) %q, want (%s) %q", m.Code, m.Message, code, msg)
	}
	c.expectEOF()
}

// expectEOF checks that the server closed the stream between frames.
func (c *rawClient) expectEOF() {
	c.t.Helper()
	if f := c.next(); !errors.Is(f.err, io.EOF) {
		c.t.Fatalf("expected the end of the stream, got %s %v", f.t, f.err)
	}
}

func (c *rawClient) hello(node string) *wire.Welcome {
	c.t.Helper()
	c.send(wire.TypeHello, (&wire.Hello{MinVersion: 1, MaxVersion: 1, Client: "cairn test", Node: node}).Append(nil))
	w, err := wire.DecodeWelcome(c.expect(wire.TypeWelcome))
	if err != nil {
		c.t.Fatal(err)
	}
	return w
}

func (c *rawClient) haveBlobs(req uint32, hs ...blob.Handle) []bool {
	c.t.Helper()
	c.send(wire.TypeHaveBlobs, (&wire.HaveBlobs{Req: req, Handles: hs}).Append(nil))
	m, err := wire.DecodeHave(c.expect(wire.TypeHave))
	if err != nil {
		c.t.Fatal(err)
	}
	if m.Req != req {
		c.t.Fatalf("have answers req %d, want %d", m.Req, req)
	}
	return m.Has
}

func (c *rawClient) putBlob(h blob.Handle, data []byte) {
	c.t.Helper()
	c.send(wire.TypePutBlob, (&wire.PutBlob{Handle: h, Compression: wire.CompressionRaw, RawLength: uint32(len(data)), Payload: data}).Append(nil))
}

func (c *rawClient) commit(req uint32, rec []byte) blob.ID {
	c.t.Helper()
	c.send(wire.TypeCommit, (&wire.Commit{Req: req, Record: rec}).Append(nil))
	m, err := wire.DecodeCommitted(c.expect(wire.TypeCommitted))
	if err != nil {
		c.t.Fatal(err)
	}
	if m.Req != req {
		c.t.Fatalf("committed answers req %d, want %d", m.Req, req)
	}
	return m.Snapshot
}

// record encodes a snapshot of node with root tree root.
func record(t *testing.T, node string, root blob.ID) []byte {
	t.Helper()
	rec, _, err := snapshot.Encode(&snapshot.Snapshot{Version: snapshot.Version, Time: time.Now(), Node: node, Paths: []string{"/data"}, Tree: root})
	if err != nil {
		t.Fatal(err)
	}
	return rec
}

// fileTree encodes a tree holding one file "f" made of the given chunks.
func fileTree(t *testing.T, chunks ...[]byte) []byte {
	t.Helper()
	n := tree.Node{Name: "f", Type: tree.File, Mode: 0o644}
	var all []byte
	for _, c := range chunks {
		n.Content = append(n.Content, tree.Chunk{ID: blob.Hash(c), Size: uint64(len(c))})
		n.Size += uint64(len(c))
		all = append(all, c...)
	}
	n.FileHash = blob.Hash(all)
	b, err := tree.Encode(nil, &tree.Tree{Nodes: []tree.Node{n}})
	if err != nil {
		t.Fatal(err)
	}
	return b
}

func dataHandle(b []byte) blob.Handle { return blob.Handle{ID: blob.Hash(b), Type: blob.Data} }
func treeHandle(b []byte) blob.Handle { return blob.Handle{ID: blob.Hash(b), Type: blob.Tree} }

// state is what a test compares to show that the repository did not
// change: the packs in the index and on disk, the indexed blobs and the
// snapshots.
type state struct {
	packs, files []blob.ID
	blobs        []blob.Handle
	snapshots    []blob.ID
}

func repoState(t *testing.T, r *repo.Repository) state {
	t.Helper()
	var s state
	if err := r.PackRecords(func(p repo.PackRecord) error { s.packs = append(s.packs, p.ID); return nil }); err != nil {
		t.Fatal(err)
	}
	files, err := r.StoredPacks(t.Context())
	if err != nil {
		t.Fatal(err)
	}
	for id := range files {
		s.files = append(s.files, id)
	}
	if err := r.IndexedBlobs(func(h blob.Handle, _ repo.Location) error { s.blobs = append(s.blobs, h); return nil }); err != nil {
		t.Fatal(err)
	}
	list, err := r.Snapshots(t.Context(), snapshot.Filter{})
	if err != nil {
		t.Fatal(err)
	}
	for _, e := range list {
		s.snapshots = append(s.snapshots, e.ID)
	}
	cmp := func(a, b blob.ID) int { return bytes.Compare(a[:], b[:]) }
	slices.SortFunc(s.packs, cmp)
	slices.SortFunc(s.files, cmp)
	slices.SortFunc(s.blobs, func(a, b blob.Handle) int { return cmp(a.ID, b.ID) })
	return s
}

func assertState(t *testing.T, r *repo.Repository, want state) {
	t.Helper()
	got := repoState(t, r)
	if !slices.Equal(got.packs, want.packs) || !slices.Equal(got.files, want.files) ||
		!slices.Equal(got.blobs, want.blobs) || !slices.Equal(got.snapshots, want.snapshots) {
		t.Fatalf("the repository changed:\n got %d packs, %d pack files, %d blobs, snapshots %v\nwant %d packs, %d pack files, %d blobs, snapshots %v",
			len(got.packs), len(got.files), len(got.blobs), got.snapshots, len(want.packs), len(want.files), len(want.blobs), want.snapshots)
	}
}

// pushDirect backs up files for node straight into the repository and
// commits a snapshot; it returns the snapshot's entry.
func pushDirect(t testing.TB, r *repo.Repository, node string, files map[string]string) snapshot.Entry {
	t.Helper()
	src := filepath.Join(t.TempDir(), "src")
	repotest.WriteTree(t, src, files)
	s := r.NewSession()
	res, err := backup.Run(t.Context(), s, []string{src}, backup.Options{Params: r.ChunkerParams(), Table: r.ChunkerTable()})
	if err != nil {
		t.Fatal(err)
	}
	sn := &snapshot.Snapshot{Version: snapshot.Version, Time: time.Now(), Node: node, Paths: []string{src}, Tree: res.Tree}
	id, err := s.Commit(t.Context(), sn)
	if err != nil {
		t.Fatal(err)
	}
	return snapshot.Entry{ID: id, Snapshot: sn}
}

// A PutBlob whose payload does not give the blob its handle names is
// refused with Error 4 and ends the session; nothing of it is stored,
// whatever the client sends next.
func TestServeRefusesBadBlob(t *testing.T) {
	r := repotest.New(t)
	claimed := []byte("the blob the client claims to send")
	h := dataHandle(claimed)
	other := bytes.Repeat([]byte("z"), 200)
	zst, c := pack.Compress(nil, other, pack.LevelFastest)
	if c != pack.Zstd {
		t.Fatal("test data does not compress")
	}
	mismatch := fmt.Sprintf("blob %s: plaintext does not match its id", h)
	for _, tc := range []struct {
		name string
		put  wire.PutBlob
		then wire.Type // what the client sends after the blob
		msg  string
	}{
		{"raw then commit", wire.PutBlob{Handle: h, RawLength: 4, Payload: []byte("evil")}, wire.TypeCommit, mismatch},
		{"raw then bye", wire.PutBlob{Handle: h, RawLength: 4, Payload: []byte("evil")}, wire.TypeBye, mismatch},
		{"zstd of other data", wire.PutBlob{Handle: h, Compression: wire.CompressionZstd, RawLength: uint32(len(other)), Payload: zst}, wire.TypeCommit, mismatch},
		{"zstd of the wrong length", wire.PutBlob{Handle: h, Compression: wire.CompressionZstd, RawLength: uint32(len(other)) + 1, Payload: zst},
			wire.TypeCommit, fmt.Sprintf("blob %s: decompressed to %d bytes, want %d: corrupt", h, len(other), len(other)+1)},
	} {
		t.Run(tc.name, func(t *testing.T) {
			before := repoState(t, r)
			s := serve(t, r, config(wire.PermPush))
			c := newRawClient(t, s)
			c.hello("lyra")
			c.send(wire.TypePutBlob, tc.put.Append(nil))
			// The refusal may come before or after the server reads the
			// next frame, but it must come.
			switch tc.then {
			case wire.TypeCommit:
				c.trySend(wire.TypeCommit, (&wire.Commit{Req: 1, Record: record(t, "lyra", h.ID)}).Append(nil))
			case wire.TypeBye:
				c.trySend(wire.TypeBye, nil)
			}
			c.expectError(wire.CodeBadBlob, tc.msg)
			st, err := s.wait()
			if err == nil || err.Error() != tc.msg {
				t.Fatalf("serve: %v, want %q", err, tc.msg)
			}
			if st.BlobsSent != 1 || st.BlobsStored != 0 || len(st.Snapshots) != 0 {
				t.Fatalf("stats %+v", st)
			}
			if has, err := r.HasBlobs([]blob.Handle{h}); err != nil || has[0] {
				t.Fatalf("the refused blob is indexed (%v, %v)", has, err)
			}
			assertState(t, r, before)
		})
	}
}

// Malformed frames, before or after Hello, are answered with Error 1 (or
// Error 7 for no common version) and end the session; the repository
// does not change.
func TestServeRefusesMalformedFrames(t *testing.T) {
	r := repotest.New(t)
	pushDirect(t, r, "lyra", map[string]string{"a": "alpha"})
	hello := func(magic string, minV, maxV uint16) []byte {
		b := (&wire.Hello{MinVersion: minV, MaxVersion: maxV, Client: "cairn test", Node: "lyra"}).Append(nil)
		return append([]byte(magic), b[len(wire.Magic):]...)
	}
	header := func(length uint32, typ byte) []byte {
		return append(binary.BigEndian.AppendUint32(nil, length), typ)
	}
	for _, tc := range []struct {
		name  string
		hello bool // send a proper Hello first
		send  func(c *rawClient)
		code  wire.ErrorCode
		msg   string
	}{
		{"unknown type", true, func(c *rawClient) { c.sendBytes(header(1, 0x7f)) },
			wire.CodeProtocol, "wire: type(0x7f) frame of length 1: unknown type"},
		{"zero length", true, func(c *rawClient) { c.sendBytes([]byte{0, 0, 0, 0}) },
			wire.CodeProtocol, "wire: frame of length 0: no type byte"},
		{"put-blob shorter than its header", true, func(c *rawClient) { c.send(wire.TypePutBlob, []byte{1, 2, 3, 4, 5, 6, 7, 8, 9, 10}) },
			wire.CodeProtocol, "wire: put-blob: truncated handle id at offset 1: need 32 bytes, have 9"},
		{"put-blob over the limit", true, func(c *rawClient) { c.sendBytes(header(wire.MaxBlobBody+2, byte(wire.TypePutBlob))) },
			wire.CodeProtocol, fmt.Sprintf("wire: put-blob frame of length %d: body of %d bytes exceeds %d", wire.MaxBlobBody+2, wire.MaxBlobBody+1, wire.MaxBlobBody)},
		{"server frame from the client", true, func(c *rawClient) { c.send(wire.TypeHave, (&wire.Have{Req: 1, Has: []bool{true}}).Append(nil)) },
			wire.CodeProtocol, "unexpected have from a client"},
		{"second hello", true, func(c *rawClient) { c.send(wire.TypeHello, hello(wire.Magic, 1, 1)) },
			wire.CodeProtocol, "unexpected hello from a client"},
		{"bye with a body", true, func(c *rawClient) { c.send(wire.TypeBye, []byte{0}) },
			wire.CodeProtocol, "wire: bye: 1 trailing byte"},
		{"unknown type first", false, func(c *rawClient) { c.sendBytes(header(1, 0x7f)) },
			wire.CodeProtocol, "wire: type(0x7f) frame of length 1: unknown type"},
		{"other frame first", false, func(c *rawClient) {
			c.send(wire.TypeHaveBlobs, (&wire.HaveBlobs{Req: 1, Handles: []blob.Handle{dataHandle(nil)}}).Append(nil))
		},
			wire.CodeProtocol, "expected hello, got have-blobs"},
		{"wrong magic", false, func(c *rawClient) { c.send(wire.TypeHello, hello("cairn-wirf", 1, 1)) },
			wire.CodeProtocol, `wire: hello: bad magic "cairn-wirf"`},
		{"no common version", false, func(c *rawClient) { c.send(wire.TypeHello, hello(wire.Magic, 3, 4)) },
			wire.CodeUnsupported, "no common protocol version: the client speaks 3 to 4, the server 1 to 2"},
		{"another node", false, func(c *rawClient) {
			c.send(wire.TypeHello, (&wire.Hello{MinVersion: 1, MaxVersion: 1, Client: "cairn test", Node: "vega"}).Append(nil))
		}, wire.CodePermissionDenied, "this key belongs to node lyra, not vega"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			before := repoState(t, r)
			s := serve(t, r, config(wire.PermPush|wire.PermRead))
			c := newRawClient(t, s)
			if tc.hello {
				c.hello("lyra")
			}
			tc.send(c)
			c.expectError(tc.code, tc.msg)
			if _, err := s.wait(); err == nil || err.Error() != tc.msg {
				t.Fatalf("serve: %v, want %q", err, tc.msg)
			}
			assertState(t, r, before)
		})
	}
}

// A node without push may not ask about or send blobs.
func TestServeNoPush(t *testing.T) {
	r := repotest.New(t)
	data := []byte("data")
	for _, tc := range []struct {
		name string
		send func(c *rawClient)
	}{
		{"have-blobs", func(c *rawClient) {
			c.send(wire.TypeHaveBlobs, (&wire.HaveBlobs{Req: 1, Handles: []blob.Handle{dataHandle(data)}}).Append(nil))
		}},
		{"put-blob", func(c *rawClient) { c.putBlob(dataHandle(data), data) }},
		{"commit", func(c *rawClient) {
			c.send(wire.TypeCommit, (&wire.Commit{Req: 1, Record: record(t, "lyra", blob.Hash(data))}).Append(nil))
		}},
	} {
		t.Run(tc.name, func(t *testing.T) {
			before := repoState(t, r)
			s := serve(t, r, config(wire.PermRead))
			c := newRawClient(t, s)
			if w := c.hello("lyra"); w.Perms != wire.PermRead {
				t.Fatalf("welcome perms %s", w.Perms)
			}
			tc.send(c)
			c.expectError(wire.CodePermissionDenied, "node lyra may not push")
			if _, err := s.wait(); err == nil || err.Error() != "node lyra may not push" {
				t.Fatalf("serve: %v", err)
			}
			assertState(t, r, before)
		})
	}
}

// An isolated node's have-blobs answers only for blobs it sent itself,
// not for blobs other nodes stored.
func TestServeIsolatedNode(t *testing.T) {
	r := repotest.New(t)
	shared := []byte("a chunk both nodes have")
	other := []byte("a chunk only vega has")
	s0 := r.NewSession()
	for _, b := range [][]byte{shared, other} {
		if _, _, err := s0.SaveBlob(t.Context(), blob.Data, b); err != nil {
			t.Fatal(err)
		}
	}
	if err := s0.Flush(t.Context()); err != nil {
		t.Fatal(err)
	}
	dir := fileTree(t, shared)
	hs := []blob.Handle{dataHandle(shared), dataHandle(other), treeHandle(dir)}

	// A node that is not isolated learns what the repository has.
	s := serve(t, r, config(wire.PermPush))
	c := newRawClient(t, s)
	c.hello("lyra")
	if got := c.haveBlobs(7, hs...); !slices.Equal(got, []bool{true, true, false}) {
		t.Fatalf("not isolated: have %v", got)
	}
	c.send(wire.TypeBye, nil)
	c.expectEOF()
	if _, err := s.wait(); err != nil {
		t.Fatal(err)
	}

	sc := config(wire.PermPush)
	sc.Isolated = true
	s = serve(t, r, sc)
	c = newRawClient(t, s)
	if w := c.hello("lyra"); !w.Isolated {
		t.Fatal("welcome does not say isolated")
	}
	if got := c.haveBlobs(1, hs...); !slices.Equal(got, []bool{false, false, false}) {
		t.Fatalf("before sending: have %v", got)
	}
	c.putBlob(hs[0], shared)
	c.putBlob(hs[2], dir)
	// Commit waits until every blob sent is verified, so the answer below
	// cannot race with the verification.
	id := c.commit(2, record(t, "lyra", hs[2].ID))
	if got := c.haveBlobs(3, hs...); !slices.Equal(got, []bool{true, false, true}) {
		t.Fatalf("after sending: have %v", got)
	}
	c.send(wire.TypeBye, nil)
	c.expectEOF()
	st, err := s.wait()
	if err != nil {
		t.Fatal(err)
	}
	// The shared chunk was sent but was stored already; the tree is new.
	if st.BlobsSent != 2 || st.BytesSent != uint64(len(shared)+len(dir)) || st.BlobsStored != 1 || !slices.Equal(st.Snapshots, []blob.ID{id}) {
		t.Fatalf("stats %+v", st)
	}
}

// A have-blobs question larger than the MaxBatch announced in Welcome is
// Error 6.
func TestServeMaxBatch(t *testing.T) {
	r := repotest.New(t)
	sc := config(wire.PermPush)
	sc.MaxBatch = 8
	s := serve(t, r, sc)
	c := newRawClient(t, s)
	if w := c.hello("lyra"); w.MaxBatch != 8 {
		t.Fatalf("welcome max batch %d", w.MaxBatch)
	}
	hs := make([]blob.Handle, 9)
	for i := range hs {
		hs[i] = dataHandle([]byte{byte(i)})
	}
	if got := c.haveBlobs(1, hs[:8]...); !slices.Equal(got, make([]bool, 8)) {
		t.Fatalf("have %v", got)
	}
	c.send(wire.TypeHaveBlobs, (&wire.HaveBlobs{Req: 2, Handles: hs}).Append(nil))
	c.expectError(wire.CodeLimitExceeded, "have-blobs of 9 handles exceeds the limit 8")
	if _, err := s.wait(); err == nil || err.Error() != "have-blobs of 9 handles exceeds the limit 8" {
		t.Fatalf("serve: %v", err)
	}
}

// A client that says hello and then nothing is cut off after the idle
// timeout: Serve closes the stream and returns.
func TestServeIdleTimeout(t *testing.T) {
	t.Parallel() // it waits out the idle timeout on the real clock
	r := repotest.New(t)
	sc := config(wire.PermPush)
	sc.IdleTimeout = 300 * time.Millisecond
	s := serve(t, r, sc)
	c := newRawClient(t, s)
	c.hello("lyra")
	_, err := s.wait()
	if err == nil || err.Error() != "no frame for 300ms: idle timeout" {
		t.Fatalf("serve: %v", err)
	}
	c.expectEOF()
}

// An isolated node cannot refer to a blob another node stored: a tree it
// sends that points at vega's chunk is refused at commit (it would learn
// that the chunk exists, and with read permission could load it), with
// the same refusal as for a chunk nobody stored, so the refusal tells it
// nothing either.
func TestServeIsolatedCannotReferenceOthers(t *testing.T) {
	r := repotest.New(t)
	secret := []byte("vega's secret chunk")
	nobodys := []byte("a chunk nobody stored")
	s0 := r.NewSession()
	if _, _, err := s0.SaveBlob(t.Context(), blob.Data, secret); err != nil {
		t.Fatal(err)
	}
	if err := s0.Flush(t.Context()); err != nil {
		t.Fatal(err)
	}
	for _, chunk := range [][]byte{secret, nobodys} {
		sc := config(wire.PermPush | wire.PermRead)
		sc.Isolated = true
		s := serve(t, r, sc)
		c := newRawClient(t, s)
		c.hello("lyra")
		dir := fileTree(t, chunk)
		c.putBlob(treeHandle(dir), dir)
		before := repoState(t, r)
		c.send(wire.TypeCommit, (&wire.Commit{Req: 1, Record: record(t, "lyra", treeHandle(dir).ID)}).Append(nil))
		c.expectError(wire.CodePermissionDenied, "data blob "+blob.Hash(chunk).Short()+" is not part of node lyra's snapshots and was not sent in this session")
		if _, err := s.wait(); err == nil {
			t.Fatal("serve returned no error")
		}
		after := repoState(t, r)
		if len(after.snapshots) != len(before.snapshots) {
			t.Fatal("a snapshot was stored")
		}
	}
}
