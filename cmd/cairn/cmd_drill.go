package main

import (
	"fmt"
	"text/tabwriter"

	"github.com/cairnbackup/cairn/repo"
	"github.com/cairnbackup/cairn/repo/appliance"
	"github.com/cairnbackup/cairn/repo/drill"
	"github.com/cairnbackup/cairn/repo/snapshot"
	"github.com/spf13/cobra"
)

type drillOptions struct {
	scratch string
	sample  int
	config  string
	replica string
}

func newDrillCommand(g *globalOptions) *cobra.Command {
	f := &filterOptions{}
	o := &drillOptions{}
	cmd := &cobra.Command{
		Use:   "drill SNAPSHOT [--scratch DIR] [--sample N] [--config FILE]",
		Short: "prove a snapshot restores: restore, verify, probe, time, and keep a report",
		Long: `Restore SNAPSHOT (an ID prefix or "latest") into a scratch directory,
compare every file with the SHA-256 and metadata recorded at backup
time, run the data's own checks (git fsck on git repositories, sqlite3
PRAGMA integrity_check on SQLite files, pg_restore --list on PostgreSQL
custom-format dumps), measure how long the restore took, and save a
sealed report in the repository (cairn drills lists them). The scratch
directory is removed afterwards. The probes: commands configured for the
snapshot's node/plan in the appliance configuration (DIR.yaml, or
--config FILE) run too, as in the scheduled drill job.

--scratch DIR restores in a new directory cairn-drill-* inside DIR
(default: in the system's temporary directory). Directories left there
by drills that were killed are removed by the next drill.
--sample N restores only N files, chosen at random but always the same
for a snapshot, plus every git repository and database file whole.

--replica NAME drills the snapshot's copy on replica NAME (replicas: in
the configuration), reading only from the replica; the report, saved in
the repository, names the replica (it proves the replica, and marks no
snapshot for retention's keep_drilled).

Exit code 0: the drill passed. 4: it failed (each failure is listed
with the file it concerns). 1: the drill could not run.`,
		Args: cobra.ExactArgs(1),
		RunE: func(cmd *cobra.Command, args []string) error {
			ctx := cmd.Context()
			if o.sample < 0 {
				return usageError{fmt.Errorf("drill: --sample %d: give a number of files, or 0 for all", o.sample)}
			}
			scratch := "" // the system's temporary directory
			if o.scratch != "" {
				scratch = g.abs(o.scratch)
			}
			var (
				r   *repo.Repository
				rep *drill.Report
			)
			if o.replica != "" {
				a, cfg, primary, release, err := g.openAppliance(ctx, o.config, false)
				if err != nil {
					return err
				}
				defer release()
				if cfg.Replicas[o.replica] == nil {
					return usageError{fmt.Errorf("drill: %w %q (the configuration %s has: %s)", appliance.ErrUnknownReplica, o.replica, cfg.Path, joinOr(cfg.ReplicaNames(), "none"))}
				}
				rr, _, err := a.OpenReplica(ctx, cfg, o.replica, false)
				if err != nil {
					return err
				}
				defer rr.Close()
				sn, _, err := rr.FindSnapshot(ctx, args[0], "", f.filter())
				if err != nil {
					return fmt.Errorf("replica %s: %w", o.replica, err)
				}
				rep, err = appliance.DrillReplica(ctx, rr, o.replica, sn.ID, drill.Options{Scratch: scratch, SampleFiles: o.sample, Probes: cfg.Jobs.Drill.Probes})
				if err != nil {
					return err
				}
				r = primary
			} else {
				cfg, err := g.loadConfig(o.config)
				if err != nil {
					return err
				}
				var release func()
				r, release, err = g.open(ctx, repo.Options{})
				if err != nil {
					return err
				}
				defer release()
				sn, _, err := r.FindSnapshot(ctx, args[0], "", f.filter())
				if err != nil {
					return err
				}
				rep, err = drill.Run(ctx, r, sn.ID, drill.Options{Scratch: scratch, SampleFiles: o.sample, Probes: cfg.Jobs.Drill.Probes})
				if err != nil {
					return err
				}
			}
			id, saveErr := drill.Save(ctx, r, rep)
			err := g.output(drill.Saved{ID: id, Report: rep}, func() {
				g.printDrill(rep)
				if saveErr == nil {
					g.printf("report %s saved\n", id.Short())
				}
			})
			if err != nil {
				return err
			}
			if saveErr != nil {
				return fmt.Errorf("the drill %s, but its report could not be saved: %w", rep.Result, saveErr)
			}
			if !rep.OK() {
				return &exitError{code: exitDamage, err: fmt.Errorf("drill failed: %d failures", len(rep.Failures))}
			}
			return nil
		},
	}
	cmd.Flags().StringVar(&o.scratch, "scratch", "", "restore in a new directory inside DIR (default: in the system's temporary directory)")
	cmd.Flags().IntVar(&o.sample, "sample", 0, "restore only N files (plus what the probes need); 0 restores everything")
	cmd.Flags().StringVar(&o.config, "config", "", "the appliance configuration whose probes: to run (default: DIR.yaml beside the repository)")
	cmd.Flags().StringVar(&o.replica, "replica", "", "drill the snapshot's copy on this replica (replicas: in the configuration), reading only from it")
	f.register(cmd)
	return cmd
}

