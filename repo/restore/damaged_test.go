package restore_test

import (
	"context"
	"fmt"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"sync"
	"testing"

	"github.com/cairnbackup/cairn/repo/blob"
	"github.com/cairnbackup/cairn/repo/restore"
	"github.com/cairnbackup/cairn/repo/snapfs"
	"github.com/cairnbackup/cairn/repo/tree"
)

// blobs is a BlobLoader over a map; a handle it lacks is damaged.
type blobs map[blob.Handle][]byte

func (m blobs) LoadBlob(_ context.Context, h blob.Handle, buf []byte) ([]byte, error) {
	b, ok := m[h]
	if !ok {
		return buf[:0], fmt.Errorf("blob %s: message authentication failed: %w", h, blob.ErrCorrupt)
	}
	return append(buf[:0], b...), nil
}

// batchedBlobs is blobs as a snapfs.BatchLoader whose reads a restore
// plans: LoadBlobs loads each blob in a goroutine of its own.
type batchedBlobs struct{ blobs }

func (batchedBlobs) BatchReads() bool { return true }

func (b batchedBlobs) LoadBlobs(ctx context.Context, hs []blob.Handle, fn func(int, []byte, error)) error {
	var wg sync.WaitGroup
	for i, h := range hs {
		if ctx.Err() != nil {
			break
		}
		wg.Go(func() {
			data, err := b.LoadBlob(ctx, h, nil)
			fn(i, data, err)
		})
	}
	wg.Wait()
	return ctx.Err()
}

func fileNode(name, content string, link uint64) tree.Node {
	return tree.Node{Name: name, Type: tree.File, Mode: 0o644, Size: uint64(len(content)), HardlinkID: link,
		FileHash: blob.Hash([]byte(content)), Content: []tree.Chunk{{ID: blob.Hash([]byte(content)), Size: uint64(len(content))}}}
}

// A file whose data cannot be read used to stay in the target, created
// empty or half written, with every hardlink made to it: names that look
// restored but hold wrong bytes, most of them not named by the error
// (found by the torture suite's bit-rot matrix). Such a file and its
// hardlinks are now removed, and each is named; the other files are
// restored.
func TestDamagedFileLeavesNothingBehind(t *testing.T) {
	m := blobs{}
	put := func(t blob.Type, b []byte) blob.ID {
		id := blob.Hash(b)
		m[blob.Handle{ID: id, Type: t}] = b
		return id
	}
	put(blob.Data, []byte("good"))
	put(blob.Data, []byte("also good"))
	// "damaged" is never put: its blob does not load.
	nodes := []tree.Node{
		fileNode("a-damaged", "damaged", 7),
		fileNode("b-good", "good", 0),
		fileNode("c-link", "damaged", 7),
		fileNode("d-good", "also good", 0),
		fileNode("e-link", "damaged", 7),
	}
	enc, err := tree.Encode(nil, &tree.Tree{Nodes: nodes})
	if err != nil {
		t.Fatal(err)
	}
	root := put(blob.Tree, enc)
	for i := range 40 { // the worker and the walker race for the links
		var l snapfs.BlobLoader = m
		if i%2 == 1 {
			l = batchedBlobs{m} // and through a restore's plan
		}
		target := filepath.Join(t.TempDir(), "target")
		_, err := restore.Run(t.Context(), l, root, "", target, restore.Options{Workers: 2})
		if err == nil {
			t.Fatal("restored a damaged file without an error")
		}
		for _, name := range []string{"a-damaged", "c-link", "e-link"} {
			if !strings.Contains(err.Error(), name+":") {
				t.Errorf("the error does not name %s: %v", name, err)
			}
		}
		var left []string
		entries, _ := os.ReadDir(target)
		for _, e := range entries {
			left = append(left, e.Name())
		}
		if !slices.Equal(left, []string{"b-good", "d-good"}) {
			t.Fatalf("target holds %v, want only the good files", left)
		}
		if b, _ := os.ReadFile(filepath.Join(target, "d-good")); string(b) != "also good" {
			t.Fatalf("d-good: %q", b)
		}
	}
}

// unhashedBlobs is blobs as a snapfs.UnhashedLoader: LoadBlob checks
// each blob against its ID, as a repository does, LoadBlobUnhashed does
// not; both count their loads.
type unhashedBlobs struct {
	blobs
	mu               sync.Mutex
	hashed, unhashed map[blob.ID]int
}

func (u *unhashedBlobs) LoadBlob(ctx context.Context, h blob.Handle, buf []byte) ([]byte, error) {
	u.mu.Lock()
	u.hashed[h.ID]++
	u.mu.Unlock()
	out, err := u.blobs.LoadBlob(ctx, h, buf)
	if err == nil && blob.Hash(out) != h.ID {
		return buf[:0], fmt.Errorf("blob %s: plaintext does not match its id: %w", h, blob.ErrCorrupt)
	}
	return out, err
}

