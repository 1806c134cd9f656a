package wire_test

import (
	"bytes"
	"errors"
	"fmt"
	"math/rand/v2"
	"net"
	"path/filepath"
	"strings"
	"testing"

	"github.com/cairnbackup/cairn/repo/blob"
	"github.com/cairnbackup/cairn/repo/pack"
	"github.com/cairnbackup/cairn/repo/repotest"
	"github.com/cairnbackup/cairn/repo/restore"
	"github.com/cairnbackup/cairn/repo/tree"
	"github.com/cairnbackup/cairn/repo/wire"
	"github.com/klauspost/compress/zstd"
)

// storedFiles are five one-chunk files (below the chunker's minimum):
// four that compress and one that does not.
func storedFiles() map[string]string {
	files := map[string]string{}
	for i := range 4 {
		files[fmt.Sprintf("d/f%d.sql", i)] = strings.Repeat(fmt.Sprintf("INSERT INTO t VALUES (%d, 'row');\n", i), 300)
	}
	noise := make([]byte, 12<<10)
	rand.NewChaCha8([32]byte{9}).Read(noise)
	files["media/noise"] = string(noise)
	return files
}

// A restore --from of version 2 gets every data blob as stored, a
// StoredBlob (compressed unless the repository stored it raw), and every
// tree as plaintext: the appliance neither decompresses nor re-hashes
// data blobs, and sends fewer bytes.
func TestClientLoadsStoredBlobs(t *testing.T) {
	r := repotest.New(t)
	files := storedFiles()
	sn := pushDirect(t, r, "lyra", files)
	src := sn.Paths[0]

	s := serve(t, r, config(wire.PermRead))
	conn := &inFlight{Conn: s.conn}
	c, err := wire.Dial(t.Context(), conn, "cairn test", "lyra")
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { c.Close() })
	if v := c.Welcome().Version; v != 2 {
		t.Fatalf("protocol version %d, want 2", v)
	}
	if _, err := c.ListSnapshots(t.Context(), ""); err != nil {
		t.Fatal(err)
	}
	dst := t.TempDir()
	if _, err := restore.Run(t.Context(), c, sn.Tree, src, dst, restore.Options{}); err != nil {
		t.Fatal(err)
	}
	repotest.AssertSameTree(t, src, filepath.Join(dst, "src"))
	conn.mu.Lock()
	defer conn.mu.Unlock()
	if n := conn.in.counts[wire.TypeStoredBlob]; n != len(files) {
		t.Fatalf("%d stored-blob frames, want one per file (%d)", n, len(files))
	}
	loads := conn.out.counts[wire.TypeLoadBlob]
	if n := conn.in.counts[wire.TypeBlob]; n != loads-len(files) {
		t.Fatalf("%d blob frames for %d load-blob requests, want one per tree (%d)", n, loads, loads-len(files))
	}
}

// A client of version 1 (an older node) gets plaintext Blob frames, of
// data blobs too, from a server of version 2.
func TestServeVersion1GetsPlaintext(t *testing.T) {
	r := repotest.New(t)
	sn := pushDirect(t, r, "lyra", map[string]string{"a": strings.Repeat("alpha ", 1000)})
	c := newRawClient(t, serve(t, r, config(wire.PermRead)))
	if w := c.hello("lyra"); w.Version != 1 {
		t.Fatalf("version %d picked for a client of version 1", w.Version)
	}
	c.send(wire.TypeListSnapshots, (&wire.ListSnapshots{Req: 1}).Append(nil))
	c.expect(wire.TypeSnapshots)
	req := uint32(2)
	load := func(h blob.Handle) []byte {
		t.Helper()
		c.send(wire.TypeLoadBlob, (&wire.LoadBlob{Req: req, Handle: h}).Append(nil))
		req++
		m, err := wire.DecodeBlob(c.expect(wire.TypeBlob))
		if err != nil {
			t.Fatal(err)
		}
		return m.Data
	}
	id := sn.Tree
	for {
		tr, err := tree.Decode(load(blob.Handle{ID: id, Type: blob.Tree}))
		if err != nil {
			t.Fatal(err)
		}
		n := tr.Nodes[0]
		if n.Type == tree.File {
			data := load(blob.Handle{ID: n.Content[0].ID, Type: blob.Data})
			if string(data) != strings.Repeat("alpha ", 1000) {
				t.Fatalf("data blob of a: %q…", data[:min(len(data), 20)])
			}
			return
		}
		id = n.Subtree
	}
}

