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
	"sync"
	"syscall"

	"github.com/cairnbackup/cairn/repo"
	"github.com/cairnbackup/cairn/repo/appliance"
	"github.com/spf13/cobra"
)

// Exit codes. Scripts rely on them; they are listed in docs/operating.md ("Commands and exit codes").
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

// Signal names the signal, so that a command relayed to the appliance is
// cancelled there with it (appliance.Call).
func (i *interrupted) Signal() syscall.Signal { return i.sig }

// signalled returns the signal that stopped ctx, or nil: a signal here,
// or inside the appliance the signal that stopped the operator's cairn.
func signalled(ctx context.Context) *interrupted {
	cause := context.Cause(ctx)
	if sig, ok := errors.AsType[*interrupted](cause); ok {
		return sig
	}
	if sig, ok := errors.AsType[*appliance.Interrupted](cause); ok {
		return &interrupted{sig: sig.Signal}
	}
	return nil
}

// stopped is a command a signal stopped, with what it had done: "backup
// interrupted by SIGINT: no snapshot was saved (…)". It unwraps to the
// signal, so run prints it as it is and exits 128 + the signal.
type stopped struct {
	verb    string
	sig     *interrupted
	outcome string
}

func (e *stopped) Error() string {
	return fmt.Sprintf("%s interrupted by %s: %s", e.verb, e.sig.name(), e.outcome)
}

func (e *stopped) Unwrap() error { return e.sig }

