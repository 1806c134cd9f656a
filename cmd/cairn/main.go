// Command cairn is the backup appliance: one binary with a subcommand
// per job. This package parses flags and wires the packages together;
// everything else lives in the packages it calls.
package main

import (
	"context"
	"errors"
	"fmt"
	"io"
	"os"
	"os/signal"
	"runtime/debug"
	"strings"
	"syscall"

	"github.com/cairnbackup/cairn/repo"
	"github.com/cairnbackup/cairn/repo/appliance"
	"github.com/spf13/cobra"
)

// Exit codes. Scripts rely on them; they are listed in the README.
const (
	exitOK        = 0
	exitFailed    = 1
	exitUsage     = 2
	exitWarnings  = 3  // backup: the snapshot was saved, but some files could not be read
	exitDamage    = 4  // check: the repository has damage
	exitAttention = 5  // status: something needs an operator's attention
	exitLocked    = 11 // the repository is in use by another process
)

// exitError carries an exit code other than exitFailed.
type exitError struct {
	code int
	err  error
}

func (e *exitError) Error() string { return e.err.Error() }
func (e *exitError) Unwrap() error { return e.err }

func main() {
	if os.Getenv("GOGC") == "" {
		// Most of cairn's heap is large byte buffers the collector
		// need not scan (chunks, packs, compression windows), so
		// collecting at half the live heap instead of all of it costs
		// under 1% CPU and cuts a backup's peak RSS by about a fifth
		// (331 to 270 MiB on the peers data set).
		debug.SetGCPercent(50)
	}
	ctx, stop := withSignals(context.Background())
	code := run(ctx, &globalOptions{args: os.Args[1:]})
	stop()
	os.Exit(code)
}

// interrupted is the cause of the command's context once SIGINT or
// SIGTERM asked it to stop. A command that then fails exits 128 plus the
// signal's number, as a shell reports a process the signal killed: 130
// for SIGINT, 143 for SIGTERM.
type interrupted struct{ sig syscall.Signal }

func (i *interrupted) Error() string { return "interrupted by " + i.name() }

func (i *interrupted) name() string {
	if i.sig == syscall.SIGINT {
		return "SIGINT"
	}
	return "SIGTERM"
}

func (i *interrupted) code() int { return 128 + int(i.sig) }

// withSignals returns a context that SIGINT or SIGTERM cancels with an
// *interrupted cause naming the signal. Later signals are caught too, so
// a second Ctrl-C does not kill a command that is cleaning up.
func withSignals(parent context.Context) (context.Context, func()) {
	ctx, cancel := context.WithCancelCause(parent)
	sigs := make(chan os.Signal, 1)
	signal.Notify(sigs, syscall.SIGINT, syscall.SIGTERM)
	done := make(chan struct{})
	go func() {
		select {
		case s := <-sigs:
			cancel(&interrupted{sig: s.(syscall.Signal)})
		case <-done:
		}
	}()
	return ctx, func() {
		signal.Stop(sigs)
		close(done)
		cancel(nil)
	}
}

// stopsOnSignal lists the commands for which SIGINT and SIGTERM are the
// normal way to stop (the appliance, a mount in the foreground): they
// exit 0 when they stop cleanly, and an error while stopping is a failure
// (exit 1), not an interruption.
var stopsOnSignal = map[string]bool{"serve": true, "mount": true}