// scripted serves one session of version v on a pipe: it answers Hello
// with a Welcome and every LoadBlob with answer(req) as a frame of type
// typ, as a hostile or broken appliance might.
func scripted(t *testing.T, v uint16, typ wire.Type, answer func(req uint32) []byte) *wire.Client {
	t.Helper()
	cli, srv := net.Pipe()
	done := make(chan struct{})
	go func() {
		defer close(done)
		defer srv.Close()
		r, w := wire.NewReader(srv), wire.NewWriter(srv)
		if _, _, err := r.Next(nil); err != nil {
			return
		}
		wel := &wire.Welcome{Version: v, Node: "lyra", Perms: wire.PermRead, ChunkMin: 16 << 10, ChunkAvg: 64 << 10, ChunkMax: 256 << 10, MaxBatch: 64, MaxInflight: 8}
		w.WriteFrame(wire.TypeWelcome, wel.Append(nil))
		w.Flush()
		for {
			ft, body, err := r.Next(nil)
			if err != nil || ft != wire.TypeLoadBlob {
				return
			}
			m, _ := wire.DecodeLoadBlob(body)
			if w.WriteFrame(typ, answer(m.Req)) != nil || w.Flush() != nil {
				return
			}
		}
	}()
	c, err := wire.Dial(t.Context(), cli, "cairn test", "lyra")
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { c.Close(); cli.Close(); <-done })
	return c
}

// A node trusts no stored blob it did not check: a payload that
// decompresses to another length than it claims (a bomb among them),
// one cut short, one that is not zstd, or whose plaintext is another
// blob's, is refused as corrupt, and nothing is returned.
func TestClientRefusesBadStoredBlobs(t *testing.T) {
	want := []byte(strings.Repeat("the blob the node asked for\n", 100))
	h := blob.Handle{ID: blob.Hash(want), Type: blob.Data}
	z, c := pack.Compress(nil, want, pack.LevelDefault)
	if c != pack.Zstd {
		t.Fatal("test data did not compress")
	}
	other := []byte(strings.Repeat("another blob\n", 200))
	zo, _ := pack.Compress(nil, other, pack.LevelDefault)
	bomb, _ := pack.Compress(nil, make([]byte, blob.MaxSize), pack.LevelDefault)
	// Frames written as a stream do not declare their size.
	streamed, streamedWant := stream(t, make([]byte, 4<<20)), stream(t, want)
	for _, tc := range []struct {
		name     string
		typ      wire.Type
		comp     uint8
		rawLen   int
		payload  []byte
		msg      string
		corrupt  bool
		protocol bool
	}{
		{"raw length too long", wire.TypeStoredBlob, 1, len(want) + 1, z,
			fmt.Sprintf("wire: from the server: blob %s: zstd frame declares %d bytes, raw length %d: corrupt", h, len(want), len(want)+1), true, false},
		{"raw length too short", wire.TypeStoredBlob, 1, len(want) - 1, z,
			fmt.Sprintf("wire: from the server: blob %s: zstd frame declares %d bytes, raw length %d: corrupt", h, len(want), len(want)-1), true, false},
		{"bomb", wire.TypeStoredBlob, 1, len(bomb) + 1, bomb,
			fmt.Sprintf("wire: from the server: blob %s: zstd frame declares %d bytes, raw length %d: corrupt", h, blob.MaxSize, len(bomb)+1), true, false},
		{"bomb of unknown size", wire.TypeStoredBlob, 1, len(streamed) + 1, streamed,
			fmt.Sprintf("wire: from the server: blob %s: decompressed to %d bytes, want %d: corrupt", h, 4<<20, len(streamed)+1), true, false},
		{"wrong length of unknown size", wire.TypeStoredBlob, 1, len(want) + 1, streamedWant,
			fmt.Sprintf("wire: from the server: blob %s: decompressed to %d bytes, want %d: corrupt", h, len(want), len(want)+1), true, false},
		{"truncated", wire.TypeStoredBlob, 1, len(want), z[:len(z)/2],
			fmt.Sprintf("wire: from the server: blob %s: zstd: unexpected EOF: corrupt", h), true, false},
		{"another blob", wire.TypeStoredBlob, 1, len(other), zo,
			fmt.Sprintf("wire: from the server: blob %s: plaintext does not match its id", h), true, false},
		{"another raw blob", wire.TypeStoredBlob, 0, len(other), other,
			fmt.Sprintf("wire: blob %s from the server does not match its id: corrupt", h), true, false},
		{"raw length over the limit", wire.TypeStoredBlob, 1, blob.MaxSize + 1, z,
			"wire: stored-blob: raw length 67108865 exceeds 67108864", false, true},
	} {
		t.Run(tc.name, func(t *testing.T) {
			cl := scripted(t, 2, tc.typ, func(req uint32) []byte {
				return (&wire.StoredBlob{Req: req, Compression: tc.comp, RawLength: uint32(tc.rawLen), Payload: tc.payload}).Append(nil)
			})
			data, err := cl.LoadBlob(t.Context(), h, nil)
			if err == nil || len(data) != 0 {
				t.Fatalf("loaded %d bytes, err %v; want an error", len(data), err)
			}
			if err.Error() != tc.msg {
				t.Fatalf("error %q, want %q", err, tc.msg)
			}
			if tc.corrupt && !errors.Is(err, blob.ErrCorrupt) {
				t.Fatalf("error %v does not match blob.ErrCorrupt", err)
			}
			if tc.protocol && !errors.Is(err, wire.ErrProtocol) {
				t.Fatalf("error %v does not match wire.ErrProtocol", err)
			}
		})
	}
}

