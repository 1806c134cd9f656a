package main

import (
	"time"

	"github.com/cairnbackup/cairn/repo"
	"github.com/spf13/cobra"
)

func newUnlockCommand(g *globalOptions) *cobra.Command {
	var force bool
	cmd := &cobra.Command{
		Use:   "unlock [--force]",
		Short: "show who holds an object-store repository's lock; --force releases it",
		Long: `Show which process holds the repository's lock; with --force, release
the lock of an object-store repository whoever holds it.

An object-store repository has one owner at a time: the lock object in
the bucket (PREFIX/lock) names its host, PID, start time and a heartbeat
the owner refreshes every minute. Another process is refused with exit
code 11 and that name. An owner that ran on this machine and has ended
(killed, crashed, or the machine rebooted) is replaced at the next open
without help; an owner on another machine never is, however old its
heartbeat, since it may only be cut off from the store.

--force is for an owner you know is dead (its machine is gone). If it is
in fact alive, it keeps writing until its next heartbeat or snapshot
(at most a minute), then stops with "no longer holds the repository's
lock": packs it stored meanwhile are unreferenced and a later prune
removes them, but a prune both processes run at once could delete data
the other relies on. Stop the old owner first whenever you can.

A directory repository's lock is the kernel's (flock): it ends with its
process and cannot go stale, so there is nothing to force.

Exit code 0: the lock is free, or --force released it. 11: another
process holds it (without --force).`,
		Args: cobra.NoArgs,
		RunE: func(cmd *cobra.Command, _ []string) error {
			o, err := g.repoOptions(repo.Options{Logger: g.logger()})
			if err != nil {
				return err
			}
			res, err := repo.Unlock(cmd.Context(), g.repoDir, force, o)
			if err != nil {
				return err
			}
			if g.json {
				return g.printJSON(map[string]any{"lock": res.Lock, "holder": res.Holder, "released": res.Released})
			}
			switch {
			case res.Released && res.Holder != nil:
				h := res.Holder
				g.printf("released the lock %s of %s pid %d since %s (heartbeat %s)\n", res.Lock, h.Host, h.PID,
					h.Started.UTC().Format(time.RFC3339), h.Heartbeat.UTC().Format(time.RFC3339))
				if res.Gone == "" {
					g.printf("if that process is still running, it stops writing at its next heartbeat or snapshot\n")
				}
			case res.Released:
				g.printf("replaced the lock object %s, which was not a cairn lock\n", res.Lock)
			default:
				g.printf("the repository %s is not locked (%s)\n", g.location(), res.Lock)
			}
			return nil
		},
	}
	cmd.Flags().BoolVar(&force, "force", false, "release the lock whoever holds it (only for an owner known to be dead)")
	return cmd
}
