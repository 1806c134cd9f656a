package filter

import (
	"bytes"
	"fmt"
	"os"
	"strconv"
	"strings"
)

// Rule is one pattern together with where it came from. Rules are built
// by [FromFlags] and [ReadFile] and compiled into a [Matcher] by [New].
type Rule struct {
	Pattern string // as written, without the leading "!"
	Negate  bool   // the pattern was written with a leading "!"
	Source  string // where it came from: "--exclude" or "exclude-file /etc/cairn/excludes:12" (file:line)
}

// String returns the rule as reports show it: the source, a space and the
// pattern as written (with its "!" when negated), quoted with
// [strconv.Quote], for example
//
//	--exclude "*.tmp"
//	exclude-file /etc/cairn/excludes:3 "!keep.log"
//
// Because of the quoting a backslash in the pattern appears doubled. A
// rule without a source is just the quoted pattern.
func (r Rule) String() string {
	p := r.Pattern
	if r.Negate {
		p = "!" + p
	}
	q := strconv.Quote(p)
	if r.Source == "" {
		return q
	}
	return r.Source + " " + q
}

// FromFlags turns the values of a repeated command-line flag into rules
// whose Source is flag, for example
//
//	FromFlags([]string{"*.tmp", "!keep.tmp"}, "--exclude")
//
// A leading "!" negates the pattern; write `\!` for a pattern that starts
// with a literal "!". Values are taken as given: nothing is trimmed and
// "#" has no special meaning. FromFlags does not check the patterns; [New]
// does.
func FromFlags(patterns []string, flag string) []Rule {
	if len(patterns) == 0 {
		return nil
	}
	rules := make([]Rule, len(patterns))
	for i, p := range patterns {
		rules[i] = parseLine(p, flag)
	}
	return rules
}

// ReadFile reads an exclude (or include) file: one pattern per line.
//
//   - A line ends at "\n"; a "\r" before it is dropped, so CRLF files work.
//     A UTF-8 byte order mark at the start of the file is ignored.
//   - Spaces and tabs around the pattern are trimmed. A trailing space or
//     tab written after a backslash (`foo\ `) is kept, escaped.
//   - Lines that are then empty, or that start with "#", are ignored.
//   - A leading "!" negates the pattern. `\#` and `\!` at the start of a
//     pattern stand for a literal "#" or "!"; the backslash stays in
//     [Rule.Pattern], where it is an ordinary escape.
//
// Each rule's Source is "exclude-file PATH:LINE", with PATH as given to
// ReadFile and LINE counted from 1. ReadFile fails only if the file cannot
// be read; [New] checks the patterns and names the line of a bad one.
func ReadFile(path string) ([]Rule, error) {
	data, err := os.ReadFile(path)
	if err != nil {
		return nil, fmt.Errorf("read exclude-file: %w", err)
	}
	data = bytes.TrimPrefix(data, []byte("\ufeff"))
	var rules []Rule
	for n := 1; len(data) > 0; n++ {
		var line []byte
		if i := bytes.IndexByte(data, '\n'); i >= 0 {
			line, data = data[:i], data[i+1:]
		} else {
			line, data = data, nil
		}
		s := trimLine(string(bytes.TrimSuffix(line, []byte("\r"))))
		if s == "" || s[0] == '#' {
			continue
		}
		rules = append(rules, parseLine(s, "exclude-file "+path+":"+strconv.Itoa(n)))
	}
	return rules, nil
}

// parseLine splits a leading "!" off s.
func parseLine(s, source string) Rule {
	if p, ok := strings.CutPrefix(s, "!"); ok {
		return Rule{Pattern: p, Negate: true, Source: source}
	}
	return Rule{Pattern: s, Source: source}
}

// trimLine trims spaces and tabs around s, keeping one trailing space or
// tab that is escaped by a backslash.
func trimLine(s string) string {
	s = strings.TrimLeft(s, " \t")
	t := strings.TrimRight(s, " \t")
	if len(t) < len(s) {
		// An odd run of backslashes at the end of t escapes the
		// whitespace character that follows it.
		n := len(t) - len(strings.TrimRight(t, `\`))
		if n%2 == 1 {
			t = s[:len(t)+1]
		}
	}
	return t
}
