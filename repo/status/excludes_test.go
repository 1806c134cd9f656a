package status_test

import (
	"bytes"
	"strings"
	"testing"

	"github.com/cairnbackup/cairn/repo/snapshot"
	"github.com/cairnbackup/cairn/repo/status"
)

// The runbook says what exclude rules left out of the snapshot it
// restores, with how many entries each rule left out, so nobody expects
// a file back that was never backed up.
func TestRunbookNamesExcluded(t *testing.T) {
	st := goldenStatus()
	g := &st.Groups[1] // lyra/git, drilled: the runbook restores Last
	g.Last.Excludes = []snapshot.Exclude{{Rule: "--exclude-caches", Count: 1}, {Rule: `plan /etc/cairn/plan.yaml source git disposable "*.o"`, Count: 2}}
	g.DrilledOK = &g.Last
	var b bytes.Buffer
	if err := status.WriteRunbook(&b, st, status.RunbookOptions{Repo: "/srv/cairn/repo"}); err != nil {
		t.Fatal(err)
	}
	want := "- Left out of snapshot " + g.Last.ID.Short() + " by exclude rules (not restored below): 1 entry by `--exclude-caches`, 2 entries by `plan /etc/cairn/plan.yaml source git disposable \"*.o\"`\n"
	if !strings.Contains(b.String(), want) {
		t.Fatalf("runbook:\n%s\nwant the line\n%s", b.String(), want)
	}
	if n := strings.Count(b.String(), "Left out of snapshot"); n != 1 {
		t.Fatalf("%d such lines", n)
	}
}
