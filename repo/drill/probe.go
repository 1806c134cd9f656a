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
	"regexp"
	"strings"
	"sync"
	"syscall"
	"time"
	"unicode/utf8"

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

// What [Excerpt] keeps of a probe's output.
const (
	maxErrorLines = 3   // the first lines that look like errors
	maxTailLines  = 3   // the last lines
	maxLineBytes  = 256 // of each line
)

// errorLine matches the lines of a tool's output that say what failed.
var errorLine = regexp.MustCompile(`(?i)error|fatal|mismatch|corrupt|fail`)

// Excerpt returns the lines of a probe's output that matter: the first
// few that look like errors (error, fatal, mismatch, corrupt, fail, in
// any case) and the last few, in their order, each cut to a bounded
// length; "…" stands for lines left out between them. Blank lines are
// left out. A tool often says what failed first and ends with harmless
// warnings or a summary, so the tail alone is not enough.
func Excerpt(output string) []string {
	var lines []string
	for l := range strings.SplitSeq(output, "\n") {
		if l = strings.TrimRight(l, " \t\r"); l != "" {
			lines = append(lines, l)
		}
	}
	keep := make([]bool, len(lines))
	for i, n := 0, 0; i < len(lines) && n < maxErrorLines; i++ {
		if errorLine.MatchString(lines[i]) {
			keep[i] = true
			n++
		}
	}
	for i := max(0, len(lines)-maxTailLines); i < len(lines); i++ {
		keep[i] = true
	}
	var out []string
	next := 0 // the line after the last one kept
	for i, l := range lines {
		if !keep[i] {
			continue
		}
		if i > next {
			out = append(out, "…")
		}
		out = append(out, cutLine(l, maxLineBytes))
		next = i + 1
	}
	return out
}

// cutLine cuts s to at most n bytes (on a rune boundary), marking the cut
// with "…".
func cutLine(s string, n int) string {
	if len(s) <= n {
		return s
	}
	for n > 0 && !utf8.RuneStart(s[n]) {
		n--
	}
	return s[:n] + "…"
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

// boundedBuffer keeps the first and the last bytes written to it, at
// most MaxOutput in all, and from the bytes between them the first few
// lines that look like errors (see [Excerpt]). It is safe for concurrent
// writes.
type boundedBuffer struct {
	mu      sync.Mutex
	head    []byte
	tail    []byte // a ring once full
	pos     int    // next write position in tail once full
	dropped int64

	written int64    // bytes written in all
	line    []byte   // the line being written past the head, up to maxLineBytes+1 bytes
	lineOff int64    // where it starts
	marked  []marked // error-looking lines past the head, at most maxMarked
}

// marked is an error-looking line and where it started in the output.
type marked struct {
	off  int64
	text string
}

const (
	maxMarked  = 4                                             // error lines kept from the middle
	halfOutput = (MaxOutput-maxMarked*(maxLineBytes+8))/2 - 64 // room for the marked lines and the markers
)

func (b *boundedBuffer) Write(p []byte) (int, error) {
	b.mu.Lock()
	defer b.mu.Unlock()
	n := len(p)
	b.scan(p)
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

// scan follows the lines written after the head and keeps the first
// maxMarked that look like errors.
func (b *boundedBuffer) scan(p []byte) {
	for len(p) > 0 && len(b.marked) < maxMarked {
		i := bytes.IndexByte(p, '\n')
		seg := p
		if i >= 0 {
			seg = p[:i]
		}
		if b.lineOff >= halfOutput {
			b.line = append(b.line, seg[:min(len(seg), maxLineBytes+1-len(b.line))]...)
		}
		b.written += int64(len(seg))
		if i < 0 {
			return
		}
		if b.lineOff >= halfOutput && errorLine.Match(b.line) {
			b.marked = append(b.marked, marked{off: b.lineOff, text: cutLine(strings.TrimRight(string(b.line), " \t\r"), maxLineBytes)})
		}
		b.written++
		b.line, b.lineOff = b.line[:0], b.written
		p = p[i+1:]
	}
	b.written += int64(len(p))
}

// String returns the output kept, trimmed of trailing white space, with
// a marker where bytes were left out.
func (b *boundedBuffer) String() string {
	b.mu.Lock()
	defer b.mu.Unlock()
	var s strings.Builder
	s.Write(b.head)
	if b.dropped > 0 {
		tailStart := int64(len(b.head)) + b.dropped
		var lines []string
		for _, m := range b.marked {
			if m.off < tailStart {
				lines = append(lines, m.text)
			}
		}
		switch len(lines) {
		case 0:
			fmt.Fprintf(&s, "\n[… %d bytes left out …]\n", b.dropped)
		case 1:
			fmt.Fprintf(&s, "\n[… %d bytes left out, among them this line …]\n%s\n[…]\n", b.dropped, lines[0])
		default:
			fmt.Fprintf(&s, "\n[… %d bytes left out, among them these %d lines …]\n%s\n[…]\n", b.dropped, len(lines), strings.Join(lines, "\n"))
		}
		s.Write(b.tail[b.pos:])
		s.Write(b.tail[:b.pos])
	} else {
		s.Write(b.tail)
	}
	return strings.ToValidUTF8(strings.TrimRight(s.String(), " \t\r\n"), "\uFFFD")
}
