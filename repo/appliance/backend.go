package appliance

import (
	"context"
	"syscall"

	"github.com/cairnbackup/cairn/repo"
	"github.com/cairnbackup/cairn/repo/blob"
	"github.com/cairnbackup/cairn/repo/snapshot"
	"github.com/cairnbackup/cairn/repo/wire"
)

// Backend adapts a repository to what a wire session needs (the wire
// package's tests serve sessions with it too).
type Backend struct{ R *repo.Repository }

func (a *Appliance) backend() Backend { return Backend{a.r} }

func (b Backend) Info() wire.Info {
	p := b.R.ChunkerParams()
	return wire.Info{Repo: b.R.Config().ID, ChunkMin: uint32(p.Min), ChunkAvg: uint32(p.Avg), ChunkMax: uint32(p.Max), ChunkerSeed: b.R.ChunkerSeed()}
}

func (b Backend) ListSnapshots(ctx context.Context, node, plan string) ([]wire.SnapshotItem, error) {
	list, err := b.R.Snapshots(ctx, snapshot.Filter{Node: node, Plan: plan})
	if err != nil {
		return nil, err
	}
	out := make([]wire.SnapshotItem, 0, len(list))
	for _, e := range list {
		rec, _, err := snapshot.Encode(e.Snapshot)
		if err != nil {
			return nil, err
		}
		out = append(out, wire.SnapshotItem{ID: e.ID, Record: rec})
	}
	return out, nil
}

func (b Backend) LoadBlob(ctx context.Context, h blob.Handle, buf []byte) ([]byte, error) {
	return b.R.LoadBlob(ctx, h, buf)
}

// LoadStored gives a data blob as stored, for a wire session to send it
// compressed (see repo.Repository.LoadStored).
func (b Backend) LoadStored(ctx context.Context, h blob.Handle, buf []byte) ([]byte, int, error) {
	return b.R.LoadStored(ctx, h, buf)
}

// KeepPacksOpen keeps the packs a session reads open for the session
// (see repo.Repository.KeepPacksOpen).
func (b Backend) KeepPacksOpen(ctx context.Context) (context.Context, func()) {
	return b.R.KeepPacksOpen(ctx)
}

func (b Backend) Begin() wire.Store { return b.R.NewSession() }

func umask(m int) int { return syscall.Umask(m) }