// stoppedBy returns err, or when a signal stopped ctx, a *stopped saying
// what of the command's work stands.
func stoppedBy(ctx context.Context, err error, verb string, outcome func() string) error {
	if sig := signalled(ctx); err != nil && sig != nil {
		return &stopped{verb: verb, sig: sig, outcome: outcome()}
	}
	return err
}

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
	err := flagWords(root.ExecuteContext(ctx))
	if g.profileStop != nil {
		g.profileStop()
	}
	if g.logSignal != nil && ctx.Err() != nil {
		// The signal is logged before what the command says of it,
		// even when the goroutine that logs it has not run yet.
		g.logSignal()
	}
	var fw *forwarded
	if err == nil || errors.As(err, &fw) && fw.code == exitOK {
		return exitOK // a command the appliance ran carries its exit code as an error
	}
	name := "command"
	if c, _, ferr := root.Find(g.args); ferr == nil && c != root {
		name = c.Name()
	}
	if sig := signalled(ctx); sig != nil && !stopsOnSignal[name] {
		// A signal stopped the command. Errors that say so (a push
		// that names what was acknowledged) are printed as they are.
		var said *interrupted
		switch {
		case errors.As(err, &said):
			fmt.Fprintln(g.stderr, "cairn:", err)
		case errors.As(err, &fw):
			if fw.code != sig.code() {
				// The appliance stopped the command without
				// saying it was the signal (an older appliance).
				fmt.Fprintf(g.stderr, "cairn: %s interrupted by %s\n", name, sig.name())
			}
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
var local = map[string]bool{"init": true, "keygen": true, "serve": true, "push": true, "version": true, "repair": true, "help": true, "completion": true, "umount": true, "key": true, "unlock": true}

// isLocal reports whether cmd, or the group it belongs to, is local.
// A command of a local group annotated relayAnnotation goes to the
// appliance all the same (repair packs works beside it; repair index
// needs the repository to itself).
func isLocal(cmd *cobra.Command) bool {
	if cmd.Annotations[relayAnnotation] == "yes" {
		return false
	}
	for c := cmd; c != nil && c.HasParent(); c = c.Parent() {
		if local[c.Name()] {
			return true
		}
	}
	return false
}

// relayAnnotation marks a command of a local group that the running
// appliance runs.
const relayAnnotation = "cairn-relay"

// remote reports whether cmd works on an appliance elsewhere, not on a
// repository here (restore --from).
func remote(cmd *cobra.Command) bool {
	f := cmd.Flags().Lookup("from")
	return f != nil && f.Changed
}

// proveNamed checks, before the command does anything else, that the key
// or password file the caller named opens the repository: a command the
// appliance runs uses the appliance's key, so without this a wrong key
// would pass unnoticed. The caller holds the file, so the check runs
// here, reading keys/ and the config (plain files; the appliance holds
// only the index's lock). Local commands open the repository themselves,
// with the same check and message.
func (g *globalOptions) proveNamed(cmd *cobra.Command) error {
	if g.shared != nil || g.repoDir == "" || isLocal(cmd) || remote(cmd) || (g.passwordFile == "" && g.keyFile == "") {
		return nil
	}
	_, err := g.proveKeys(cmd.Context(), false)
	return err
}

// forward runs the command in the appliance that has the repository open,
// if one runs; it returns false when the command should run here.
func (g *globalOptions) forward(cmd *cobra.Command) (bool, error) {
	if g.shared != nil || g.repoDir == "" || isLocal(cmd) || remote(cmd) {
		return false, nil
	}
	if _, err := g.place(); err != nil {
		return true, err
	}
	req := &appliance.Request{Kind: "operator", Args: g.args, Cwd: g.abs("."), StderrTerminal: g.stderrTTY, Repo: g.location(), TZ: callerTZ()}
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
// its open repository in dir (absolute), with the operator's streams.
func operator(dir string, r *repo.Repository, a **appliance.Appliance) appliance.OperatorFunc {
	return func(ctx context.Context, req *appliance.Request, stdin io.Reader, stdout, stderr io.Writer) int {
		ctx, stop := relaySignal(ctx)
		defer stop()
		g := &globalOptions{args: req.Args, shared: r, sharedDir: dir, appliance: *a, cwd: req.Cwd, loc: zoneOf(req.TZ), stdin: stdin, stdout: stdout, stderr: stderr, stderrTTY: req.StderrTerminal}
		return run(ctx, g)
	}
}

// relaySignal returns a context that ends when parent does, with the
// cause *interrupted when the appliance cancelled parent because the
// operator's cairn got a signal, so the command inside says so and exits
// as it would have on the operator's side.
func relaySignal(parent context.Context) (context.Context, func()) {
	ctx, cancel := context.WithCancelCause(context.WithoutCancel(parent))
	stop := context.AfterFunc(parent, func() {
		cause := context.Cause(parent)
		if sig := signalled(parent); sig != nil {
			cause = sig
		}
		cancel(cause)
	})
	return ctx, func() {
		stop()
		cancel(nil)
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
	root.RunE, root.Args = unknownSubcommand, cobra.ArbitraryArgs
	root.PersistentPreRunE = func(cmd *cobra.Command, _ []string) error {
		if g.shared != nil {
			// The appliance checked that the request names the
			// repository it serves (by identity); the caller may
			// have named it by CAIRN_REPO, which is not in the
			// relayed arguments, or by another spelling. Everything
			// beside the repository (its configuration) is the
			// appliance's.
			g.repoDir = g.sharedDir
			g.stateDir, g.cacheDir = g.shared.Place().StateDir(), ""
		}
		if cmd.HasSubCommands() {
			return nil // a group (root, key, repair) runs no command of its own
		}
		if f := cmd.Flags().Lookup("config"); f != nil {
			g.configFlag = f.Value.String()
		}
		ctx := cmd.Context()
		g.logSignal = sync.OnceFunc(func() {
			if sig := signalled(ctx); sig != nil {
				g.logger().Debug("stopping: signal received", "signal", sig.name())
			}
		})
		context.AfterFunc(ctx, g.logSignal)
		if err := g.proveNamed(cmd); err != nil {
			return err
		}
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
		newKeyCommand(g),
		newVersionCommand(g),
		newMountCommand(g), newUmountCommand(g),
		newDrillCommand(g), newDrillsCommand(g),
		newReplicateCommand(g),
		newConfigCommand(g),
		newManCommand(),
		newUnlockCommand(g),
	)
	wrapArgs(root)
	registerCompletions(g, root)
	return root
}

// groupCommand is a command that only groups its subcommands (key,
// repair), with unknownSubcommand as its RunE.
func groupCommand(use, short string) *cobra.Command {
	return &cobra.Command{Use: use, Short: short, Args: cobra.ArbitraryArgs, RunE: unknownSubcommand}
}

// unknownSubcommand is the RunE of a group of commands (the root, key,
// repair): with no argument it shows the group's help, otherwise the
// argument names no command of the group, a usage error.
func unknownSubcommand(cmd *cobra.Command, args []string) error {
	if len(args) == 0 {
		return cmd.Help()
	}
	msg := fmt.Sprintf("unknown command %q for %q", args[0], cmd.CommandPath())
	cmd.SuggestionsMinimumDistance = 2
	if s := cmd.SuggestionsFor(args[0]); len(s) > 0 {
		msg += "; did you mean " + strings.Join(s, " or ") + "?"
	}
	return usageError{errors.New(msg)}
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
