package main

import (
	"context"
	"errors"
	"fmt"
	"os"
	"text/tabwriter"
	"time"

	"github.com/cairnbackup/cairn/repo"
	"github.com/cairnbackup/cairn/repo/appliance"
	"github.com/cairnbackup/cairn/repo/status"
	"github.com/cairnbackup/cairn/scheduler"
	"github.com/spf13/cobra"
)

// openAppliance opens the repository and returns the appliance around
// it and the configuration to use: the running one inside an appliance;
// outside, the status, jobs and runbook commands build one around the
// opened repository (not serving). The configuration is the file named
// with --config, which must exist, also inside a running appliance
// (whose own configuration it then stands in for); without --config,
// the running appliance's, or DIR.yaml, which may be missing (status
// then says so). release closes what was opened. readOnly opens the
// index read-only when the repository is opened here (repo.Options).
func (g *globalOptions) openAppliance(ctx context.Context, config string, readOnly bool) (*appliance.Appliance, *appliance.Config, *repo.Repository, func(), error) {
	r, release, err := g.open(ctx, repo.Options{ReadOnly: readOnly})
	if err != nil {
		return nil, nil, nil, nil, err
	}
	if a := g.appliance; a != nil {
		if config == "" {
			return a, a.Config(), r, release, nil
		}
		cfg, err := g.loadConfig(config)
		if err != nil {
			release()
			return nil, nil, nil, nil, err
		}
		return a, cfg, r, release, nil
	}
	a, err := appliance.New(appliance.Options{Repo: r, ConfigPath: g.configPath(config), ConfigOptional: config == "", Logger: g.logger()})
	if err != nil {
		release()
		return nil, nil, nil, nil, eachLine(err)
	}
	return a, a.Config(), r, release, nil
}

// onAppliance is the RunE of a command that works on the appliance
// (status, jobs, runbook, replicate): it opens the appliance with the
// configuration *config names (openAppliance; the index read-only when
// readOnly), runs fn with it and the arguments, and releases it.
func (g *globalOptions) onAppliance(config *string, readOnly bool, fn func(ctx context.Context, a *appliance.Appliance, cfg *appliance.Config, r *repo.Repository, args []string) error) func(*cobra.Command, []string) error {
	return func(cmd *cobra.Command, args []string) error {
		ctx := cmd.Context()
		a, cfg, r, release, err := g.openAppliance(ctx, *config, readOnly)
		if err != nil {
			return err
		}
		defer release()
		return fn(ctx, a, cfg, r, args)
	}
}

func newStatusCommand(g *globalOptions) *cobra.Command {
	var config string
	cmd := &cobra.Command{
		Use:   "status",
		Short: "per node and plan: last backup, drills, verification, failing jobs; exit 5 when something needs attention",
		Long: `Show, per node and plan, the newest snapshot and its age and size,
whether a backup is missing (older than expect: in DIR.yaml), the last
drill's result and measured recovery time, and the newest snapshot whose
newest drill passed; a row "never" for each configured node and expected
node/plan without any snapshot; then how much data was verified within
the cycle, the oldest verification, and the scheduled jobs with their
last runs.

Exit code 0: all well. 5: something needs attention (listed at the end):
usable as a monitoring check.`,
		Args: cobra.NoArgs,
		RunE: g.onAppliance(&config, true, func(ctx context.Context, a *appliance.Appliance, cfg *appliance.Config, _ *repo.Repository, _ []string) error {
			st, err := a.Status(ctx, cfg)
			if err != nil {
				return err
			}
			if err := g.output(st, func() { g.printStatus(st) }); err != nil {
				return err
			}
			if len(st.Attention) > 0 {
				return &exitError{code: exitAttention, err: errors.New("needs attention")}
			}
			return nil
		}),
	}
	cmd.Flags().StringVar(&config, "config", "", "appliance configuration (default: the repository path + .yaml)")
	return cmd
}

