package main

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"strings"

	"github.com/cairnbackup/cairn/repo"
	"github.com/cairnbackup/cairn/repo/appliance"
	"github.com/cairnbackup/cairn/repo/replica"
	"github.com/cairnbackup/cairn/scheduler"
	"github.com/spf13/cobra"
)

// replicationJSON is one replica's run in replicate --json.
type replicationJSON struct {
	Replica string          `json:"replica"`
	Status  string          `json:"status"` // ok, attention (something left behind), failed
	Error   string          `json:"error,omitempty"`
	Report  *replica.Report `json:"report,omitempty"`
}

func newReplicateCommand(g *globalOptions) *cobra.Command {
	var config string
	cmd := &cobra.Command{
		Use:   "replicate [NAME...] [--config FILE]",
		Short: "copy to the replicas (all, or those named) what they lack of the repository",
		Long: `Bring the replicas configured under replicas: in the appliance
configuration (DIR.yaml, or --config FILE) up to date: copy the sealed
objects each lacks, verbatim (keys and config, then packs, then drill
reports and snapshots, so a replica never holds a snapshot whose data it
lacks). Runs as the job replicate/NAME would (in the running appliance
when there is one) and is recorded with it. A replica is a complete
repository: cairn --repo REPLICA snapshots|restore|check|drill work
there with the same key file.

Each pack is hashed as it is sent and stored only if it hashes to its
name; a pack damaged on the primary is not copied (cairn repair packs
heals it from a replica that has it) and the snapshots that need it wait
for a later run. Runs are incremental (the replica is listed once) and
resumable: a run killed at any point leaves a consistent replica, and
the next one goes on from there.

Exit code 0: every replica is up to date with what the repository held
when its run began. 5: something was left behind (listed). 1: a run
failed. 2: an unknown replica.`,
		RunE: g.onAppliance(&config, false, func(ctx context.Context, a *appliance.Appliance, cfg *appliance.Config, _ *repo.Repository, args []string) error {
			if g.appliance != nil && cfg != a.Config() && cfg.Path != a.ConfigPath() {
				return usageError{fmt.Errorf("replicate: the running appliance replicates with its configuration %s, not %s: stop it to use --config, or change %s and send it SIGHUP", a.ConfigPath(), cfg.Path, a.ConfigPath())}
			}
			names := args
			if len(names) == 0 {
				names = cfg.ReplicaNames()
				if len(names) == 0 {
					return usageError{fmt.Errorf("replicate: the configuration %s has no replicas: (see cairn help replicate)", cfg.Path)}
				}
			}
			for _, n := range names {
				if cfg.Replicas[n] == nil {
					return usageError{fmt.Errorf("replicate: %w %q (the configuration %s has: %s)", appliance.ErrUnknownReplica, n, cfg.Path, joinOr(cfg.ReplicaNames(), "none"))}
				}
			}
			var out []replicationJSON
			var failures []string
			attention := false
			for _, name := range names {
				run, err := g.runJob(ctx, a, appliance.ReplicaJob("replicate", name))
				if errors.Is(err, scheduler.ErrBusy) {
					return fmt.Errorf("replicate %s: %w (a replication, verification or drill of the replica)", name, err)
				}
				if err != nil {
					return err
				}
				res := replicationJSON{Replica: name, Status: run.Status, Error: run.Error}
				if len(run.Result.Detail) > 0 {
					var rep replica.Report
					if json.Unmarshal(run.Result.Detail, &rep) == nil {
						res.Report = &rep
					}
				}
				where := cfg.Replicas[name].To
				switch run.Status {
				case scheduler.StatusFailed:
					failures = append(failures, fmt.Sprintf("replica %s (%s): %s", name, where, run.Error))
				case scheduler.StatusAttention:
					attention = true
				}
				if g.json {
					out = append(out, res)
					continue
				}
				if run.Status == scheduler.StatusFailed {
					continue
				}
				g.printf("replica %s (%s): %s\n", name, where, run.Result.Summary)
				if res.Report != nil {
					for _, f := range res.Report.Failed {
						g.printf("  not copied: %s: %s\n", f.Object, f.Error)
					}
					for _, l := range res.Report.Left {
						g.printf("  snapshot %s left for the next run: %s\n", l.ID.Short(), l.Reason)
					}
				}
			}
			if g.json {
				if err := g.printJSON(out); err != nil {
					return err
				}
			}
			switch {
			case len(failures) > 0:
				return &exitError{code: exitFailed, err: eachLine(errors.New(strings.Join(failures, "\n")))}
			case attention:
				return &exitError{code: exitAttention}
			}
			return nil
		}),
	}
	cmd.Flags().StringVar(&config, "config", "", "appliance configuration (default: the repository path + .yaml)")
	return cmd
}

// joinOr joins names with ", ", or says none.
func joinOr(names []string, none string) string {
	if len(names) == 0 {
		return none
	}
	s := names[0]
	for _, n := range names[1:] {
		s += ", " + n
	}
	return s
}
