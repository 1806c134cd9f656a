package filter

import (
	"strconv"
	"strings"
	"unicode/utf8"
)

// segKind is how a compiled pattern component matches a path component.
type segKind uint8

const (
	segLiteral segKind = iota // the name equals lit
	segStar                   // "*": any name
	segPreSuf                 // one "*" between literals: the name starts with lit and ends with suf
	segGlob                   // anything else: toks
	segAny                    // "**": zero or more whole components
)

// segment is one compiled pattern component.
type segment struct {
	kind segKind
	lit  string
	suf  string
	toks []token
}

// tokKind is the kind of one element of a glob component.
type tokKind uint8

const (
	tokLit   tokKind = iota // lit, byte for byte
	tokOne                  // "?": one character
	tokStar                 // "*": any run of characters
	tokClass                // "[...]": one character in (or, if neg, not in) ranges
)

// token is one element of a glob component.
type token struct {
	kind   tokKind
	neg    bool
	lit    string
	ranges []runeRange
}

// runeRange is the inclusive range lo-hi of a character class.
type runeRange struct{ lo, hi rune }

// pattern is one compiled rule.
//
// all is the whole component list, with "**" put in front of a floating
// pattern. For matching it is split at its first and last "**": prefix
// must match the first components of a path, suffix the last ones, and
// middle (from the first "**" to the last one inclusive, nil unless there
// are two) the components in between. Without any "**", prefix is all.
type pattern struct {
	dirOnly  bool
	hasAny   bool
	minDepth int // the number of components other than "**"
	all      []segment
	prefix   []segment
	middle   []segment
	suffix   []segment
}

// errTrailingBackslash is the reason for a component ending in an
// unescaped backslash.
const errTrailingBackslash = `trailing "\"`

// compile compiles r.Pattern; on failure it returns the reason.
func compile(r Rule) (pattern, string) {
	p := r.Pattern
	if p == "" {
		if r.Negate {
			return pattern{}, `empty pattern after "!"`
		}
		return pattern{}, "empty pattern"
	}
	var pt pattern
	anchored := p[0] == '/'
	pt.dirOnly = p[len(p)-1] == '/'
	if !anchored {
		pt.all = append(pt.all, segment{kind: segAny})
	}
	for rest := p; rest != ""; {
		c, after, slash := strings.Cut(rest, "/")
		rest = after
		if c == "" {
			continue // leading, trailing or doubled "/"
		}
		if c == "**" {
			if n := len(pt.all); n == 0 || pt.all[n-1].kind != segAny {
				pt.all = append(pt.all, segment{kind: segAny})
			}
			continue
		}
		seg, reason := compileSegment(c)
		if reason == errTrailingBackslash && slash {
			reason = `"\" before "/"`
		}
		if reason != "" {
			return pattern{}, reason
		}
		pt.all = append(pt.all, seg)
	}
	first, last := -1, -1
	for i := range pt.all {
		if pt.all[i].kind == segAny {
			if first < 0 {
				first = i
			}
			last = i
		} else {
			pt.minDepth++
		}
	}
	if first < 0 {
		pt.prefix = pt.all
		return pt, ""
	}
	pt.hasAny = true
	pt.prefix = pt.all[:first]
	if last > first {
		pt.middle = pt.all[first : last+1]
	}
	pt.suffix = pt.all[last+1:]
	return pt, ""
}

// compileSegment compiles one pattern component c, which is neither empty
// nor "**" and holds no "/".
func compileSegment(c string) (segment, string) {
	var toks []token
	var lit []byte
	flush := func() {
		if len(lit) > 0 {
			toks = append(toks, token{kind: tokLit, lit: string(lit)})
			lit = lit[:0]
		}
	}
	for i := 0; i < len(c); {
		switch c[i] {
		case '*':
			flush()
			if n := len(toks); n == 0 || toks[n-1].kind != tokStar {
				toks = append(toks, token{kind: tokStar})
			}
			i++
		case '?':
			flush()
			toks = append(toks, token{kind: tokOne})
			i++
		case '[':
			flush()
			t, n, reason := parseClass(c[i+1:])
			if reason != "" {
				return segment{}, reason
			}
			toks = append(toks, t)
			i += 1 + n
		case '\\':
			if i+1 == len(c) {
				return segment{}, errTrailingBackslash
			}
			_, w := utf8.DecodeRuneInString(c[i+1:])
			lit = append(lit, c[i+1:i+1+w]...)
			i += 1 + w
		default:
			lit = append(lit, c[i])
			i++
		}
	}
	flush()
	return classify(toks)
}

// classify picks the fastest segment kind that matches like toks.
func classify(toks []token) (segment, string) {
	// shape is toks written as a string: 'l' literal, '*' star, 'g' any
	// other token.
	var shape []byte
	for _, t := range toks {
		switch t.kind {
		case tokLit:
			shape = append(shape, 'l')
		case tokStar:
			shape = append(shape, '*')
		default:
			shape = append(shape, 'g')
		}
	}
	// A suffix is compared with strings.HasSuffix; that agrees with the
	// rune by rune glob matcher only if the suffix is valid UTF-8, since
	// then it cannot begin in the middle of a character of the name.
	switch last := toks[len(toks)-1].lit; string(shape) {
	case "l":
		if last == "." || last == ".." {
			return segment{}, strconv.Quote(last) + " is not allowed as a path component"
		}
		return segment{kind: segLiteral, lit: last}, ""
	case "*":
		return segment{kind: segStar}, ""
	case "l*":
		return segment{kind: segPreSuf, lit: toks[0].lit}, ""
	case "*l", "l*l":
		if utf8.ValidString(last) {
			return segment{kind: segPreSuf, lit: toks[0].lit, suf: last}, ""
		}
	}
	return segment{kind: segGlob, toks: toks}, ""
}

// parseClass parses a character class; s follows the "[". It returns the
// class and the number of bytes of s it took, including the "]". The
// syntax is that of [path.Match]:
//
//	'[' [ '^' ] { lo [ '-' hi ] } ']'
//
// where lo and hi are characters other than '-' and ']' (a '-' or ']',
// escaped with a backslash, is allowed) and the class holds at least one.
func parseClass(s string) (token, int, string) {
	t := token{kind: tokClass}
	i := 0
	if i < len(s) && s[i] == '^' {
		t.neg = true
		i++
	}
	for {
		if i < len(s) && s[i] == ']' {
			if len(t.ranges) == 0 {
				return token{}, 0, "empty character class"
			}
			return t, i + 1, ""
		}
		lo, n, reason := classChar(s[i:])
		if reason != "" {
			return token{}, 0, reason
		}
		i += n
		hi := lo
		if i < len(s) && s[i] == '-' {
			i++
			if i < len(s) && s[i] == ']' {
				return token{}, 0, `range without an end in character class`
			}
			hi, n, reason = classChar(s[i:])
			if reason != "" {
				return token{}, 0, reason
			}
			i += n
		}
		t.ranges = append(t.ranges, runeRange{lo, hi})
	}
}

// classChar parses one possibly escaped character of a class.
func classChar(s string) (rune, int, string) {
	n := 0
	if len(s) > 0 {
		switch s[0] {
		case '-':
			return 0, 0, `unescaped "-" in character class`
		case '\\':
			n = 1
		}
	}
	if n == len(s) {
		return 0, 0, "unclosed character class"
	}
	r, w := utf8.DecodeRuneInString(s[n:])
	if r == utf8.RuneError && w == 1 {
		return 0, 0, "invalid UTF-8 in character class"
	}
	return r, n + w, ""
}
