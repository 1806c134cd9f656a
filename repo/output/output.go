// Package output keeps what the commands cairn runs for an operator
// (drill probes, a plan's before and after commands) printed, bounded:
// [Buffer] keeps the beginning, the end, and the first lines in between
// that look like errors, at most [Max] bytes; [Excerpt] picks the lines
// of it that say what failed, for a one-line reason.
package output

import (
	"bytes"
	"fmt"
	"regexp"
	"strings"
	"sync"
	"unicode/utf8"
)

// Max bounds the output a [Buffer] keeps: its beginning and its end.
const Max = 4 << 10

// What [Excerpt] keeps of a command's output.
const (
	maxErrorLines = 3   // the first lines that look like errors
	maxTailLines  = 3   // the last lines
	MaxLine       = 256 // bytes of each line
)

// errorLine matches the lines of a tool's output that say what failed.
var errorLine = regexp.MustCompile(`(?i)error|fatal|mismatch|corrupt|fail`)

// Excerpt returns the lines of a command's output that matter: the first
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
		out = append(out, cutLine(l, MaxLine))
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

// Buffer keeps the first and the last bytes written to it, at most
// [Max] in all, and from the bytes between them the first few
// lines that look like errors (see [Excerpt]). It is safe for concurrent
// writes; the zero value is ready to use.
type Buffer struct {
	mu      sync.Mutex
	head    []byte
	tail    []byte // a ring once full
	pos     int    // next write position in tail once full
	dropped int64

	written int64    // bytes written in all
	line    []byte   // the line being written past the head, up to MaxLine+1 bytes
	lineOff int64    // where it starts
	marked  []marked // error-looking lines past the head, at most maxMarked
}

// marked is an error-looking line and where it started in the output.
type marked struct {
	off  int64
	text string
}

const (
	maxMarked  = 4                                  // error lines kept from the middle
	halfOutput = (Max-maxMarked*(MaxLine+8))/2 - 64 // room for the marked lines and the markers
)

func (b *Buffer) Write(p []byte) (int, error) {
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
func (b *Buffer) scan(p []byte) {
	for len(p) > 0 && len(b.marked) < maxMarked {
		i := bytes.IndexByte(p, '\n')
		seg := p
		if i >= 0 {
			seg = p[:i]
		}
		if b.lineOff >= halfOutput {
			b.line = append(b.line, seg[:min(len(seg), MaxLine+1-len(b.line))]...)
		}
		b.written += int64(len(seg))
		if i < 0 {
			return
		}
		if b.lineOff >= halfOutput && errorLine.Match(b.line) {
			b.marked = append(b.marked, marked{off: b.lineOff, text: cutLine(strings.TrimRight(string(b.line), " \t\r"), MaxLine)})
		}
		b.written++
		b.line, b.lineOff = b.line[:0], b.written
		p = p[i+1:]
	}
	b.written += int64(len(p))
}

// String returns the output kept, trimmed of trailing white space, with
// a marker where bytes were left out.
func (b *Buffer) String() string {
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
