package datagen

import "strconv"

// Text generators append one line (or a short block of lines) at a time
// to a caller's buffer. They are cheap rather than faithful: enough
// keywords, identifiers and numbers that compressors and chunkers see
// something like real source code and SQL, at hundreds of MB/s.

// maxLine bounds what one call of a line function appends.
const maxLine = 4 << 10

// A pair is a line that opens a block and the line that closes it ("" for
// languages that close blocks by dedenting).
type pair struct{ open, close string }

// A style describes one family of text files.
type style struct {
	header  string // template emitted once at the top
	indent  string
	blocks  []pair   // templates that open a block
	stmts   []string // templates of single lines
	comment string   // template of a comment line
	snake   bool     // identifiers in snake_case instead of camelCase
	prose   bool     // markdown-like prose instead of code
}

// Styles, indexed by the style byte of a small file.
const (
	styleGo = iota
	styleC
	styleJS
	stylePy
	styleSh
	styleYAML
	styleJSON
	styleMD
	styleConf
)

// Templates use $I identifier, $T type, $U upper-case name, $P package,
// $N number, $S short string, $W a few words, $$ a dollar sign.
var styles = [...]style{
	styleGo: {
		header: "// Package $P $W.\npackage $P\n\nimport (\n\t\"context\"\n\t\"errors\"\n\t\"fmt\"\n)\n\n",
		indent: "\t",
		blocks: []pair{
			{"func $I($I $T, $I int) ($T, error) {", "}"},
			{"func ($I *$T) $T(ctx context.Context, $I []byte) error {", "}"},
			{"if err != nil {", "}"},
			{"if $I == nil {", "}"},
			{"for _, $I := range $I.$T {", "}"},
			{"for i := 0; i < $N; i++ {", "}"},
			{"switch $I.$T {", "}"},
			{"if err := $I.$T(ctx, $I); err != nil {", "}"},
			{"type $T struct {", "}"},
		},
		stmts: []string{
			"$I := $I.$T($I, $N)", "$I, err := $T(ctx, $I)", "return $I, nil", "return nil",
			"return fmt.Errorf(\"$S: %w\", err)", "$I.$T = append($I.$T, $I)", "$I++",
			"var $I $T", "$I = $N", "case $N:", "defer $I.Close()", "$T $T // $W",
			"if $I > $N { $I = $N }", "return errors.New(\"$S\")",
		},
		comment: "// $W",
	},
	styleC: {
		header: "/* $W */\n#include <stdio.h>\n#include <stdlib.h>\n#include <string.h>\n#include \"$P.h\"\n\n#define $U $N\n\n",
		indent: "    ",
		blocks: []pair{
			{"static int $I(struct $I *$I, size_t $I) {", "}"},
			{"if ($I == NULL) {", "}"},
			{"for (int i = 0; i < $U; i++) {", "}"},
			{"while ($I->$I != $N) {", "}"},
			{"switch ($I) {", "}"},
			{"struct $I {", "};"},
		},
		stmts: []string{
			"$I = $I($I, $N);", "return $N;", "$I->$I = $I;", "memcpy($I, $I, sizeof(struct $I));",
			"printf(\"$S %d\\n\", $I);", "int $I = $N;", "free($I);", "case $N: break;",
			"if ($I < 0) return -$N;", "$I += $I[$N];",
		},
		comment: "/* $W */",
		snake:   true,
	},
	styleJS: {
		header: "'use strict';\nimport { $I, $I } from './$P.js';\n\n",
		indent: "  ",
		blocks: []pair{
			{"function $I($I, $I) {", "}"},
			{"export async function $I($I) {", "}"},
			{"if ($I === null) {", "}"},
			{"for (const $I of $I.$I) {", "}"},
			{"class $T {", "}"},
			{"try {", "} catch (err) { console.error(err); }"},
		},
		stmts: []string{
			"const $I = await $I($I);", "let $I = $N;", "return $I;", "$I.$I('$S');",
			"console.log('$S', $I);", "this.$I = $I;", "$I.push({ $I: $N, $I: '$S' });",
			"if (!$I) return;", "$I += $N;",
		},
		comment: "// $W",
	},
	stylePy: {
		header: "#!/usr/bin/env python3\n\"\"\"$W.\"\"\"\n\nimport os\nimport sys\nimport $P\n\n",
		indent: "    ",
		blocks: []pair{
			{"def $I($I, $I=None):", ""},
			{"class $T:", ""},
			{"if $I is None:", ""},
			{"for $I in $I:", ""},
			{"with open($I) as $I:", ""},
			{"try:", ""},
		},
		stmts: []string{
			"$I = $I($I, $N)", "return $I", "self.$I = $I", "raise ValueError(\"$S\")",
			"$I.append($I)", "print(f\"$S {$I}\")", "$I[$N] = '$S'", "$I += $N", "pass",
		},
		comment: "# $W",
		snake:   true,
	},
	styleSh: {
		header: "#!/bin/sh\n# $W\nset -eu\n\n$U=\"/srv/$P\"\n",
		indent: "  ",
		blocks: []pair{
			{"if [ -z \"$${$U:-}\" ]; then", "fi"},
			{"for $I in $S; do", "done"},
			{"$I() {", "}"},
			{"while read -r $I; do", "done < \"$$$U\""},
		},
		stmts: []string{
			"$U=\"$S\"", "echo \"$S: $$$U\"", "$I --$I \"$$$U\" || exit $N",
			"rsync -a --delete \"$$$U/\" /srv/$I/", "systemctl restart $I.service",
			"docker compose -f /opt/$I/compose.yaml up -d", "sleep $N", "mkdir -p /var/lib/$I",
		},
		comment: "# $W",
		snake:   true,
	},
	styleYAML: {
		header: "# $W\n---\n",
		indent: "  ",
		blocks: []pair{{"$I:", ""}, {"- name: $S", ""}, {"$I:", ""}},
		stmts: []string{
			"$I: $N", "$I: \"$S\"", "$I: true", "- $S", "image: ghcr.io/$P/$I:$N",
			"$I: /srv/$I/$I", "- \"$N:$N\"",
		},
		comment: "# $W",
		snake:   true,
	},
	styleJSON: {
		header: "{\n",
		indent: "  ",
		blocks: []pair{{"\"$I\": {", "},"}, {"\"$I\": [", "],"}},
		stmts:  []string{"\"$I\": $N,", "\"$I\": \"$S\",", "\"$I\": true,", "\"$I\": null,", "{\"$I\": $N, \"$I\": \"$S\"},"},
		snake:  true,
	},
	styleMD: {header: "# $S\n\n$W.\n\n", prose: true},
	styleConf: {
		header:  "# $W\n\n[$I]\n",
		blocks:  []pair{{"[$I]", ""}},
		stmts:   []string{"$I = $N", "$I = \"$S\"", "$I = true", "$I = /var/lib/$I"},
		comment: "# $W",
		snake:   true,
	},
}

