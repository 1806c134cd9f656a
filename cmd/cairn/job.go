package main

import (
	"context"
	"fmt"
	"os"
	"os/exec"
	"slices"
	"strings"

	"github.com/cairnbackup/cairn/repo/backup"
	"github.com/cairnbackup/cairn/repo/blob"
	"github.com/cairnbackup/cairn/repo/filter"
	"github.com/cairnbackup/cairn/repo/plan"
	"github.com/cairnbackup/cairn/repo/snapshot"
)

// pushJob is one snapshot to make (backup) or push: from the command
// line, or one source of a plan.
type pushJob struct {
	plan          string
	src           backup.Source
	exclude       *filter.Matcher
	excludeCaches bool
	tags          []string
	scope         *snapshot.Scope
	command       *exec.Cmd   // a command source, started; waited for before commit
	hooks         *plan.Hooks // a plan source's before and after commands, or nil
}

// source is the plan file's source the job is of, as a report names it;
// "" for the command line's job.
func (j *pushJob) source() string {
	if j.scope == nil {
		return ""
	}
	return j.plan
}

// warnAfter runs the job's after commands unless they ran already (the
// job failed before its data was read to the end), and prints how any
// failed as a warning: no snapshot carries them.
func (j *pushJob) warnAfter(ctx context.Context, g *globalOptions) {
	for _, w := range j.hooks.After(ctx) {
		fmt.Fprintf(g.stderr, "cairn: warning: source %s: %s\n", j.plan, w)
	}
}

// afterWarnings runs the job's after commands (once the data is read)
// and returns how any failed, as the snapshot's warnings.
func (j *pushJob) afterWarnings(ctx context.Context) []string {
	var out []string
	for _, w := range j.hooks.After(ctx) {
		out = append(out, "source "+j.plan+": "+w)
	}
	return out
}

// isPlanFile reports whether --plan names a plan file (FILE.yaml, or an
// existing regular file) rather than a plan's name.
func (g *globalOptions) isPlanFile(v string) bool {
	if strings.HasSuffix(v, ".yaml") || strings.HasSuffix(v, ".yml") {
		return true
	}
	fi, err := os.Stat(g.abs(v))
	return v != "" && err == nil && fi.Mode().IsRegular()
}

// sourceJob prepares one source of a plan for node: its before commands
// run first (one that fails skips the source: its after commands run and
// the error says so), then a command source's command is started and
// its output streamed.
func (o *backupOptions) sourceJob(ctx context.Context, g *globalOptions, pl *plan.Plan, src plan.Source, node string) (*pushJob, error) {
	excl, err := filter.New(src.Rules(pl.Path))
	if err != nil {
		return nil, err
	}
	job := &pushJob{plan: src.Name, src: backup.Source{Paths: src.Paths}, exclude: excl, excludeCaches: src.ExcludeCaches(), tags: append(slices.Clone(o.tags), src.Tags...),
		scope: src.Scope(pl.Path), hooks: src.Hooks(pl.Path, node)}
	if err := job.hooks.Before(ctx); err != nil {
		job.warnAfter(ctx, g)
		return nil, fmt.Errorf("source %s: %w; the source was skipped, nothing saved", src.Name, err)
	}
	if src.Command != "" {
		cmd := exec.CommandContext(ctx, "/bin/sh", "-c", src.Command)
		cmd.Stderr = g.stderr
		out, err := cmd.StdoutPipe()
		if err != nil {
			return nil, err
		}
		if err := cmd.Start(); err != nil {
			return job, fmt.Errorf("source %s: %w", src.Name, err)
		}
		job.src, job.command = backup.Source{Stream: out, Name: src.File}, cmd
	}
	return job, nil
}

// savedName names an acknowledged snapshot in messages.
func savedName(id blob.ID, plan string) string {
	if plan == "" {
		return id.Short()
	}
	return fmt.Sprintf("%s (plan %s)", id.Short(), plan)
}
