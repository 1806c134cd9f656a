package main

import (
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"slices"
	"strings"
	"time"

	"github.com/cairnbackup/cairn/repo"
	"github.com/cairnbackup/cairn/repo/appliance"
	"github.com/cairnbackup/cairn/repo/snapshot"
	"github.com/spf13/cobra"
)

// Shell completion. The scripts are cobra's (cairn completion bash|zsh|
// fish); they call the hidden command __complete, which completes from
// the repository named on the command line (or CAIRN_REPO): snapshot
// IDs for the commands that take a snapshot, node and plan names for
// --node and --plan, job names for jobs run. The snapshots come from the
// running appliance through its socket, or else from the repository
// opened here with the key file or password file named as for any
// command (nothing ever prompts). Whatever is slow or fails gives no
// candidates: completion must never hang a shell.

// completionTimeout bounds the whole lookup: socket, repository open,
// listing. Past it the shell gets no candidates.
const completionTimeout = 3 * time.Second

// completionOutputLimit bounds what the appliance may send back for one
// listing.
const completionOutputLimit = 16 << 20

func init() {
	// The completion requests never go to the appliance as commands, nor
	// prove keys: the completion functions below decide what to read.
	local[cobra.ShellCompRequestCmd] = true
	local[cobra.ShellCompNoDescRequestCmd] = true
}

// snapshotArgs is how many snapshot arguments each command takes (-1:
// any number).
var snapshotArgs = map[string]int{"ls": 1, "restore": 1, "dump": 1, "drill": 1, "diff": 2, "stats": -1}

// jobNames are the jobs `cairn jobs run` knows, scheduled or not.
var jobNames = []string{"drill", "prune", "staleness", "verify"}

// registerCompletions adds the completion functions to the command tree
// under root.
func registerCompletions(g *globalOptions, root *cobra.Command) {
	var walk func(c *cobra.Command)
	walk = func(c *cobra.Command) {
		if n, ok := snapshotArgs[c.Name()]; ok && c.Parent() == root {
			c.ValidArgsFunction = func(cmd *cobra.Command, args []string, toComplete string) ([]cobra.Completion, cobra.ShellCompDirective) {
				if (n >= 0 && len(args) >= n) || strings.Contains(toComplete, ":") || remote(cmd) {
					return nil, cobra.ShellCompDirectiveNoFileComp
				}
				return g.completeSnapshots(cmd, toComplete)
			}
		}
		if c.Name() == "jobs" && c.Parent() == root {
			c.ValidArgsFunction = func(cmd *cobra.Command, args []string, toComplete string) ([]cobra.Completion, cobra.ShellCompDirective) {
				switch {
				case len(args) == 0:
					return []cobra.Completion{cobra.CompletionWithDesc("run", "run a job now")}, cobra.ShellCompDirectiveNoFileComp
				case len(args) == 1 && args[0] == "run":
					return g.completeJobs(cmd, toComplete)
				}
				return nil, cobra.ShellCompDirectiveNoFileComp
			}
		}
		f := c.LocalNonPersistentFlags()
		if f.Lookup("node") != nil {
			c.RegisterFlagCompletionFunc("node", func(cmd *cobra.Command, _ []string, toComplete string) ([]cobra.Completion, cobra.ShellCompDirective) {
				return g.completeNames(cmd, toComplete, func(d *completionData) []string { return d.nodes })
			})
		}
		// push --plan names a plan file; everywhere else --plan is a name.
		if f.Lookup("plan") != nil && c.Name() != "push" {
			c.RegisterFlagCompletionFunc("plan", func(cmd *cobra.Command, _ []string, toComplete string) ([]cobra.Completion, cobra.ShellCompDirective) {
				return g.completeNames(cmd, toComplete, func(d *completionData) []string { return d.plans })
			})
		}
		for _, name := range []string{"snapshot", "parent"} {
			if f.Lookup(name) != nil {
				c.RegisterFlagCompletionFunc(name, func(cmd *cobra.Command, _ []string, toComplete string) ([]cobra.Completion, cobra.ShellCompDirective) {
					return g.completeSnapshots(cmd, toComplete)
				})
			}
		}
		for _, sub := range c.Commands() {
			walk(sub)
		}
	}
	walk(root)
}

// completionData is what completion knows about the repository.
type completionData struct {
	snapshots []snapshotJSON // oldest first
	nodes     []string       // configured or with snapshots, sorted
	plans     []string       // with snapshots, sorted
	config    *appliance.Config
}

// completionData reads the configuration (for nodes and jobs) and, when
// withSnapshots, the snapshot list; bounded by completionTimeout.
// A lookup still running at the deadline is abandoned: the process
// ends right after printing the candidates.
func (g *globalOptions) completionData(cmd *cobra.Command, withSnapshots bool) (*completionData, bool) {
	if g.repoDir == "" {
		return nil, false
	}
	type result struct {
		d  *completionData
		ok bool
	}
	done := make(chan result, 1)
	ctx, cancel := context.WithTimeout(cmd.Context(), completionTimeout)
	defer cancel()
	go func() {
		d, ok := g.loadCompletionData(ctx, withSnapshots)
		done <- result{d, ok}
	}()
	select {
	case r := <-done:
		return r.d, r.ok
	case <-ctx.Done():
		return nil, false
	}
}

