package drill

import (
	"context"

	"github.com/cairnbackup/cairn/repo"
	"github.com/cairnbackup/cairn/repo/blob"
	"github.com/cairnbackup/cairn/repo/snapfs"
	"github.com/cairnbackup/cairn/repo/snapshot"
	"github.com/cairnbackup/cairn/repo/storage"
)

// Source is what [Run] reads: a snapshot's record and the blobs under
// it, each authenticated and re-hashed. *repo.Repository satisfies it,
// and so does a replica's repository (repo.OpenReplica), which a
// replica's drill reads from alone.
type Source interface {
	snapfs.BlobLoader
	LoadSnapshot(ctx context.Context, id blob.ID) (*snapshot.Snapshot, error)
}

// Recorder is what [Save] writes through: a sealed record in drills/
// and the index's note of it. *repo.Repository satisfies it.
type Recorder interface {
	PutRecord(ctx context.Context, kind storage.Kind, plaintext []byte) (blob.ID, error)
	NoteDrills(notes []repo.DrillNote, complete bool) error
}

// Records is what [List] and [Load] read: the sealed reports in
// drills/. *repo.Repository satisfies it.
type Records interface {
	ListRecords(ctx context.Context, kind storage.Kind) ([]blob.ID, error)
	GetRecord(ctx context.Context, kind storage.Kind, id blob.ID) ([]byte, error)
}

// Notes is what [Marks] reads: the newest reports of each snapshot as
// the index notes them and, while the index has not noted every report
// (a rebuilt index, or one of an older version), the reports themselves,
// which it then notes. *repo.Repository satisfies it.
type Notes interface {
	Records
	DrillsNoted() (bool, error)
	NoteDrills(notes []repo.DrillNote, complete bool) error
	SnapshotDrills(fn func(newest repo.DrillNote, passed *repo.DrillNote) error) error
}