func (u *unhashedBlobs) LoadBlobUnhashed(ctx context.Context, h blob.Handle, buf []byte) ([]byte, error) {
	u.mu.Lock()
	u.unhashed[h.ID]++
	u.mu.Unlock()
	return u.blobs.LoadBlob(ctx, h, buf)
}

// unhashedBatch is unhashedBlobs as a snapfs.UnhashedBatchLoader, whose
// reads a restore plans: LoadBlobs hashes, LoadBlobsUnhashed does not.
type unhashedBatch struct{ *unhashedBlobs }

func (unhashedBatch) BatchReads() bool { return true }

func (u unhashedBatch) LoadBlobs(ctx context.Context, hs []blob.Handle, fn func(int, []byte, error)) error {
	return u.each(ctx, hs, fn, u.LoadBlob)
}

func (u unhashedBatch) LoadBlobsUnhashed(ctx context.Context, hs []blob.Handle, fn func(int, []byte, error)) error {
	return u.each(ctx, hs, fn, u.LoadBlobUnhashed)
}

func (unhashedBatch) each(ctx context.Context, hs []blob.Handle, fn func(int, []byte, error), load func(context.Context, blob.Handle, []byte) ([]byte, error)) error {
	for i, h := range hs {
		data, err := load(ctx, h, nil)
		fn(i, data, err)
	}
	return ctx.Err()
}

// The chunks of a file of several chunks are loaded without hashing each
// (the whole file is hashed against its recorded hash); from a plan, all
// chunks are, and every file is hashed whole. A chunk whose bytes are not
// its ID's then shows as its file's mismatch, and restore loads the
// file's chunks again, hashed, so the error names that chunk; the file is
// removed, the others restored.
func TestWrongChunkNamedAfterFileMismatch(t *testing.T) {
	for _, planned := range []bool{false, true} {
		t.Run(map[bool]string{false: "loaded", true: "planned"}[planned], func(t *testing.T) { testWrongChunkNamed(t, planned) })
	}
}

func testWrongChunkNamed(t *testing.T, planned bool) {
	u := &unhashedBlobs{blobs: blobs{}, hashed: map[blob.ID]int{}, unhashed: map[blob.ID]int{}}
	put := func(typ blob.Type, id blob.ID, b []byte) tree.Chunk {
		u.blobs[blob.Handle{ID: id, Type: typ}] = b
		return tree.Chunk{ID: id, Size: uint64(len(b))}
	}
	chunk := func(s string) tree.Chunk { return put(blob.Data, blob.Hash([]byte(s)), []byte(s)) }
	file := func(name string, content string, chunks ...tree.Chunk) tree.Node {
		return tree.Node{Name: name, Type: tree.File, Mode: 0o644, Size: uint64(len(content)),
			FileHash: blob.Hash([]byte(content)), Content: chunks}
	}
	lie, single := blob.Hash([]byte("second")), blob.Hash([]byte("single"))
	nodes := []tree.Node{
		file("a-lies", "firstsecond", chunk("first"), put(blob.Data, lie, []byte("mallor"))),
		file("b-good", "good and whole", chunk("good "), chunk("and whole")),
		file("c-single-lie", "single", put(blob.Data, single, []byte("liar!!"))),
	}
	enc, err := tree.Encode(nil, &tree.Tree{Nodes: nodes})
	if err != nil {
		t.Fatal(err)
	}
	root := blob.Hash(enc)
	u.blobs[blob.Handle{ID: root, Type: blob.Tree}] = enc
	var l snapfs.BlobLoader = u
	if planned {
		l = unhashedBatch{u}
	}
	target := filepath.Join(t.TempDir(), "target")
	_, err = restore.Run(t.Context(), l, root, "", target, restore.Options{Workers: 2})
	for name, id := range map[string]blob.ID{"a-lies": lie, "c-single-lie": single} {
		want := fmt.Sprintf("%s: blob data/%s: plaintext does not match its id", name, id.Short())
		if err == nil || !strings.Contains(err.Error(), want) {
			t.Fatalf("error %v, want one containing %q", err, want)
		}
	}
	entries, _ := os.ReadDir(target)
	if len(entries) != 1 || entries[0].Name() != "b-good" {
		t.Fatalf("target holds %v, want b-good only", entries)
	}
	if b, _ := os.ReadFile(filepath.Join(target, "b-good")); string(b) != "good and whole" {
		t.Fatalf("b-good: %q", b)
	}
	loads := func(id blob.ID, unhashed, hashed int) {
		t.Helper()
		if u.unhashed[id] != unhashed || u.hashed[id] != hashed {
			t.Errorf("chunk %s: %d unhashed and %d hashed loads, want %d and %d", id.Short(), u.unhashed[id], u.hashed[id], unhashed, hashed)
		}
	}
	loads(blob.Hash([]byte("good ")), 1, 0)
	loads(blob.Hash([]byte("and whole")), 1, 0)
	loads(lie, 1, 1)
	if planned {
		loads(single, 1, 1) // loaded unhashed, then blamed
	} else {
		loads(single, 0, 1) // a file of one chunk: the loader hashes it
	}
}
