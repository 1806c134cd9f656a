package integration

import (
	"encoding/json"
	"fmt"
	"io"
	"net/http"
	"os"
	"path/filepath"
	"strings"
	"testing"

	"github.com/cairnbackup/cairn/integration/apptest"
)

// After a push and a drill, /metrics reports them; status, jobs and the
// runbook agree; a failing drill notifies with the run as JSON.
func TestJobsStatusMetricsNotify(t *testing.T) {
	e := newEnv(t)
	e.ok("init")
	lyra := newNode(t, "lyra", "push")
	metricsPort := apptest.FreePort(t)
	notified := filepath.Join(e.dir, "notified.json")
	src := filepath.Join(e.dir, "src")
	writeSource(t, src)
	a := e.serveWith(fmt.Sprintf(`jobs:
  drill: {schedule: "0 4 * * *"}
  verify: {schedule: "@daily", cycle: 30d}
expect: {default: 26h}
notify: cat > %s
metrics: 127.0.0.1:%d
`, notified, metricsPort), lyra)
	r := a.push(lyra, nil, "--json", "--plan", "files", src)
	if r.code != 0 {
		t.Fatalf("push: %s", r.stderr)
	}
	snap := parseBackupJSON(t, r.stdout).Snapshot
	out := e.ok("jobs", "run", "drill")
	if !strings.HasPrefix(out, "drill: ok") || !strings.Contains(out, "1 drills, 0 failed") {
		t.Fatalf("drill job: %q", out)
	}
	e.ok("jobs", "run", "verify")
	metrics := scrape(t, metricsPort)
	for _, want := range []string{
		`cairn_snapshots{node="lyra",paths="` + src + `",plan="files"} 1`,
		`cairn_backup_missing{node="lyra",paths="` + src + `",plan="files"} 0`,
		`cairn_drill_last_success{node="lyra",paths="` + src + `",plan="files"} 1`,
		`cairn_job_last_success{job="drill"} 1`,
		`cairn_job_last_success{job="verify"} 1`,
		`cairn_verify_coverage_ratio 1`,
		`cairn_verify_never_packs 0`,
		`cairn_snapshot_last_size_bytes{node="lyra",paths="` + src + `",plan="files"} 3.765751e+06`,
	} {
		if !strings.Contains(metrics, want+"\n") {
			t.Errorf("metrics lack %q:\n%s", want, metrics)
		}
	}
	// Status: all well, exit 0; the runbook names the drilled snapshot.
	out = e.ok("status")
	if !strings.Contains(out, "lyra/files") || !strings.HasSuffix(out, "all well\n") {
		t.Fatalf("status:\n%s", out)
	}
	book := string(mustRead(t, filepath.Join(e.repo, "runbook.md")))
	if !strings.Contains(book, "Proven restore point (retention keeps it): "+snap[:8]) || !strings.Contains(book, "cairn --repo "+e.repo+" restore "+snap[:12]+` --target "$STAGE"`) {
		t.Fatalf("runbook:\n%s", book)
	}
	if rb := e.ok("runbook"); rb[strings.Index(rb, "## Before"):] != book[strings.Index(book, "## Before"):] {
		t.Fatalf("cairn runbook differs from runbook.md")
	}
	// Damage the largest pack: the next drill fails, status needs
	// attention (exit 5), metrics say so, and notify got the run.
	damageLargestPack(t, e.repo)
	res := e.run(nil, "jobs", "run", "drill")
	if res.code != 5 || !strings.HasPrefix(res.stdout, "drill: attention") {
		t.Fatalf("drill after damage: %d %q %q", res.code, res.stdout, res.stderr)
	}
	a.WaitFor("notified")
	var run struct {
		Job    string `json:"job"`
		Status string `json:"status"`
		Result struct {
			Summary   string `json:"summary"`
			Attention bool   `json:"attention"`
		} `json:"result"`
	}
	if err := json.Unmarshal(mustRead(t, notified), &run); err != nil {
		t.Fatal(err)
	}
	if run.Job != "drill" || run.Status != "attention" || !run.Result.Attention || run.Result.Summary != "1 drills, 1 failed, "+run.Result.Summary[len("1 drills, 1 failed, "):] {
		t.Fatalf("notified run %+v", run)
	}
	st := e.run(nil, "status")
	if st.code != 5 || !strings.Contains(st.stdout, "lyra/files ["+src+"]: the last drill") {
		t.Fatalf("status after damage: %d\n%s", st.code, st.stdout)
	}
	if m := scrape(t, metricsPort); !strings.Contains(m, `cairn_drill_last_success{node="lyra",paths="`+src+`",plan="files"} 0`+"\n") {
		t.Fatalf("metrics after damage:\n%s", m)
	}
}

func scrape(t *testing.T, port int) string {
	resp, err := http.Get(fmt.Sprintf("http://127.0.0.1:%d/metrics", port))
	if err != nil {
		t.Fatal(err)
	}
	defer resp.Body.Close()
	b, _ := io.ReadAll(resp.Body)
	if resp.StatusCode != 200 {
		t.Fatalf("metrics: %s\n%s", resp.Status, b)
	}
	return string(b)
}

func damageLargestPack(t *testing.T, repo string) {
	var biggest string
	var size int64
	filepath.Walk(filepath.Join(repo, "packs"), func(p string, fi os.FileInfo, err error) error {
		if err == nil && fi.Mode().IsRegular() && fi.Size() > size {
			biggest, size = p, fi.Size()
		}
		return nil
	})
	f, err := os.OpenFile(biggest, os.O_RDWR, 0)
	if err != nil {
		t.Fatal(err)
	}
	for off := int64(64); off < size-64; off += 64 << 10 {
		f.WriteAt([]byte{0xde, 0xad}, off)
	}
	f.Close()
}