func (g *globalOptions) printStatus(st *status.Status) {
	tw := tabwriter.NewWriter(g.stdout, 0, 4, 2, ' ', 0)
	fmt.Fprintln(tw, "NODE/PLAN [PATHS]\tLAST BACKUP\tAGE\tSIZE\tSNAPSHOTS\tLAST DRILL\tRECOVERY\tPROVEN")
	for _, grp := range st.Groups {
		age := shortDuration(grp.Age)
		if grp.Missing {
			age += " (late)"
		}
		drillCol, rec, ok := "never", "-", "-"
		if grp.Drill != nil {
			drillCol = grp.Drill.Result + " " + g.when(grp.Drill.Time)
			rec = fmt.Sprintf("%.1f s", grp.Drill.RestoreSeconds)
		}
		if grp.DrilledOK != nil {
			ok = grp.DrilledOK.ID.Short()
		}
		fmt.Fprintf(tw, "%s\t%s\t%s\t%s\t%d\t%s\t%s\t%s\n", grp.Name(), g.when(grp.Last.Time), age,
			humanBytes(grp.Last.Bytes), grp.Snapshots, drillCol, rec, ok)
	}
	for _, n := range st.Never {
		fmt.Fprintf(tw, "%s\tnever\t-\t-\t0\t-\t-\t-\n", n.Name())
	}
	tw.Flush()
	g.printExcluded(st)
	oldest := "never"
	if !st.OldestVerified.IsZero() {
		oldest = g.when(st.OldestVerified)
	}
	g.printf("\nverification: %.0f%% of %s verified within the cycle; oldest %s; %d of %d packs never verified\n",
		st.VerifiedFraction*100, humanBytes(uint64(st.StoredBytes)), oldest, st.NeverVerified, st.Packs)
	g.printReplicas(st)
	if len(st.Jobs) > 0 {
		g.printf("\n")
		tw = tabwriter.NewWriter(g.stdout, 0, 4, 2, ' ', 0)
		fmt.Fprintln(tw, "JOB\tSCHEDULE\tLAST RUN\tSTATUS\tNEXT\tSUMMARY")
		for _, j := range st.Jobs {
			last, next := "-", "-"
			if !j.LastStart.IsZero() {
				last = g.when(j.LastStart)
			}
			if !j.Next.IsZero() {
				next = g.when(j.Next)
			}
			sum := j.Summary
			if j.Error != "" {
				sum = j.Error
			}
			fmt.Fprintf(tw, "%s\t%s\t%s\t%s\t%s\t%s\n", j.Name, j.Schedule, last, j.Status, next, sum)
		}
		tw.Flush()
	}
	if len(st.Attention) > 0 {
		g.printf("\nneeds attention:\n")
		for _, a := range st.Attention {
			g.printf("  - %s\n", a)
		}
	} else {
		g.printf("\nall well\n")
	}
}

// printReplicas shows each replica: where it is, when it was last
// replicated (and how far it lags), verified and drilled.
func (g *globalOptions) printReplicas(st *status.Status) {
	if len(st.Replicas) == 0 {
		return
	}
	g.printf("\n")
	tw := tabwriter.NewWriter(g.stdout, 0, 4, 2, ' ', 0)
	fmt.Fprintln(tw, "REPLICA\tLOCATION\tREPLICATED\tLAG\tLAST RUN\tVERIFIED\tDRILLED\tDELETE")
	for _, r := range st.Replicas {
		replicated, lag := "never", humanBytes(uint64(r.LagBytes))
		if !r.Replicated.IsZero() {
			replicated = g.when(r.Replicated)
			lag += ", " + shortDuration(r.Lag)
		}
		if r.Overdue {
			lag += " (late)"
		}
		last := "-"
		if !r.LastRun.IsZero() {
			last = r.LastStatus + " " + g.when(r.LastRun)
		}
		verified, drilled := "never", "never"
		if !r.LastVerified.IsZero() {
			verified = r.VerifyStatus + " " + g.when(r.LastVerified)
		}
		if !r.LastDrilled.IsZero() {
			drilled = r.DrillStatus + " " + g.when(r.LastDrilled)
		}
		fmt.Fprintf(tw, "%s\t%s\t%s\t%s\t%s\t%s\t%s\t%s\n", r.Name, r.Location, replicated, lag, last, verified, drilled, r.Delete)
	}
	tw.Flush()
}

// printExcluded lists, for each node/plan whose newest snapshot left
// entries out, how many each exclude rule left out.
func (g *globalOptions) printExcluded(st *status.Status) {
	var tw *tabwriter.Writer
	for _, grp := range st.Groups {
		for _, e := range grp.Last.Excludes {
			if tw == nil {
				g.printf("\nleft out of the newest snapshots by exclude rules:\n")
				tw = tabwriter.NewWriter(g.stdout, 0, 4, 2, ' ', 0)
				fmt.Fprintln(tw, "NODE/PLAN\tENTRIES\tRULE")
			}
			fmt.Fprintf(tw, "%s\t%d\t%s\n", grp.Name(), e.Count, e.Rule)
		}
	}
	if tw != nil {
		tw.Flush()
	}
}

func shortDuration(d time.Duration) string {
	switch {
	case d < time.Hour:
		return fmt.Sprintf("%dm", int(d.Minutes()))
	case d < 48*time.Hour:
		return fmt.Sprintf("%.1fh", d.Hours())
	}
	return fmt.Sprintf("%.1fd", d.Hours()/24)
}