// run executes the command line in g.args and returns the exit code. g
// carries the standard streams (nil: the process's own) and, inside the
// appliance, the shared repository.
func run(ctx context.Context, g *globalOptions) int {
	root := newRootCommand(g)
	root.SetArgs(g.args)
	root.SetOut(g.stdout)
	root.SetErr(g.stderr)
	err := root.ExecuteContext(ctx)
	if g.profileStop != nil {
		g.profileStop()
	}
	var fw *forwarded
	if err == nil || errors.As(err, &fw) && fw.code == exitOK {
		return exitOK // a command the appliance ran carries its exit code as an error
	}
	name := "command"
	if c, _, ferr := root.Find(g.args); ferr == nil && c != root {
		name = c.Name()
	}
	var sig *interrupted
	if errors.As(context.Cause(ctx), &sig) && !stopsOnSignal[name] {
		// A signal stopped the command. Errors that say so (a push
		// that names what was acknowledged) are printed as they are.
		var said *interrupted
		switch {
		case errors.As(err, &said):
			fmt.Fprintln(g.stderr, "cairn:", err)
		case errors.As(err, &fw):
			fmt.Fprintf(g.stderr, "cairn: %s interrupted by %s\n", name, sig.name())
		default:
			fmt.Fprintf(g.stderr, "cairn: %s interrupted by %s: %s\n", name, sig.name(), strings.TrimPrefix(err.Error(), name+": "))
		}
		return sig.code()
	}
	if errors.As(err, &fw) {
		return fw.code
	}
	var ee *exitError
	if errors.As(err, &ee) {
		if ee.err != nil && ee.code != exitWarnings && ee.code != exitDamage {
			fmt.Fprintln(g.stderr, "cairn:", ee.err)
		}
		return ee.code
	}
	fmt.Fprintln(g.stderr, "cairn:", err)
	if errors.Is(err, repo.ErrLocked) {
		return exitLocked
	}
	if isUsage(err) {
		return exitUsage
	}
	return exitFailed
}

// forwarded carries the exit code of a command the running appliance ran.
type forwarded struct{ code int }

func (f *forwarded) Error() string { return fmt.Sprintf("ran in the appliance: exit %d", f.code) }

// local lists the commands that never go to a running appliance: they
// create or serve the repository, need it to themselves, or talk to a
// remote appliance.
var local = map[string]bool{"init": true, "keygen": true, "serve": true, "push": true, "version": true, "repair": true, "index": true, "help": true, "completion": true, "umount": true}

// forward runs the command in the appliance that has the repository open,
// if one runs; it returns false when the command should run here.
func (g *globalOptions) forward(cmd *cobra.Command) (bool, error) {
	if g.shared != nil || g.repoDir == "" || local[cmd.Name()] {
		return false, nil
	}
	if f := cmd.Flags().Lookup("from"); f != nil && f.Changed {
		return false, nil // restore --from: from an appliance over SSH, not this repository
	}
	req := &appliance.Request{Kind: "operator", Args: g.args, Cwd: g.abs("."), StderrTerminal: g.stderrTTY, Repo: g.abs(g.repoDir)}
	var stdin io.Reader
	if f := cmd.Flags(); f.Lookup("stdin") != nil && (f.Changed("stdin") || f.Changed("tar")) {
		stdin = g.stdin // only commands that read standard input get it
	}
	code, err := appliance.Call(cmd.Context(), g.socketPath(), req, stdin, g.stdout, g.stderr)
	if errors.Is(err, appliance.ErrNotRunning) {
		return false, nil
	}
	if err != nil {
		return true, fmt.Errorf("%s: %w", cmd.Name(), err)
	}
	return true, &forwarded{code: code}
}

// operator runs an operator's command line inside the appliance, against
// its open repository, with the operator's streams.
func operator(r *repo.Repository, a **appliance.Appliance) appliance.OperatorFunc {
	return func(ctx context.Context, req *appliance.Request, stdin io.Reader, stdout, stderr io.Writer) int {
		g := &globalOptions{args: req.Args, shared: r, appliance: *a, cwd: req.Cwd, stdin: stdin, stdout: stdout, stderr: stderr, stderrTTY: req.StderrTerminal}
		return run(ctx, g)
	}
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
	root.PersistentPreRunE = func(cmd *cobra.Command, _ []string) error {
		if done, err := g.forward(cmd); done {
			return err
		}
		return g.startProfile()
	}
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
		newStatusCommand(g),
		newJobsCommand(g),
		newRunbookCommand(g),
		newForgetCommand(g),
		newPruneCommand(g),
		newServeCommand(g),
		newPushCommand(g),
		newKeygenCommand(g),
		newVersionCommand(),
		newMountCommand(g), newUmountCommand(g),
		newDrillCommand(g), newDrillsCommand(g),
		newConfigCommand(g),
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
