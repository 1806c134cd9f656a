package main

import (
	"fmt"
	"sync"
	"time"

	"github.com/cairnbackup/cairn/repo"
	"github.com/cairnbackup/cairn/repo/check"
	"github.com/spf13/cobra"
)

func newCheckCommand(g *globalOptions) *cobra.Command {
	var readData bool
	var subset string
	cmd := &cobra.Command{
		Use:   "check [--read-data [--subset N/M|P%]]",
		Short: "verify the repository's structure, and with --read-data every stored byte",
		Long: `Check that every snapshot's trees decode, every referenced blob is
indexed and every indexed pack exists with the right size. With
--read-data, also read packs completely: each must hash to its name and
each blob must authenticate and re-hash to its ID. --subset N/M reads
one of M groups of packs; --subset P% reads a random P% of them.

Every problem is reported with the snapshots (and their node/plan) and
paths it affects.
Exit code 0: clean. 4: damage found. 1: the check could not run.`,
		Args: cobra.NoArgs,
		RunE: func(cmd *cobra.Command, _ []string) error {
			var o check.Options
			o.ReadData = readData
			if subset != "" {
				if !readData {
					return usageError{fmt.Errorf("--subset needs --read-data")}
				}
				s, err := check.ParseSubset(subset)
				if err != nil {
					return usageError{err}
				}
				o.Subset = s
			}
			// Recording verification times (--read-data) writes to the index.
			r, release, err := g.open(cmd.Context(), repo.Options{ReadOnly: !readData})
			if err != nil {
				return err
			}
			defer release()
			stop := func() {}
			if readData {
				var mu sync.Mutex
				var read check.ReadProgress
				var start time.Time
				o.Progress = func(p check.ReadProgress) {
					mu.Lock()
					defer mu.Unlock()
					if start.IsZero() {
						start = time.Now()
					}
					read = p
				}
				stop = g.startTerminalProgress(func(final bool) {
					mu.Lock()
					p, start := read, start
					mu.Unlock()
					if p.TotalPacks == 0 {
						return // still checking the structure
					}
					g.progressLine(fmt.Sprintf("read %d of %d packs, %s of %s", p.Packs, p.TotalPacks, humanBytes(uint64(p.Bytes)), humanBytes(uint64(p.TotalBytes))),
						uint64(p.Bytes), uint64(p.TotalBytes), start, final)
				})
			}
			rep, err := check.Run(cmd.Context(), r, o)
			stop()
			if err != nil {
				return err
			}
			err = g.output(rep, func() {
				for _, f := range rep.Findings {
					g.printf("%s\n", f)
				}
				g.printf("checked %d snapshots, %d trees, %d packs", rep.Snapshots, rep.Trees, rep.Packs)
				if readData {
					g.printf(", read %d packs (%s)", rep.PacksRead, humanBytes(uint64(rep.BytesRead)))
				}
				if rep.Clean() {
					g.printf(": no problems found\n")
				} else {
					g.printf(": %d problems found\n", len(rep.Findings))
				}
			})
			if err != nil {
				return err
			}
			if !rep.Clean() {
				return &exitError{code: exitDamage, err: fmt.Errorf("%d problems found", len(rep.Findings))}
			}
			return nil
		},
	}
	cmd.Flags().BoolVar(&readData, "read-data", false, "read and verify all stored data")
	cmd.Flags().StringVar(&subset, "subset", "", "with --read-data: read only group N/M of the packs, or P% of them")
	return cmd
}
