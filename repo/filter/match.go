package filter

import (
	"errors"
	"fmt"
	"strings"
	"unicode/utf8"
)

// Matcher is a compiled list of rules. It is immutable once built, so one
// Matcher may be used by any number of goroutines at once. The zero value
// and a nil *Matcher are empty matchers that match nothing.
type Matcher struct {
	rules []Rule
	pats  []pattern
}

// New compiles rules, in order, into a Matcher. Nil or empty rules give a
// matcher that matches nothing. If any pattern is invalid, New reports
// every invalid one, joined with [errors.Join], each as
//
//	<rule>: invalid pattern: <reason>
//
// where <rule> is [Rule.String], naming the pattern and its source.
// New copies rules; the caller may reuse the slice.
func New(rules []Rule) (*Matcher, error) {
	m := &Matcher{
		rules: make([]Rule, len(rules)),
		pats:  make([]pattern, len(rules)),
	}
	copy(m.rules, rules)
	var errs []error
	for i, r := range m.rules {
		pt, reason := compile(r)
		if reason != "" {
			errs = append(errs, fmt.Errorf("%s: invalid pattern: %s", r, reason))
			continue
		}
		m.pats[i] = pt
	}
	if len(errs) > 0 {
		return nil, errors.Join(errs...)
	}
	return m, nil
}

// Empty reports whether m has no rules. An empty matcher matches nothing;
// a restore with no include rules, for example, uses Empty to restore
// everything instead.
func (m *Matcher) Empty() bool {
	return m == nil || len(m.rules) == 0
}

// Match decides p, a clean absolute slash-separated path as [path.Clean]
// returns it ("/" or "/a/b", never "a/b/", "/a/../b" or ""); isDir says
// whether p is a directory. The last rule whose pattern matches p decides:
// matched is true if that rule is not negated, and rule points to it
// (inside m; do not modify it). If no rule matches, Match returns false
// and nil.
//
// Match looks at p alone, not at its parents: a rule that matches a
// directory covers what is below it only because the caller does not walk
// into a matched directory. For a path that is not clean the result is
// unspecified, but Match never panics and always decides the same way.
//
// Match does not allocate.
func (m *Matcher) Match(p string, isDir bool) (matched bool, rule *Rule) {
	if m == nil || len(m.pats) == 0 {
		return false, nil
	}
	v := newView(p)
	for i := len(m.pats) - 1; i >= 0; i-- {
		if m.pats[i].match(&v, isDir) {
			r := &m.rules[i]
			return !r.Negate, r
		}
	}
	return false, nil
}

// CouldMatchBelow reports whether some rule that is not negated might
// match a path strictly below dir, a clean absolute path like the one
// [Matcher.Match] takes. It may report true when no such path can match,
// but never false when one can; negated rules are ignored, which keeps it
// on the safe side. A restore with include rules uses it to decide
// whether to descend into a directory that does not match itself.
//
// A rule can match below dir when its fixed leading components match
// those of dir and either a "**" comes before dir's components run out or
// components remain after them. A floating pattern starts with an implied
// "**", so it can match below any directory.
func (m *Matcher) CouldMatchBelow(dir string) bool {
	if m == nil {
		return false
	}
	v := newView(dir)
	for i := range m.pats {
		if !m.rules[i].Negate && m.pats[i].couldMatchBelow(&v) {
			return true
		}
	}
	return false
}

// view is a path split for matching without allocating: s is the path
// without its leading "/", depth its number of components and base the
// offset in s where the last component starts.
type view struct {
	s     string
	depth int
	base  int
}

func newView(p string) view {
	s := strings.TrimPrefix(p, "/")
	if s == "" {
		return view{}
	}
	return view{
		s:     s,
		depth: strings.Count(s, "/") + 1,
		base:  strings.LastIndexByte(s, '/') + 1,
	}
}

// component returns the component of s starting at offset pos and the
// offset of the next one.
func component(s string, pos int) (name string, next int) {
	if i := strings.IndexByte(s[pos:], '/'); i >= 0 {
		return s[pos : pos+i], pos + i + 1
	}
	return s[pos:], len(s) + 1
}

