package plan

import (
	"context"
	"errors"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"syscall"
	"time"

	"github.com/cairnbackup/cairn/repo/output"
	"github.com/cairnbackup/cairn/repo/snapshot"
)

// DefaultHookTimeout bounds each before and after command of a source
// that sets no timeout.
const DefaultHookTimeout = 10 * time.Minute

// The phases of a source's commands, as CAIRN_PHASE and the snapshot
// record name them.
const (
	PhaseBefore = "before"
	PhaseAfter  = "after"
)

// checkHooks checks the before and after commands and the timeout,
// reporting each problem with the field it is in (before[i], after[i],
// timeout) to problem.
func (s *Source) checkHooks(problem func(field, format string, args ...any)) {
	for _, ph := range []struct {
		name string
		cmds Commands
	}{{PhaseBefore, s.Before}, {PhaseAfter, s.After}} {
		if len(ph.cmds) > maxHookCommands {
			problem(ph.name, "%d commands, more than %d", len(ph.cmds), maxHookCommands)
			continue
		}
		for i, c := range ph.cmds {
			field := fmt.Sprintf("%s[%d]", ph.name, i)
			if strings.TrimSpace(c) == "" {
				problem(field, "an empty command")
			}
			if len(c) > maxHookCommand {
				problem(field, "a command of %d bytes, more than %d", len(c), maxHookCommand)
			}
		}
	}
	switch {
	case s.Timeout < 0:
		problem("timeout", "%s is negative", s.Timeout)
	case s.Timeout != 0 && len(s.Before) == 0 && len(s.After) == 0:
		problem("timeout", "bounds each before and after command, and this source has none (the backup itself has no timeout)")
	}
}

// Hooks runs the before and after commands of one source for one backup
// and keeps what they did, for the snapshot's scope.
//
// Each command runs with sh -c, exactly as the plan gives it (nothing of
// cairn's is put into it), in the plan file's directory, in a process
// group of its own, with standard input from /dev/null, and with
// CAIRN_SOURCE (the source's name), CAIRN_NODE (the node the snapshot
// belongs to) and CAIRN_PHASE (before or after) added to the
// environment. It gets the source's timeout; when the time is up or the
// backup is interrupted, its process group is killed. Standard output
// and error are kept together, bounded by [output.Buffer].
type Hooks struct {
	src       *Source
	dir       string // the plan file's directory
	node      string
	ran       []snapshot.Hook
	afterDone bool
}

// Hooks returns the runner of s's commands for a backup as node, for the
// plan read from planPath; nil when s has no before or after commands.
func (s *Source) Hooks(planPath, node string) *Hooks {
	if len(s.Before) == 0 && len(s.After) == 0 {
		return nil
	}
	return &Hooks{src: s, dir: filepath.Dir(planPath), node: node}
}

// HookError is a before command that failed: the source is skipped.
type HookError struct {
	Hook snapshot.Hook
}

func (e *HookError) Error() string { return describe(e.Hook) }

// describe says how a command failed, with the lines of its output that
// say why: `before command "systemctl stop app" failed: exit status 1:
// Failed to stop app.service: Unit app.service not loaded.`
func describe(h snapshot.Hook) string {
	msg := fmt.Sprintf("%s command %q failed: %s", h.Phase, h.Command, h.Error)
	if lines := output.Excerpt(h.Output); len(lines) > 0 {
		msg += ": " + strings.Join(lines, " | ")
	}
	return strings.ToValidUTF8(msg, "\uFFFD")
}

// Before runs the before commands in order and stops at the first that
// fails, which it returns as a [*HookError]: the source must then not be
// backed up. A nil Hooks runs nothing.
func (h *Hooks) Before(ctx context.Context) error {
	if h == nil {
		return nil
	}
	for _, c := range h.src.Before {
		rec := h.run(ctx, PhaseBefore, c)
		h.ran = append(h.ran, rec)
		if rec.Error != "" {
			return &HookError{Hook: rec}
		}
	}
	return nil
}

// After runs the after commands, each whatever the others did, once: a
// later call does nothing. They run even when ctx is done (a backup
// stopped by a signal must still restart the service its before command
// stopped), each bounded by the timeout alone. It returns how each
// failed one failed; the caller reports them as warnings.
func (h *Hooks) After(ctx context.Context) []string {
	if h == nil || h.afterDone {
		return nil
	}
	h.afterDone = true
	var failed []string
	for _, c := range h.src.After {
		rec := h.run(context.WithoutCancel(ctx), PhaseAfter, c)
		h.ran = append(h.ran, rec)
		if rec.Error != "" {
			failed = append(failed, describe(rec))
		}
	}
	return failed
}

// Ran returns the commands that ran so far, in order.
func (h *Hooks) Ran() []snapshot.Hook {
	if h == nil {
		return nil
	}
	return h.ran
}

// hookVars are the variables cairn sets for a command; the same names
// from cairn's own environment are dropped.
var hookVars = []string{"CAIRN_SOURCE=", "CAIRN_NODE=", "CAIRN_PHASE="}

// run runs one command and records it.
func (h *Hooks) run(ctx context.Context, phase, command string) snapshot.Hook {
	rec := snapshot.Hook{Phase: phase, Command: command}
	timeout := h.src.Timeout
	if timeout <= 0 {
		timeout = DefaultHookTimeout
	}
	cctx, cancel := context.WithTimeout(ctx, timeout)
	defer cancel()
	cmd := exec.CommandContext(cctx, "/bin/sh", "-c", command)
	cmd.Dir = h.dir
	for _, kv := range os.Environ() {
		if !hasAnyPrefix(kv, hookVars) {
			cmd.Env = append(cmd.Env, kv)
		}
	}
	cmd.Env = append(cmd.Env, "CAIRN_SOURCE="+h.src.Name, "CAIRN_NODE="+h.node, "CAIRN_PHASE="+phase)
	cmd.SysProcAttr = &syscall.SysProcAttr{Setpgid: true}
	cmd.Cancel = func() error { return syscall.Kill(-cmd.Process.Pid, syscall.SIGKILL) }
	cmd.WaitDelay = 5 * time.Second
	out := &output.Buffer{}
	cmd.Stdout, cmd.Stderr = out, out
	start := time.Now()
	err := cmd.Run()
	rec.Duration = time.Since(start)
	switch {
	case errors.Is(cctx.Err(), context.DeadlineExceeded) && ctx.Err() == nil:
		rec.Error = fmt.Sprintf("timed out after %s", timeout)
	case ctx.Err() != nil && err != nil:
		rec.Error = "interrupted: " + err.Error()
	case err != nil:
		rec.Error = err.Error()
	}
	rec.Output = out.String()
	if ps := cmd.ProcessState; ps != nil && ps.Exited() {
		code := ps.ExitCode()
		rec.Exit = &code
	}
	return rec
}

func hasAnyPrefix(s string, prefixes []string) bool {
	for _, p := range prefixes {
		if strings.HasPrefix(s, p) {
			return true
		}
	}
	return false
}
