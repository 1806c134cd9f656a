package main

import (
	"context"
	"fmt"
	"time"

	"github.com/cairnbackup/cairn/repo"
	"github.com/cairnbackup/cairn/repo/blob"
	"github.com/cairnbackup/cairn/repo/filter"
	"github.com/cairnbackup/cairn/repo/snapfs"
	"github.com/cairnbackup/cairn/repo/snapshot"
	"github.com/cairnbackup/cairn/repo/tree"
	"github.com/spf13/cobra"
)

// findCacheSize is the budget of the tree cache find shares between
// snapshots, so a subtree common to many of them is read from disk once.
const findCacheSize = 32 << 20

func newFindCommand(g *globalOptions) *cobra.Command {
	f := &filterOptions{}
	var refs []string
	cmd := &cobra.Command{
		Use:   "find PATTERN [--snapshot SNAPSHOT]...",
		Short: "search snapshots for files and directories by name or path",
		Long: `Search every snapshot that passes --node, --plan, --tag and --path (or
only the snapshots given with --snapshot, an ID prefix or "latest") for
entries whose name or path matches PATTERN. PATTERN has the syntax of
backup --exclude and is matched against the path inside the snapshot
with a leading "/":

  cairn find sshd_config             any entry named sshd_config
  cairn find '*.conf'                names ending in .conf, at any depth
  cairn find 'etc/ssh/*'             entries directly below any etc/ssh
  cairn find '/home/*/.bashrc'       anchored at the snapshot root
  cairn find 'build/'                directories named build only

Prints one line per match: snapshot, snapshot time, type, size, mtime
and path (symlinks with their target), oldest snapshot first, each
snapshot in path order. A count goes to standard error. With --json,
prints one JSON object per line: snapshot, time, path, type, size, mtime,
target for symlinks and sha256 for files.

A tree that cannot be read is reported as a warning and the search goes
on; the exit code is then 1. Finding nothing is not an error (exit 0).`,
		Args: cobra.ExactArgs(1),
		RunE: func(cmd *cobra.Command, args []string) error {
			return runFind(cmd.Context(), g, f, refs, args[0])
		},
	}
	cmd.Flags().StringArrayVarP(&refs, "snapshot", "s", nil, "search only this snapshot (repeatable; an ID prefix or latest)")
	f.register(cmd)
	return cmd
}

// findJSON is one line of find --json.
type findJSON struct {
	Snapshot blob.ID   `json:"snapshot"`
	Time     time.Time `json:"time"`
	Path     string    `json:"path"`
	Type     string    `json:"type"`
	Size     uint64    `json:"size"`
	MTime    time.Time `json:"mtime"`
	Target   string    `json:"target,omitempty"`
	SHA256   *blob.ID  `json:"sha256,omitempty"`
}

type finder struct {
	g      *globalOptions
	l      snapfs.BlobLoader
	m      *filter.Matcher
	sn     snapshot.Entry
	hits   int
	failed int
}

func runFind(ctx context.Context, g *globalOptions, f *filterOptions, refs []string, pattern string) error {
	m, err := filter.New(filter.FromFlags([]string{pattern}, "find"))
	if err != nil {
		return usageError{err}
	}
	r, release, err := g.open(ctx, repo.Options{ReadOnly: true})
	if err != nil {
		return err
	}
	defer release()
	list, err := selectSnapshots(ctx, r, refs, f.filter())
	if err != nil {
		return err
	}
	fd := &finder{g: g, l: snapfs.NewCache(r, findCacheSize), m: m}
	snaps := 0
	for _, sn := range list {
		fd.sn = sn
		before := fd.hits
		if err := fd.dir(ctx, sn.Tree); err != nil {
			return err
		}
		if fd.hits > before {
			snaps++
		}
	}
	if !g.json {
		fmt.Fprintf(g.stderr, "found %d matches in %d of %d snapshots\n", fd.hits, snaps, len(list))
	}
	if fd.failed > 0 {
		return fmt.Errorf("find: %d trees could not be read; the results are incomplete", fd.failed)
	}
	return nil
}

// dir searches the tree id of a snapshot's root. It descends only where
// the pattern could match below.
func (fd *finder) dir(ctx context.Context, id blob.ID) error {
	skip := func(e snapfs.Entry) bool { return !fd.m.CouldMatchBelow("/" + e.Path) }
	for e, err := range snapfs.Walk(ctx, fd.l, id, snapfs.WalkOptions{Skip: skip}) {
		if err != nil {
			if ctx.Err() != nil {
				return ctx.Err()
			}
			fd.failed++
			fmt.Fprintf(fd.g.stderr, "warning: snapshot %s: %v\n", fd.sn.ID.Short(), err)
			continue
		}
		p := "/" + e.Path
		if ok, _ := fd.m.Match(p, e.Node.Type == tree.Dir); ok {
			fd.hits++
			if err := fd.print(p, e.Node); err != nil {
				return err
			}
		}
	}
	return nil
}

func (fd *finder) print(p string, n *tree.Node) error {
	if fd.g.json {
		v := findJSON{Snapshot: fd.sn.ID, Time: fd.sn.Time, Path: p, Type: n.Type.String(), Size: n.Size,
			MTime: time.Unix(0, n.MTime).UTC(), Target: n.LinkTarget}
		if n.Type == tree.File {
			h := n.FileHash
			v.SHA256 = &h
		}
		fd.g.printJSONLine(v)
		return nil
	}
	line := fmt.Sprintf("%s  %s  %-8s %12d  %s  %s", fd.sn.ID.Short(), fd.g.when(fd.sn.Time),
		n.Type, n.Size, fd.g.when(time.Unix(0, n.MTime)), p)
	if n.Type == tree.Symlink {
		line += " -> " + n.LinkTarget
	}
	_, err := fmt.Fprintln(fd.g.stdout, line)
	return err
}

// selectSnapshots returns the snapshots named by refs (each resolved with
// f, so "latest" honours --node and friends), or with no refs every
// snapshot passing f; oldest first, each once.
func selectSnapshots(ctx context.Context, r *repo.Repository, refs []string, f snapshot.Filter) ([]snapshot.Entry, error) {
	if len(refs) == 0 {
		return r.Snapshots(ctx, f)
	}
	seen := map[blob.ID]bool{}
	var out []snapshot.Entry
	for _, ref := range refs {
		e, _, err := r.FindSnapshot(ctx, ref, "", f)
		if err != nil {
			return nil, err
		}
		if !seen[e.ID] {
			seen[e.ID] = true
			out = append(out, e)
		}
	}
	snapshot.Sort(out)
	return out, nil
}
