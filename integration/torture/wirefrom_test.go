package torture

// A hostile appliance against restore --from: wire version 2 sends data
// blobs as stored (compressed), and the node decompresses them. An
// appliance that sends a zstd bomb, a payload of another length than it
// claims, or another blob's bytes gets the restore refused with the
// blob named and exit 1, and no byte of what it sent in the file (the
// node hashes every chunk it receives before writing it, so another
// blob's bytes are refused whatever their length).

import (
	"bytes"
	"fmt"
	"os"
	"path/filepath"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/cairnbackup/cairn/repo/blob"
	"github.com/cairnbackup/cairn/repo/pack"
	"github.com/cairnbackup/cairn/repo/snapshot"
	"github.com/cairnbackup/cairn/repo/tree"
	"github.com/cairnbackup/cairn/repo/wire"
	"github.com/klauspost/compress/zstd"
	"golang.org/x/crypto/ssh"
)

// storedAnswer is how a hostile appliance answers the load of the
// file's one data blob, whose plaintext is want.
type storedAnswer func(req uint32, want []byte) *wire.StoredBlob

// hostileStored plays an appliance with one snapshot of /etc holding the
// file passwd (want) and answers the load of its data blob with answer.
func hostileStored(want []byte, answer storedAnswer) func(ssh.Channel) {
	dataID := blob.Hash(want)
	root, _ := tree.Encode(nil, &tree.Tree{Nodes: []tree.Node{{Name: "passwd", Type: tree.File, Mode: 0o644,
		Size: uint64(len(want)), Content: []tree.Chunk{{ID: dataID, Size: uint64(len(want))}}}}})
	top, _ := tree.Encode(nil, &tree.Tree{Nodes: []tree.Node{{Name: "etc", Type: tree.Dir, Mode: 0o755, Subtree: blob.Hash(root)}}})
	trees := map[blob.ID][]byte{blob.Hash(root): root, blob.Hash(top): top}
	return func(ch ssh.Channel) {
		defer ch.Close()
		r, w := wire.NewReader(ch), wire.NewWriter(ch)
		send := func(t wire.Type, body ...[]byte) bool {
			return w.WriteFrame(t, body...) == nil && w.Flush() == nil
		}
		if _, _, err := r.Next(nil); err != nil {
			return
		}
		wel := &wire.Welcome{Version: 2, Node: "lyra", Perms: wire.PermRead,
			ChunkMin: 16 << 10, ChunkAvg: 64 << 10, ChunkMax: 256 << 10, MaxBatch: 4096, MaxInflight: 8}
		if !send(wire.TypeWelcome, wel.Append(nil)) {
			return
		}
		for {
			t, body, err := r.Next(nil)
			if err != nil {
				return
			}
			switch t {
			case wire.TypeListSnapshots:
				m, _ := wire.DecodeListSnapshots(body)
				rec, id, _ := snapshot.Encode(&snapshot.Snapshot{Version: snapshot.Version, Time: time.Now(), Node: "lyra",
					Paths: []string{"/etc"}, Tree: blob.Hash(top)})
				if !send(wire.TypeSnapshots, (&wire.Snapshots{Req: m.Req, Items: []wire.SnapshotItem{{ID: id, Record: rec}}}).Append(nil)) {
					return
				}
			case wire.TypeLoadBlob:
				m, _ := wire.DecodeLoadBlob(body)
				if tr, ok := trees[m.Handle.ID]; ok {
					if !send(wire.TypeBlob, (&wire.Blob{Req: m.Req, Data: tr}).Append(nil)) {
						return
					}
					continue
				}
				if !send(wire.TypeStoredBlob, answer(m.Req, want).Append(nil)) {
					return
				}
			default:
				return
			}
		}
	}
}

