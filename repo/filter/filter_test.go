package filter

import (
	"errors"
	"io/fs"
	"os"
	"path"
	"path/filepath"
	"reflect"
	"strings"
	"sync"
	"testing"
)

// mustNew compiles flag-style patterns given as --exclude.
func mustNew(t testing.TB, patterns ...string) *Matcher {
	t.Helper()
	m, err := New(FromFlags(patterns, "--exclude"))
	if err != nil {
		t.Fatalf("New(%q): %v", patterns, err)
	}
	return m
}

func TestMatchOnePattern(t *testing.T) {
	const dir, file = true, false
	tests := []struct {
		pattern string
		path    string
		isDir   bool
		want    bool
	}{
		// Anchored.
		{"/tmp", "/tmp", dir, true},
		{"/tmp", "/tmp", file, true},
		{"/tmp", "/var/tmp", dir, false},
		{"/tmp", "/tmpx", dir, false},
		{"/tmp", "/", dir, false},
		{"/home/*/.cache", "/home/ann/.cache", dir, true},
		{"/home/*/.cache", "/home/ann/b/.cache", dir, false},
		{"/home/*/.cache", "/home/.cache", dir, false},
		{"/srv/data/*.sql", "/srv/data/a.sql", file, true},
		{"/srv/data/*.sql", "/srv/data/.sql", file, true},
		{"/srv/data/*.sql", "/srv/data/sub/a.sql", file, false},
		{"/srv/data/*.sql", "/x/srv/data/a.sql", file, false},
		{"/", "/", dir, true},
		{"/", "/etc", dir, false},
		{"/a//b", "/a/b", file, true},

		// Floating: any trailing run of components.
		{"*.tmp", "/a/b/c.tmp", file, true},
		{"*.tmp", "/c.tmp", file, true},
		{"*.tmp", "/.tmp", file, true},
		{"*.tmp", "/a/b/c.tmp.bak", file, false},
		{"*.tmp", "/a.tmp/b", file, false},
		{"*.tmp", "/a/b.tmp", dir, true},
		{"*.tmp", "/", dir, false},
		{"cache/*", "/home/u/cache/x", file, true},
		{"cache/*", "/cache/x", file, true},
		{"cache/*", "/home/u/cache", dir, false},
		{"cache/*", "/home/u/cache/x/y", file, false},
		{"cache/*", "/home/u/mycache/x", file, false},
		{"node_modules", "/x/node_modules", dir, true},
		{"node_modules", "/node_modules", dir, true},
		{"node_modules", "/x/y/z/node_modules", dir, true},
		{"node_modules", "/x/node_modules2", dir, false},
		{"a/b", "/a/b", file, true},
		{"a/b", "/x/y/a/b", file, true},
		{"a/b", "/a/x/b", file, false},
		{"a/b", "/a/b/c", file, false},
		{"a/b", "/xa/b", file, false},

		// A directory match covers what is below only through the walker:
		// Match itself says yes for the directory and no for its contents.
		{"node_modules", "/x/node_modules/a.js", file, false},
		{"node_modules", "/x/node_modules/lib", dir, false},
		{"/tmp", "/tmp/x", file, false},
		{"/var/cache/", "/var/cache", dir, true},
		{"/var/cache/", "/var/cache/apt", dir, false},

		// "**" at the start.
		{"**/x", "/x", file, true},
		{"**/x", "/a/b/x", file, true},
		{"**/x", "/a/b/x/y", file, false},
		{"/**/x", "/a/x", file, true},
		{"/**/x", "/x", file, true},
		{"**", "/", dir, true},
		{"**", "/anything/at/all", file, true},
		{"/**", "/", dir, true},
		{"/**", "/a", file, true},

		// "**" at the end.
		{"/srv/**", "/srv", dir, true},
		{"/srv/**", "/srv/a", file, true},
		{"/srv/**", "/srv/a/b/c", file, true},
		{"/srv/**", "/srvx", file, false},
		{"/srv/**", "/", dir, false},
		{"foo/**", "/x/foo", dir, true},
		{"foo/**", "/x/foo/bar/baz", file, true},
		{"foo/**", "/x/foox/bar", file, false},

		// "**" in the middle.
		{"/a/**/b", "/a/b", file, true},
		{"/a/**/b", "/a/x/b", file, true},
		{"/a/**/b", "/a/x/y/z/b", file, true},
		{"/a/**/b", "/a/x/y/z/c", file, false},
		{"/a/**/b", "/x/a/b", file, false},
		{"/a/**/b", "/a/b/c", file, false},
		{"/a/**/**/b", "/a/b", file, true},
		{"/a/**/b/**/c", "/a/b/c", file, true},
		{"/a/**/b/**/c", "/a/x/b/y/z/c", file, true},
		{"/a/**/b/**/c", "/a/b/b/c/c", file, true},
		{"/a/**/b/**/c", "/a/x/c/y/b", file, false},
		{"/a/**/b/**/c", "/a/b/c/d", file, false},
		{"/a/**/b/**/c/**/d", "/a/1/b/2/c/3/d", file, true},
		{"/a/**/b/**/c/**/d", "/a/1/c/2/b/3/d", file, false},
		{"/**/a/**/b/**", "/x/a/y/b", file, true},
		{"/**/a/**/b/**", "/a/b/z", file, true},
		{"/**/a/**/b/**", "/b/a", file, false},
		{"a/**/b/c", "/x/a/y/b/c", file, true},
		{"a/**/b/c", "/a/b/c", file, true},
		{"a/**/b/c", "/x/a/y/b/d", file, false},
		{"a/**/b/c", "/x/b/c", file, false},

		// "**" inside a component is "*".
		{"a**b", "/x/aXYb", file, true},
		{"a**b", "/x/ab", file, true},
		{"a**b", "/x/a/b", file, false},

		// Directories only.
		{"build/", "/src/build", dir, true},
		{"build/", "/src/build", file, false},
		{"/var/cache/", "/var/cache", file, false},
		{"**/", "/a", dir, true},
		{"**/", "/a", file, false},
		{"/srv/**/", "/srv", dir, true},
		{"/srv/**/", "/srv/a/b", dir, true},
		{"/srv/**/", "/srv/a/b", file, false},

		// Classes.
		{"*.sw[po]", "/a/.x.swp", file, true},
		{"*.sw[po]", "/a/.x.swo", file, true},
		{"*.sw[po]", "/a/.x.swx", file, false},
		{"[a-c]?.txt", "/b1.txt", file, true},
		{"[a-c]?.txt", "/d1.txt", file, false},
		{"[a-c]?.txt", "/b.txt", file, false},
		{"[^0-9]*", "/abc", file, true},
		{"[^0-9]*", "/1abc", file, false},
		{`[\]]x`, "/]x", file, true},
		{`[\-a]`, "/-", file, true},
		{`[\-a]`, "/a", file, true},
		{`[\-a]`, "/b", file, false},
		{"[z-a]", "/m", file, false},
		{"[é-ü]", "/ö", file, true},
		{"[é-ü]", "/o", file, false},
		{"[^é]", "/ö", file, true},
		{"x[0-9][0-9]", "/x42", file, true},
		{"x[0-9][0-9]", "/x4", file, false},
		{"*[0-9]", "/abc7", file, true},
		{"*[0-9]", "/abc", file, false},

		// Escapes.
		{`\*.tmp`, "/*.tmp", file, true},
		{`\*.tmp`, "/a.tmp", file, false},
		{`a\?`, "/a?", file, true},
		{`a\?`, "/ab", file, false},
		{`\[x]`, "/[x]", file, true},
		{`\[x]`, "/x", file, false},
		{`a\\b`, `/a\b`, file, true},
		{`\!keep`, "/!keep", file, true},
		{`\#x`, "/#x", file, true},
		{`\*\*`, "/**", file, true},
		{`\*\*`, "/ab", file, false},
		{`foo\ `, "/foo ", file, true},
		{`\a\b\c`, "/abc", file, true},

		// Unicode names.
		{"*.jpg", "/Фото/отпуск.jpg", file, true},
		{"/Фото/о?пуск.jpg", "/Фото/отпуск.jpg", file, true},
		{"??", "/日本", file, true},
		{"?", "/日本", file, false},
		{"日*", "/日本語", file, true},
		{"*語", "/日本語", file, true},
		{"*本*", "/日本語", file, true},
		{"café.txt", "/café.txt", file, true},
		{"caf\u00e9.txt", "/cafe\u0301.txt", file, false}, // no normalization
		{"Café", "/café", dir, false},                     // case-sensitive

		// Names with spaces.
		{"My Documents", "/home/u/My Documents", dir, true},
		{"/home/u/My Documents/*.tmp", "/home/u/My Documents/a b.tmp", file, true},
		{"* *", "/a b", file, true},
		{"* *", "/ab", file, false},
		{" lead", "/ lead", file, true},
		{" lead", "/lead", file, false},
	}
	for _, tt := range tests {
		m := mustNew(t, tt.pattern)
		got, rule := m.Match(tt.path, tt.isDir)
		if got != tt.want {
			t.Errorf("pattern %q: Match(%q, isDir=%v) = %v, want %v", tt.pattern, tt.path, tt.isDir, got, tt.want)
		}
		if got != (rule != nil) {
			t.Errorf("pattern %q: Match(%q, isDir=%v) rule = %v, want it set exactly when matched", tt.pattern, tt.path, tt.isDir, rule)
		}
	}
}

