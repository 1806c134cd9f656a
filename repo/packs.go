package repo

import (
	"context"
	"errors"
	"io"
	"time"

	"github.com/cairnbackup/cairn/repo/blob"
	"github.com/cairnbackup/cairn/repo/internal/index"
	"github.com/cairnbackup/cairn/repo/pack"
	"github.com/cairnbackup/cairn/repo/storage"
)

// ReadPackHeader reads and decodes the header of pack id.
func (r *Repository) ReadPackHeader(ctx context.Context, id blob.ID) ([]pack.Entry, int64, error) {
	f, err := r.be.Open(ctx, r.packHandle(id))
	if err != nil {
		return nil, 0, err
	}
	defer f.Close()
	entries, err := pack.ReadHeader(newTailReader(f, f.Size()), f.Size(), r.key)
	var fe *pack.FormatError
	if errors.As(err, &fe) {
		fe.Pack = id.Short()
	}
	return entries, f.Size(), err
}

// There are two pack listings because the index and storage are two
// things, which differ after a crash or a loss: [Repository.StoredPacks]
// is packs/ itself (the truth that rebuild, reconcile, check and
// replication start from), [Repository.PackRecords] is what the index
// says (no storage round trips, and with what only the index knows: blob
// counts and creation times).

// StoredPacks lists the pack files in storage with their sizes, by ID,
// including packs not (yet) indexed and leaving out indexed packs whose
// file is gone. Files whose names are not pack IDs are reported to the
// log and skipped.
func (r *Repository) StoredPacks(ctx context.Context) (map[blob.ID]int64, error) {
	out := make(map[blob.ID]int64)
	err := r.be.List(ctx, storage.Packs, func(name string, size int64) error {
		id, err := blob.ParseID(name)
		if err != nil {
			r.log.Warn("ignoring a file in packs/ that is not named like a pack", "name", name)
			return nil
		}
		out[id] = size
		return nil
	})
	return out, err
}

// PackRecord is what the index says about one pack.
type PackRecord struct {
	ID      blob.ID
	Size    int64 // as indexed: check compares it with the file's
	Blobs   int
	Created time.Time // when it was written; for a pack indexed from its header later (rebuild, reconcile), when that happened
}

// PackRecords calls fn for every indexed pack: the index's view, which
// lists a pack whose file has gone missing (until the next open forgets
// it) and not a pack written but not yet indexed; [Repository.StoredPacks]
// lists the files.
func (r *Repository) PackRecords(fn func(PackRecord) error) error {
	return r.idx.Packs(func(id blob.ID, info index.PackInfo) error {
		return fn(PackRecord{ID: id, Size: info.Size, Blobs: info.Blobs, Created: info.Created})
	})
}

// IndexedBlobs calls fn for every blob in the index.
func (r *Repository) IndexedBlobs(fn func(h blob.Handle, loc Location) error) error {
	return r.idx.Blobs(fn)
}

// LostPacks calls fn for every pack the index once listed and that was
// found missing on disk.
func (r *Repository) LostPacks(fn func(id blob.ID, when time.Time) error) error {
	return r.idx.LostPacks(fn)
}

// HeaderReaders is how many pack headers to read at once: two from a
// directory (the disk is the bound), sixteen from an object store (each
// read waits a round trip; a header read holds at most [tailSize] bytes).
func (r *Repository) HeaderReaders() int { return r.readers(2, 16) }

// tailSize is how much of a pack's end one read fetches when its header
// is read: the footer and, for packs of up to about a thousand blobs, the
// whole header, in one request instead of two.
const tailSize = 64 << 10

// tailReader serves reads within a file's last tailSize bytes from one
// read of them; other reads go to the file.
type tailReader struct {
	f     io.ReaderAt
	start int64 // offset of tail in the file
	tail  []byte
	err   error
	read  bool
}

func newTailReader(f io.ReaderAt, size int64) *tailReader {
	return &tailReader{f: f, start: max(0, size-tailSize)}
}

func (t *tailReader) ReadAt(p []byte, off int64) (int, error) {
	if off < t.start {
		return t.f.ReadAt(p, off)
	}
	if !t.read {
		t.read = true
		end := t.start + tailSize
		if sz, ok := t.f.(interface{ Size() int64 }); ok {
			end = sz.Size()
		}
		t.tail = make([]byte, end-t.start)
		n, err := t.f.ReadAt(t.tail, t.start)
		t.tail = t.tail[:n]
		if err != nil && !errors.Is(err, io.EOF) {
			t.err = err
		}
	}
	if t.err != nil {
		return 0, t.err
	}
	rel := off - t.start
	if rel >= int64(len(t.tail)) {
		return 0, io.EOF
	}
	n := copy(p, t.tail[rel:])
	if n < len(p) {
		return n, io.EOF
	}
	return n, nil
}
