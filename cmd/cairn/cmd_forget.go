package main

import (
	"errors"
	"fmt"
	"maps"
	"slices"
	"strings"
	"time"

	"github.com/cairnbackup/cairn/repo"
	"github.com/cairnbackup/cairn/repo/blob"
	"github.com/cairnbackup/cairn/repo/prune"
	"github.com/spf13/cobra"
)

type forgetOptions struct {
	filterOptions
	policy    prune.Policy
	within    string
	dryRun    bool
	explain   bool
	prune     bool
	config    string
	maxUnused string
	maxRepack string
	groupBy   string
	drilled   int
}

func newForgetCommand(g *globalOptions) *cobra.Command {
	o := &forgetOptions{}
	cmd := &cobra.Command{
		Use:   "forget [--keep-* N]... [--group-by LIST] [--dry-run] [--explain] [--prune]",
		Short: "remove snapshots that retention policies do not keep (data stays until prune)",
		Long: `Apply retention policies to each group of snapshots (by default one
node, plan and set of paths: one source): the --keep-* flags, or,
without them, the policies in the appliance configuration (retention:
in DIR.yaml). A snapshot is kept if any rule keeps it:

  --keep-last N      the newest N
  --keep-hourly N    the newest snapshot in each of the newest N hours (likewise
  --keep-daily N     days, ISO weeks, months and years), in the retention time zone
  --keep-weekly N
  --keep-monthly N
  --keep-yearly N
  --keep-within SPAN every snapshot within SPAN (1y2m3d4h) before the newest one (or now)
  --keep-tag TAG     every snapshot with TAG
  --keep-drilled N   the newest N whose newest drill passed (default 1; 0: off)

A snapshot dated after now is kept and counts for none of the rules.
--group-by takes a comma list of node, plan and paths (default all
three; "" puts every snapshot in one group).

Forget removes snapshot records only; cairn prune (or --prune) then
removes the data no snapshot uses. --explain says why each snapshot is
kept. A policy that keeps nothing (keep-drilled alone included) is
refused. Nodes cannot forget: only operators (through the socket, or
with the repository) and nodes with admin can.`,
		Args: cobra.NoArgs,
		RunE: func(cmd *cobra.Command, _ []string) error { return runForget(cmd, g, o) },
	}
	f := cmd.Flags()
	o.filterOptions.register(cmd)
	f.IntVar(&o.policy.Last, "keep-last", 0, "keep the newest N snapshots")
	f.IntVar(&o.policy.Hourly, "keep-hourly", 0, "keep the newest snapshot of each of the newest N hours")
	f.IntVar(&o.policy.Daily, "keep-daily", 0, "… days")
	f.IntVar(&o.policy.Weekly, "keep-weekly", 0, "… ISO weeks")
	f.IntVar(&o.policy.Monthly, "keep-monthly", 0, "… months")
	f.IntVar(&o.policy.Yearly, "keep-yearly", 0, "… years")
	f.StringVar(&o.within, "keep-within", "", "keep snapshots within SPAN (e.g. 7d, 1y6m) before the newest")
	f.StringArrayVar(&o.policy.Tags, "keep-tag", nil, "keep snapshots with TAG (repeatable)")
	f.IntVar(&o.drilled, "keep-drilled", prune.DefaultKeepDrilled, "keep the newest N snapshots of each group whose newest drill passed (0: off)")
	f.StringVar(&o.groupBy, "group-by", prune.DefaultGroupBy.String(), "group snapshots by a comma list of node, plan, paths (\"\" for one group)")
	f.BoolVarP(&o.dryRun, "dry-run", "n", false, "say what would be forgotten, change nothing")
	f.BoolVar(&o.explain, "explain", false, "print why each snapshot is kept")
	f.BoolVar(&o.prune, "prune", false, "prune afterwards")
	f.StringVar(&o.config, "config", "", "appliance configuration with retention policies (default: the repository path + .yaml)")
	f.StringVar(&o.maxUnused, "max-unused", "5%", "with --prune: see cairn prune")
	f.StringVar(&o.maxRepack, "max-repack", "", "with --prune: see cairn prune")
	return cmd
}

