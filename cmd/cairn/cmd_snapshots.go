package main

import (
	"strings"
	"text/tabwriter"
	"time"

	"github.com/cairnbackup/cairn/repo"
	"github.com/cairnbackup/cairn/repo/blob"
	"github.com/cairnbackup/cairn/repo/snapshot"
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
	cmd.Flags().StringVar(&f.plan, "plan", "", "only snapshots of this plan")
	cmd.Flags().StringArrayVar(&f.tags, "tag", nil, "only snapshots with this tag (repeatable: all must match)")
	cmd.Flags().StringVar(&f.path, "path", "", "only snapshots that backed up this path (as recorded: absolute)")
}

func (f *filterOptions) filter() snapshot.Filter {
	return snapshot.Filter{Node: f.node, Plan: f.plan, Tags: f.tags, Path: f.path}
}

func newSnapshotsCommand(g *globalOptions) *cobra.Command {
	f := &filterOptions{}
	cmd := &cobra.Command{
		Use:   "snapshots",
		Short: "list snapshots, oldest first",
		Args:  cobra.NoArgs,
		RunE: func(cmd *cobra.Command, _ []string) error {
			r, release, err := g.open(cmd.Context(), repo.Options{})
			if err != nil {
				return err
			}
			defer release()
			list, err := r.Snapshots(cmd.Context(), f.filter())
			if err != nil {
				return err
			}
			if g.json {
				out := make([]snapshotJSON, len(list))
				for i, e := range list {
					out[i] = snapshotJSON{ID: e.ID, Snapshot: e.Snapshot}
				}
				return g.printJSON(out)
			}
			tw := tabwriter.NewWriter(g.stdout, 0, 4, 2, ' ', 0)
			tw.Write([]byte("ID\tTIME\tNODE\tPLAN\tSIZE\tPATHS\n"))
			for _, e := range list {
				tw.Write([]byte(strings.Join([]string{
					e.ID.Short(), e.Time.Local().Format(time.DateTime), e.Node, e.Plan,
					humanBytes(e.Summary.Bytes), strings.Join(e.Paths, ","),
				}, "\t") + "\n"))
			}
			return tw.Flush()
		},
	}
	f.register(cmd)
	return cmd
}

// snapshotJSON is a snapshot with its ID, as printed by --json.
type snapshotJSON struct {
	ID blob.ID `json:"id"`
	*snapshot.Snapshot
}