// stream compresses data as one zstd frame that does not declare its
// size.
func stream(t *testing.T, data []byte) []byte {
	var b bytes.Buffer
	w, err := zstd.NewWriter(&b)
	if err != nil {
		t.Fatal(err)
	}
	// A flush before the end sends the frame header before the size is
	// known.
	for _, part := range [][]byte{data[:len(data)/2], data[len(data)/2:]} {
		if _, err := w.Write(part); err != nil {
			t.Fatal(err)
		}
		if err := w.Flush(); err != nil {
			t.Fatal(err)
		}
	}
	if err := w.Close(); err != nil {
		t.Fatal(err)
	}
	var zh zstd.Header
	if err := zh.Decode(b.Bytes()); err != nil || zh.HasFCS {
		t.Fatalf("a streamed frame declares its size (%v)", err)
	}
	return b.Bytes()
}

// A server that picked version 1 may not answer with a StoredBlob.
func TestClientRefusesStoredBlobInVersion1(t *testing.T) {
	want := []byte("plain")
	h := blob.Handle{ID: blob.Hash(want), Type: blob.Data}
	c := scripted(t, 1, wire.TypeStoredBlob, func(req uint32) []byte {
		return (&wire.StoredBlob{Req: req, RawLength: uint32(len(want)), Payload: want}).Append(nil)
	})
	_, err := c.LoadBlob(t.Context(), h, nil)
	if err == nil || err.Error() != "wire: expected blob, got stored-blob: wire: protocol error" {
		t.Fatalf("error %v, want the protocol error", err)
	}
	var got []byte
	err = c.LoadBlobs(t.Context(), []blob.Handle{h}, func(i int, data []byte, err error) { got = data })
	if err == nil || err.Error() != "wire: expected blob, got stored-blob: wire: protocol error" || got != nil {
		t.Fatalf("LoadBlobs: error %v, data %q; want the protocol error", err, got)
	}
}
