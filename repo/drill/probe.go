package drill

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"io"
	"io/fs"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"syscall"
	"time"

	"github.com/cairnbackup/cairn/repo/output"
	"golang.org/x/sync/errgroup"
)

// MaxOutput bounds the output a report keeps of one probe: its beginning
// and its end ([output.Buffer]).
const MaxOutput = output.Max

// probeParallel is how many probes run at once.
const probeParallel = 4

type targetKind uint8

const (
	gitRepo  targetKind = iota + 1 // rel is the git directory
	sqliteDB                       // rel is the database file
	pgDump                         // rel is the dump file, or the directory of a toc.dat
	command                        // a command from Options.Probes
)

// target is one thing to probe, by its path relative to the scratch
// directory.
type target struct {
	kind    targetKind
	rel     string
	display string // the path in the snapshot (for a work tree: the work tree)
	cmd     string
}

var (
	sqliteMagic = []byte("SQLite format 3\x00")
	pgdumpMagic = []byte("PGDMP")
)

// findTargets looks through the restored files for what the probes
// check, in path order.
func (d *drill) findTargets(ctx context.Context) ([]target, error) {
	var ts []target
	err := filepath.WalkDir(d.dir, func(p string, e fs.DirEntry, err error) error {
		if err != nil {
			return nil // unreadable: the verification said so
		}
		if err := ctx.Err(); err != nil {
			return err
		}
		rel, _ := filepath.Rel(d.dir, p)
		switch {
		case e.IsDir():
			if e.Name() == ".git" && p != d.dir {
				return fs.SkipDir // probed with its work tree, if it is a repository
			}
			if isGitDir(p) {
				ts = append(ts, target{kind: gitRepo, rel: rel, display: snapPath(rel)})
				return fs.SkipDir
			}
			if isGitDir(filepath.Join(p, ".git")) {
				ts = append(ts, target{kind: gitRepo, rel: filepath.Join(rel, ".git"), display: snapPath(rel)})
			}
		case e.Type().IsRegular():
			head := readHead(p, len(sqliteMagic))
			switch {
			case bytes.HasPrefix(head, sqliteMagic):
				ts = append(ts, target{kind: sqliteDB, rel: rel, display: snapPath(rel)})
			case bytes.HasPrefix(head, pgdumpMagic) && e.Name() == "toc.dat":
				dir := filepath.Dir(rel)
				ts = append(ts, target{kind: pgDump, rel: dir, display: snapPath(dir)})
			case bytes.HasPrefix(head, pgdumpMagic):
				ts = append(ts, target{kind: pgDump, rel: rel, display: snapPath(rel)})
			}
		}
		return nil
	})
	if err != nil {
		return nil, err
	}
	for _, c := range d.rep.Configured {
		ts = append(ts, target{kind: command, rel: ".", display: c, cmd: c})
	}
	return ts, nil
}

// isGitDir reports whether dir has a HEAD file and objects and refs
// directories (none of them symlinks).
func isGitDir(dir string) bool {
	head, err1 := os.Lstat(filepath.Join(dir, "HEAD"))
	objects, err2 := os.Lstat(filepath.Join(dir, "objects"))
	refs, err3 := os.Lstat(filepath.Join(dir, "refs"))
	return err1 == nil && err2 == nil && err3 == nil && head.Mode().IsRegular() && objects.IsDir() && refs.IsDir()
}

// readHead returns up to n bytes from the start of the regular file p.
func readHead(p string, n int) []byte {
	f, err := os.OpenFile(p, os.O_RDONLY|syscall.O_NOFOLLOW|syscall.O_NONBLOCK, 0)
	if err != nil {
		return nil
	}
	defer f.Close()
	buf := make([]byte, n)
	k, _ := io.ReadFull(f, buf)
	return buf[:k]
}

// probe runs the probes, up to probeParallel at once, and records them
// in the report in the order of targets.
func (d *drill) probe(ctx context.Context, ts []target) error {
	results := make([]Probe, len(ts))
	var g errgroup.Group
	g.SetLimit(probeParallel)
	for i, t := range ts {
		g.Go(func() error {
			results[i] = d.run1(ctx, t)
			return nil
		})
	}
	g.Wait()
	if err := ctx.Err(); err != nil {
		return err
	}
	d.rep.Probes = results
	for _, p := range results {
		if !p.OK {
			path := p.Target
			if p.Name == "command" {
				path = "/"
			}
			d.probeFails = append(d.probeFails, Failure{Path: path, Reason: failReason(p)})
		}
	}
	return nil
}

// failReason says why probe p failed, with the lines of its output that
// say what failed ([Excerpt]).
func failReason(p Probe) string {
	why := failPrefix(p)
	if lines := Excerpt(p.Output); len(lines) > 0 {
		why += ": " + strings.Join(lines, " | ")
	}
	return strings.ToValidUTF8(why, "\uFFFD")
}

