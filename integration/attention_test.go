package integration

import (
	"encoding/json"
	"fmt"
	"path/filepath"
	"regexp"
	"strings"
	"testing"

	"github.com/cairnbackup/cairn/integration/apptest"
)

// A configured node, or an expected node/plan, that never backed up needs
// attention in the staleness job, status, metrics and the runbook
// (issue 13 item 3): before, staleness said "all 1 node/plans backed up
// on time" and status left orion out.
func TestNeverBackedUpNeedsAttention(t *testing.T) {
	e := newEnv(t)
	e.ok("init")
	lyra := newNode(t, "lyra", "push")
	orion := newNode(t, "orion", "push")
	vega := newNode(t, "vega", "push, read")
	reader := newNode(t, "reader", "read") // cannot back up: not expected to
	metricsPort := apptest.FreePort(t)
	a := e.serveWith(fmt.Sprintf(`jobs:
  staleness: {schedule: "@hourly"}
expect: {orion/db: 1d, lyra: 26h}
metrics: 127.0.0.1:%d
`, metricsPort), lyra, orion, vega, reader)
	src := filepath.Join(e.dir, "src")
	writeSource(t, src)
	if r := a.push(lyra, nil, "--plan", "files", src); r.code != 0 {
		t.Fatalf("push: %s", r.stderr)
	}

	r := e.run(nil, "jobs", "run", "staleness")
	if r.code != 5 || !regexp.MustCompile(`^staleness: attention \([0-9.]+m?s\) missed backups: orion/db \(never backed up\), vega \(never backed up\)\n$`).MatchString(r.stdout) {
		t.Fatalf("staleness: exit %d\n%s%s", r.code, r.stdout, r.stderr)
	}

	r = e.run(nil, "status")
	rows := regexp.MustCompile(`(?m)^(orion/db|vega) +never +- +- +0 +- +- +-$`).FindAllString(r.stdout, -1)
	if r.code != 5 || len(rows) != 2 || !strings.HasSuffix(r.stdout, `
needs attention:
  - orion/db: never backed up (expected every 1d)
  - vega: never backed up (a node in the configuration)
`) {
		t.Fatalf("status: exit %d\n%s%s", r.code, r.stdout, r.stderr)
	}
	var st struct {
		Never []struct {
			Node     string `json:"node"`
			Plan     string `json:"plan"`
			Expected int64  `json:"expected_ns"`
		} `json:"never"`
	}
	r = e.run(nil, "status", "--json")
	if err := json.Unmarshal([]byte(r.stdout), &st); err != nil || r.code != 5 || len(st.Never) != 2 ||
		st.Never[0].Node != "orion" || st.Never[0].Plan != "db" || st.Never[0].Expected != 86400e9 || st.Never[1].Node != "vega" || st.Never[1].Plan != "" {
		t.Fatalf("status --json: exit %d %v %+v\n%s", r.code, err, st, r.stdout)
	}

	m := scrape(t, metricsPort)
	for _, want := range []string{
		`cairn_backup_missing{node="orion",paths="",plan="db"} 1`,
		`cairn_snapshots{node="orion",paths="",plan="db"} 0`,
		`cairn_backup_missing{node="vega",paths="",plan=""} 1`,
		`cairn_backup_missing{node="lyra",paths="` + src + `",plan="files"} 0`,
	} {
		if !strings.Contains(m, want+"\n") {
			t.Errorf("metrics lack %q:\n%s", want, m)
		}
	}
	// A read-only node cannot back up: it is never missing a backup
	// (its push counters are there, at zero, like every node's).
	if strings.Contains(m, `cairn_backup_missing{node="reader"`) || strings.Contains(m, `cairn_snapshots{node="reader"`) {
		t.Errorf("metrics expect a backup of the read-only node:\n%s", m)
	}

	book := e.ok("runbook")
	for _, want := range []string{
		"## Node orion\n\n",
		"\n- **orion/db has never backed up**: there is no snapshot to restore.\n\n",
		"## Node vega\n\n",
		"\n- **vega has never backed up**: there is no snapshot to restore.\n\n",
		"\n- orion/db: never backed up (expected every 1d)\n",
	} {
		if !strings.Contains(book, want) {
			t.Errorf("runbook lacks %q:\n%s", want, book)
		}
	}
}