type forgetJSON struct {
	Node   string           `json:"node"`
	Plan   string           `json:"plan"`
	Paths  []string         `json:"paths"`
	Proven []blob.ID        `json:"proven"` // the proven restore points kept by keep_drilled, newest first
	Keep   []forgetSnapJSON `json:"keep"`
	Forget []forgetSnapJSON `json:"forget"`
}

type forgetSnapJSON struct {
	ID      blob.ID   `json:"id"`
	Time    time.Time `json:"time"`
	Reasons []string  `json:"reasons,omitempty"`
}

func runForget(cmd *cobra.Command, g *globalOptions, o *forgetOptions) error {
	ctx := cmd.Context()
	if o.within != "" {
		s, err := prune.ParseSpan(o.within)
		if err != nil {
			return usageError{err}
		}
		o.policy.Within = s
	}
	if o.drilled < 0 {
		return usageError{fmt.Errorf("--keep-drilled %d: give 0 or more", o.drilled)}
	}
	flags := cmd.Flags()
	drilledSet := flags.Changed("keep-drilled")
	if drilledSet {
		o.policy.Drilled = &o.drilled
	}
	groupBy, err := prune.ParseGroupBy(o.groupBy)
	if err != nil {
		return usageError{fmt.Errorf("--group-by: %w", err)}
	}
	policyFor := func(prune.Group) (prune.Policy, bool) { return o.policy, true }
	loc := g.zone()
	if o.policy.Empty() {
		if drilledSet {
			return usageError{errors.New("forget: --keep-drilled alone keeps nothing until a drill passes; give another --keep-* option")}
		}
		path := g.configPath(o.config)
		cfg, err := g.loadConfig(o.config)
		if err != nil {
			return err
		}
		if len(cfg.Retention.Policies) == 0 {
			return usageError{errors.New("forget: no policy: give --keep-* options, or retention policies in " + path)}
		}
		loc, _ = cfg.Retention.Location()
		policyFor = cfg.Retention.PolicyFor
		if !flags.Changed("group-by") {
			groupBy = cfg.Retention.Grouping()
		}
	}
	r, release, err := g.open(ctx, repo.Options{})
	if err != nil {
		return err
	}
	defer release()
	res, err := prune.Forget(ctx, r, prune.ForgetOptions{Filter: o.filter(), GroupBy: groupBy, PolicyFor: policyFor, Loc: loc, Now: time.Now(), DryRun: o.dryRun})
	if err != nil {
		return err
	}
	var out []forgetJSON
	for _, grp := range slices.SortedFunc(maps.Keys(res), prune.Group.Compare) {
		ds := res[grp]
		fj := forgetJSON{Node: grp.Node, Plan: grp.Plan, Paths: grp.PathList(), Proven: []blob.ID{}, Keep: []forgetSnapJSON{}, Forget: []forgetSnapJSON{}}
		if fj.Paths == nil {
			fj.Paths = []string{}
		}
		for _, d := range ds {
			s := forgetSnapJSON{ID: d.ID, Time: d.Time, Reasons: d.Reasons}
			if d.Keep {
				fj.Keep = append(fj.Keep, s)
			} else {
				fj.Forget = append(fj.Forget, s)
			}
			if d.Proven {
				fj.Proven = append(fj.Proven, d.ID)
			}
		}
		out = append(out, fj)
		if g.json {
			continue
		}
		verb := "forgot"
		if o.dryRun {
			verb = "would forget"
		}
		g.printf("%s: keep %d, %s %d\n", grp, len(fj.Keep), verb, len(fj.Forget))
		line := func(mark string, d prune.Decision) string {
			return fmt.Sprintf("  %s %s %s", mark, d.ID.Short(), g.when(d.Time))
		}
		// The proven restore points first: what a drill restored and
		// checked, and what keep_drilled holds on to.
		for _, d := range ds {
			if d.Proven {
				g.printf("%s  (%s)\n", line("proven", d), d.Reasons[len(d.Reasons)-1])
			}
		}
		for _, d := range ds {
			switch {
			case !d.Keep:
				g.printf("%s\n", line("forget", d))
			case o.explain:
				g.printf("%s  (%s)\n", line("keep  ", d), strings.Join(d.Reasons, ", "))
			}
		}
	}
	if g.json && !o.prune {
		if out == nil {
			out = []forgetJSON{}
		}
		return g.printJSON(out)
	}
	if o.prune && !o.dryRun {
		po, err := pruneFlags(o.maxUnused, o.maxRepack, false)
		if err != nil {
			return err
		}
		return runPruneWith(cmd, g, r, po)
	}
	return nil
}

