package backup

import (
	"context"
	"errors"
	"io"
	"time"

	"github.com/cairnbackup/cairn/repo/blob"
	"github.com/cairnbackup/cairn/repo/snapshot"
)

// Source is what a snapshot holds: files and directories (Paths), or
// one stream read to its end (Stream): a single file called Name at the
// root, or with Tar a tar stream whose entries go into the directory
// Name ("" for the root itself).
type Source struct {
	Paths  []string // absolute
	Stream io.Reader
	Name   string
	Tar    bool
}

// Recorded returns the paths a snapshot of s records: Paths, "/NAME"
// for a stream or for a tar stream stored under NAME, "/" for a tar
// stream at the root.
func (s Source) Recorded() []string {
	switch {
	case s.Stream == nil:
		return s.Paths
	case s.Tar && s.Name == "":
		return []string{"/"}
	}
	return []string{"/" + s.Name}
}

// Meta is what a snapshot's record says besides what the backup found.
type Meta struct {
	Node string
	// Host is the host name as the node saw it; "" when nobody said (a
	// node's stream read by the appliance, which cannot know it).
	Host  string
	Plan  string
	Tags  []string
	Scope *snapshot.Scope // a plan file's source: what it is and why it is backed up
	// Parent is the snapshot FindParent chose, or nil. The record names
	// it; a backup of Paths compares files with its tree.
	Parent *snapshot.Entry
	// Start is when the backup started: the record's time and the start
	// of its duration. Zero means now (Options.Now).
	Start time.Time
	// Finish, if set, runs once the source is read and its blobs are
	// stored, or the backup failed (err): a plan's command source waits
	// for its command there, and its after commands run. An error it
	// returns fails a backup that had none: nothing is saved. Otherwise
	// its warnings join the summary's, and its hooks (the commands that
	// ran) go into the record's Scope.
	Finish func(ctx context.Context, err error) (Finished, error)
}

// Finished is what Meta.Finish adds to the record.
type Finished struct {
	Warnings []string
	Hooks    []snapshot.Hook
}

// Target is where a snapshot goes: a session of the local repository
// (*repo.Session, or for an isolated node's stream a *repo.SentCounter,
// whose figures count what the node sent) or a push to an appliance
// (*wire.Uploader).
type Target interface {
	Uploader
	// Flush returns once every blob handed to SaveBlob is stored, or
	// with the error that stopped one.
	Flush(ctx context.Context) error
	// Added reports what the snapshot's blobs added, as its summary
	// records it: blobs, their plaintext bytes, their stored bytes.
	Added() (blobs, bytes, stored uint64)
	// Commit stores the record once every blob it names is durable
	// and returns the record's ID.
	Commit(ctx context.Context, sn *snapshot.Snapshot) (blob.ID, error)
}

// Snapshot makes one snapshot: it backs up src into t (with [Run],
// [Stream] or [TarInto]), waits until t holds every blob, runs
// m.Finish, then writes the record (m's metadata, the backup's tree,
// excludes and summary, with t's figures of what was added) and commits
// it through t. It is the one place a snapshot record is made: by cairn
// backup into a local session, by cairn push into a *wire.Uploader, and
// by the appliance for a node's push --stdin or --tar.
//
// o.Parent is m.Parent's tree for a backup of Paths, and zero for a
// stream. On an error nothing is saved; the caller ends t as it ends
// after a failed backup (a session's Abort).
func Snapshot(ctx context.Context, t Target, src Source, m Meta, o Options) (blob.ID, *snapshot.Snapshot, error) {
	now := o.Now
	if now == nil {
		now = time.Now
	}
	start := m.Start
	if start.IsZero() {
		start = now()
	}
	o.Parent = blob.ID{}
	if m.Parent != nil && src.Stream == nil {
		o.Parent = m.Parent.Tree
	}
	var res *Result
	var err error
	switch {
	case src.Stream != nil && src.Tar:
		res, err = TarInto(ctx, t, src.Stream, src.Name, o)
	case src.Stream != nil:
		res, err = Stream(ctx, t, src.Stream, src.Name, o)
	case len(src.Paths) == 0:
		err = errors.New("backup: no paths given")
	default:
		res, err = Run(ctx, t, src.Paths, o)
	}
	if err == nil {
		err = t.Flush(ctx)
	}
	var sum snapshot.Summary
	if err == nil {
		sum = res.Summary
		sum.Duration = now().Sub(start)
	}
	var fin Finished
	if m.Finish != nil {
		var ferr error
		fin, ferr = m.Finish(ctx, err)
		if err == nil {
			err = ferr
		}
	}
	if err != nil {
		return blob.ID{}, nil, err
	}
	sum.BlobsAdded, sum.BytesAdded, sum.StoredAdded = t.Added()
	sum.Warnings = append(sum.Warnings, fin.Warnings...)
	sn := &snapshot.Snapshot{
		Version: snapshot.Version, Time: start, Node: m.Node, Plan: m.Plan, Host: m.Host,
		Paths: src.Recorded(), Tags: m.Tags, Tree: res.Tree, Excludes: res.Excludes, Scope: m.Scope, Summary: sum,
	}
	if m.Parent != nil {
		sn.Parent = &m.Parent.ID
	}
	if m.Scope != nil && fin.Hooks != nil {
		sc := *m.Scope
		sc.Hooks = fin.Hooks
		sn.Scope = &sc
	}
	id, err := t.Commit(ctx, sn)
	if err != nil {
		return blob.ID{}, nil, err
	}
	return id, sn, nil
}
