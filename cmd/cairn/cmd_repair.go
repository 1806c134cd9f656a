package main

import (
	"fmt"
	"strings"

	"github.com/cairnbackup/cairn/repo"
	"github.com/cairnbackup/cairn/repo/appliance"
	"github.com/cairnbackup/cairn/repo/blob"
	"github.com/cairnbackup/cairn/repo/check"
	"github.com/cairnbackup/cairn/repo/replica"
	"github.com/cairnbackup/cairn/repo/storage"
	"github.com/spf13/cobra"
)

func newRepairCommand(g *globalOptions) *cobra.Command {
	cmd := groupCommand("repair", "repair a repository")
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
	cmd.AddCommand(newRepairPacksCommand(g))
	return cmd
}

func newRepairPacksCommand(g *globalOptions) *cobra.Command {
	var (
		config, only string
		readData     bool
	)
	cmd := &cobra.Command{
		Use:   "packs [OBJECT...] [--read-data] [--replica NAME] [--config FILE]",
		Short: "put back damaged or missing packs and snapshot files from a replica that holds a good copy",
		Long: `Find the packs and snapshot files of the repository that are damaged or
missing (as cairn check finds them; with --read-data reading every pack,
else from the structure: missing packs, wrong sizes, unreadable headers,
missing or damaged snapshot files), or take the objects named
(packs/ID or a pack ID, snapshots/ID), and put each back from the first
replica (replicas: in the configuration, or only --replica NAME) that
holds a good copy: a pack's copy is hashed as it is read and stored only
if it hashes to its name, then read again and verified in place; a
snapshot record is authenticated and checked against its name first.
The index follows. Each object is listed with the replica it came from,
or why it could not be repaired. Works beside the running appliance.

Exit code 0: everything found was repaired (or nothing was damaged).
4: something could not be repaired. 1: the repair could not run.`,
		Annotations: map[string]string{relayAnnotation: "yes"},
		RunE: func(cmd *cobra.Command, args []string) error {
			ctx := cmd.Context()
			var objects []storage.Handle
			for _, a := range args {
				h, err := parseObject(a)
				if err != nil {
					return usageError{fmt.Errorf("repair packs: %w", err)}
				}
				objects = append(objects, h)
			}
			a, cfg, r, release, err := g.openAppliance(ctx, config, false)
			if err != nil {
				return err
			}
			defer release()
			if len(cfg.Replicas) == 0 {
				return fmt.Errorf("repair packs: the configuration %s has no replicas: nothing to repair from", cfg.Path)
			}
			var findings int
			if len(args) == 0 {
				rep, err := check.Run(ctx, r, check.Options{ReadData: readData})
				if err != nil {
					return err
				}
				findings = len(rep.Findings)
				objects = appliance.DamagedObjectHandles(rep)
			}
			healed, err := a.Heal(ctx, cfg, objects, only)
			if err != nil {
				return err
			}
			failed := 0
			for _, h := range healed {
				if !h.OK() {
					failed++
				}
			}
			if healed == nil {
				healed = []replica.Healed{}
			}
			err = g.output(map[string]any{"findings": findings, "healed": healed}, func() {
				if len(objects) == 0 {
					g.printf("nothing to repair: check found %d problems and no damaged or missing pack or snapshot file\n", findings)
				}
				for _, h := range healed {
					g.printf("%s\n", h)
				}
				if len(healed) > 0 {
					g.printf("%d of %d repaired\n", len(healed)-failed, len(healed))
				}
			})
			if err != nil {
				return err
			}
			if failed > 0 {
				return &exitError{code: exitDamage, err: fmt.Errorf("%d objects not repaired", failed)}
			}
			return nil
		},
	}
	cmd.Flags().BoolVar(&readData, "read-data", false, "find damage by reading every pack (as check --read-data), not only from the structure")
	cmd.Flags().StringVar(&only, "replica", "", "repair only from this replica")
	cmd.Flags().StringVar(&config, "config", "", "appliance configuration naming the replicas (default: the repository path + .yaml)")
	return cmd
}

// parseObject reads an object named on the command line: packs/ID,
// snapshots/ID, or a pack ID alone.
func parseObject(s string) (storage.Handle, error) {
	kind, name, ok := strings.Cut(s, "/")
	if !ok {
		kind, name = string(storage.Packs), s
	}
	if kind != string(storage.Packs) && kind != string(storage.Snapshot) {
		return storage.Handle{}, fmt.Errorf("%q: give packs/ID, snapshots/ID or a pack ID", s)
	}
	id, err := blob.ParseID(name)
	if err != nil {
		return storage.Handle{}, fmt.Errorf("%q: give the whole ID (64 hex digits): %v", s, err)
	}
	return storage.Handle{Kind: storage.Kind(kind), Name: id.String()}, nil
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