func TestMatchOrder(t *testing.T) {
	const dir, file = true, false
	tests := []struct {
		patterns []string
		path     string
		isDir    bool
		want     bool
		rule     int // index of the deciding rule, -1 for none
	}{
		{[]string{"*.log", "!important.log"}, "/var/a.log", file, true, 0},
		{[]string{"*.log", "!important.log"}, "/var/important.log", file, false, 1},
		{[]string{"*.log", "!important.log"}, "/var/a.txt", file, false, -1},
		{[]string{"!important.log", "*.log"}, "/var/important.log", file, true, 1},
		{[]string{"*.log", "!important.log", "/var/log/important.log"}, "/var/log/important.log", file, true, 2},
		{[]string{"*.log", "!important.log", "/var/log/important.log"}, "/x/important.log", file, false, 1},
		// The negation decides for the path itself, but the walker never
		// asks about it: "/cache" is excluded and not walked.
		{[]string{"/cache/", "!/cache/keep"}, "/cache", dir, true, 0},
		{[]string{"/cache/", "!/cache/keep"}, "/cache/keep", file, false, 1},
		// Excluding the contents instead keeps "keep" reachable.
		{[]string{"/cache/*", "!/cache/keep"}, "/cache", dir, false, -1},
		{[]string{"/cache/*", "!/cache/keep"}, "/cache/a", file, true, 0},
		{[]string{"/cache/*", "!/cache/keep"}, "/cache/keep", file, false, 1},
		{[]string{"*", "!*/"}, "/a", dir, false, 1},
		{[]string{"*", "!*/"}, "/a", file, true, 0},
		{[]string{"*.tmp", "*.tmp"}, "/a.tmp", file, true, 1},
		{[]string{"!*.tmp"}, "/a.tmp", file, false, 0},
		{nil, "/a.tmp", file, false, -1},
	}
	for _, tt := range tests {
		rules := FromFlags(tt.patterns, "--exclude")
		m, err := New(rules)
		if err != nil {
			t.Fatal(err)
		}
		got, rule := m.Match(tt.path, tt.isDir)
		var want *Rule
		if tt.rule >= 0 {
			want = &m.rules[tt.rule]
		}
		if got != tt.want || rule != want {
			t.Errorf("patterns %q: Match(%q, isDir=%v) = %v, %v; want %v, %v", tt.patterns, tt.path, tt.isDir, got, rule, tt.want, want)
		}
		if tt.rule >= 0 && *rule != rules[tt.rule] {
			t.Errorf("patterns %q: Match(%q) rule = %+v, want %+v", tt.patterns, tt.path, *rule, rules[tt.rule])
		}
	}
}

