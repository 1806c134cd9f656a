package repo

import (
	"bytes"
	"context"
	"errors"
	"fmt"

	"github.com/cairnbackup/cairn/repo/blob"
	"github.com/cairnbackup/cairn/repo/internal/crashpoint"
	"github.com/cairnbackup/cairn/repo/seal"
	"github.com/cairnbackup/cairn/repo/snapshot"
	"github.com/cairnbackup/cairn/repo/storage"
)

func snapshotAAD(id blob.ID) []byte {
	return append([]byte("cairn v1 snapshot "), id[:]...)
}

// saveSnapshot syncs the index, then writes the sealed snapshot file, then
// caches the record in the index.
func (r *Repository) saveSnapshot(ctx context.Context, sn *snapshot.Snapshot) (blob.ID, error) {
	plain, id, err := snapshot.Encode(sn)
	if err != nil {
		return blob.ID{}, err
	}
	if err := r.idx.Sync(); err != nil {
		return blob.ID{}, err
	}
	crashpoint.Hit("before-snapshot-write")
	if err := r.confirmOwner(ctx); err != nil {
		return blob.ID{}, fmt.Errorf("snapshot %s: %w", id.Short(), err)
	}
	sealed := r.key.Seal(nil, plain, snapshotAAD(id))
	err = r.be.Put(ctx, storage.Handle{Kind: storage.Snapshot, Name: id.String()}, bytes.NewReader(sealed))
	if err != nil && !errors.Is(err, storage.ErrExist) {
		return blob.ID{}, fmt.Errorf("snapshot %s: %w", id.Short(), err)
	}
	crashpoint.Hit("after-snapshot-write")
	// The snapshot is saved once its file is durable. Should caching it
	// in the index fail, the next open adds it from the file.
	if err := r.idx.AddSnapshot(id, plain); err != nil {
		r.log.Warn("snapshot saved but not cached in the index; it is listed after the next open", "snapshot", id.Short(), "err", err)
	}
	return id, nil
}

// LoadSnapshot reads, authenticates and decodes snapshots/<id>.
func (r *Repository) LoadSnapshot(ctx context.Context, id blob.ID) (*snapshot.Snapshot, error) {
	plain, err := r.readSnapshotFile(ctx, id)
	if err != nil {
		return nil, err
	}
	return snapshot.Decode(plain)
}

func (r *Repository) readSnapshotFile(ctx context.Context, id blob.ID) ([]byte, error) {
	sealed, err := storage.ReadAll(ctx, r.be, storage.Handle{Kind: storage.Snapshot, Name: id.String()}, snapshot.MaxSize+seal.Overhead)
	if errors.Is(err, storage.ErrNotExist) {
		return nil, fmt.Errorf("snapshot %s: %w", id.Short(), blob.ErrNotFound)
	}
	if err != nil {
		return nil, err
	}
	plain, err := r.key.Open(nil, sealed, snapshotAAD(id))
	if err != nil {
		return nil, fmt.Errorf("snapshot %s: %w", id.Short(), err)
	}
	if blob.Hash(plain) != id {
		return nil, fmt.Errorf("snapshot %s: record does not match its id: %w", id.Short(), blob.ErrCorrupt)
	}
	return plain, nil
}

// Snapshots returns every snapshot that passes f, oldest first. It reads
// the index's cached records, each checked against its ID; a damaged one
// is read from its snapshot file instead.
func (r *Repository) Snapshots(ctx context.Context, f snapshot.Filter) ([]snapshot.Entry, error) {
	var list []snapshot.Entry
	err := r.idx.Snapshots(func(id blob.ID, rec []byte) error {
		if blob.Hash(rec) != id {
			// The index's copy is damaged (a cache is not trusted
			// blindly): read the snapshot file, which authenticates.
			plain, err := r.readSnapshotFile(ctx, id)
			if errors.Is(err, blob.ErrNotFound) {
				// No file and no intact copy: the snapshot is lost,
				// which check reports. The others are listed.
				r.log.Error("a snapshot is lost: its file is missing and the index's copy of its record is damaged; cairn check names it", "snapshot", id.String())
				return nil
			}
			if err != nil {
				return fmt.Errorf("index: snapshot %s: the cached record does not match its id, and the file: %w", id.Short(), err)
			}
			r.log.Warn("the index's copy of a snapshot record is damaged; read the snapshot file instead (cairn repair index rewrites the index)", "snapshot", id.Short())
			rec = plain
		}
		sn, err := snapshot.Decode(rec)
		if err != nil {
			return fmt.Errorf("index: snapshot %s: %w", id.Short(), err)
		}
		if f.Match(sn) {
			list = append(list, snapshot.Entry{ID: id, Snapshot: sn})
		}
		return nil
	})
	if err != nil {
		return nil, err
	}
	snapshot.Sort(list)
	return list, nil
}

// FindSnapshot resolves a snapshot reference among the snapshots
// passing f with [snapshot.Find]: a full ID, a unique prefix of at least
// 4 hex digits, or "latest" (the newest not dated after the clock; with
// sub, the PATH of "latest:PATH", the newest that holds it). note, when
// not empty, tells the user which snapshot "latest" named and why.
func (r *Repository) FindSnapshot(ctx context.Context, ref, sub string, f snapshot.Filter) (e snapshot.Entry, note string, err error) {
	list, err := r.Snapshots(ctx, f)
	if err != nil {
		return snapshot.Entry{}, "", err
	}
	return snapshot.Find(list, ref, sub, r.now())
}