// failPrefix is the start of a failed probe's reason: the probe and how
// it failed.
func failPrefix(p Probe) string {
	if p.Name == "command" {
		return fmt.Sprintf("command %q: %s", p.Target, p.Error)
	}
	return p.Name + ": " + p.Error
}

// Excerpt returns the lines of a probe's output that matter
// ([output.Excerpt]): the first few that look like errors and the last
// few, each bounded.
func Excerpt(out string) []string { return output.Excerpt(out) }

// run1 runs one probe.
func (d *drill) run1(ctx context.Context, t target) (p Probe) {
	abs := filepath.Join(d.dir, t.rel)
	var prog string
	var args []string
	checkOK := func(output string) string { return "" } // "" passes
	switch t.kind {
	case gitRepo:
		p.Name, prog = "git fsck", "git"
		args = []string{"-c", "core.fsmonitor=false", "--git-dir=" + abs, "fsck", "--full"}
	case sqliteDB:
		p.Name, prog = "sqlite integrity_check", "sqlite3"
		args = []string{abs, "PRAGMA integrity_check"}
		checkOK = func(output string) string {
			if output != "ok" {
				return fmt.Sprintf("printed %q instead of \"ok\"", firstLine(output))
			}
			return ""
		}
	case pgDump:
		p.Name, prog = "pg_restore --list", "pg_restore"
		args = []string{"--list", abs}
	case command:
		p.Name, prog = "command", "sh"
		args = []string{"-c", t.cmd}
	}
	p.Target = t.display
	p.Command = shellQuote(append([]string{prog}, args...))

	start := time.Now()
	defer func() { p.Seconds = time.Since(start).Seconds() }()
	path, err := exec.LookPath(prog)
	if err != nil {
		p.Error = fmt.Sprintf("the program %s is not installed (not found in $PATH)", prog)
		return p
	}
	pctx, cancel := context.WithTimeout(ctx, d.o.Timeout)
	defer cancel()
	cmd := exec.CommandContext(pctx, path, args...)
	cmd.Dir = d.dir
	cmd.Env = probeEnv(t.kind, d.dir)
	cmd.SysProcAttr = &syscall.SysProcAttr{Setpgid: true}
	cmd.Cancel = func() error { return syscall.Kill(-cmd.Process.Pid, syscall.SIGKILL) }
	cmd.WaitDelay = 5 * time.Second
	// One writer for both, so the process gets one pipe for both and
	// the output keeps its order.
	out := &output.Buffer{}
	cmd.Stdout, cmd.Stderr = out, out
	err = cmd.Run()
	var why string
	switch {
	case errors.Is(pctx.Err(), context.DeadlineExceeded) && ctx.Err() == nil:
		why = fmt.Sprintf("timed out after %s", d.o.Timeout)
	case err != nil:
		why = err.Error()
	default:
		why = checkOK(out.String())
	}
	p.OK, p.Error = why == "", why
	p.Output = out.String()
	if ps := cmd.ProcessState; ps != nil && ps.Exited() {
		code := ps.ExitCode()
		p.Exit = &code
	}
	return p
}

// shellQuote joins a command's words as a POSIX shell would read them
// back, quoting those that need it.
func shellQuote(words []string) string {
	out := make([]string, len(words))
	for i, w := range words {
		if w != "" && strings.Trim(w, "abcdefghijklmnopqrstuvwxyzABCDEFGHIJKLMNOPQRSTUVWXYZ0123456789_@%+=:,./-") == "" {
			out[i] = w
			continue
		}
		out[i] = "'" + strings.ReplaceAll(w, "'", `'\''`) + "'"
	}
	return strings.Join(out, " ")
}

// probeEnv is the probes' environment: the drill's, without GIT_*
// variables and the system git configuration for the built-in probes,
// with CAIRN_DRILL_ROOT for commands.
func probeEnv(k targetKind, root string) []string {
	var env []string
	for _, kv := range os.Environ() {
		if k != command && strings.HasPrefix(kv, "GIT_") {
			continue
		}
		if strings.HasPrefix(kv, "CAIRN_DRILL_ROOT=") {
			continue
		}
		env = append(env, kv)
	}
	if k == command {
		return append(env, "CAIRN_DRILL_ROOT="+root)
	}
	return append(env, "GIT_CONFIG_NOSYSTEM=1", "GIT_TERMINAL_PROMPT=0")
}

func firstLine(s string) string {
	line, _, _ := strings.Cut(s, "\n")
	if len(line) > 200 {
		line = line[:200] + "…"
	}
	return line
}
