package main

import (
	"context"
	"fmt"
	"strconv"
	"strings"
	"text/tabwriter"

	"github.com/cairnbackup/cairn/repo"
	"github.com/cairnbackup/cairn/repo/blob"
	"github.com/cairnbackup/cairn/repo/drill"
	"github.com/cairnbackup/cairn/repo/snapshot"
	"github.com/cairnbackup/cairn/repo/wire"
	"github.com/spf13/cobra"
)

type filterOptions struct {
	node string
	plan string
	tags []string
	path string
}

func (f *filterOptions) register(cmd *cobra.Command) {
	cmd.Flags().StringVar(&f.node, "node", "", "only snapshots of this node")
	cmd.Flags().StringVar(&f.plan, "plan", "", "only snapshots of this plan (@none: those made without a plan)")
	cmd.Flags().StringArrayVar(&f.tags, "tag", nil, "only snapshots with this tag (repeatable: all must match)")
	cmd.Flags().StringVar(&f.path, "path", "", "only snapshots that backed up this path (as recorded: absolute)")
}

func (f *filterOptions) filter() snapshot.Filter {
	return snapshot.Filter{Node: f.node, Plan: f.plan, Tags: f.tags, Path: f.path}
}

func newSnapshotsCommand(g *globalOptions) *cobra.Command {
	f := &filterOptions{}
	o := &snapshotsOptions{}
	cmd := &cobra.Command{
		Use:   "snapshots [--from ssh://NODE@HOST[:PORT]]",
		Short: "list snapshots, oldest first, with their newest drill's result",
		Long: `List snapshots, oldest first. EXCLUDED is how many entries exclude rules
(--exclude, plan excludes, CACHEDIR.TAG caches) left out of the snapshot;
--json lists each rule with its count ("excludes": [{"rule", "count"}]).
DRILL is the result of the newest drill of each snapshot with its
report's ID (cairn drills shows the reports): drilled-ok, drilled-failed,
or nothing when it was never drilled. With --json each snapshot has
"drill": {"result", "report"} when it was.

--from ssh://NODE@HOST[:PORT] lists, on a node, that node's own
snapshots on the appliance (an admin node's: every node's), in the same
table and JSON, over SSH as NODE with any of its permissions (the same
-i, --known-hosts, --host-key, --ssh-command and --timeout as push).
Every record is checked against its ID. Drill results stay on the
appliance: DRILL is empty and --json has no "drill".`,
		Args: cobra.NoArgs,
		RunE: func(cmd *cobra.Command, _ []string) (err error) {
			ctx := cmd.Context()
			if o.from != "" {
				var l *link
				var c *wire.Client
				if l, c, err = o.dialFrom(ctx, g, "snapshots", o.from, func(string) string { return "nothing was listed" }); err != nil {
					return err
				}
				defer func() {
					if e := l.explain(ctx, err); e != nil {
						err = e
					}
					c.Close()
				}()
				l.phase = phaseList
				var list []snapshot.Entry
				if list, err = remoteSnapshots(ctx, c, f.filter()); err != nil {
					return fmt.Errorf("snapshots: %s: %w", o.from, err)
				}
				return g.printSnapshots(list, nil)
			}
			r, release, err := g.open(ctx, repo.Options{ReadOnly: true})
			if err != nil {
				return err
			}
			defer release()
			list, err := r.Snapshots(ctx, f.filter())
			if err != nil {
				return err
			}
			marks, marksErr := drillMarks(ctx, r)
			if marks == nil && marksErr != nil {
				return marksErr
			}
			if err := g.printSnapshots(list, marks); err != nil {
				return err
			}
			if marksErr != nil {
				return eachLine(marksErr)
			}
			return nil
		},
	}
	f.register(cmd)
	cmd.Flags().StringVar(&o.from, "from", "", "list this node's snapshots on the appliance at ssh://NODE@HOST[:PORT], as NODE")
	o.sshOptions.register(cmd.Flags())
	return cmd
}

type snapshotsOptions struct {
	from string // ssh://NODE@HOST[:PORT]: list on an appliance, as that node
	sshOptions
}

// printSnapshots prints list as the table or, with --json, as the
// operator's JSON, each snapshot with its drill mark when marks has one.
func (g *globalOptions) printSnapshots(list []snapshot.Entry, marks map[blob.ID]*drill.Mark) error {
	if g.json {
		out := make([]snapshotJSON, len(list))
		for i, e := range list {
			out[i] = snapshotJSON{ID: e.ID, Snapshot: e.Snapshot, Drill: marks[e.ID]}
		}
		return g.printJSON(out)
	}
	tw := tabwriter.NewWriter(g.stdout, 0, 4, 2, ' ', 0)
	tw.Write([]byte("ID\tTIME\tNODE\tPLAN\tSIZE\tEXCLUDED\tPATHS\tDRILL\n"))
	for _, e := range list {
		mark := ""
		if m := marks[e.ID]; m != nil {
			mark = m.Result + " " + m.Report.Short()
		}
		tw.Write([]byte(strings.Join([]string{
			e.ID.Short(), g.when(e.Time), e.Node, snapshot.PlanName(e.Plan),
			humanBytes(e.Summary.Bytes), strconv.FormatUint(excludedCount(e.Excludes), 10), strings.Join(e.Paths, ","), mark,
		}, "\t") + "\n"))
	}
	return tw.Flush()
}

// excludedCount is how many entries a snapshot's exclude rules left out.
func excludedCount(ex []snapshot.Exclude) uint64 {
	var n uint64
	for _, e := range ex {
		n += e.Count
	}
	return n
}

// snapshotJSON is a snapshot with its ID and its newest drill's result,
// as printed by --json.
type snapshotJSON struct {
	ID blob.ID `json:"id"`
	*snapshot.Snapshot
	Drill *drill.Mark `json:"drill,omitempty"`
}

// drillMarks returns the mark of every drilled snapshot (drill.Marks).
// Reports that cannot be read are named in the error, which comes with
// the marks of those that could.
func drillMarks(ctx context.Context, r *repo.Repository) (map[blob.ID]*drill.Mark, error) {
	all, err := drill.Marks(ctx, r)
	if all == nil && err != nil {
		return nil, err
	}
	marks := map[blob.ID]*drill.Mark{}
	for id, m := range all {
		marks[id] = &m
	}
	return marks, err
}
