// Package yamldoc decodes the YAML files operators write (the appliance
// configuration, plan files): strictly, with every problem of a file
// listed (not only the first), each as "FILE:LINE: KEY: message" with
// the line of the key that is wrong.
//
// # Problems and their lines
//
// [Parse] decodes a file into a value and returns a [Doc]: the file's
// name and the line of every key path in it ("limits.sessions",
// "nodes.lyra.keys[0]", "sources[1].class"), found by walking the
// document's yaml.Node tree once. Whatever checks the value afterwards
// reports through [Doc.Problemf] with the key path; the Doc finds the
// line (or the line of the nearest enclosing key that is there, for a
// key that is missing). Decoding problems (a string where a number
// belongs, an unknown key, a value an UnmarshalYAML method refuses
// through [Scalar]) are the yaml package's type errors, which carry a
// line but no key: the key is the one on that line, chosen by the name
// or value the message quotes when a line holds several. Decoding goes
// on after them, so they are listed together with the checks'.
//
// # Syntax error lines
//
// go.yaml.in/yaml/v3 reports a syntax error at the line where the
// enclosing block starts, not at the line the parser choked on: an
// indentation mistake on line 4 of a mapping that starts on line 2 says
// "line 2". The line is found again by parsing prefixes of the document
// (by bisection, so O(log lines) parses): the shortest prefix that fails
// with the same error, before reaching its end, ends at the line that is
// wrong, because a YAML token never depends on the lines after it.
//
// # Memory
//
// [ReadFile] refuses files above [MaxFileSize]; a Doc holds one entry per
// key of its document.
package yamldoc

import (
	"bytes"
	"cmp"
	"errors"
	"fmt"
	"io"
	"os"
	"regexp"
	"slices"
	"strconv"
	"strings"

	"go.yaml.in/yaml/v3"
)

// MaxFileSize is the largest file [ReadFile] reads: far above any
// configuration or plan, and a bound on what a mistaken path (a device,
// a log file) makes the reader hold.
const MaxFileSize = 4 << 20

// ReadFile reads a YAML file of at most [MaxFileSize] bytes. Errors name
// the file; a missing file's error wraps fs.ErrNotExist.
func ReadFile(path string) ([]byte, error) {
	f, err := os.Open(path)
	if err != nil {
		return nil, err // *fs.PathError names the file
	}
	defer f.Close()
	b, err := io.ReadAll(io.LimitReader(f, MaxFileSize+1))
	if err != nil {
		return nil, fmt.Errorf("read %s: %w", path, err)
	}
	if len(b) > MaxFileSize {
		return nil, fmt.Errorf("%s: larger than %d MiB: not a configuration file", path, MaxFileSize>>20)
	}
	return b, nil
}

// Problem is one thing wrong in a YAML file.
type Problem struct {
	File string `json:"file"`
	// Line is the line of the key (of the nearest enclosing key there
	// is, for a missing one); 0 when the file has none to name.
	Line int `json:"line,omitempty"`
	// Key is the key path, such as limits.sessions or
	// nodes.lyra.keys[0]; empty for the document as a whole (a syntax
	// error).
	Key     string `json:"key,omitempty"`
	Message string `json:"message"`
}

// Error is "FILE:LINE: KEY: message", without the parts that are unset.
func (p Problem) Error() string {
	var b strings.Builder
	b.WriteString(p.File)
	if p.Line > 0 {
		fmt.Fprintf(&b, ":%d", p.Line)
	}
	b.WriteString(": ")
	if p.Key != "" {
		b.WriteString(p.Key + ": ")
	}
	b.WriteString(p.Message)
	return b.String()
}

// Problems are every problem found in one file, in the order of their
// lines; as an error, one per line.
type Problems []Problem

func (ps Problems) Error() string {
	s := make([]string, len(ps))
	for i, p := range ps {
		s[i] = p.Error()
	}
	return strings.Join(s, "\n")
}

// Doc is a YAML file decoded by [Parse]: its name, where each of its
// keys is, and the problems found in it so far.
type Doc struct {
	file     string
	lines    map[string]int // key path → line of the key
	byLine   map[int][]key  // keys and values on each line, in document order
	problems Problems
}

// key is a key path with where its key and value are, and what a
// message about it may quote: the last key's name and, for a scalar,
// its value.
type key struct {
	path, name, value  string
	kind               yaml.Kind // of the value
	kline, vline, vcol int       // the key's line; the value's line and column
}