// match reports whether pt matches the path v.
func (pt *pattern) match(v *view, isDir bool) bool {
	if pt.dirOnly && !isDir {
		return false
	}
	if !pt.hasAny {
		return v.depth == len(pt.prefix) && matchFixed(pt.prefix, v.s, 0)
	}
	if v.depth < pt.minDepth {
		return false
	}
	// The suffix first, from the last component backwards: the name of
	// the path itself rejects most paths at once.
	end := len(v.s)
	for i := len(pt.suffix) - 1; i >= 0; i-- {
		start := v.base
		if end != len(v.s) {
			start = strings.LastIndexByte(v.s[:end], '/') + 1
		}
		if !pt.suffix[i].match(v.s[start:end]) {
			return false
		}
		end = start - 1
	}
	if !matchFixed(pt.prefix, v.s, 0) {
		return false
	}
	if pt.middle == nil {
		return true
	}
	n := v.depth - len(pt.prefix) - len(pt.suffix)
	if n == 0 {
		return matchSegs(pt.middle, "", 0)
	}
	start := 0
	for range pt.prefix {
		_, start = component(v.s, start)
	}
	return matchSegs(pt.middle, v.s[start:end], n)
}

// couldMatchBelow reports whether pt might match a path strictly below v.
func (pt *pattern) couldMatchBelow(v *view) bool {
	pos := 0
	for i := range v.depth {
		if i == len(pt.all) {
			return false
		}
		seg := &pt.all[i]
		if seg.kind == segAny {
			return true
		}
		var name string
		name, pos = component(v.s, pos)
		if !seg.match(name) {
			return false
		}
	}
	return v.depth < len(pt.all)
}

// matchFixed reports whether segs, which hold no "**", match the
// components of s from offset pos on, one each; s must have at least
// len(segs) components from pos.
func matchFixed(segs []segment, s string, pos int) bool {
	for i := range segs {
		var name string
		name, pos = component(s, pos)
		if !segs[i].match(name) {
			return false
		}
	}
	return true
}

// matchSegs reports whether segs, which may hold "**", match exactly the
// n components of s (s is "" when n is 0).
//
// It is the usual wildcard algorithm one level up: every segment other
// than "**" matches exactly one component, so on a mismatch it is enough
// to let the last "**" seen take one more component and try again.
func matchSegs(segs []segment, s string, n int) bool {
	si, ci, pos := 0, 0, 0
	anySi, anyCi, anyPos := -1, 0, 0
	for ci < n {
		if si < len(segs) {
			if segs[si].kind == segAny {
				anySi, anyCi, anyPos = si, ci, pos
				si++
				continue
			}
			name, next := component(s, pos)
			if segs[si].match(name) {
				si, ci, pos = si+1, ci+1, next
				continue
			}
		}
		if anySi < 0 {
			return false
		}
		_, anyPos = component(s, anyPos)
		anyCi++
		si, ci, pos = anySi+1, anyCi, anyPos
	}
	for si < len(segs) && segs[si].kind == segAny {
		si++
	}
	return si == len(segs)
}

// match reports whether seg matches the single path component name. A
// "**" segment is handled by the callers and matches nothing here.
func (seg *segment) match(name string) bool {
	switch seg.kind {
	case segLiteral:
		return name == seg.lit
	case segStar:
		return true
	case segPreSuf:
		return len(name) >= len(seg.lit)+len(seg.suf) &&
			strings.HasPrefix(name, seg.lit) && strings.HasSuffix(name, seg.suf)
	case segGlob:
		return matchGlob(seg.toks, name)
	}
	return false
}

// matchGlob reports whether toks match all of name. On a mismatch it lets
// the last "*" seen take one more character and tries again; that is
// enough because every other token matches a fixed number of characters.
func matchGlob(toks []token, name string) bool {
	ti, ni := 0, 0
	starTi, starNi := -1, 0
	for {
		if ti < len(toks) {
			t := &toks[ti]
			switch t.kind {
			case tokStar:
				starTi, starNi = ti, ni
				ti++
				continue
			case tokLit:
				if strings.HasPrefix(name[ni:], t.lit) {
					ti, ni = ti+1, ni+len(t.lit)
					continue
				}
			case tokOne:
				if ni < len(name) {
					_, w := utf8.DecodeRuneInString(name[ni:])
					ti, ni = ti+1, ni+w
					continue
				}
			case tokClass:
				if ni < len(name) {
					r, w := utf8.DecodeRuneInString(name[ni:])
					if t.inClass(r) {
						ti, ni = ti+1, ni+w
						continue
					}
				}
			}
		} else if ni == len(name) {
			return true
		}
		if starTi < 0 || starNi == len(name) {
			return false
		}
		_, w := utf8.DecodeRuneInString(name[starNi:])
		starNi += w
		ti, ni = starTi+1, starNi
	}
}

// inClass reports whether r matches the class t.
func (t *token) inClass(r rune) bool {
	for _, rg := range t.ranges {
		if rg.lo <= r && r <= rg.hi {
			return !t.neg
		}
	}
	return t.neg
}
