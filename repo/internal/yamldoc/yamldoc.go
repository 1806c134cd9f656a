// Package yamldoc decodes the YAML files operators write (the appliance
// configuration, plan files): strictly, and with syntax errors reported
// at the line that is wrong.
//
// # Error lines
//
// go.yaml.in/yaml/v3 reports a syntax error at the line where the
// enclosing block starts, not at the line the parser choked on: an
// indentation mistake on line 4 of a mapping that starts on line 2 says
// "line 2". The line is found again by parsing prefixes of the document
// (by bisection, so O(log lines) parses): the shortest prefix that fails
// with the same error, before reaching its end, ends at the line that is
// wrong, because a YAML token never depends on the lines after it.
package yamldoc

import (
	"bytes"
	"errors"
	"fmt"
	"io"
	"regexp"
	"slices"
	"strings"

	"go.yaml.in/yaml/v3"
)

// Decode decodes the first YAML document of b into v, refusing mapping
// keys v has no field for. A document with nothing in it gives io.EOF.
// A syntax error says "yaml: line N: problem" with N the line that is
// wrong; type errors (yaml.TypeError) are returned as the yaml package
// gives them, as their lines are right.
func Decode(b []byte, v any) error {
	dec := yaml.NewDecoder(bytes.NewReader(b))
	dec.KnownFields(true)
	err := dec.Decode(v)
	if err == nil || errors.Is(err, io.EOF) {
		return err
	}
	var te *yaml.TypeError
	if errors.As(err, &te) {
		return err
	}
	return syntaxError(b, err)
}

var lineRE = regexp.MustCompile(`^yaml: (?:line \d+: )?`)

// sentinelProblem is the error of the sentinel line "@".
const sentinelProblem = "found character that cannot start any token"

// syntaxError returns err with the line of the shortest prefix of b
// (in whole lines) that fails to parse with the same error; err itself
// when there is none.
func syntaxError(b []byte, err error) error {
	msg := err.Error()
	loc := lineRE.FindStringIndex(msg)
	if loc == nil {
		return err
	}
	if strings.HasSuffix(msg, sentinelProblem) {
		// The scanner reports this at its own line, and the test
		// below could not tell it from the sentinel.
		return err
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
		return err
	}
	for lo < hi {
		mid := (lo + hi) / 2
		if same(mid) {
			hi = mid
		} else {
			lo = mid + 1
		}
	}
	return fmt.Errorf("yaml: line %d: %s", lo, msg[loc[1]:])
}