// A textGen writes lines of one style for one file.
type textGen struct {
	r      *rng
	st     *style
	idents []string
	types  []string
	uppers []string
	pkg    string
	stack  []string // closers of the open blocks
	began  bool
}

func newTextGen(seed uint64, styleIdx byte) *textGen {
	r := newRNG(seed)
	g := &textGen{r: r, st: &styles[styleIdx], pkg: pick(r, words)}
	for range 12 {
		a, b := pick(r, words), pick(r, words)
		if g.st.snake {
			g.idents = append(g.idents, a+"_"+b)
		} else {
			g.idents = append(g.idents, a+upperFirst(b))
		}
		g.uppers = append(g.uppers, upper(a)+"_"+upper(b))
	}
	for range 4 {
		g.types = append(g.types, upperFirst(pick(r, words))+upperFirst(pick(r, words)))
	}
	return g
}

func upperFirst(s string) string {
	if s == "" || s[0] < 'a' || s[0] > 'z' {
		return s
	}
	return string(s[0]-'a'+'A') + s[1:]
}

func upper(s string) string {
	b := []byte(s)
	for i, c := range b {
		if c >= 'a' && c <= 'z' {
			b[i] = c - 'a' + 'A'
		}
	}
	return string(b)
}

// line appends the next line or block of lines to b.
func (g *textGen) line(b []byte) []byte {
	r, st := g.r, g.st
	if !g.began {
		g.began = true
		return g.expand(b, st.header)
	}
	if st.prose {
		switch k := r.intn(12); {
		case k == 0:
			b = append(b, "\n## "...)
			b = g.expand(b, "$S")
			return append(b, "\n\n"...)
		case k < 3:
			b = append(b, "- "...)
			b = g.expand(b, "$W")
		case k == 3:
			b = g.expand(b, "    $I --$I $N")
		default:
			b = g.expand(b, "$W, $W.")
		}
		return append(b, '\n')
	}
	if n := len(g.stack); n > 0 && (n >= 5 || r.chance(4)) {
		closer := g.stack[n-1]
		g.stack = g.stack[:n-1]
		if closer != "" {
			b = g.indentTo(b, n-1)
			b = g.expand(b, closer)
			b = append(b, '\n')
		}
		if n == 1 {
			b = append(b, '\n')
		}
		return b
	}
	b = g.indentTo(b, len(g.stack))
	switch k := r.intn(10); {
	case k < 3 && len(st.blocks) > 0:
		p := pick(r, st.blocks)
		b = g.expand(b, p.open)
		g.stack = append(g.stack, p.close)
	case k < 4 && st.comment != "":
		b = g.expand(b, st.comment)
	default:
		b = g.expand(b, pick(r, st.stmts))
	}
	return append(b, '\n')
}

func (g *textGen) indentTo(b []byte, depth int) []byte {
	for range depth {
		b = append(b, g.st.indent...)
	}
	return b
}

// expand appends template t with its placeholders filled in.
func (g *textGen) expand(b []byte, t string) []byte {
	r := g.r
	for i := 0; i < len(t); i++ {
		c := t[i]
		if c != '$' || i+1 == len(t) {
			b = append(b, c)
			continue
		}
		i++
		switch t[i] {
		case 'I':
			b = append(b, pick(r, g.idents)...)
		case 'T':
			b = append(b, pick(r, g.types)...)
		case 'U':
			b = append(b, pick(r, g.uppers)...)
		case 'P':
			b = append(b, g.pkg...)
		case 'N':
			if r.chance(2) {
				b = strconv.AppendInt(b, int64(r.intn(16)), 10)
			} else {
				b = strconv.AppendInt(b, int64(r.intn(100000)), 10)
			}
		case 'S':
			b = g.words(b, r.between(1, 3))
		case 'W':
			b = g.words(b, r.between(3, 12))
		default:
			b = append(b, t[i])
		}
	}
	return b
}

func (g *textGen) words(b []byte, n int) []byte {
	for j := range n {
		if j > 0 {
			b = append(b, ' ')
		}
		if g.r.chance(4) {
			b = append(b, pick(g.r, oddTextWords)...)
		} else {
			b = append(b, pick(g.r, words)...)
		}
	}
	return b
}