func TestNewCopiesRules(t *testing.T) {
	rules := FromFlags([]string{"*.tmp"}, "--exclude")
	m, err := New(rules)
	if err != nil {
		t.Fatal(err)
	}
	rules[0] = Rule{Pattern: "*.log", Source: "changed"}
	got, rule := m.Match("/a.tmp", false)
	if !got || rule.String() != `--exclude "*.tmp"` {
		t.Fatalf("Match after changing the caller's slice = %v, %v", got, rule)
	}
}

func TestInvalidPatterns(t *testing.T) {
	tests := []struct {
		pattern string
		want    string
	}{
		{"", `--exclude "": invalid pattern: empty pattern`},
		{"!", `--exclude "!": invalid pattern: empty pattern after "!"`},
		{"[a", `--exclude "[a": invalid pattern: unclosed character class`},
		{"[a-", `--exclude "[a-": invalid pattern: unclosed character class`},
		{`[a\`, `--exclude "[a\\": invalid pattern: unclosed character class`},
		{"[^", `--exclude "[^": invalid pattern: unclosed character class`},
		{"x/[a/b]", `--exclude "x/[a/b]": invalid pattern: unclosed character class`},
		{"[]", `--exclude "[]": invalid pattern: empty character class`},
		{"[^]", `--exclude "[^]": invalid pattern: empty character class`},
		{"[]a]", `--exclude "[]a]": invalid pattern: empty character class`},
		{"[a-]", `--exclude "[a-]": invalid pattern: range without an end in character class`},
		{"[-a]", `--exclude "[-a]": invalid pattern: unescaped "-" in character class`},
		{"[a--]", `--exclude "[a--]": invalid pattern: unescaped "-" in character class`},
		{"[\xff]", `--exclude "[\xff]": invalid pattern: invalid UTF-8 in character class`},
		{`a\`, `--exclude "a\\": invalid pattern: trailing "\"`},
		{`/a/b\`, `--exclude "/a/b\\": invalid pattern: trailing "\"`},
		{`a\/b`, `--exclude "a\\/b": invalid pattern: "\" before "/"`},
		{`dir\/`, `--exclude "dir\\/": invalid pattern: "\" before "/"`},
		{"./foo", `--exclude "./foo": invalid pattern: "." is not allowed as a path component`},
		{"/a/../b", `--exclude "/a/../b": invalid pattern: ".." is not allowed as a path component`},
		{`!\.`, `--exclude "!\\.": invalid pattern: "." is not allowed as a path component`},
	}
	for _, tt := range tests {
		m, err := New(FromFlags([]string{tt.pattern}, "--exclude"))
		if err == nil || err.Error() != tt.want {
			t.Errorf("New(%q) error = %v, want %s", tt.pattern, err, tt.want)
		}
		if m != nil {
			t.Errorf("New(%q) returned a matcher with its error", tt.pattern)
		}
	}
}

func TestInvalidPatternsJoined(t *testing.T) {
	rules := []Rule{
		{Pattern: "*.tmp", Source: "--exclude"},
		{Pattern: "[x", Source: "exclude-file /etc/cairn/excludes:12"},
		{Pattern: "", Negate: true, Source: "exclude-file /etc/cairn/excludes:13"},
	}
	_, err := New(rules)
	want := `exclude-file /etc/cairn/excludes:12 "[x": invalid pattern: unclosed character class` + "\n" +
		`exclude-file /etc/cairn/excludes:13 "!": invalid pattern: empty pattern after "!"`
	if err == nil || err.Error() != want {
		t.Fatalf("New error = %v, want\n%s", err, want)
	}
}

func TestRuleString(t *testing.T) {
	tests := []struct {
		rule Rule
		want string
	}{
		{Rule{Pattern: "*.tmp", Source: "--exclude"}, `--exclude "*.tmp"`},
		{Rule{Pattern: "keep.log", Negate: true, Source: "exclude-file /x:3"}, `exclude-file /x:3 "!keep.log"`},
		{Rule{Pattern: `\!bang`, Source: "--include"}, `--include "\\!bang"`},
		{Rule{Pattern: "a\nb"}, `"a\nb"`},
		{Rule{Pattern: "My Documents", Source: "--exclude"}, `--exclude "My Documents"`},
	}
	for _, tt := range tests {
		if got := tt.rule.String(); got != tt.want {
			t.Errorf("%+v.String() = %s, want %s", tt.rule, got, tt.want)
		}
	}
}

func TestFromFlags(t *testing.T) {
	if got := FromFlags(nil, "--exclude"); got != nil {
		t.Errorf("FromFlags(nil) = %v, want nil", got)
	}
	got := FromFlags([]string{"*.tmp", "!keep.tmp", `\!bang`, " spaced ", "#x", "!"}, "--include")
	want := []Rule{
		{Pattern: "*.tmp", Source: "--include"},
		{Pattern: "keep.tmp", Negate: true, Source: "--include"},
		{Pattern: `\!bang`, Source: "--include"},
		{Pattern: " spaced ", Source: "--include"},
		{Pattern: "#x", Source: "--include"},
		{Pattern: "", Negate: true, Source: "--include"},
	}
	if !reflect.DeepEqual(got, want) {
		t.Errorf("FromFlags =\n%+v\nwant\n%+v", got, want)
	}
}

func TestReadFile(t *testing.T) {
	name := filepath.Join(t.TempDir(), "excludes")
	content := "\ufeff# backup excludes\r\n" + // 1
		"\r\n" + // 2
		"*.tmp\r\n" + // 3
		"  /srv/cache/  \r\n" + // 4
		"!important.log\n" + // 5
		`\#literal` + "\n" + // 6
		`\!bang` + "\n" + // 7
		"\t# indented comment\n" + // 8
		"foo\\ \t \n" + // 9: escaped trailing space kept
		"bar\\\\  \n" + // 10: escaped backslash, spaces trimmed
		"   \t\n" + // 11
		"My Documents\n" + // 12
		"!\n" + // 13
		"last" // 14, no final newline
	if err := os.WriteFile(name, []byte(content), 0o600); err != nil {
		t.Fatal(err)
	}
	rules, err := ReadFile(name)
	if err != nil {
		t.Fatal(err)
	}
	src := func(line string) string { return "exclude-file " + name + ":" + line }
	want := []Rule{
		{Pattern: "*.tmp", Source: src("3")},
		{Pattern: "/srv/cache/", Source: src("4")},
		{Pattern: "important.log", Negate: true, Source: src("5")},
		{Pattern: `\#literal`, Source: src("6")},
		{Pattern: `\!bang`, Source: src("7")},
		{Pattern: `foo\ `, Source: src("9")},
		{Pattern: `bar\\`, Source: src("10")},
		{Pattern: "My Documents", Source: src("12")},
		{Pattern: "", Negate: true, Source: src("13")},
		{Pattern: "last", Source: src("14")},
	}
	if !reflect.DeepEqual(rules, want) {
		t.Fatalf("ReadFile =\n%+v\nwant\n%+v", rules, want)
	}

	_, err = New(rules)
	wantErr := `exclude-file ` + name + `:13 "!": invalid pattern: empty pattern after "!"`
	if err == nil || err.Error() != wantErr {
		t.Fatalf("New error = %v, want %s", err, wantErr)
	}
	m, err := New(append(rules[:8:8], rules[9]))
	if err != nil {
		t.Fatal(err)
	}
	for _, tt := range []struct {
		path  string
		isDir bool
		want  bool
		line  string
	}{
		{"/a/x.tmp", false, true, "3"},
		{"/srv/cache", true, true, "4"},
		{"/srv/cache", false, false, ""},
		{"/var/important.log", false, false, "5"},
		{"/#literal", false, true, "6"},
		{"/!bang", false, true, "7"},
		{"/foo ", false, true, "9"},
		{"/foo", false, false, ""},
		{`/bar\`, false, true, "10"},
		{"/home/u/My Documents", true, true, "12"},
		{"/x/last", false, true, "14"},
	} {
		got, rule := m.Match(tt.path, tt.isDir)
		gotLine := ""
		if rule != nil {
			gotLine = rule.Source[strings.LastIndexByte(rule.Source, ':')+1:]
		}
		if got != tt.want || gotLine != tt.line {
			t.Errorf("Match(%q, %v) = %v, line %q; want %v, line %q", tt.path, tt.isDir, got, gotLine, tt.want, tt.line)
		}
	}
}

func TestReadFileEmpty(t *testing.T) {
	name := filepath.Join(t.TempDir(), "excludes")
	if err := os.WriteFile(name, []byte("# nothing\n\n   \r\n"), 0o600); err != nil {
		t.Fatal(err)
	}
	rules, err := ReadFile(name)
	if err != nil || rules != nil {
		t.Fatalf("ReadFile = %v, %v; want nil, nil", rules, err)
	}
	m, err := New(rules)
	if err != nil {
		t.Fatal(err)
	}
	if !m.Empty() {
		t.Fatal("matcher from an empty file is not empty")
	}
}

func TestReadFileMissing(t *testing.T) {
	name := filepath.Join(t.TempDir(), "missing")
	_, err := ReadFile(name)
	want := "read exclude-file: open " + name + ": no such file or directory"
	if err == nil || err.Error() != want {
		t.Fatalf("ReadFile error = %v, want %s", err, want)
	}
	if !errors.Is(err, fs.ErrNotExist) {
		t.Fatalf("ReadFile error %v does not wrap fs.ErrNotExist", err)
	}
}

func TestEmpty(t *testing.T) {
	var nilMatcher *Matcher
	if !nilMatcher.Empty() {
		t.Error("nil matcher is not empty")
	}
	if ok, r := nilMatcher.Match("/a", false); ok || r != nil {
		t.Errorf("nil matcher Match = %v, %v", ok, r)
	}
	if nilMatcher.CouldMatchBelow("/") {
		t.Error("nil matcher CouldMatchBelow(/) = true")
	}
	if !(&Matcher{}).Empty() {
		t.Error("zero matcher is not empty")
	}
	for _, rules := range [][]Rule{nil, {}} {
		m, err := New(rules)
		if err != nil {
			t.Fatal(err)
		}
		if !m.Empty() {
			t.Errorf("New(%#v) is not empty", rules)
		}
		if ok, r := m.Match("/", true); ok || r != nil {
			t.Errorf("New(%#v).Match(/) = %v, %v", rules, ok, r)
		}
		if m.CouldMatchBelow("/") {
			t.Errorf("New(%#v).CouldMatchBelow(/) = true", rules)
		}
	}
	if mustNew(t, "!x").Empty() {
		t.Error("matcher with one negated rule is empty")
	}
}

func TestCouldMatchBelow(t *testing.T) {
	tests := []struct {
		patterns []string
		dir      string
		want     bool
	}{
		{[]string{"/srv/data/*.sql"}, "/", true},
		{[]string{"/srv/data/*.sql"}, "/srv", true},
		{[]string{"/srv/data/*.sql"}, "/srv/data", true},
		{[]string{"/srv/data/*.sql"}, "/etc", false},
		{[]string{"/srv/data/*.sql"}, "/srv/other", false},
		{[]string{"/srv/data/*.sql"}, "/srv/data/a.sql", false},
		{[]string{"/srv/data/*.sql"}, "/srv/data/sub", false},
		{[]string{"**/x"}, "/", true},
		{[]string{"**/x"}, "/etc", true},
		{[]string{"**/x"}, "/a/b/x", true},
		{[]string{"*.sql"}, "/", true},
		{[]string{"*.sql"}, "/etc/x/y", true},
		{[]string{"/srv/**/x"}, "/", true},
		{[]string{"/srv/**/x"}, "/srv", true},
		{[]string{"/srv/**/x"}, "/srv/a/b", true},
		{[]string{"/srv/**/x"}, "/etc", false},
		{[]string{"/srv/**"}, "/srv", true},
		{[]string{"/srv/**"}, "/srvx", false},
		{[]string{"/a/b"}, "/a", true},
		{[]string{"/a/b"}, "/a/b", false},
		{[]string{"/a/b"}, "/b", false},
		{[]string{"/a/[bc]/d"}, "/a/c", true},
		{[]string{"/a/[bc]/d"}, "/a/d", false},
		{[]string{"/home/*/Documents/"}, "/home", true},
		{[]string{"/home/*/Documents/"}, "/home/ann", true},
		{[]string{"/home/*/Documents/"}, "/home/ann/Documents", false},
		{[]string{"/home/*/Documents/"}, "/home/ann/x", false},
		{[]string{"/"}, "/", false},
		{[]string{"/**"}, "/", true},
		{[]string{"!*.sql"}, "/", false},
		{[]string{"/etc/x", "/srv/y"}, "/srv", true},
		{[]string{"/etc/x", "!/srv/y"}, "/srv", false},
	}
	for _, tt := range tests {
		m := mustNew(t, tt.patterns...)
		if got := m.CouldMatchBelow(tt.dir); got != tt.want {
			t.Errorf("patterns %q: CouldMatchBelow(%q) = %v, want %v", tt.patterns, tt.dir, got, tt.want)
		}
	}
}

func TestMatchConcurrent(t *testing.T) {
	m := mustNew(t, benchPatterns...)
	var wg sync.WaitGroup
	for range 8 {
		wg.Go(func() {
			for _, p := range benchPaths {
				ok1, r1 := m.Match(p.path, p.isDir)
				ok2, r2 := m.Match(p.path, p.isDir)
				if ok1 != ok2 || r1 != r2 {
					t.Errorf("Match(%q) not deterministic", p.path)
				}
			}
		})
	}
	wg.Wait()
}

func TestMatchDoesNotAllocate(t *testing.T) {
	m := mustNew(t, benchPatterns...)
	for _, p := range benchPaths {
		allocs := testing.AllocsPerRun(100, func() { m.Match(p.path, p.isDir) })
		if allocs != 0 {
			t.Errorf("Match(%q) allocates %v times", p.path, allocs)
		}
	}
}

// benchPatterns is a typical exclude list of 20 rules.
var benchPatterns = []string{
	"/proc",
	"/sys",
	"/dev",
	"/run",
	"/tmp/**",
	"/var/cache/",
	"/home/*/.cache",
	"/home/*/Downloads",
	"node_modules/",
	"__pycache__/",
	".git/",
	"target/",
	"*.tmp",
	"*.o",
	"*~",
	"*.sw[po]",
	".DS_Store",
	"*.log",
	"!important.log",
	"/home/**/build/*.o",
}

// benchPaths are typical paths a backup asks about.
var benchPaths = []struct {
	path  string
	isDir bool
}{
	{"/home/ann/src/cairn/repo/filter/match.go", false},
	{"/home/ann/src/cairn/repo/filter", true},
	{"/home/ann/Documents/taxes/2024/receipt-0042.pdf", false},
	{"/home/ann/Pictures/2023/holiday/IMG_20230812_101500.jpg", false},
	{"/home/ann/src/web/node_modules", true},
	{"/home/ann/.cache", true},
	{"/home/ann/src/cairn/.git", true},
	{"/home/ann/notes/todo.md~", false},
	{"/var/log/important.log", false},
	{"/var/log/syslog.log", false},
	{"/etc/ssh/sshd_config", false},
	{"/usr/share/doc/bash/README", false},
	{"/srv/data/db/base/16384/2619", false},
	{"/home/ann/src/c/build/main.o", false},
	{"/", true},
}

func BenchmarkMatch(b *testing.B) {
	m := mustNew(b, benchPatterns...)
	b.ReportAllocs()
	n := 0
	for b.Loop() {
		for _, p := range benchPaths {
			if ok, _ := m.Match(p.path, p.isDir); ok {
				n++
			}
		}
	}
	b.ReportMetric(float64(b.Elapsed().Nanoseconds())/float64(b.N*len(benchPaths)), "ns/path")
	if n == 0 {
		b.Fatal("nothing matched")
	}
}

// escapeLiteral returns a pattern that matches exactly the text s.
func escapeLiteral(s string) string {
	var b strings.Builder
	for i := 0; i < len(s); i++ {
		switch s[i] {
		case '*', '?', '[', '\\':
			b.WriteByte('\\')
		}
		b.WriteByte(s[i])
	}
	return b.String()
}

func isASCII(s string) bool {
	for i := 0; i < len(s); i++ {
		if s[i] >= 0x80 {
			return false
		}
	}
	return true
}

// oracle is a slow, independent statement of the matching rules on top of
// path.Match, for patterns and paths that are ASCII (where path.Match
// and this package agree on what a character is).
func oracle(pattern, p string, isDir bool) bool {
	comps := []string{}
	if !strings.HasPrefix(pattern, "/") {
		comps = append(comps, "**")
	}
	for c := range strings.SplitSeq(pattern, "/") {
		if c != "" {
			comps = append(comps, c)
		}
	}
	var names []string
	if s := strings.TrimPrefix(p, "/"); s != "" {
		names = strings.Split(s, "/")
	}
	memo := map[[2]int]bool{}
	var rec func(ci, ni int) bool
	rec = func(ci, ni int) bool {
		key := [2]int{ci, ni}
		if v, ok := memo[key]; ok {
			return v
		}
		var v bool
		switch {
		case ci == len(comps):
			v = ni == len(names)
		case comps[ci] == "**":
			for k := ni; k <= len(names) && !v; k++ {
				v = rec(ci+1, k)
			}
		case ni < len(names):
			ok, _ := path.Match(comps[ci], names[ni])
			v = ok && rec(ci+1, ni+1)
		}
		memo[key] = v
		return v
	}
	return (isDir || !strings.HasSuffix(pattern, "/")) && rec(0, 0)
}

func FuzzMatch(f *testing.F) {
	for _, p := range benchPatterns {
		for _, q := range benchPaths {
			f.Add(p, q.path, q.isDir)
		}
	}
	for _, s := range [][2]string{
		{"/a/**/b/**/c", "/a/x/b/y/z/c"},
		{"a/**/b/c", "/x/a/y/b/c"},
		{"[^0-9]*[a-c]?", "/x/y1ab"},
		{`\*\[x\]`, "/*[x]"},
		{"**", "/"},
		{"/", "/"},
		{"*.jpg", "/Фото/отпуск.jpg"},
		{"[é-ü]?", "/öx"},
		{"*??", "/€"},
		{"a//b/", "//a//b/"},
	} {
		f.Add(s[0], s[1], true)
		f.Add(s[0], s[1], false)
	}
	f.Fuzz(func(t *testing.T, pattern, p string, isDir bool) {
		rules := []Rule{{Pattern: pattern, Source: "fuzz"}}
		m, err := New(rules)
		if err == nil {
			ok1, r1 := m.Match(p, isDir)
			ok2, r2 := m.Match(p, isDir)
			m2, err := New(rules)
			if err != nil {
				t.Fatalf("second New(%q): %v", pattern, err)
			}
			ok3, r3 := m2.Match(p, isDir)
			if ok1 != ok2 || ok1 != ok3 || r1 != r2 || (r1 == nil) != (r3 == nil) {
				t.Fatalf("pattern %q: Match(%q, %v) not deterministic", pattern, p, isDir)
			}
			// The split matcher agrees with the plain one over all segments.
			pt := &m.pats[0]
			v := newView(p)
			ref := (!pt.dirOnly || isDir) && matchSegs(pt.all, v.s, v.depth)
			if ok1 != ref {
				t.Fatalf("pattern %q: Match(%q, %v) = %v, matchSegs says %v", pattern, p, isDir, ok1, ref)
			}
			if isASCII(pattern) && isASCII(p) {
				if want := oracle(pattern, p, isDir); ok1 != want {
					t.Fatalf("pattern %q: Match(%q, %v) = %v, oracle says %v", pattern, p, isDir, ok1, want)
				}
			}
			// CouldMatchBelow never says false wrongly.
			if ok1 && p != "/" && p != "" && p[0] == '/' && path.Clean(p) == p {
				for d := path.Dir(p); ; d = path.Dir(d) {
					if !m.CouldMatchBelow(d) {
						t.Fatalf("pattern %q matches %q but CouldMatchBelow(%q) = false", pattern, p, d)
					}
					if d == "/" {
						break
					}
				}
			}
		}

		// A single component compiles and matches as path.Match says.
		if name := strings.ReplaceAll(p, "/", "_"); pattern != "" && !strings.Contains(pattern, "/") && name != "" && isASCII(name) {
			want, perr := path.Match(pattern, name)
			m, err := New([]Rule{{Pattern: "/" + pattern}})
			switch {
			case perr != nil:
				if err == nil {
					t.Fatalf("pattern %q: path.Match says %v, New accepts it", pattern, perr)
				}
			case err != nil:
				if !strings.Contains(err.Error(), "is not allowed as a path component") {
					t.Fatalf("pattern %q: path.Match accepts it, New says %v", pattern, err)
				}
			default:
				if got, _ := m.Match("/"+name, false); got != want {
					t.Fatalf("pattern %q: Match(%q) = %v, path.Match says %v", pattern, "/"+name, got, want)
				}
			}
		}

		// A pattern spelling a clean path literally matches that path,
		// anchored and floating, and under any parent when floating.
		if q := path.Clean("/" + p); q != "/" {
			lit := escapeLiteral(q)
			m, err := New([]Rule{{Pattern: lit}, {Pattern: lit[1:]}})
			if err != nil {
				t.Fatalf("escaped path %q: %v", lit, err)
			}
			for _, dir := range []bool{false, true} {
				if ok, r := m.Match(q, dir); !ok || r != &m.rules[1] {
					t.Fatalf("escaped pattern %q: Match(%q, %v) = %v, %v", lit[1:], q, dir, ok, r)
				}
				if ok, r := m.Match("/parent"+q, dir); !ok || r != &m.rules[1] {
					t.Fatalf("escaped pattern %q: Match(%q, %v) = %v, %v", lit[1:], "/parent"+q, dir, ok, r)
				}
			}
			m, err = New([]Rule{{Pattern: lit}})
			if err != nil {
				t.Fatal(err)
			}
			if ok, _ := m.Match(q, isDir); !ok {
				t.Fatalf("escaped pattern %q does not match %q", lit, q)
			}
			if ok, _ := m.Match("/parent"+q, isDir); ok {
				t.Fatalf("anchored pattern %q matches %q", lit, "/parent"+q)
			}
		}
	})
}
