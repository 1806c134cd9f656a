// Package filter decides which paths a backup excludes and which paths a
// restore includes or excludes, from patterns given as --exclude and
// --include flags or read from exclude files.
//
// [FromFlags] and [ReadFile] turn flag values and file lines into [Rule]
// values that remember where they came from; [New] compiles a list of
// rules into a [Matcher]; [Matcher.Match] decides one path and names the
// rule that decided, so reports can say why a path was left out.
//
// # Syntax
//
// A pattern is matched against a slash-separated absolute path. For a
// backup that is the real absolute path on the machine ("/srv/data/x.tmp");
// for a restore it is the path inside the snapshot with a leading "/".
// The pattern is split at every "/" into components (empty components,
// as in "a//b", are dropped), and each component matches one path
// component:
//
//	syntax  matches
//
//	*       any run of characters, possibly empty, but never "/"
//	?       exactly one character, never "/"
//	[...]   one character from a class, as in [path.Match]: "[abc]",
//	        "[a-z]", "[^0-9]" (not a digit); "-" and "]" inside a class
//	        are written `\-` and `\]`; a class cannot contain "/"
//	\c      the character c itself, so `\*` is a literal "*" and `\\` a
//	        backslash; a backslash cannot escape "/"
//	**      as a whole component: zero or more whole path components;
//	        anywhere else "**" is the same as "*"
//	other   itself, byte for byte (matching is case-sensitive and does no
//	        Unicode normalization)
//
// A character is a UTF-8 encoded code point; a byte that is not valid
// UTF-8 counts as one character.
//
// Where the pattern must match is set by its first and last characters:
//
//   - A pattern starting with "/" is anchored: it must match the path
//     from the root. "/tmp" matches "/tmp" only; "/home/*/.cache" matches
//     "/home/ann/.cache".
//   - A pattern without a leading "/" floats: it matches any trailing run
//     of the path's components, as if it began with "/**/". "*.tmp"
//     matches "/a/b/c.tmp"; "cache/*" matches "/home/u/cache/x";
//     "node_modules" matches "/x/node_modules" and
//     "/x/y/node_modules" at any depth. A "/" inside the pattern does not
//     anchor it.
//   - A pattern ending in "/" matches directories only: "build/" matches
//     the directory "/src/build" but not a file of that name.
//
// A "**" matches zero components too, so "/srv/**" matches "/srv" itself
// as well as everything below it, "/a/**/b" matches "/a/b" and "/a/x/y/b",
// and "**" alone matches every path, "/" included. The pattern "/"
// matches the root directory only.
//
// A pattern written with a leading "!" is negated (see below); in a
// [Rule] the "!" is not part of [Rule.Pattern] but sets [Rule.Negate].
// `\!` at the start stands for a literal "!".
//
// These patterns are invalid, and [New] reports them, naming each pattern
// and its source: an empty pattern, "!" alone, a class that is unclosed,
// empty ("[]", "[^]"), holds an unescaped "-" or a range without an end
// ("[a-]"), or holds invalid UTF-8, a trailing backslash, a backslash
// before "/", and a component "." or ".." (which never matches a clean
// path). A reversed range such as "[z-a]" is accepted, as by
// [path.Match], and matches nothing.
//
// # Semantics
//
// The rules are tried in order and the last one whose pattern matches a
// path decides: the path is matched unless that rule is negated. With
//
//	*.log
//	!important.log
//
// "/var/a.log" is matched and "/var/important.log" is not, while with
// the two lines the other way round both are matched. A path that no rule
// matches is not matched. For a backup, matched means excluded; for a
// restore with include rules, matched means included.
//
// A pattern that matches a directory covers everything below it: the
// walker does not descend into an excluded directory, and a restore takes
// all of an included one. [Matcher.Match] itself looks only at the path it
// is given, so "node_modules" matches the directory "/x/node_modules"
// (isDir true) but not "/x/node_modules/a.js"; the walker never asks about
// the latter. In the same way, as in gitignore, a negated pattern cannot
// bring back a path below an excluded directory: with "/cache/" and
// "!/cache/keep", "/cache/keep" is never seen because "/cache" is not
// walked. Exclude the contents instead ("/cache/*" and "!/cache/keep").
//
// A restore with include rules descends into a directory that does not
// match when [Matcher.CouldMatchBelow] says a path below it might.
//
// Paths given to [Matcher.Match] and [Matcher.CouldMatchBelow] must be
// clean and absolute, as [path.Clean] returns them: "/" or "/a/b", no
// trailing "/", no "." or ".." components, no doubled "/". Callers clean
// them once, not per pattern. Other input never makes Match panic, but
// its result is unspecified.
//
// # Exclude files
//
// [ReadFile] reads one pattern per line. Spaces and tabs around a pattern
// are trimmed (`\ ` keeps a trailing space), blank lines and lines
// starting with "#" are ignored, `\#` and `\!` start a pattern with a
// literal "#" or "!", and CRLF line ends are accepted. Each rule's source
// is "exclude-file PATH:LINE", so an error or a report points at the line.
//
// # Performance and concurrency
//
// New compiles each pattern into a list of components, each a literal, a
// prefix and suffix test, or a small glob program. Match splits nothing
// and allocates nothing: it counts the path's components once, then tries
// the rules from the last to the first and stops at the first that
// matches, comparing a rule's last components with the end of the path
// first, so most rules reject a path after one comparison of its name.
// The time per call is proportional to the number of rules times the
// length of the components compared; a pattern with two or more "**"
// costs up to the product of its length and the path's depth.
//
// A Matcher holds its rules and their compiled form, a few times the size
// of the patterns, and nothing else. [ReadFile] reads the whole file into
// memory before splitting it into rules. It is never modified after New, so
// it is safe for concurrent use by any number of goroutines.
package filter