func newPruneCommand(g *globalOptions) *cobra.Command {
	var dryRun bool
	var maxUnused, maxRepack string
	cmd := &cobra.Command{
		Use:   "prune [--dry-run] [--max-unused P%] [--max-repack SIZE]",
		Short: "remove data that no snapshot uses, while nodes keep pushing",
		Long: `Remove data no remaining snapshot uses. Packs holding nothing used are
deleted; packs with more than --max-unused of their bytes unused (default
5%) are repacked: their used blobs are copied into new packs, which are
durable and indexed before the old packs go. --max-repack bounds the
bytes copied in one run. Pushes go on meanwhile: what a push in flight
relies on is kept. Killed at any point, the repository stays consistent.`,
		Args: cobra.NoArgs,
		RunE: func(cmd *cobra.Command, _ []string) error {
			po, err := pruneFlags(maxUnused, maxRepack, dryRun)
			if err != nil {
				return err
			}
			r, release, err := g.open(cmd.Context(), repo.Options{})
			if err != nil {
				return err
			}
			defer release()
			return runPruneWith(cmd, g, r, po)
		},
	}
	cmd.Flags().BoolVarP(&dryRun, "dry-run", "n", false, "say what would be removed, change nothing")
	cmd.Flags().StringVar(&maxUnused, "max-unused", "5%", "repack packs with more than this share of unused bytes")
	cmd.Flags().StringVar(&maxRepack, "max-repack", "", "copy at most SIZE in one run (e.g. 10GiB)")
	return cmd
}

func pruneFlags(maxUnused, maxRepack string, dryRun bool) (prune.Options, error) {
	po := prune.Options{DryRun: dryRun}
	v := strings.TrimSuffix(maxUnused, "%")
	var pct float64
	if _, err := fmt.Sscanf(v, "%g", &pct); err != nil || pct <= 0 || pct > 100 {
		return po, usageError{fmt.Errorf("--max-unused %q: want a percentage above 0 and at most 100", maxUnused)}
	}
	po.MaxUnused = pct / 100
	if maxRepack != "" {
		n, err := parseSize(maxRepack)
		if err != nil {
			return po, usageError{fmt.Errorf("--max-repack: %w", err)}
		}
		po.MaxRepack = n
	}
	return po, nil
}

func runPruneWith(cmd *cobra.Command, g *globalOptions, r *repo.Repository, po prune.Options) error {
	rep, err := prune.Run(cmd.Context(), r, po)
	if err != nil {
		return err
	}
	if g.json {
		return g.printJSON(rep)
	}
	verb := "pruned"
	if rep.DryRun {
		verb = "would prune"
	}
	g.printf("%s: %d snapshots kept; %d of %d packs deleted, %d repacked (%d blobs, %s copied); %s freed; %s unused left; %s\n",
		verb, rep.Snapshots, rep.PacksDeleted, rep.Packs, rep.PacksRepacked, rep.BlobsRepacked, humanBytes(uint64(rep.BytesRepacked)),
		humanBytes(uint64(max(rep.BytesFreed, 0))), humanBytes(uint64(max(rep.UnusedRemaining, 0))), rep.Duration.Round(time.Millisecond))
	if rep.PacksKept > 0 {
		g.printf("%d packs kept because pushes in flight use them; the next prune takes them\n", rep.PacksKept)
	}
	return nil
}
