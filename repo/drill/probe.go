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
	"sync"
	"syscall"
	"time"

	"golang.org/x/sync/errgroup"
)

// MaxOutput bounds the output a report keeps of one probe: its beginning
// and its end.
const MaxOutput = 4 << 10

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

// failReason says why probe p failed, with the end of its output.
func failReason(p Probe) string {
	why := p.Name + ": " + p.Error
	if p.Name == "command" {
		why = fmt.Sprintf("command %q: %s", p.Target, p.Error)
	}
	if out := strings.TrimSpace(p.Output); out != "" {
		if len(out) > 300 {
			out = "…" + out[len(out)-300:]
		}
		why += ": " + strings.ReplaceAll(out, "\n", " | ")
	}
	return strings.ToValidUTF8(why, "\uFFFD")
}

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
	out := &boundedBuffer{}
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
	return p
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

// boundedBuffer keeps the first and the last bytes written to it, at
// most MaxOutput in all. It is safe for concurrent writes.
type boundedBuffer struct {
	mu      sync.Mutex
	head    []byte
	tail    []byte // a ring once full
	pos     int    // next write position in tail once full
	dropped int64
}

const halfOutput = MaxOutput/2 - 64 // room for the marker

func (b *boundedBuffer) Write(p []byte) (int, error) {
	b.mu.Lock()
	defer b.mu.Unlock()
	n := len(p)
	if room := halfOutput - len(b.head); room > 0 {
		k := min(room, len(p))
		b.head = append(b.head, p[:k]...)
		p = p[k:]
	}
	for len(p) > 0 {
		if len(b.tail) < halfOutput {
			k := min(halfOutput-len(b.tail), len(p))
			b.tail = append(b.tail, p[:k]...)
			p = p[k:]
			continue
		}
		k := min(halfOutput-b.pos, len(p))
		b.dropped += int64(k)
		copy(b.tail[b.pos:], p[:k])
		b.pos = (b.pos + k) % halfOutput
		p = p[k:]
	}
	return n, nil
}

// String returns the output kept, trimmed of trailing white space, with
// a marker where bytes were left out.
func (b *boundedBuffer) String() string {
	b.mu.Lock()
	defer b.mu.Unlock()
	var s strings.Builder
	s.Write(b.head)
	if b.dropped > 0 {
		fmt.Fprintf(&s, "\n[… %d bytes left out …]\n", b.dropped)
		s.Write(b.tail[b.pos:])
		s.Write(b.tail[:b.pos])
	} else {
		s.Write(b.tail)
	}
	return strings.ToValidUTF8(strings.TrimRight(s.String(), " \t\r\n"), "\uFFFD")
}
