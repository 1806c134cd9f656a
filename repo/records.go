package repo

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"io/fs"
	"slices"

	"github.com/cairnbackup/cairn/repo/blob"
	"github.com/cairnbackup/cairn/repo/seal"
	"github.com/cairnbackup/cairn/repo/storage"
)

// MaxRecordSize bounds the plaintext of a record stored with
// [Repository.PutRecord]; GetRecord refuses larger files before reading
// them.
const MaxRecordSize = 64 << 20

// recordAAD binds a sealed record to its kind and ID, so a record cannot
// be passed off as another, or as one of another kind.
func recordAAD(kind storage.Kind, id blob.ID) []byte {
	return append([]byte("cairn v1 record "+string(kind)+" "), id[:]...)
}

// checkRecordKind refuses the kinds that have formats of their own.
func checkRecordKind(kind storage.Kind) error {
	switch kind {
	case storage.Config, storage.Keys, storage.Packs, storage.Snapshot:
		return fmt.Errorf("records of kind %q are not supported: %s has its own format", kind, kind)
	case "":
		return errors.New("records: kind is empty")
	}
	return nil
}

// PutRecord seals plaintext and stores it as kind/<id>, where id is the
// SHA-256 of the plaintext, with the associated data
// "cairn v1 record <kind> " followed by the 32 bytes of the ID. The
// record is durable when PutRecord returns. Storing the same plaintext
// twice stores it once and returns the same ID. Records are the sealed
// files of kinds other than snapshots, such as drill reports
// ([storage.Drills]); they are not indexed, so [Repository.RebuildIndex]
// has nothing to rebuild for them.
func (r *Repository) PutRecord(ctx context.Context, kind storage.Kind, plaintext []byte) (blob.ID, error) {
	if err := checkRecordKind(kind); err != nil {
		return blob.ID{}, err
	}
	if len(plaintext) > MaxRecordSize {
		return blob.ID{}, fmt.Errorf("%s: record of %d bytes exceeds %d", kind, len(plaintext), MaxRecordSize)
	}
	id := blob.Hash(plaintext)
	sealed := r.key.Seal(nil, plaintext, recordAAD(kind, id))
	err := r.be.Put(ctx, storage.Handle{Kind: kind, Name: id.String()}, bytes.NewReader(sealed))
	if err != nil && !errors.Is(err, storage.ErrExist) {
		return blob.ID{}, fmt.Errorf("%s/%s: %w", kind, id.Short(), err)
	}
	return id, nil
}

// GetRecord reads kind/<id>, authenticates it and checks that the
// plaintext hashes to id. A missing record gives an error wrapping
// [blob.ErrNotFound]; a damaged one (or one renamed from another record)
// an error wrapping [blob.ErrCorrupt].
func (r *Repository) GetRecord(ctx context.Context, kind storage.Kind, id blob.ID) ([]byte, error) {
	if err := checkRecordKind(kind); err != nil {
		return nil, err
	}
	sealed, err := storage.ReadAll(ctx, r.be, storage.Handle{Kind: kind, Name: id.String()}, MaxRecordSize+seal.Overhead)
	if errors.Is(err, storage.ErrNotExist) {
		return nil, fmt.Errorf("%s/%s: %w", kind, id.Short(), blob.ErrNotFound)
	}
	if err != nil {
		return nil, err
	}
	plain, err := r.key.Open(nil, sealed, recordAAD(kind, id))
	if err != nil {
		return nil, fmt.Errorf("%s/%s: %w", kind, id.Short(), err)
	}
	if blob.Hash(plain) != id {
		return nil, fmt.Errorf("%s/%s: record does not match its id: %w", kind, id.Short(), blob.ErrCorrupt)
	}
	return plain, nil
}

// ListRecords returns the IDs of the records of kind, sorted by ID. Files
// whose names are not IDs are left out (and logged); a repository
// without a directory for kind has no records of it.
func (r *Repository) ListRecords(ctx context.Context, kind storage.Kind) ([]blob.ID, error) {
	if err := checkRecordKind(kind); err != nil {
		return nil, err
	}
	var ids []blob.ID
	err := r.be.List(ctx, kind, func(name string, _ int64) error {
		id, err := blob.ParseID(name)
		if err != nil {
			r.log.Warn("ignoring a file that is not a record", "kind", kind, "name", name)
			return nil
		}
		ids = append(ids, id)
		return nil
	})
	if errors.Is(err, fs.ErrNotExist) {
		return nil, nil
	}
	if err != nil {
		return nil, err
	}
	slices.SortFunc(ids, func(a, b blob.ID) int { return bytes.Compare(a[:], b[:]) })
	return ids, nil
}
