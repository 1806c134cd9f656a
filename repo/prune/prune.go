// Package prune decides which snapshots to forget (retention policies)
// and removes data no snapshot uses, while nodes keep pushing.
//
// # Prune
//
// Run marks every blob reachable from the remaining snapshots, plus what
// sessions in flight rely on, in a Bloom filter (a false positive only
// keeps a little garbage). Packs whose blobs are all unused are deleted;
// packs with more than MaxUnused of their bytes unused are repacked: their
// used blobs are copied (authenticated and re-hashed, not recompressed)
// into new packs whose index entries replace the old ones, and only after
// those packs and the index are durable are the old packs dropped.
//
// # Concurrent pushes
//
// Packs written after the oldest session in flight began are never
// deleted (they may hold blobs of a snapshot not committed yet). Blobs a
// session was told exist, before or during the prune, keep their packs
// (repo.Pruning.DropPacks). The only moment a push waits is while the
// index drops the packs.
//
// # Crash safety
//
// Each step leaves a consistent repository: new packs are durable and
// indexed before old ones leave the index, which is synced before any
// file is deleted; a pack file left behind by a crash is indexed again at
// the next open and deleted by the next prune.
//
// # Memory
//
// The Bloom filter (about 1.8 bytes per blob, at most 64 MiB), the set of
// tree IDs visited (about 40 bytes per distinct directory listing), one
// counter per pack, and the list of blobs to repack (bounded by
// MaxRepack).
package prune

import (
	"context"
	"errors"
	"fmt"
	"sort"
	"time"

	"github.com/cairnbackup/cairn/repo"
	"github.com/cairnbackup/cairn/repo/blob"
	"github.com/cairnbackup/cairn/repo/drill"
	"github.com/cairnbackup/cairn/repo/internal/crashpoint"
	"github.com/cairnbackup/cairn/repo/pack"
	"github.com/cairnbackup/cairn/repo/seal"
	"github.com/cairnbackup/cairn/repo/snapshot"
)

// Options configure Run.
type Options struct {
	DryRun bool
	// MaxUnused is the fraction of a pack's bytes that may be unused
	// before the pack is repacked; default 0.05 (5 %), like restic.
	MaxUnused float64
	// MaxRepack bounds the bytes copied by one run; zero is no bound.
	MaxRepack int64
	// Keep, if set, names packs that are neither dropped nor repacked
	// whatever they hold: a replica's own prune keeps the packs its
	// primary still has (the next replication would copy them back).
	Keep func(pack blob.ID) bool
}

// Report says what a prune did (or, with DryRun, would do).
type Report struct {
	DryRun          bool          `json:"dry_run"`
	Snapshots       int           `json:"snapshots"`
	Packs           int           `json:"packs"`
	PacksDeleted    int           `json:"packs_deleted"`
	PacksRepacked   int           `json:"packs_repacked"`
	PacksKept       int           `json:"packs_kept_for_pushes"` // would go, but hold blobs of pushes in flight
	BlobsRepacked   int           `json:"blobs_repacked"`
	BytesBefore     int64         `json:"bytes_before"`
	BytesRepacked   int64         `json:"bytes_repacked"`
	BytesFreed      int64         `json:"bytes_freed"`
	UnusedRemaining int64         `json:"unused_bytes_remaining"`
	BloomBytes      int           `json:"bloom_bytes"`
	Duration        time.Duration `json:"duration_ns"`
}

type packStat struct {
	size    int64
	created time.Time
	used    int64 // bytes of used blobs indexed in this pack
	nUsed   int
	blobs   int
}

// unused is the bytes of blobs no snapshot uses (the pack's own
// structure, prefix, header and footer, does not count).
func (st *packStat) unused() int64 {
	overhead := int64(pack.PrefixSize + pack.FooterSize + seal.Overhead + pack.EntrySize*st.blobs)
	return max(st.size-overhead-st.used, 0)
}