// printDrill prints a report for people.
func (g *globalOptions) printDrill(rep *drill.Report) {
	name := rep.Node + "/" + snapshot.PlanName(rep.Plan)
	if rep.Class != "" {
		name += ", class " + rep.Class
	}
	if rep.Replica != "" {
		name += ", on replica " + rep.Replica
	}
	g.printf("drill of snapshot %s (%s): %s\n", rep.Snapshot.Short(), name, rep.Result)
	g.printf("restored and verified %d files, %s in %.3f s (%.1f MB/s)", rep.Files, humanBytes(rep.Bytes), rep.RestoreSeconds, rep.MBPerSecond)
	if rep.Sampled {
		g.printf(", a sample of the snapshot's %d files", rep.SnapshotFiles)
	}
	g.printf("\n")
	if len(rep.Probes) > 0 {
		g.printf("probes:\n")
		tw := tabwriter.NewWriter(g.stdout, 0, 4, 2, ' ', 0)
		for _, p := range rep.Probes {
			status := "OK"
			if !p.OK {
				status = "FAIL"
			}
			fmt.Fprintf(tw, "  %s\t%s\t%s\t%.2f s\n", status, p.Name, p.Target, p.Seconds)
		}
		tw.Flush()
	}
	if len(rep.Failures) > 0 {
		g.printf("failures:\n")
		for _, f := range rep.Failures {
			g.printf("  %s\n", f)
		}
		for _, p := range rep.Probes {
			if p.OK || p.Output == "" {
				continue
			}
			g.printf("output of %s %s:\n", p.Name, p.Target)
			for _, l := range drill.Excerpt(p.Output) {
				g.printf("  | %s\n", l)
			}
		}
	}
	for _, w := range rep.Warnings {
		g.printf("warning: %s\n", w)
	}
}

func newDrillsCommand(g *globalOptions) *cobra.Command {
	return &cobra.Command{
		Use:   "drills [ID]",
		Short: "list saved drill reports, newest first; or show one whole",
		Long: `List the saved drill reports, newest first. With ID (an ID prefix of at
least 4 hex digits, or latest), show that report whole: the snapshot
with its node/plan and paths, when the drill ran, the measured recovery
time, how the files compared, each probe with its command, exit code and
the lines of its output that say what failed, the failures, and the
verdict (and, when a later drill of the snapshot decided otherwise, the
snapshot's verdict).`,
		Args: cobra.MaximumNArgs(1),
		RunE: func(cmd *cobra.Command, args []string) error {
			r, release, err := g.open(cmd.Context(), repo.Options{})
			if err != nil {
				return err
			}
			defer release()
			if len(args) == 1 {
				return g.showDrillReport(cmd.Context(), r, args[0])
			}
			list, listErr := drill.List(cmd.Context(), r)
			if list == nil && listErr != nil {
				return listErr
			}
			if g.json {
				if list == nil {
					list = []drill.Saved{}
				}
				if err := g.printJSON(list); err != nil {
					return err
				}
			} else {
				tw := tabwriter.NewWriter(g.stdout, 0, 4, 2, ' ', 0)
				tw.Write([]byte("ID\tTIME\tSNAPSHOT\tNODE/PLAN\tRESULT\tSECONDS\tFILES\n"))
				for _, s := range list {
					np := s.Node + "/" + snapshot.PlanName(s.Plan)
					if s.Replica != "" {
						np += " on replica " + s.Replica
					}
					files := fmt.Sprint(s.Files)
					if s.Sampled {
						files += fmt.Sprintf(" of %d", s.SnapshotFiles)
					}
					fmt.Fprintf(tw, "%s\t%s\t%s\t%s\t%s\t%.2f\t%s\n", s.ID.Short(), g.when(s.Finished),
						s.Snapshot.Short(), np, s.Result, s.RestoreSeconds, files)
				}
				if err := tw.Flush(); err != nil {
					return err
				}
			}
			if listErr != nil {
				return eachLine(listErr)
			}
			return nil
		},
	}
}
