package integration

import (
	"encoding/json"
	"fmt"
	"math/rand/v2"
	"os"
	"os/exec"
	"path/filepath"
	"regexp"
	"strings"
	"testing"

	"github.com/cairnbackup/cairn/integration/testenv"
)

// corruptGitRepo makes a git repository in dir with forty commits packed
// into one pack, then flips a byte in the middle of the pack: git fsck
// finds the damage, though every file backs up and restores byte for
// byte.
func corruptGitRepo(t *testing.T, git, dir string) {
	t.Helper()
	if err := os.MkdirAll(dir, 0o755); err != nil {
		t.Fatal(err)
	}
	run := func(args ...string) {
		t.Helper()
		cmd := exec.Command(git, args...)
		cmd.Dir = dir
		cmd.Env = append(os.Environ(), "GIT_CONFIG_GLOBAL=/dev/null", "GIT_CONFIG_NOSYSTEM=1",
			"GIT_AUTHOR_NAME=drill", "GIT_AUTHOR_EMAIL=drill@example.org", "GIT_COMMITTER_NAME=drill", "GIT_COMMITTER_EMAIL=drill@example.org")
		if out, err := cmd.CombinedOutput(); err != nil {
			t.Fatalf("git %v: %v\n%s", args, err, out)
		}
	}
	run("init", "-q")
	rng := rand.New(rand.NewPCG(13, 4))
	for i := range 40 {
		b := make([]byte, 15000)
		for j := range b {
			b[j] = "abcdefghijklmnopqrstuvwxyz0123456789\n"[rng.IntN(37)]
		}
		name := fmt.Sprintf("f%02d.txt", i)
		if err := os.WriteFile(filepath.Join(dir, name), b, 0o644); err != nil {
			t.Fatal(err)
		}
		run("add", name)
		run("commit", "-q", "-m", name)
	}
	run("gc", "-q")
	packs, _ := filepath.Glob(filepath.Join(dir, ".git", "objects", "pack", "*.pack"))
	if len(packs) != 1 {
		t.Fatalf("packs %v", packs)
	}
	os.Chmod(packs[0], 0o644)
	b, err := os.ReadFile(packs[0])
	if err != nil {
		t.Fatal(err)
	}
	b[len(b)/2] ^= 0xff
	if err := os.WriteFile(packs[0], b, 0o644); err != nil {
		t.Fatal(err)
	}
}

