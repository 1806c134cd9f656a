package main

import (
	"context"
	"fmt"
	"time"

	"github.com/cairnbackup/cairn/repo/blob"
	"github.com/cairnbackup/cairn/repo/snapshot"
	"github.com/cairnbackup/cairn/repo/wire"
	"github.com/cairnbackup/cairn/repo/wire/dial"
)

// dialFrom connects to the appliance that from (ssh://NODE@HOST[:PORT],
// the --from of restore and snapshots) names and starts a wire session
// as its node, every phase bounded by --timeout and ended by a signal.
// outcome says what of the command's work stands when the session ends
// early, by the phase the link is in. A failure to connect comes back
// explained (the phase named) or as verb's error.
func (o *sshOptions) dialFrom(ctx context.Context, g *globalOptions, verb, from string, outcome func(phase string) string) (*link, *wire.Client, error) {
	t, err := dial.ParseTarget(from)
	if err != nil {
		return nil, nil, usageError{fmt.Errorf("%s --from: %w", verb, err)}
	}
	l := &link{verb: verb, addr: t.Addr(), timeout: o.timeout, phase: phaseConnect}
	l.done = func() string { return outcome(l.phase) }
	c, err := o.session(ctx, g, l, t)
	if err != nil {
		if e := l.explain(ctx, err); e != nil {
			return nil, nil, e
		}
		return nil, nil, fmt.Errorf("%s: %w", verb, err)
	}
	return l, c, nil
}

// remoteSnapshots returns the snapshots the appliance lists for this
// node (all of them for an admin node) that f matches, sorted. Each
// record must hash to its ID and decode: the node trusts nothing it did
// not check.
func remoteSnapshots(ctx context.Context, c *wire.Client, f snapshot.Filter) ([]snapshot.Entry, error) {
	items, err := c.ListSnapshots(ctx, "")
	if err != nil {
		return nil, err
	}
	var list []snapshot.Entry
	for _, it := range items {
		if blob.Hash(it.Record) != it.ID {
			return nil, fmt.Errorf("snapshot %s: the record the appliance sent does not match its id: %w", it.ID.Short(), blob.ErrCorrupt)
		}
		sn, err := snapshot.Decode(it.Record)
		if err != nil {
			return nil, fmt.Errorf("snapshot %s: %w", it.ID.Short(), err)
		}
		if f.Match(sn) {
			list = append(list, snapshot.Entry{ID: it.ID, Snapshot: sn})
		}
	}
	snapshot.Sort(list)
	return list, nil
}

// findRemote resolves ref (with sub, the PATH of SNAPSHOT:PATH) among
// the snapshots the appliance lists for this node, with snapshot.Find as
// FindSnapshot does locally.
func findRemote(ctx context.Context, c *wire.Client, ref, sub string, f snapshot.Filter) (snapshot.Entry, string, error) {
	list, err := remoteSnapshots(ctx, c, f)
	if err != nil {
		return snapshot.Entry{}, "", err
	}
	return snapshot.Find(list, ref, sub, time.Now())
}
