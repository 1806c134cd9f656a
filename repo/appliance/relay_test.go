package appliance

import (
	"os"
	"path/filepath"
	"strings"
	"testing"
)

// A request over the socket runs only if it names the repository this
// appliance serves (the same directory, by any path); otherwise exit 2,
// naming both (a relayed node is told less: it learns no paths), a log
// line, and nothing run.
func TestSocketRequestNamesItsRepository(t *testing.T) {
	ta := newTestAppliance(t)
	mine := ta.r.Dir()
	other := t.TempDir()
	link := filepath.Join(t.TempDir(), "link")
	if err := os.Symlink(mine, link); err != nil {
		t.Fatal(err)
	}
	missing := filepath.Join(other, "none")
	for _, c := range []struct {
		repo   string
		code   int
		stderr string
	}{
		{other, 2, "cairn: this appliance serves the repository " + mine + ", not " + other + "; check --socket and CAIRN_SOCKET\n"},
		{missing, 2, "cairn: this appliance serves the repository " + mine + ", not " + missing + " (stat " + missing + ": no such file or directory); check --socket and CAIRN_SOCKET\n"},
		{"", 2, "cairn: the request names no repository (--repo or CAIRN_REPO); this appliance serves " + mine + "\n"},
		{mine, 0, ""},
		{link, 0, ""},
		{mine + "/", 0, ""},
	} {
		for _, req := range []*Request{
			{Kind: "operator", Args: []string{"forget", "--keep-last", "1"}, Repo: c.repo},
			{Kind: "node", Node: "boss", Command: "prune", Repo: c.repo},
		} {
			before := strings.Count(ta.log.String(), `msg="request refused"`)
			code, out, errs := ta.relay(t, req, "")
			calls := ta.op.taken()
			want := c.stderr
			if want != "" && req.Kind == "node" {
				want = "cairn: the forced command names a repository this appliance does not serve (its log says which)\n"
			}
			if code != c.code || errs != want {
				t.Errorf("%s request for %q: exit %d, stderr %q; want %d, %q", req.Kind, c.repo, code, errs, c.code, want)
			}
			refused := strings.Count(ta.log.String(), `msg="request refused"`) - before
			if c.code == 0 && (out != "operator ran\n" || len(calls) != 1 || refused != 0) || c.code != 0 && (out != "" || len(calls) != 0 || refused != 1) {
				t.Errorf("%s request for %q: stdout %q, operator ran %q, %d refusals logged", req.Kind, c.repo, out, calls, refused)
			}
		}
	}
}
