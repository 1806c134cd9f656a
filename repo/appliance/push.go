package appliance

import (
	"context"
	"fmt"
	"io"
	"time"

	"github.com/cairnbackup/cairn/repo/backup"
	"github.com/cairnbackup/cairn/repo/blob"
	"github.com/cairnbackup/cairn/repo/snapshot"
	"github.com/cairnbackup/cairn/repo/status"
)

func (a *Appliance) logPush(node, kind string, snaps []blob.ID, blobs, bytes, stored uint64, start time.Time, err error) {
	attrs := []any{"node", node, "kind", kind, "blobs_sent", blobs, "bytes_sent", bytes, "blobs_stored", stored, "duration", time.Since(start).Round(time.Millisecond)}
	for _, s := range snaps {
		attrs = append(attrs, "snapshot", s.String())
	}
	if err != nil {
		a.log.Warn("push failed", append(attrs, "err", err)...)
		return
	}
	if len(snaps) == 0 {
		a.log.Info("session ended without a snapshot", attrs...)
		return
	}
	a.log.Info("push", attrs...)
}

// pushStream stores a stream the node sends on stdin: a tar stream
// (p.Tar, placed under p.Name if given) or one file (p.Stdin, named
// p.Name). The push command's flags are parsed and checked in nodecmd.go.
// The summary of an isolated node's push counts what it sent.
func (a *Appliance) pushStream(ctx context.Context, node string, isolated bool, p pushArgs, stdin io.Reader, stdout, stderr io.Writer, start time.Time) int {
	o := backup.Options{Params: a.r.ChunkerParams(), Table: a.r.ChunkerTable(), Loader: a.r}
	s := a.r.NewSession()
	up := newStreamUploader(s, isolated)
	src := backup.Source{Stream: stdin, Name: p.Name, Tar: p.Tar}
	plan := p.Plan
	list, err := a.r.Snapshots(ctx, snapshot.Filter{Node: node})
	var parent *snapshot.Entry
	if err == nil {
		parent, err = backup.FindParent(list, backup.ParentQuery{Node: node, Plan: plan, Paths: src.Recorded()}, time.Now())
	}
	var id blob.ID
	var sn *snapshot.Snapshot
	if err == nil {
		id, sn, err = backup.Snapshot(ctx, up, src, backup.Meta{Node: node, Plan: plan, Tags: p.Tags, Parent: parent, Start: start}, o)
	}
	if err != nil {
		s.Abort()
		if cause := context.Cause(ctx); cause != nil {
			err = cause // the idle timeout
		}
	}
	a.countPush(node, err)
	st := up.Stats()
	if err != nil {
		a.logPush(node, "push", nil, st.BlobsAdded, st.StoredAdded, s.Stats().BlobsAdded, start, err)
		a.pushEnded(node, nil, []string{plan}, err)
		fmt.Fprintln(stderr, "cairn:", err)
		return 1
	}
	a.logPush(node, "push", []blob.ID{id}, st.BlobsAdded, st.StoredAdded, s.Stats().BlobsAdded, start, nil)
	a.pushEnded(node, []blob.ID{id}, []string{plan}, nil)
	sum := sn.Summary
	for _, w := range sum.Warnings {
		fmt.Fprintln(stderr, "warning:", w)
	}
	files := fmt.Sprintf("%d files", sum.Files)
	if sum.Files == 1 {
		files = "1 file"
	}
	fmt.Fprintf(stdout, "snapshot %s saved: %s, %s, %s added\n", id.Short(), files, status.HumanBytes(sum.Bytes), status.HumanBytes(sum.BytesAdded))
	if len(sum.Warnings) > 0 {
		return 3
	}
	return 0
}
