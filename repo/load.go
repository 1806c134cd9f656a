package repo

import (
	"context"
	"errors"
	"fmt"
	"sync"

	"github.com/cairnbackup/cairn/repo/blob"
	"github.com/cairnbackup/cairn/repo/internal/index"
	"github.com/cairnbackup/cairn/repo/pack"
	"github.com/cairnbackup/cairn/repo/storage"
)

// envPool holds envelope and scratch buffers for LoadBlob, so steady-state
// reads do not allocate. Buffers grow to the largest blob read.
var envPool = sync.Pool{New: func() any { return new([]byte) }}

// Location says where a blob is stored: its pack, offset and lengths.
type Location = index.Location

// Lookup returns where blob h is stored.
func (r *Repository) Lookup(h blob.Handle) (Location, bool, error) {
	return r.idx.Lookup(h)
}

// HasBlobs reports for each handle whether the repository has it.
func (r *Repository) HasBlobs(hs []blob.Handle) ([]bool, error) {
	return r.idx.Has(hs)
}

// LoadBlob reads blob h, authenticates and decompresses it, checks that
// it hashes to h.ID, and appends the plaintext to buf[:0]. A blob the
// index does not know gives an error wrapping [blob.ErrNotFound]; damage
// gives one wrapping [blob.ErrCorrupt] and naming the pack.
func (r *Repository) LoadBlob(ctx context.Context, h blob.Handle, buf []byte) ([]byte, error) {
	return r.load(ctx, h, buf, true)
}

// LoadBlobUnhashed is LoadBlob for a data blob whose reader hashes every
// byte it gets against a hash it trusts (snapfs.UnhashedLoader): the blob
// is authenticated and decompressed to the length the index records, but
// not hashed. Tree blobs are always hashed.
func (r *Repository) LoadBlobUnhashed(ctx context.Context, h blob.Handle, buf []byte) ([]byte, error) {
	return r.load(ctx, h, buf, false)
}

// load is LoadBlob; rehash is openEnvelope's.
func (r *Repository) load(ctx context.Context, h blob.Handle, buf []byte, rehash bool) ([]byte, error) {
	loc, f, done, err := r.openBlob(ctx, h)
	if err != nil {
		return buf[:0], err
	}
	defer done()
	return r.loadFrom(f, loc, h, buf, rehash)
}

// LoadStored reads blob h and authenticates its envelope, and appends
// the envelope's content to buf[:0]: the compression byte, then the
// payload as stored. It also returns the plaintext's length. It neither
// decompresses nor re-hashes: the appliance sends data blobs this way to
// a node, which does both (repo/wire). Errors are LoadBlob's.
func (r *Repository) LoadStored(ctx context.Context, h blob.Handle, buf []byte) ([]byte, int, error) {
	loc, f, done, err := r.openBlob(ctx, h)
	if err != nil {
		return buf[:0], 0, err
	}
	defer done()
	envp, err := r.readEnvelope(f, loc, h)
	if err != nil {
		return buf[:0], 0, err
	}
	defer putEnv(envp)
	out, err := pack.OpenStored(buf, r.key, h, *envp)
	if err != nil {
		return out, 0, fmt.Errorf("pack %s offset %d: %w", loc.Pack.Short(), loc.Offset, err)
	}
	return out, int(loc.RawLength), nil
}

// openBlob finds blob h and opens its pack; the caller calls done when
// it has read the blob.
func (r *Repository) openBlob(ctx context.Context, h blob.Handle) (loc index.Location, f storage.File, done func(), err error) {
	loc, ok, err := r.idx.Lookup(h)
	if err != nil {
		return loc, nil, nil, err
	}
	if !ok {
		return loc, nil, nil, fmt.Errorf("blob %s: %w", h, blob.ErrNotFound)
	}
	switch {
	case r.local != nil:
		f, done, err = r.readPack(ctx, loc.Pack)
	case loc.Length < segmentSmall:
		f, err = r.segmentFor(ctx, loc.Pack, int64(loc.Offset), int64(loc.Length))
	default:
		f, err = r.be.Open(ctx, r.packHandle(loc.Pack))
	}
	if errors.Is(err, storage.ErrNotExist) {
		return loc, nil, nil, fmt.Errorf("blob %s: pack %s is missing: %w", h, loc.Pack.Short(), blob.ErrNotFound)
	}
	if err != nil {
		return loc, nil, nil, err
	}
	if done == nil {
		done = func() { f.Close() }
	}
	return loc, f, done, nil
}

// loadFrom reads blob h at loc from an open pack file; rehash is
// openEnvelope's.
func (r *Repository) loadFrom(f storage.File, loc index.Location, h blob.Handle, buf []byte, rehash bool) ([]byte, error) {
	envp, err := r.readEnvelope(f, loc, h)
	if err != nil {
		return buf[:0], err
	}
	defer putEnv(envp)
	return r.openEnvelope(loc, h, *envp, buf[:0], rehash)
}

// readEnvelope reads the envelope of blob h at loc from an open pack file
// into a pooled buffer, which the caller returns with putEnv.
func (r *Repository) readEnvelope(f storage.File, loc index.Location, h blob.Handle) (*[]byte, error) {
	if !plausible(loc) {
		return nil, implausible(h, loc)
	}
	if int64(loc.Offset)+int64(loc.Length) > f.Size() {
		return nil, fmt.Errorf("blob %s: pack %s is %d bytes, too short for the blob at %d+%d: %w",
			h, loc.Pack.Short(), f.Size(), loc.Offset, loc.Length, blob.ErrCorrupt)
	}
	envp := envPool.Get().(*[]byte)
	*envp = grow(*envp, int(loc.Length))
	if _, err := f.ReadAt(*envp, int64(loc.Offset)); err != nil {
		putEnv(envp)
		return nil, fmt.Errorf("blob %s: read pack %s: %w", h, loc.Pack.Short(), err)
	}
	return envp, nil
}

// openEnvelope authenticates, decompresses and re-hashes blob h from its
// sealed envelope env, read from loc, and appends its plaintext to dst.
// Without rehash a data blob is not re-hashed (its reader hashes it:
// LoadBlobUnhashed); a tree always is.
func (r *Repository) openEnvelope(loc index.Location, h blob.Handle, env, dst []byte, rehash bool) ([]byte, error) {
	scrp := envPool.Get().(*[]byte)
	defer putEnv(scrp)
	open := pack.OpenBlob
	if !rehash && h.Type == blob.Data {
		open = pack.OpenBlobUnhashed
	}
	out, scratch, err := open(dst, r.key, h, int(loc.RawLength), env, *scrp)
	*scrp = scratch
	if err != nil {
		return dst, fmt.Errorf("pack %s offset %d: %w", loc.Pack.Short(), loc.Offset, err)
	}
	return out, nil
}

// plausible reports whether an index entry's lengths are within what a
// pack can hold; readers refuse the others before reading anything.
func plausible(loc index.Location) bool {
	return loc.Length <= blob.MaxSize+pack.MinEnvelope && loc.RawLength <= blob.MaxSize
}

func implausible(h blob.Handle, loc index.Location) error {
	return fmt.Errorf("blob %s: index entry claims %d bytes: %w", h, loc.Length, blob.ErrCorrupt)
}

// putEnv returns a buffer to the pool unless it grew beyond a typical
// chunk, so the pool does not pin memory after one huge blob.
func putEnv(b *[]byte) {
	if cap(*b) <= 16<<20 {
		envPool.Put(b)
	}
}

func grow(b []byte, n int) []byte {
	if cap(b) < n {
		return make([]byte, n)
	}
	return b[:n]
}
