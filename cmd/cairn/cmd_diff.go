package main

import (
	"context"
	"fmt"
	"path"

	"github.com/cairnbackup/cairn/repo"
	"github.com/cairnbackup/cairn/repo/snapfs"
	"github.com/cairnbackup/cairn/repo/tree"
	"github.com/spf13/cobra"
)

func newDiffCommand(g *globalOptions) *cobra.Command {
	f := &filterOptions{}
	cmd := &cobra.Command{
		Use:   "diff SNAPSHOT1[:PATH] SNAPSHOT2[:PATH]",
		Short: "show what changed between two snapshots",
		Long: `Compare SNAPSHOT1 (old) with SNAPSHOT2 (new), or PATH inside each, and
print one line per entry that differs, in path order, a directory before
its contents:

  + /path   added: only in SNAPSHOT2 (a new directory is followed by
            everything in it)
  - /path   removed: only in SNAPSHOT1
  M /path   modified: the contents differ (size or SHA-256), or the type
            changed (then the old or new contents follow as - or +)
  m /path   metadata only: same contents, but the mode, owner, mtime,
            extended attributes, symlink target or device number changed

and a final count. Access and change times are not compared. When both
sides name the same PATH, paths are printed as in the snapshots;
otherwise relative to each side's PATH. Directories whose contents are
identical in both snapshots are skipped without being read, so
comparing two backups of a large, mostly unchanged tree is quick.

With --json, prints one JSON object per line, {"kind": "added" |
"removed" | "modified" | "metadata", "path": ...}, and no count.
The exit code is 0 whether or not anything changed. --node, --plan,
--tag and --path choose which snapshot "latest" names.`,
		Args: cobra.ExactArgs(2),
		RunE: func(cmd *cobra.Command, args []string) error {
			return runDiff(cmd.Context(), g, f, args[0], args[1])
		},
	}
	f.register(cmd)
	return cmd
}

// diffJSON is one line of diff --json.
type diffJSON struct {
	Kind string `json:"kind"`
	Path string `json:"path"`
}

type diffPrinter struct {
	g      *globalOptions
	counts map[snapfs.ChangeKind]int
}

func (d *diffPrinter) print(kind snapfs.ChangeKind, p string) error {
	d.counts[kind]++
	if d.g.json {
		d.g.printJSONLine(diffJSON{Kind: kind.String(), Path: p})
		return nil
	}
	sym := map[snapfs.ChangeKind]string{snapfs.Added: "+", snapfs.Removed: "-", snapfs.Modified: "M", snapfs.Metadata: "m"}[kind]
	_, err := fmt.Fprintf(d.g.stdout, "%s %s\n", sym, p)
	return err
}

func runDiff(ctx context.Context, g *globalOptions, f *filterOptions, arg1, arg2 string) error {
	r, release, err := g.open(ctx, repo.Options{ReadOnly: true})
	if err != nil {
		return err
	}
	defer release()
	var nodes [2]tree.Node
	var subs [2]string
	for i, arg := range []string{arg1, arg2} {
		var err error
		if _, nodes[i], subs[i], err = g.lookupRef(ctx, r, arg, f.filter()); err != nil {
			return err
		}
	}
	// Paths are shown as in the snapshots when both sides name the same
	// path, otherwise relative to the compared entries.
	prefix := "/"
	if subs[0] == subs[1] {
		prefix = subs[0]
	}
	d := &diffPrinter{g: g, counts: map[snapfs.ChangeKind]int{}}
	failed := 0
	report := func(c snapfs.Change, err error) error {
		if err != nil {
			if ctx.Err() != nil {
				return ctx.Err()
			}
			failed++
			fmt.Fprintln(g.stderr, "warning:", err)
			return nil
		}
		return d.print(c.Kind, path.Join(prefix, c.Path))
	}
	old, cur := &nodes[0], &nodes[1]
	if old.Type == tree.Dir && cur.Type == tree.Dir {
		for c, err := range snapfs.Diff(ctx, r, old.Subtree, cur.Subtree) {
			if err := report(c, err); err != nil {
				return err
			}
		}
	} else {
		// At least one side is not a directory: compare the two entries,
		// then list what a directory on either side holds.
		if subs[0] != subs[1] {
			prefix = subs[1]
		}
		if kind, changed := snapfs.Compare(old, cur); changed {
			if err := d.print(kind, prefix); err != nil {
				return err
			}
		}
		for _, side := range []struct {
			n    *tree.Node
			kind snapfs.ChangeKind
		}{{old, snapfs.Removed}, {cur, snapfs.Added}} {
			if side.n.Type != tree.Dir {
				continue
			}
			for e, err := range snapfs.Walk(ctx, r, side.n.Subtree, snapfs.WalkOptions{}) {
				if err := report(snapfs.Change{Path: e.Path, Kind: side.kind}, err); err != nil {
					return err
				}
			}
		}
	}
	if !g.json {
		g.printf("%d added, %d removed, %d modified, %d metadata only\n",
			d.counts[snapfs.Added], d.counts[snapfs.Removed], d.counts[snapfs.Modified], d.counts[snapfs.Metadata])
	}
	if failed > 0 {
		return fmt.Errorf("diff: %d trees could not be read; the list is incomplete", failed)
	}
	return nil
}