// A drill of a git repository whose pack is corrupt (a real git fsck on
// a real flipped byte): the failure reason keeps "pack checksum mismatch",
// which git prints first (before, only the last 300 characters were kept
// and it was cut); the notify JSON carries the reason; status names it
// and the command to read the report; cairn drills ID shows the report
// whole, in text and JSON (issue 13 item 4).
func TestDrillReportOfCorruptGitPack(t *testing.T) {
	git := testenv.RequireProgram(t, "git", "git")
	e := newEnv(t)
	e.ok("init")
	src := filepath.Join(e.dir, "src")
	app := filepath.Join(src, "code", "app")
	corruptGitRepo(t, git, app)
	e.ok("backup", "--node", "lyra", "--plan", "git", src)
	snap := e.snapshots()[0].ID
	scratch := t.TempDir()
	notified := filepath.Join(e.dir, "notified.json")
	conf := fmt.Sprintf("jobs:\n  drill: {scratch: %s}\nnotify: cat > %s\n", scratch, notified)
	if err := os.WriteFile(e.repo+".yaml", []byte(conf), 0o600); err != nil {
		t.Fatal(err)
	}
	if r := e.run(nil, "jobs", "run", "drill"); r.code != 5 || !strings.HasPrefix(r.stdout, "drill: attention") {
		t.Fatalf("drill job: exit %d\n%s%s", r.code, r.stdout, r.stderr)
	}

	// The reason: the probe, its exit status, then git's first error
	// lines (the pack checksum first), then its last lines.
	reasonRE := `git fsck: exit status (\d+): error: ` + regexp.QuoteMeta(scratch) + `/cairn-drill-[0-9a-f]{8}-\d+` + regexp.QuoteMeta(app) +
		`/\.git/objects/pack/pack-[0-9a-f]{40}\.pack pack checksum mismatch \| error: [^|]+ \| `
	var run struct {
		Status string `json:"status"`
		Result struct {
			Detail []struct {
				Group    string `json:"group"`
				Snapshot string `json:"snapshot"`
				Report   string `json:"report"`
				Result   string `json:"result"`
				Reason   string `json:"reason"`
			} `json:"detail"`
		} `json:"result"`
	}
	if err := json.Unmarshal(mustRead(t, notified), &run); err != nil || run.Status != "attention" || len(run.Result.Detail) != 1 {
		t.Fatalf("notified: %v %+v", err, run)
	}
	item := run.Result.Detail[0]
	if item.Group != "lyra/git ["+src+"]" || item.Snapshot != snap || item.Result != "failed" ||
		!regexp.MustCompile(`^`+regexp.QuoteMeta(app)+`: `+reasonRE).MatchString(item.Reason) {
		t.Fatalf("notified drill %+v", item)
	}
	report := item.Report

	// cairn drills ID, as JSON: the stored report, its snapshot's paths
	// and verdict; the probe's command and exit code.
	var rep struct {
		ID       string   `json:"id"`
		Snapshot string   `json:"snapshot"`
		Node     string   `json:"node"`
		Plan     string   `json:"plan"`
		Result   string   `json:"result"`
		Files    int      `json:"files"`
		Paths    []string `json:"paths"`
		Failures []struct {
			Path   string `json:"path"`
			Reason string `json:"reason"`
		} `json:"failures"`
		Probes []struct {
			Name    string `json:"name"`
			Target  string `json:"target"`
			Command string `json:"command"`
			Exit    *int   `json:"exit"`
			OK      bool   `json:"ok"`
		} `json:"probes"`
		SnapshotDrill struct {
			Result string `json:"result"`
			Report string `json:"report"`
		} `json:"snapshot_drill"`
	}
	if err := json.Unmarshal([]byte(e.ok("drills", report[:8], "--json")), &rep); err != nil {
		t.Fatal(err)
	}
	if rep.ID != report || rep.Snapshot != snap || rep.Node != "lyra" || rep.Plan != "git" || rep.Result != "failed" ||
		len(rep.Paths) != 1 || rep.Paths[0] != src || rep.SnapshotDrill.Result != "drilled-failed" || rep.SnapshotDrill.Report != report ||
		len(rep.Failures) != 1 || rep.Failures[0].Path != app || len(rep.Probes) != 1 {
		t.Fatalf("drills --json: %+v", rep)
	}
	m := regexp.MustCompile(`^` + reasonRE).FindStringSubmatch(rep.Failures[0].Reason)
	p := rep.Probes[0]
	if m == nil || p.Name != "git fsck" || p.Target != app || p.OK || p.Exit == nil || fmt.Sprint(*p.Exit) != m[1] ||
		!regexp.MustCompile(`^git -c core\.fsmonitor=false --git-dir=`+regexp.QuoteMeta(scratch)+`/cairn-drill-[0-9a-f]{8}-\d+`+regexp.QuoteMeta(app)+`/\.git fsck --full$`).MatchString(p.Command) {
		t.Fatalf("drills --json: reason %q, probe %+v", rep.Failures[0].Reason, p)
	}

	// As text.
	out := e.ok("drills", report[:8])
	when := `\d{4}-\d\d-\d\d \d\d:\d\d:\d\d \S+`
	want := `^drill report ` + report + `
snapshot:  ` + snap + ` \(lyra/git\) of ` + when + `
paths:     ` + regexp.QuoteMeta(src) + `
started:   ` + when + `
finished:  ` + when + `
recovery:  [0-9.]+ s to restore and verify ` + fmt.Sprint(rep.Files) + ` files, [0-9.]+ [KM]iB \([0-9.]+ MB/s\)
files:     ` + fmt.Sprint(rep.Files) + ` compared with the SHA-256 and metadata recorded at backup: all identical
probes:
  FAIL git fsck ` + regexp.QuoteMeta(app) + ` \([0-9.]+ s\)
       command: ` + regexp.QuoteMeta(p.Command) + `
       exit:    ` + m[1] + `
       \| error: \S+ pack checksum mismatch
(       \| .*
)+failures:
  ` + regexp.QuoteMeta(app+": "+rep.Failures[0].Reason) + `
verdict:   failed \(1 failure\); the snapshot's newest drill, so it is drilled-failed
$`
	if !regexp.MustCompile(want).MatchString(out) {
		t.Fatalf("drills %s:\n%s", report[:8], out)
	}

	// Status needs attention, with the reason and where to read more.
	r := e.run(nil, "status")
	att := "  - lyra/git [" + src + "]: the last drill (report " + report[:8] + ", snapshot " + snap[:8] + ") failed: " + app + ": "
	if r.code != 5 || !strings.Contains(r.stdout, att) || !strings.Contains(r.stdout, "pack checksum mismatch") || !strings.Contains(r.stdout, "(cairn drills "+report[:8]+")\n") {
		t.Fatalf("status: exit %d\n%s", r.code, r.stdout)
	}

	// Prefixes as elsewhere.
	for _, c := range []struct{ ref, msg string }{
		{"zz", `cairn: drill report "zz": give at least 4 hex digits of its id, or latest` + "\n"},
		{"ffffffff", "cairn: drill report ffffffff: not found\n"},
	} {
		if report[:8] == "ffffffff" {
			break
		}
		if r := e.run(nil, "drills", c.ref); r.code != 1 || r.stderr != c.msg {
			t.Errorf("drills %s: exit %d, %q", c.ref, r.code, r.stderr)
		}
	}
	if latest := e.ok("drills", "latest"); latest != out {
		t.Errorf("drills latest:\n%s", latest)
	}
}