// Run prunes the repository.
func Run(ctx context.Context, r *repo.Repository, o Options) (*Report, error) {
	start := time.Now()
	if o.MaxUnused <= 0 {
		o.MaxUnused = 0.05
	}
	p, err := r.BeginPrune()
	if err != nil {
		return nil, err
	}
	defer p.End()
	rep := &Report{DryRun: o.DryRun}

	packs := map[blob.ID]*packStat{}
	var nBlobs int
	err = r.PackRecords(func(pr repo.PackRecord) error {
		packs[pr.ID] = &packStat{size: pr.Size, created: pr.Created, blobs: pr.Blobs}
		nBlobs += pr.Blobs
		rep.BytesBefore += pr.Size
		return nil
	})
	if err != nil {
		return nil, err
	}
	rep.Packs = len(packs)

	used, err := mark(ctx, r, nBlobs, p.Protected, rep)
	if err != nil {
		return nil, err
	}
	rep.BloomBytes = used.bytes()
	err = r.IndexedBlobs(func(h blob.Handle, loc repo.Location) error {
		if st := packs[loc.Pack]; st != nil && used.has(h) {
			st.used += int64(loc.Length)
			st.nUsed++
		}
		return nil
	})
	if err != nil {
		return nil, err
	}

	// Decide: delete packs with nothing used, repack the emptiest of the
	// rest while the budget lasts. Packs as new as the oldest push in
	// flight are left alone.
	drop := map[blob.ID]int64{}
	type cand struct {
		id      blob.ID
		unused  float64
		usedLen int64
	}
	var cands []cand
	for id, st := range packs {
		if !st.created.Before(p.Cutoff) || o.Keep != nil && o.Keep(id) {
			continue
		}
		switch {
		case st.nUsed == 0:
			drop[id] = st.size
		case float64(st.unused())/float64(st.size) > o.MaxUnused:
			cands = append(cands, cand{id: id, unused: float64(st.unused()) / float64(st.size), usedLen: st.used})
		}
	}
	sort.Slice(cands, func(i, j int) bool { return cands[i].unused > cands[j].unused })
	repack := map[blob.ID]bool{}
	for _, c := range cands {
		if o.MaxRepack > 0 && rep.BytesRepacked+c.usedLen > o.MaxRepack {
			continue
		}
		repack[c.id] = true
		rep.BytesRepacked += c.usedLen
	}
	if o.DryRun {
		for id := range drop {
			rep.PacksDeleted++
			rep.BytesFreed += packs[id].size
		}
		for id := range repack {
			rep.PacksRepacked++
			rep.BytesFreed += packs[id].unused()
		}
		rep.UnusedRemaining = unusedRemaining(packs, drop, repack)
		rep.Duration = time.Since(start)
		return rep, nil
	}

	if len(repack) > 0 {
		var move []blob.Handle
		err := r.IndexedBlobs(func(h blob.Handle, loc repo.Location) error {
			if repack[loc.Pack] && used.has(h) {
				move = append(move, h)
			}
			return nil
		})
		if err != nil {
			return nil, err
		}
		s := r.NewRepackSession()
		for _, h := range move {
			if err := ctx.Err(); err != nil {
				s.Abort()
				return nil, err
			}
			if err := r.CopyBlob(ctx, s, h); err != nil {
				s.Abort()
				return nil, fmt.Errorf("prune: repack: %w", err)
			}
		}
		if err := r.FinishRepack(ctx, s); err != nil {
			return nil, fmt.Errorf("prune: repack: %w", err)
		}
		rep.BlobsRepacked = len(move)
		crashpoint.Hit("prune-after-repack")
		for id := range repack {
			drop[id] = packs[id].size
		}
	}
	dropped, err := p.DropPacks(ctx, drop)
	for id, size := range dropped {
		if repack[id] {
			rep.PacksRepacked++
		} else {
			rep.PacksDeleted++
		}
		rep.BytesFreed += size
	}
	rep.PacksKept = len(drop) - len(dropped)
	if err != nil {
		return rep, err
	}
	rep.BytesFreed -= rep.BytesRepacked // the copies take room again
	rep.UnusedRemaining = unusedRemaining(packs, dropped, nil)
	rep.Duration = time.Since(start)
	return rep, nil
}