func TestHostileStoredBlob(t *testing.T) {
	lyra := newNode(t, "lyra", "read")
	want := []byte(strings.Repeat("root:x:0:0:root:/root:/bin/sh\n", 200))
	h := blob.Handle{ID: blob.Hash(want), Type: blob.Data}
	compress := func(b []byte) []byte { z, _ := pack.Compress(nil, b, pack.LevelDefault); return z }
	streamed := func(b []byte) []byte {
		var out bytes.Buffer
		zw, _ := zstd.NewWriter(&out)
		zw.Write(b[:len(b)/2])
		zw.Flush() // the header goes out before the size is known
		zw.Write(b[len(b)/2:])
		zw.Close()
		return out.Bytes()
	}
	bomb := compress(make([]byte, 16<<20))
	bombStreamed := streamed(make([]byte, 16<<20))
	other := []byte(strings.Repeat("mallory:x:0:0::/:/bin/sh\n", 300))
	// Of want's length: only its hash tells it from want.
	sameLength := []byte(strings.Repeat("mallory:x:0:0:m:/root:/bin/sh\n", 200))
	if len(sameLength) != len(want) {
		t.Fatalf("sameLength is %d bytes, want %d", len(sameLength), len(want))
	}
	cases := []struct {
		name   string
		answer storedAnswer
		reason string
	}{
		{"zstd bomb", func(req uint32, want []byte) *wire.StoredBlob {
			return &wire.StoredBlob{Req: req, Compression: wire.CompressionZstd, RawLength: uint32(len(want)), Payload: bomb}
		}, fmt.Sprintf("zstd frame declares %d bytes, raw length %d", 16<<20, len(want))},
		{"zstd bomb of unknown size", func(req uint32, want []byte) *wire.StoredBlob {
			return &wire.StoredBlob{Req: req, Compression: wire.CompressionZstd, RawLength: uint32(len(want)), Payload: bombStreamed}
		}, fmt.Sprintf("decompressed to %d bytes, want %d", 16<<20, len(want))},
		{"wrong raw length", func(req uint32, want []byte) *wire.StoredBlob {
			return &wire.StoredBlob{Req: req, Compression: wire.CompressionZstd, RawLength: uint32(len(want)) - 1, Payload: streamed(want)}
		}, fmt.Sprintf("decompressed to %d bytes, want %d", len(want), len(want)-1)},
		{"another blob", func(req uint32, want []byte) *wire.StoredBlob {
			return &wire.StoredBlob{Req: req, Compression: wire.CompressionZstd, RawLength: uint32(len(other)), Payload: compress(other)}
		}, "plaintext does not match its id"},
		{"another blob of the same length", func(req uint32, want []byte) *wire.StoredBlob {
			return &wire.StoredBlob{Req: req, Compression: wire.CompressionZstd, RawLength: uint32(len(sameLength)), Payload: compress(sameLength)}
		}, "plaintext does not match its id"},
	}
	var mu sync.Mutex
	runs, detected := 0, 0
	for _, c := range cases {
		runs++
		t.Run(c.name, func(t *testing.T) {
			t.Parallel()
			e := newEnv(t)
			f := newFakeAppliance(t, "")
			f.mu.Lock() // the appliance's goroutines read it
			f.handler = hostileStored(want, c.answer)
			f.mu.Unlock()
			addr := fmt.Sprintf("127.0.0.1:%d", f.port)
			out := filepath.Join(e.dir, "out")
			p := e.start("restore", "latest", "--target", out, "--from", "ssh://lyra@"+addr, "-i", lyra.Key.PrivatePath, "--host-key", f.hostKey)
			r := p.wait(t)
			got, _ := os.ReadFile(filepath.Join(out, "etc", "passwd"))
			if r.code != 1 || !strings.Contains(r.stderr, h.String()) || !strings.Contains(r.stderr, c.reason) ||
				bytes.Contains(got, []byte("mallory")) || len(got) > len(want) {
				t.Fatalf("%s\nwant exit 1 naming blob %s: %s, and nothing of the appliance's bytes in passwd (%d bytes)", r, h, c.reason, len(got))
			}
			mu.Lock()
			detected++
			mu.Unlock()
		})
	}
	t.Cleanup(func() {
		record("hostile appliance: stored blob (bomb, wrong length, another blob of another or the same length) to restore --from", runs, detected, 0,
			fmt.Sprintf("%d of %d runs refused with the blob named and exit 1, nothing of it written", detected, runs))
	})
}