// Parse decodes the first YAML document of b into v, strictly (a key v
// has no field for is a problem), and returns the Doc to check v
// against. A syntax error leaves nothing to check: it is returned as
// [Problems] with its line. Decoding problems are the Doc's first
// problems; [Doc.Err] returns them with those found afterwards. A
// document with nothing in it leaves v as it is.
func Parse(b []byte, file string, v any) (*Doc, error) {
	d := &Doc{file: file, lines: map[string]int{}, byLine: map[int][]key{}}
	var root yaml.Node
	if err := yaml.NewDecoder(bytes.NewReader(b)).Decode(&root); err != nil {
		if errors.Is(err, io.EOF) {
			return d, nil
		}
		line, msg := syntaxLine(b, err)
		return nil, Problems{{File: file, Line: line, Message: msg}}
	}
	d.index(&root, "", "")
	dec := yaml.NewDecoder(bytes.NewReader(b))
	dec.KnownFields(true)
	err := dec.Decode(v)
	var te *yaml.TypeError
	switch {
	case err == nil:
	case errors.As(err, &te):
		for _, e := range te.Errors {
			d.typeError(e)
		}
	default:
		// An error the decoder stops at (excessive aliasing, an
		// UnmarshalText that refused): it names no line.
		d.problems = append(d.problems, Problem{File: file, Message: strings.TrimPrefix(err.Error(), "yaml: ")})
	}
	return d, nil
}

// index records the line of every key under n, whose path is path and
// whose own key is name.
func (d *Doc) index(n *yaml.Node, path, name string) {
	switch n.Kind {
	case yaml.DocumentNode:
		for _, c := range n.Content {
			d.index(c, path, name)
		}
	case yaml.MappingNode:
		for i := 0; i+1 < len(n.Content); i += 2 {
			k, v := n.Content[i], n.Content[i+1]
			p := k.Value
			if path != "" {
				p = path + "." + k.Value
			}
			d.add(p, k.Value, k.Line, v)
			d.index(v, p, k.Value)
		}
	case yaml.SequenceNode:
		for i, c := range n.Content {
			p := fmt.Sprintf("%s[%d]", path, i)
			d.add(p, name, c.Line, c)
			d.index(c, p, name)
		}
	}
	// Aliases are not followed: "&a [*a]" refers to itself.
}

// add records key path p, named name, at line; v is its value.
func (d *Doc) add(p, name string, line int, v *yaml.Node) {
	if _, ok := d.lines[p]; !ok {
		d.lines[p] = line
	}
	k := key{path: p, name: name, kind: v.Kind, kline: line, vline: v.Line, vcol: v.Column}
	if v.Kind == yaml.ScalarNode {
		k.value = v.Value
	}
	d.byLine[line] = append(d.byLine[line], k)
	if v.Line != line {
		d.byLine[v.Line] = append(d.byLine[v.Line], k)
	}
}

// typeErrorRE matches the yaml package's type errors ("line N: …") and
// those of [Scalar], which also give the column ("line N column C: …").
var typeErrorRE = regexp.MustCompile(`^line (\d+)(?: column (\d+))?: (.*)$`)
var unknownFieldRE = regexp.MustCompile(`^field (.*) not found in type `)

// typeError records one of the decoder's type errors with its key.
func (d *Doc) typeError(e string) {
	m := typeErrorRE.FindStringSubmatch(e)
	if m == nil {
		d.problems = append(d.problems, Problem{File: d.file, Message: e})
		return
	}
	line, _ := strconv.Atoi(m[1])
	col, _ := strconv.Atoi(m[2])
	msg := m[3]
	k := d.keyOn(line, col, msg)
	if unknownFieldRE.MatchString(msg) {
		msg = "unknown key"
	}
	d.problems = append(d.problems, Problem{File: d.file, Line: line, Key: k, Message: msg})
}

// keyOn returns the key a type error at line (and col, when known)
// concerns, "" when the line holds none: the key whose value starts at
// col; for an unknown key, the key of that name; the key whose scalar
// value the message quotes; for a mapping or list the decoder refused
// ("!!map", "!!seq"), the innermost key with such a value there; else
// the innermost key on the line.
func (d *Doc) keyOn(line, col int, msg string) string {
	keys := d.byLine[line]
	for _, k := range keys {
		if col > 0 && k.vline == line && k.vcol == col {
			return k.path
		}
	}
	if u := unknownFieldRE.FindStringSubmatch(msg); u != nil {
		for _, k := range keys {
			if k.kline == line && k.name == u[1] {
				return k.path
			}
		}
	}
	for _, k := range keys {
		if k.vline == line && k.kind == yaml.ScalarNode && (strings.Contains(msg, "`"+k.value+"`") || strings.Contains(msg, strconv.Quote(k.value))) {
			return k.path
		}
	}
	for _, t := range []struct {
		tag  string
		kind yaml.Kind
	}{{"!!map", yaml.MappingNode}, {"!!seq", yaml.SequenceNode}} {
		if strings.Contains(msg, t.tag) {
			if p := innermost(keys, func(k key) bool { return k.vline == line && k.kind == t.kind }); p != "" {
				return p
			}
		}
	}
	return innermost(keys, func(key) bool { return true })
}

// innermost returns the longest path of the keys that ok accepts.
func innermost(keys []key, ok func(key) bool) string {
	best := ""
	for _, k := range keys {
		if ok(k) && len(k.path) > len(best) {
			best = k.path
		}
	}
	return best
}

