package appliance

import (
	"context"
	"syscall"

	"github.com/cairnbackup/cairn/repo"
	"github.com/cairnbackup/cairn/repo/blob"
	"github.com/cairnbackup/cairn/repo/snapshot"
	"github.com/cairnbackup/cairn/repo/wire"
)

// backend adapts the repository to what a wire session needs.
type backend struct{ r *repo.Repository }

func (a *Appliance) backend() backend { return backend{a.r} }

func (b backend) Info() wire.Info {
	p := b.r.ChunkerParams()
	return wire.Info{Repo: b.r.Config().ID, ChunkMin: uint32(p.Min), ChunkAvg: uint32(p.Avg), ChunkMax: uint32(p.Max), ChunkerSeed: b.r.ChunkerSeed()}
}

func (b backend) ListSnapshots(ctx context.Context, node, plan string) ([]wire.SnapshotItem, error) {
	list, err := b.r.Snapshots(ctx, snapshot.Filter{Node: node, Plan: plan})
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

func (b backend) LoadBlob(ctx context.Context, h blob.Handle, buf []byte) ([]byte, error) {
	return b.r.LoadBlob(ctx, h, buf)
}

func (b backend) Begin() wire.Store { return b.r.NewSession() }

func umask(m int) int { return syscall.Umask(m) }
