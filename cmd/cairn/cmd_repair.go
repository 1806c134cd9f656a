package main

import (
	"github.com/cairnbackup/cairn/repo"
	"github.com/cairnbackup/cairn/repo/blob"
	"github.com/spf13/cobra"
)

func newRepairCommand(g *globalOptions) *cobra.Command {
	cmd := &cobra.Command{
		Use:   "repair",
		Short: "repair a repository",
		Args:  cobra.ArbitraryArgs,
		RunE:  unknownSubcommand,
	}
	cmd.AddCommand(&cobra.Command{
		Use:   "index",
		Short: "rebuild the index from the packs and snapshot files alone",
		Long: `Rebuild the index (a cache) from the packs and snapshot files, in a new
directory that replaces the old one only when complete. Works when the
index is damaged or missing. A snapshot file that does not authenticate,
or that is missing while the index lists the snapshot, is written back
from the index's copy of its record when that copy hashes to the
snapshot's ID (a snapshot being forgotten is not). Packs and snapshots that cannot be read are
named; run cairn check afterwards to see which snapshots they affect.`,
		Args: cobra.NoArgs,
		RunE: func(cmd *cobra.Command, _ []string) error {
			r, release, err := g.open(cmd.Context(), repo.Options{SkipIndex: true})
			if err != nil {
				return err
			}
			defer release()
			rep, err := r.RebuildIndex(cmd.Context())
			if err != nil {
				return err
			}
			if g.json {
				return g.printJSON(repairJSON(rep))
			}
			g.printf("index rebuilt: %d packs, %d blobs, %d snapshots\n", rep.Packs, rep.Blobs, rep.Snapshots)
			for _, p := range rep.UnreadablePacks {
				g.printf("unreadable pack %s (its blobs are lost): %v\n", p.ID, p.Err)
			}
			for _, s := range rep.RecoveredSnapshots {
				g.printf("snapshot %s: %v; rewritten from the index's copy of the record\n", s.ID, s.Err)
			}
			for _, s := range rep.UnreadableSnapshots {
				g.printf("unreadable snapshot %s (not listed): %v\n", s.ID, s.Err)
			}
			return nil
		},
	})
	return cmd
}

type unreadableJSON struct {
	ID    blob.ID `json:"id"`
	Error string  `json:"error"`
}

func repairJSON(rep *repo.RebuildReport) any {
	conv := func(in []repo.UnreadablePack) []unreadableJSON {
		out := []unreadableJSON{}
		for _, p := range in {
			out = append(out, unreadableJSON{ID: p.ID, Error: p.Err.Error()})
		}
		return out
	}
	return map[string]any{
		"packs": rep.Packs, "blobs": rep.Blobs, "snapshots": rep.Snapshots,
		"unreadable_packs": conv(rep.UnreadablePacks), "unreadable_snapshots": conv(rep.UnreadableSnapshots),
		"recovered_snapshots": conv(rep.RecoveredSnapshots),
	}
}