func newJobsCommand(g *globalOptions) *cobra.Command {
	var config string
	var limit int
	cmd := &cobra.Command{
		Use:   "jobs [run NAME]",
		Short: "list the scheduled jobs and their recorded runs, or run one now",
		Long: `List the appliance's scheduled jobs (verify, drill, prune, staleness, as
configured under jobs: in DIR.yaml) with their recorded runs, newest
first. "cairn jobs run NAME" runs one now (in the running appliance, or
here when none runs) and records it like a scheduled run.`,
		Args: cobra.MaximumNArgs(2),
		RunE: g.onAppliance(&config, false, func(ctx context.Context, a *appliance.Appliance, cfg *appliance.Config, r *repo.Repository, args []string) error {
			if len(args) > 0 {
				if args[0] != "run" || len(args) != 2 {
					return usageError{errors.New("jobs: use cairn jobs, or cairn jobs run NAME")}
				}
				if g.appliance != nil && cfg != a.Config() && cfg.Path != a.ConfigPath() {
					return usageError{fmt.Errorf("jobs run: the running appliance runs jobs with its configuration %s, not %s: stop it to run a job with --config, or change %s and send it SIGHUP", a.ConfigPath(), cfg.Path, a.ConfigPath())}
				}
				run, err := g.runJob(ctx, a, args[1])
				if errors.Is(err, scheduler.ErrUnknownJob) {
					return usageError{fmt.Errorf("jobs run: %w", err)}
				}
				if err != nil {
					return err
				}
				if g.json {
					return g.printJSON(run)
				}
				g.printf("%s: %s (%s) %s\n", run.Job, run.Status, run.End.Sub(run.Start).Round(time.Millisecond), firstNonEmpty(run.Error, run.Result.Summary))
				if run.Status == scheduler.StatusFailed {
					return &exitError{code: exitFailed}
				}
				if run.Status == scheduler.StatusAttention {
					return &exitError{code: exitAttention}
				}
				return nil
			}
			runs, err := appliance.History{R: r}.List("", limit)
			if err != nil {
				return err
			}
			if g.json {
				if runs == nil {
					runs = []scheduler.Run{}
				}
				return g.printJSON(runs)
			}
			tw := tabwriter.NewWriter(g.stdout, 0, 4, 2, ' ', 0)
			fmt.Fprintln(tw, "JOB\tSTART\tDURATION\tSTATUS\tSUMMARY")
			for _, run := range runs {
				fmt.Fprintf(tw, "%s\t%s\t%s\t%s\t%s\n", run.Job, g.when(run.Start), run.End.Sub(run.Start).Round(time.Millisecond),
					run.Status, firstNonEmpty(run.Error, run.Result.Summary))
			}
			return tw.Flush()
		}),
	}
	cmd.Flags().StringVar(&config, "config", "", "appliance configuration (default: the repository path + .yaml)")
	cmd.Flags().IntVar(&limit, "limit", 50, "show at most this many runs")
	return cmd
}

func firstNonEmpty(s ...string) string {
	for _, v := range s {
		if v != "" {
			return v
		}
	}
	return ""
}

func newRunbookCommand(g *globalOptions) *cobra.Command {
	var config, node, output string
	cmd := &cobra.Command{
		Use:   "runbook [--node N] [--output FILE]",
		Short: "write a Markdown recovery runbook from the real state",
		Long: `Write a recovery runbook in Markdown: for each node and source, what it
covers and why, the newest snapshot that passed a drill with its measured
recovery time, and the exact commands to restore it, in the order of a
rebuild (configuration, databases, volumes, the rest): on the rebuilt
node (cairn restore --from with the node's key and the appliance's
pinned host key) and on the appliance (then rsync to the node); a
database dump loaded into a fresh server; git fsck for every repository
the snapshot holds. Commands are in fenced sh blocks that begin with
the variables to set. The scheduled drill job keeps a copy in the
repository directory (runbook.md).

--node N writes only N's sources and the attention items about N or no
node in particular; a node that is neither configured nor has snapshots
is a usage error (exit 2) naming the nodes there are.`,
		Args: cobra.NoArgs,
		RunE: g.onAppliance(&config, false, func(ctx context.Context, a *appliance.Appliance, cfg *appliance.Config, _ *repo.Repository, _ []string) error {
			b, err := a.Runbook(ctx, cfg, node)
			if errors.Is(err, status.ErrUnknownNode) {
				return usageError{fmt.Errorf("runbook: %w", err)} // names nothing there is: nothing was attempted
			}
			if err != nil {
				return err
			}
			if output != "" {
				return os.WriteFile(g.abs(output), b, 0o644)
			}
			_, err = g.stdout.Write(b)
			return err
		}),
	}
	cmd.Flags().StringVar(&config, "config", "", "appliance configuration (default: the repository path + .yaml)")
	cmd.Flags().StringVar(&node, "node", "", "only this node")
	cmd.Flags().StringVarP(&output, "output", "o", "", "write to FILE instead of standard output")
	return cmd
}

// runJob runs the job name of a now, showing its progress on a terminal.
func (g *globalOptions) runJob(ctx context.Context, a *appliance.Appliance, name string) (scheduler.Run, error) {
	p := &appliance.JobProgress{}
	stop := g.startTerminalProgress(func(final bool) {
		text, done, total, start := p.Current()
		if text == "" {
			return
		}
		line := text + ": " + humanBytes(done)
		if total > 0 {
			line += " of " + humanBytes(total)
		}
		g.progressLine(line, done, total, start, final)
	})
	defer stop()
	return a.RunJob(appliance.WithProgress(ctx, p), name)
}
