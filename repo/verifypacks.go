package repo

import (
	"bufio"
	"context"
	"errors"
	"fmt"
	"hash"
	"io"
	"sync"
	"time"

	"github.com/cairnbackup/cairn/repo/blob"
	"github.com/cairnbackup/cairn/repo/pack"
	"github.com/minio/sha256-simd"
)

// PackReport is the result of reading one pack completely.
type PackReport struct {
	ID      blob.ID
	Size    int64
	Err     error        // the pack as a whole: missing, unreadable header, wrong hash
	Entries []pack.Entry // from the header, when it could be read
	Damaged []DamagedBlob
}

// DamagedBlob is a blob that failed to open or re-hash.
type DamagedBlob struct {
	blob.Handle
	Err error
}

// VerifyPack reads pack id from start to end once: it checks that the file
// hashes to its name, reads the header, and opens and re-hashes every
// blob. Memory: one blob envelope and one plaintext at a time, and a
// read buffer of verifyReadSize, all reused by the next call (check
// verifies PackReaders packs at once, so about that many sets exist).
func (r *Repository) VerifyPack(ctx context.Context, id blob.ID) PackReport {
	rep := PackReport{ID: id}
	f, err := r.be.Open(ctx, r.packHandle(id))
	if err != nil {
		rep.Err = err
		return rep
	}
	defer f.Close()
	rep.Size = f.Size()
	entries, herr := pack.ReadHeader(f, f.Size(), r.key)
	var fe *pack.FormatError
	if errors.As(herr, &fe) {
		fe.Pack = id.Short()
	}
	rep.Entries = entries
	b := getVerifyBufs(r.verifyReadSize())
	defer putVerifyBufs(b)
	b.h.Reset()
	b.br.Reset(io.NewSectionReader(f, 0, f.Size()))
	h, br := b.h, b.br
	var pos int64
	for _, e := range entries {
		if err := ctx.Err(); err != nil {
			rep.Err = err
			return rep
		}
		if n, err := io.CopyN(h, br, int64(e.Offset)-pos); err != nil {
			rep.Err = fmt.Errorf("pack %s: read at %d: %w", id.Short(), pos+n, err)
			return rep
		}
		b.env = grow(b.env, int(e.Length))
		if _, err := io.ReadFull(br, b.env); err != nil {
			rep.Err = fmt.Errorf("pack %s: read at %d: %w", id.Short(), e.Offset, err)
			return rep
		}
		h.Write(b.env)
		pos = int64(e.Offset) + int64(e.Length)
		b.plain, b.scratch, err = pack.OpenBlob(b.plain[:0], r.key, e.Handle, int(e.RawLength), b.env, b.scratch)
		if err != nil {
			rep.Damaged = append(rep.Damaged, DamagedBlob{Handle: e.Handle, Err: err})
		}
	}
	if _, err := io.Copy(h, br); err != nil {
		rep.Err = fmt.Errorf("pack %s: read: %w", id.Short(), err)
		return rep
	}
	switch {
	case herr != nil:
		rep.Err = herr
	case blob.ID(h.Sum(nil)) != id:
		rep.Err = fmt.Errorf("pack %s: file does not hash to its name: %w", id.Short(), blob.ErrCorrupt)
	}
	return rep
}

// verifyBufs are the buffers of one VerifyPack call.
type verifyBufs struct {
	h                   hash.Hash
	br                  *bufio.Reader
	env, plain, scratch []byte
}

// verifyPool keeps VerifyPack's buffers between packs, so that reading a
// repository allocates (and the kernel zeroes) them once per reader
// rather than once per pack.
var verifyPool sync.Pool

// maxPooledBlob bounds what the pool keeps: a buffer grown for a rare
// blob larger than this (up to blob.MaxSize) is left to the collector.
const maxPooledBlob = 16 << 20

func getVerifyBufs(readSize int) *verifyBufs {
	if b, ok := verifyPool.Get().(*verifyBufs); ok && b.br.Size() == readSize {
		return b
	}
	return &verifyBufs{h: sha256.New(), br: bufio.NewReaderSize(nil, readSize)}
}

func putVerifyBufs(b *verifyBufs) {
	b.br.Reset(nil)
	for _, p := range []*[]byte{&b.env, &b.plain, &b.scratch} {
		if cap(*p) > maxPooledBlob {
			*p = nil
		}
	}
	verifyPool.Put(b)
}

// MarkVerified records that pack id was completely verified now.
func (r *Repository) MarkVerified(id blob.ID) error {
	return r.idx.SetVerified(id, r.now())
}

// VerifiedTimes calls fn with each pack's last full verification time.
func (r *Repository) VerifiedTimes(fn func(id blob.ID, t time.Time) error) error {
	return r.idx.VerifiedTimes(fn)
}

// PackReaders is how many packs to read whole at once (check
// --read-data): two from a directory, four from an object store, where
// each read also waits a round trip.
func (r *Repository) PackReaders() int { return r.readers(2, 4) }

// verifyReadSize is the size of VerifyPack's reads: 1 MiB from a
// directory, 8 MiB (one request for half a full pack) from an object
// store.
func (r *Repository) verifyReadSize() int {
	if r.local != nil {
		return 1 << 20
	}
	return 8 << 20
}
