package backup_test

import (
	"archive/tar"
	"bytes"
	"context"
	"sync"
	"testing"
	"time"

	"github.com/cairnbackup/cairn/chunker"
	"github.com/cairnbackup/cairn/repo/backup"
	"github.com/cairnbackup/cairn/repo/blob"
	"github.com/cairnbackup/cairn/repo/tree"
)

// memUploader keeps blobs in memory.
type memUploader struct {
	mu    sync.Mutex
	blobs map[blob.Handle][]byte
}

func (m *memUploader) SaveBlob(_ context.Context, t blob.Type, data []byte) (blob.ID, bool, error) {
	h := blob.Handle{ID: blob.Hash(data), Type: t}
	m.mu.Lock()
	defer m.mu.Unlock()
	_, known := m.blobs[h]
	m.blobs[h] = bytes.Clone(data)
	return h.ID, !known, nil
}

func (m *memUploader) Known(h blob.Handle) (bool, error) {
	m.mu.Lock()
	defer m.mu.Unlock()
	_, ok := m.blobs[h]
	return ok, nil
}

func tarSeed(members ...tar.Header) []byte {
	var b bytes.Buffer
	w := tar.NewWriter(&b)
	for _, h := range members {
		h.ModTime = time.Unix(1700000000, 0)
		if h.Mode == 0 {
			h.Mode = 0o644
		}
		body := []byte("contents of " + h.Name)
		if h.Typeflag == tar.TypeReg {
			h.Size = int64(len(body))
		}
		w.WriteHeader(&h)
		if h.Typeflag == tar.TypeReg {
			w.Write(body)
		}
	}
	w.Close()
	return b.Bytes()
}

// Tar streams come from nodes, which are not trusted: whatever the bytes,
// backing them up ends with an error or with trees that decode (every
// name checked) and whose file chunks were all stored.
func FuzzTar(f *testing.F) {
	f.Add(tarSeed(tar.Header{Name: "a/b.txt", Typeflag: tar.TypeReg}, tar.Header{Name: "a/link", Typeflag: tar.TypeSymlink, Linkname: "b.txt"}))
	f.Add(tarSeed(tar.Header{Name: "../x", Typeflag: tar.TypeReg}, tar.Header{Name: "/abs", Typeflag: tar.TypeReg}, tar.Header{Name: "h", Typeflag: tar.TypeLink, Linkname: "/abs"}))
	f.Add(tarSeed(tar.Header{Name: "d/", Typeflag: tar.TypeDir}, tar.Header{Name: "d/f", Typeflag: tar.TypeReg, Format: tar.FormatPAX, PAXRecords: map[string]string{"SCHILY.xattr.user.x": "v"}}))
	f.Add([]byte{})
	params := chunker.Params{Min: 64, Avg: 256, Max: 1024}
	table := chunker.NewTable([32]byte{1})
	f.Fuzz(func(t *testing.T, stream []byte) {
		// A few bytes can announce a sparse file of exabytes of zeros:
		// such a stream ends at the deadline (the appliance ends it at
		// its idle timeout).
		ctx, cancel := context.WithTimeout(t.Context(), time.Second)
		defer cancel()
		up := &memUploader{blobs: map[blob.Handle][]byte{}}
		res, err := backup.Tar(ctx, up, bytes.NewReader(stream), backup.Options{Params: params, Table: table, Workers: 2})
		if err != nil {
			return
		}
		var walk func(id blob.ID)
		walk = func(id blob.ID) {
			raw, ok := up.blobs[blob.Handle{ID: id, Type: blob.Tree}]
			if !ok {
				t.Fatalf("tree %s not stored", id.Short())
			}
			tr, err := tree.Decode(raw)
			if err != nil {
				t.Fatalf("a stored tree does not decode: %v", err)
			}
			for _, n := range tr.Nodes {
				switch n.Type {
				case tree.Dir:
					walk(n.Subtree)
				case tree.File:
					for _, c := range n.Content {
						if _, ok := up.blobs[blob.Handle{ID: c.ID, Type: blob.Data}]; !c.ID.IsZero() && !ok {
							t.Fatalf("%s: chunk %s not stored", n.Name, c.ID.Short())
						}
					}
				}
			}
		}
		walk(res.Tree)
	})
}
