package appliance

import (
	"bytes"
	"fmt"
	"io"
	"os"
	"path/filepath"
	"strings"
	"testing"

	"github.com/cairnbackup/cairn/repo/repotest"
)

// firstRead tells once that its reader was read: the session it feeds
// is open.
type firstRead struct {
	r    io.Reader
	read chan struct{}
	once bool
}

func (f *firstRead) Read(p []byte) (int, error) {
	if !f.once {
		f.once = true
		close(f.read)
	}
	return f.r.Read(p)
}

// A node gets at most its number of sessions at once
// (limits.sessions_per_node, or its max_sessions), and all nodes
// together limits.sessions: one more is refused with exit 1 and the
// limit named, and once a session ends its place is free again.
func TestSessionLimits(t *testing.T) {
	lyra, vega := newTestNode(t, "lyra", "push"), newTestNode(t, "vega", "push")
	cfg := filepath.Join(t.TempDir(), "a.yaml")
	text := fmt.Sprintf("nodes:\n  lyra:\n    keys: [%q]\n    permissions: [push]\n  vega:\n    keys: [%q]\n    permissions: [push]\n    max_sessions: 2\n"+
		"limits:\n  sessions: 2\n  sessions_per_node: 1\n", lyra.keyLine(), vega.keyLine())
	if err := os.WriteFile(cfg, []byte(text), 0o600); err != nil {
		t.Fatal(err)
	}
	a, err := New(Options{Repo: repotest.New(t), ConfigPath: cfg})
	if err != nil {
		t.Fatal(err)
	}
	type result struct {
		code   int
		stdout string
		stderr string
	}
	// hold starts a push that stays open until release is called.
	hold := func(node string) (release func() result) {
		pr, pw := io.Pipe()
		in := &firstRead{r: pr, read: make(chan struct{})}
		done := make(chan result, 1)
		go func() {
			var out, errb bytes.Buffer
			code := a.NodeSession(t.Context(), node, a.Config().Nodes[node].Perms(), false, "push --stdin --name db.sql", in, &out, &errb)
			done <- result{code, out.String(), errb.String()}
		}()
		<-in.read
		return func() result {
			pw.Write([]byte("dump"))
			pw.Close()
			return <-done
		}
	}
	run := func(node string) result {
		var out, errb bytes.Buffer
		code := a.NodeSession(t.Context(), node, a.Config().Nodes[node].Perms(), false, "snapshots", strings.NewReader(""), &out, &errb)
		return result{code, out.String(), errb.String()}
	}

	releaseLyra := hold("lyra")
	if r := run("lyra"); r != (result{1, "", "cairn: node lyra has 1 sessions open already (the limit is 1)\n"}) {
		t.Errorf("lyra's second session: %+v", r)
	}
	releaseVega := hold("vega") // vega may have 2; the appliance now serves 2
	if r := run("vega"); r != (result{1, "", "cairn: the appliance serves 2 sessions already (limits.sessions)\n"}) {
		t.Errorf("a third session: %+v", r)
	}
	if r := releaseLyra(); r.code != 0 || !strings.HasPrefix(r.stdout, "snapshot ") {
		t.Errorf("lyra's push: %+v", r)
	}
	if r := run("vega"); r.code != 0 {
		t.Errorf("vega's second session, once lyra's ended: %+v", r)
	}
	if r := releaseVega(); r.code != 0 {
		t.Errorf("vega's push: %+v", r)
	}
	if n := a.active(); n != 0 {
		t.Errorf("%d sessions still counted", n)
	}
}