func (g *globalOptions) loadCompletionData(ctx context.Context, withSnapshots bool) (*completionData, bool) {
	d := &completionData{}
	if cfg, err := appliance.LoadConfig(g.configPath("")); err == nil {
		d.config = cfg
		for name := range cfg.Nodes {
			d.nodes = append(d.nodes, name)
		}
	}
	if withSnapshots {
		list, err := g.completionSnapshots(ctx)
		if err != nil {
			return d, d.config != nil
		}
		d.snapshots = list
		for _, s := range list {
			d.nodes = append(d.nodes, s.Node)
			d.plans = append(d.plans, snapshot.PlanName(s.Plan))
		}
	}
	slices.Sort(d.nodes)
	d.nodes = slices.Compact(d.nodes)
	slices.Sort(d.plans)
	d.plans = slices.Compact(d.plans)
	return d, true
}

// completionSnapshots lists the snapshots: `snapshots --json` in the
// running appliance, or the repository opened here.
func (g *globalOptions) completionSnapshots(ctx context.Context) ([]snapshotJSON, error) {
	req := &appliance.Request{Kind: "operator", Args: []string{"snapshots", "--json"}, Cwd: g.abs("."), Repo: g.abs(g.repoDir)}
	out := &limitedBuffer{max: completionOutputLimit}
	code, err := appliance.Call(ctx, g.socketPath(), req, nil, out, io.Discard)
	switch {
	case errors.Is(err, appliance.ErrNotRunning):
		r, release, err := g.open(ctx, repo.Options{ReadOnly: true})
		if err != nil {
			return nil, err
		}
		defer release()
		entries, err := r.Snapshots(ctx, snapshot.Filter{})
		if err != nil {
			return nil, err
		}
		list := make([]snapshotJSON, len(entries))
		for i, e := range entries {
			list[i] = snapshotJSON{ID: e.ID, Snapshot: e.Snapshot}
		}
		return list, nil
	case err != nil:
		return nil, err
	case code != 0:
		return nil, fmt.Errorf("snapshots in the appliance: exit %d", code)
	}
	var list []snapshotJSON
	if err := json.Unmarshal(out.Bytes(), &list); err != nil {
		return nil, err
	}
	return list, nil
}

// completeSnapshots offers "latest" and the snapshots' short IDs, newest
// first, each described by node/plan, time and paths.
func (g *globalOptions) completeSnapshots(cmd *cobra.Command, toComplete string) ([]cobra.Completion, cobra.ShellCompDirective) {
	d, ok := g.completionData(cmd, true)
	if !ok || len(d.snapshots) == 0 {
		return nil, cobra.ShellCompDirectiveNoFileComp
	}
	var out []cobra.Completion
	if strings.HasPrefix("latest", toComplete) {
		out = append(out, cobra.CompletionWithDesc("latest", "the newest snapshot"))
	}
	for _, s := range slices.Backward(d.snapshots) {
		id := s.ID.Short()
		if !strings.HasPrefix(id, toComplete) {
			continue
		}
		desc := fmt.Sprintf("%s/%s %s %s", s.Node, snapshot.PlanName(s.Plan), g.when(s.Time), strings.Join(s.Paths, ","))
		out = append(out, cobra.CompletionWithDesc(id, desc))
	}
	return out, cobra.ShellCompDirectiveNoFileComp | cobra.ShellCompDirectiveKeepOrder
}

// completeNames offers the names pick returns (nodes, plans).
func (g *globalOptions) completeNames(cmd *cobra.Command, toComplete string, pick func(*completionData) []string) ([]cobra.Completion, cobra.ShellCompDirective) {
	d, ok := g.completionData(cmd, true)
	if !ok {
		return nil, cobra.ShellCompDirectiveNoFileComp
	}
	var out []cobra.Completion
	for _, n := range pick(d) {
		if strings.HasPrefix(n, toComplete) {
			out = append(out, n)
		}
	}
	return out, cobra.ShellCompDirectiveNoFileComp
}

// completeJobs offers the job names, described by their schedule.
func (g *globalOptions) completeJobs(cmd *cobra.Command, toComplete string) ([]cobra.Completion, cobra.ShellCompDirective) {
	d, _ := g.completionData(cmd, false)
	var out []cobra.Completion
	for _, name := range jobNames {
		if !strings.HasPrefix(name, toComplete) {
			continue
		}
		desc := "not scheduled"
		if d != nil && d.config != nil {
			j := d.config.Jobs
			if s := map[string]string{"drill": j.Drill.Schedule, "prune": j.Prune.Schedule, "staleness": j.Staleness.Schedule, "verify": j.Verify.Schedule}[name]; s != "" {
				desc = "scheduled " + s
			}
		}
		out = append(out, cobra.CompletionWithDesc(name, desc))
	}
	return out, cobra.ShellCompDirectiveNoFileComp
}

// limitedBuffer is a buffer that refuses to grow past max bytes.
type limitedBuffer struct {
	bytes.Buffer
	max int
}

func (b *limitedBuffer) Write(p []byte) (int, error) {
	if b.Len()+len(p) > b.max {
		return 0, fmt.Errorf("more than %d bytes", b.max)
	}
	return b.Buffer.Write(p)
}
