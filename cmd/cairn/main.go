// Command cairn is the backup appliance: one binary with a subcommand
// per job. This package parses flags and wires the packages together;
// everything else lives in the packages it calls.
package main

import (
	"context"
	"errors"
	"fmt"
	"os"
	"os/signal"
	"syscall"

	"github.com/cairnbackup/cairn/repo"
	"github.com/spf13/cobra"
)

// Exit codes. Scripts rely on them; they are listed in the README.
const (
	exitOK       = 0
	exitFailed   = 1
	exitUsage    = 2
	exitWarnings = 3  // backup: the snapshot was saved, but some files could not be read
	exitDamage   = 4  // check: the repository has damage
	exitLocked   = 11 // the repository is in use by another process
)

// exitError carries an exit code other than exitFailed.
type exitError struct {
	code int
	err  error
}

func (e *exitError) Error() string { return e.err.Error() }
func (e *exitError) Unwrap() error { return e.err }

func main() {
	ctx, stop := signal.NotifyContext(context.Background(), os.Interrupt, syscall.SIGTERM)
	code := run(ctx, os.Args[1:])
	stop()
	os.Exit(code)
}

func run(ctx context.Context, args []string) int {
	g := &globalOptions{}
	root := newRootCommand(g)
	root.SetArgs(args)
	err := root.ExecuteContext(ctx)
	if err == nil {
		return exitOK
	}
	var ee *exitError
	if errors.As(err, &ee) {
		if ee.err != nil && ee.code != exitWarnings && ee.code != exitDamage {
			fmt.Fprintln(os.Stderr, "cairn:", ee.err)
		}
		return ee.code
	}
	fmt.Fprintln(os.Stderr, "cairn:", err)
	if errors.Is(err, repo.ErrLocked) {
		return exitLocked
	}
	if isUsage(err) {
		return exitUsage
	}
	return exitFailed
}

type usageError struct{ error }

func (u usageError) Unwrap() error { return u.error }

func isUsage(err error) bool {
	var u usageError
	return errors.As(err, &u)
}

func newRootCommand(g *globalOptions) *cobra.Command {
	root := &cobra.Command{
		Use:           "cairn",
		Short:         "a deduplicating, encrypted backup appliance that proves every backup restores",
		SilenceUsage:  true,
		SilenceErrors: true,
	}
	root.SetFlagErrorFunc(func(_ *cobra.Command, err error) error { return usageError{err} })
	g.register(root)
	root.AddCommand(
		newInitCommand(g),
		newBackupCommand(g),
		newSnapshotsCommand(g),
		newLsCommand(g),
		newRestoreCommand(g),
		newCheckCommand(g),
		newRepairCommand(g),
		newFindCommand(g),
		newDiffCommand(g),
		newStatsCommand(g),
		newDumpCommand(g),
		newVersionCommand(),
	)
	wrapArgs(root)
	return root
}

// wrapArgs makes a wrong number of arguments a usage error (exit code 2)
// on every command.
func wrapArgs(cmd *cobra.Command) {
	if check := cmd.Args; check != nil {
		cmd.Args = func(c *cobra.Command, args []string) error {
			if err := check(c, args); err != nil {
				return usageError{fmt.Errorf("%s: %w", c.Name(), err)}
			}
			return nil
		}
	}
	for _, sub := range cmd.Commands() {
		wrapArgs(sub)
	}
}