func unusedRemaining(packs map[blob.ID]*packStat, gone map[blob.ID]int64, repacked map[blob.ID]bool) int64 {
	var n int64
	for id, st := range packs {
		if _, ok := gone[id]; ok || repacked[id] {
			continue
		}
		n += st.unused()
	}
	return n
}

// mark returns the blobs used by every snapshot and by sessions in flight.
// It refuses to go on if any tree cannot be read: what such a tree uses
// is unknown, so nothing could be deleted safely.
func mark(ctx context.Context, r *repo.Repository, nBlobs int, protected []blob.Handle, rep *Report) (*bloom, error) {
	used := newBloom(nBlobs, 0.001)
	for _, h := range protected {
		used.add(h)
	}
	list, err := r.Snapshots(ctx, snapshot.Filter{})
	if err != nil {
		return nil, err
	}
	rep.Snapshots = len(list)
	visited := map[blob.ID]struct{}{}
	add := func(h blob.Handle) error {
		used.add(h)
		return nil
	}
	for _, e := range list {
		err := Reach(ctx, r, e.Tree, visited, add)
		var te *TreeError
		if errors.As(err, &te) {
			return nil, fmt.Errorf("prune: tree %s cannot be read (%w); run cairn check: nothing is deleted while a snapshot cannot be read", te.Tree.Short(), te.Err)
		}
		if err != nil {
			return nil, err
		}
	}
	return used, nil
}

// ForgetOptions say what Forget applies to what.
type ForgetOptions struct {
	Filter  snapshot.Filter // the snapshots to consider
	GroupBy GroupBy         // how they are grouped (DefaultGroupBy, usually)
	// PolicyFor returns the policy of a group (ok false: leave the group
	// alone).
	PolicyFor func(Group) (Policy, bool)
	Loc       *time.Location // the time zone of the calendar rules
	Now       time.Time      // the appliance's clock
	DryRun    bool
}

// Forget applies policies to the snapshots that pass the filter, group
// by group, against the drill marks of the repository's reports. Unless
// DryRun, the snapshots not kept are then deleted. Decisions are
// returned per group, newest first. When a drill report cannot be read
// and a policy keeps drilled snapshots, Forget deletes nothing: the
// report may be the one that proves a snapshot.
func Forget(ctx context.Context, r *repo.Repository, o ForgetOptions) (map[Group][]Decision, error) {
	list, err := r.Snapshots(ctx, o.Filter)
	if err != nil {
		return nil, err
	}
	marks, reportsErr := drill.Marks(ctx, r)
	if marks == nil && reportsErr != nil && ctx.Err() != nil {
		return nil, reportsErr
	}
	env := Env{Now: o.Now, Loc: o.Loc, Marks: marks}
	keys, groups := o.GroupBy.Split(list)
	out := map[Group][]Decision{}
	for _, g := range keys {
		p, ok := o.PolicyFor(g)
		if !ok || p.Empty() {
			continue
		}
		if reportsErr != nil && p.KeepDrilled() > 0 {
			return nil, fmt.Errorf("forget: %w; nothing forgotten (a report that cannot be read may name a group's proven snapshot; with keep_drilled 0 forget does not need them)", reportsErr)
		}
		out[g] = Apply(groups[g], p, env)
	}
	if o.DryRun {
		return out, nil
	}
	for _, g := range keys {
		for _, d := range out[g] {
			if !d.Keep {
				if err := r.DeleteSnapshot(ctx, d.ID); err != nil {
					return out, err
				}
			}
		}
	}
	return out, nil
}