// Line returns the line of key path p, or of the nearest enclosing key
// the file has; 0 when it has none of them.
func (d *Doc) Line(p string) int {
	for p != "" {
		if l, ok := d.lines[p]; ok {
			return l
		}
		p = parent(p)
	}
	return 0
}

// parent returns the key path enclosing p: "a.b" for "a.b.c" and
// "a.b[2]", "" for "a".
func parent(p string) string {
	i := strings.LastIndexAny(p, ".[")
	if i < 0 {
		return ""
	}
	return p[:i]
}

// File returns the name of the file.
func (d *Doc) File() string { return d.file }

// Problemf records a problem with key path p (see [Problem.Key]) at its
// line. A key that has a problem already, or a key under it, gets no
// second one: a value the decoder refused is not also reported as
// missing.
func (d *Doc) Problemf(p, format string, args ...any) {
	for _, q := range d.problems {
		if q.Key == p || p == "" || strings.HasPrefix(q.Key, p+".") || strings.HasPrefix(q.Key, p+"[") {
			return
		}
	}
	d.problems = append(d.problems, Problem{File: d.file, Line: d.Line(p), Key: p, Message: fmt.Sprintf(format, args...)})
}

// Err returns the problems found, in the order of their lines (keys
// the file does not have, line 0, last), or nil.
func (d *Doc) Err() error {
	if len(d.problems) == 0 {
		return nil
	}
	ps := slices.Clone(d.problems)
	slices.SortStableFunc(ps, func(a, b Problem) int {
		return cmp.Compare(lineOrder(a.Line), lineOrder(b.Line))
	})
	return ps
}

// lineOrder sorts line 0 (no line) after every line.
func lineOrder(l int) int {
	if l == 0 {
		return int(^uint(0) >> 1)
	}
	return l
}

// Scalar decodes a scalar node with parse, for UnmarshalYAML methods: a
// value parse refuses, or a node that is not a scalar, becomes a type
// error at the node's line, so that [Parse] lists it with its key and
// decoding goes on. what names the kind of value for the message.
func Scalar(n *yaml.Node, what string, parse func(string) error) error {
	if n.Kind != yaml.ScalarNode {
		return &yaml.TypeError{Errors: []string{fmt.Sprintf("line %d column %d: want %s, not a %s", n.Line, n.Column, what, kindName(n.Kind))}}
	}
	if err := parse(n.Value); err != nil {
		return &yaml.TypeError{Errors: []string{fmt.Sprintf("line %d column %d: %v", n.Line, n.Column, err)}}
	}
	return nil
}

func kindName(k yaml.Kind) string {
	switch k {
	case yaml.MappingNode:
		return "mapping"
	case yaml.SequenceNode:
		return "list"
	}
	return "document"
}

var lineRE = regexp.MustCompile(`^yaml: (?:line (\d+): )?`)

// sentinelProblem is the error of the sentinel line "@".
const sentinelProblem = "found character that cannot start any token"

// syntaxLine returns the line of a syntax error err of b and its
// message without yaml's "yaml: line N: " prefix. The line is that of
// the shortest prefix of b (in whole lines) that fails to parse with the
// same error; the line yaml names when there is none; 0 when it names
// none either.
func syntaxLine(b []byte, err error) (int, string) {
	msg := err.Error()
	m := lineRE.FindStringSubmatch(msg)
	if m == nil {
		return 0, msg
	}
	problem := msg[len(m[0]):]
	line, _ := strconv.Atoi(m[1])
	if strings.HasSuffix(msg, sentinelProblem) {
		// The scanner reports this at its own line, and the test
		// below could not tell it from the sentinel.
		return line, problem
	}
	var ends []int // ends[i]: the length of the first i+1 lines
	for i, c := range b {
		if c == '\n' {
			ends = append(ends, i+1)
		}
	}
	if len(ends) == 0 || ends[len(ends)-1] != len(b) {
		ends = append(ends, len(b))
	}
	// A prefix that ends inside a flow collection or a quoted scalar
	// fails at its end, perhaps with the same message. A line after the
	// prefix holding only "@" (which cannot start a token) tells the two
	// apart: a parser that stops at an error in the prefix never scans
	// it; one that runs to the end of the prefix fails on it instead.
	same := func(n int) bool {
		var node yaml.Node
		in := append(append(slices.Clip(b[:ends[n-1]]), '\n'), '@')
		perr := yaml.NewDecoder(bytes.NewReader(in)).Decode(&node)
		return perr != nil && perr.Error() == msg
	}
	lo, hi := 1, len(ends)
	if !same(hi) {
		return line, problem
	}
	for lo < hi {
		mid := (lo + hi) / 2
		if same(mid) {
			hi = mid
		} else {
			lo = mid + 1
		}
	}
	return lo, problem
}