// One answer per snapshot (issue 13 item 4): a snapshot that passed a
// drill and then failed one (its pack damaged) is drilled-failed in
// cairn snapshots, status (LAST DRILL failed, PROVEN none: before, it
// showed the snapshot as proven), the runbook (never "passed" and
// "FAILED" together) and cairn drills of either report.
func TestDrillVerdictOnePerSnapshot(t *testing.T) {
	e := newEnv(t)
	e.ok("init")
	src := filepath.Join(e.dir, "src")
	writeSource(t, src)
	e.ok("backup", "--node", "lyra", "--plan", "files", src)
	snap := e.snapshots()[0].ID
	var passed, failed struct {
		ID string `json:"id"`
	}
	if err := json.Unmarshal([]byte(e.ok("drill", "latest", "--json")), &passed); err != nil {
		t.Fatal(err)
	}
	damageLargestPack(t, e.repo)
	r := e.run(nil, "drill", "latest", "--json")
	if err := json.Unmarshal([]byte(r.stdout), &failed); err != nil || r.code != 4 {
		t.Fatalf("drill after damage: exit %d %v\n%s", r.code, err, r.stderr)
	}

	if out := e.ok("snapshots"); !strings.Contains(out, " drilled-failed "+failed.ID[:8]+"\n") {
		t.Errorf("snapshots:\n%s", out)
	}
	r = e.run(nil, "status")
	row := regexp.MustCompile(`(?m)^lyra/files \[` + regexp.QuoteMeta(src) + `\] .* (\S+) (\S+ \S+ \S+) +[0-9.]+ s +(\S+)$`).FindStringSubmatch(r.stdout)
	if r.code != 5 || row == nil || row[1] != "failed" || row[3] != "-" {
		t.Fatalf("status: exit %d, row %q\n%s", r.code, row, r.stdout)
	}
	book := e.ok("runbook")
	if strings.Contains(book, "Proven restore point") || strings.Contains(book, "drill "+passed.ID[:8]+" passed") ||
		!strings.Contains(book, "- **No snapshot of this source passed its newest drill.**") ||
		!strings.Contains(book, "- The last drill ("+failed.ID[:8]+", snapshot "+snap[:8]+") FAILED: ") {
		t.Fatalf("runbook:\n%s", book)
	}
	if out := e.ok("drills", passed.ID[:8]); !strings.HasSuffix(out, "\nverdict:   ok; the snapshot's newest drill is report "+failed.ID[:8]+", so it is drilled-failed\n") {
		t.Errorf("drills %s:\n%s", passed.ID[:8], out)
	}
	if out := e.ok("drills", failed.ID[:8]); !regexp.MustCompile(`\nverdict:   failed \(\d+ failures?\); the snapshot's newest drill, so it is drilled-failed\n$`).MatchString(out) {
		t.Errorf("drills %s:\n%s", failed.ID[:8], out)
	}
}
