package plan

import (
	"context"
	"errors"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/cairnbackup/cairn/repo/output"
)

func TestParseHooks(t *testing.T) {
	p, err := Parse([]byte(`
sources:
  - name: db
    class: database
    why: all data
    command: pg_dumpall
    file: all.sql
    before: sync
    after: [echo one, echo two]
    timeout: 30s
  - name: etc
    class: config
    why: host configuration
    paths: [/etc]
`), "p.yaml")
	if err != nil {
		t.Fatal(err)
	}
	db := p.Sources[0]
	if strings.Join(db.Before, "|") != "sync" || strings.Join(db.After, "|") != "echo one|echo two" || db.Timeout != 30*time.Second {
		t.Fatalf("%+v", db)
	}
	if p.Sources[1].Hooks("/etc/cairn/plan.yaml", "lyra") != nil {
		t.Fatal("a source without commands has hooks")
	}
	many := "[" + strings.Repeat("x, ", 16) + "x]"
	for doc, want := range map[string]string{
		"timeout: 1m":                 `p.yaml:6: sources[0].timeout: bounds each before and after command, and this source has none (the backup itself has no timeout)`,
		"before: ''":                  `p.yaml:6: sources[0].before[0]: an empty command`,
		"after: ['true', ' ']":        `p.yaml:6: sources[0].after[1]: an empty command`,
		"before: " + many:             `p.yaml:6: sources[0].before: 17 commands, more than 16`,
		"before: x\n    timeout: -1s": `p.yaml:7: sources[0].timeout: -1s is negative`,
	} {
		_, err := Parse([]byte("sources:\n  - name: a\n    class: files\n    why: x\n    paths: [/a]\n    "+doc+"\n"), "p.yaml")
		if err == nil || err.Error() != want {
			t.Errorf("%s: %v, want %s", doc, err, want)
		}
	}
}

// hooksFor returns the hooks of a source with the given commands, for a
// plan file in a temporary directory.
func hooksFor(t *testing.T, before, after []string, timeout time.Duration) (*Hooks, string) {
	t.Helper()
	dir := t.TempDir()
	s := &Source{Name: "db", Class: "database", Why: "x", Command: "true", File: "x", Before: before, After: after, Timeout: timeout}
	s.checkHooks(func(field, format string, args ...any) { t.Fatalf("%s: "+format, append([]any{field}, args...)...) })
	return s.Hooks(filepath.Join(dir, "plan.yaml"), "lyra"), dir
}

// Commands run with sh -c in the plan's directory and learn which
// source, node and phase they run for; the first failing before command
// stops the others; after commands all run, once.
func TestHooksRun(t *testing.T) {
	t.Setenv("CAIRN_PHASE", "from the caller")
	h, dir := hooksFor(t,
		[]string{`echo "$CAIRN_SOURCE $CAIRN_NODE $CAIRN_PHASE $(pwd)" > marker`, `echo stopping; echo 'error: the service would not stop' >&2; exit 4`, `touch never`},
		[]string{`echo "$CAIRN_PHASE" >> marker; exit 1`, `echo again >> marker`}, 0)
	err := h.Before(t.Context())
	var he *HookError
	if !errors.As(err, &he) || err.Error() != `before command "echo stopping; echo 'error: the service would not stop' >&2; exit 4" failed: exit status 4: stopping | error: the service would not stop` {
		t.Fatalf("before: %v", err)
	}
	if _, err := os.Stat(filepath.Join(dir, "never")); !os.IsNotExist(err) {
		t.Fatalf("a before command after the failing one ran: %v", err)
	}
	ctx, cancel := context.WithCancel(t.Context())
	cancel() // after commands run even when the backup was interrupted
	warn := h.After(ctx)
	if len(warn) != 1 || warn[0] != `after command "echo \"$CAIRN_PHASE\" >> marker; exit 1" failed: exit status 1` {
		t.Fatalf("after: %q", warn)
	}
	if again := h.After(ctx); again != nil {
		t.Fatalf("after ran twice: %q", again)
	}
	if got := string(mustRead(t, filepath.Join(dir, "marker"))); got != "db lyra before "+dir+"\nafter\nagain\n" {
		t.Fatalf("marker %q", got)
	}
	ran := h.Ran()
	if len(ran) != 4 || ran[1].Exit == nil || *ran[1].Exit != 4 || ran[1].Output != "stopping\nerror: the service would not stop" || ran[0].Error != "" || ran[2].Phase != PhaseAfter {
		t.Fatalf("ran %+v", ran)
	}
}

// A command that hangs is killed at the timeout with its process group,
// and its output is bounded.
func TestHookTimeoutAndOutput(t *testing.T) {
	t.Parallel() // it waits out the 200ms timeout on the real clock
	h, _ := hooksFor(t, []string{`yes cairn | head -c 100000; sleep 60 & wait`}, nil, 200*time.Millisecond)
	err := h.Before(t.Context())
	rec := h.Ran()[0]
	if err == nil || rec.Error != "timed out after 200ms" || rec.Exit != nil || len(rec.Output) > output.Max || !strings.HasPrefix(rec.Output, "cairn\ncairn\n") {
		t.Fatalf("err %v, record error %q exit %v, %d bytes of output", err, rec.Error, rec.Exit, len(rec.Output))
	}
}

func mustRead(t *testing.T, p string) []byte {
	t.Helper()
	b, err := os.ReadFile(p)
	if err != nil {
		t.Fatal(err)
	}
	return b
}
