package integration

import (
	"fmt"
	"math/rand/v2"
	"os"
	"os/exec"
	"path/filepath"
	"regexp"
	"slices"
	"strings"
	"testing"

	"github.com/cairnbackup/cairn/integration/testenv"
	"github.com/cairnbackup/cairn/repo/repotest"
)

// drillSource writes a tree with a git work tree (one commit), a SQLite
// database with rows, a plain SQL dump and an incompressible file.
func drillSource(t *testing.T, src string) {
	t.Helper()
	git := testenv.RequireProgram(t, "git", "git")
	sqlite := testenv.RequireProgram(t, "sqlite3", "sqlite3")
	noise := make([]byte, 256<<10)
	rng := rand.New(rand.NewPCG(5, 6))
	for i := range noise {
		noise[i] = byte(rng.Uint32())
	}
	repotest.WriteTree(t, src, map[string]string{
		"code/app/README": "the app\n",
		"db/dump.sql":     strings.Repeat("INSERT INTO t VALUES (1, 'x');\n", 1000),
		"media/noise.bin": string(noise),
	})
	run := func(dir, stdin, prog string, args ...string) {
		t.Helper()
		cmd := exec.Command(prog, args...)
		cmd.Dir = dir
		cmd.Stdin = strings.NewReader(stdin)
		cmd.Env = append(os.Environ(), "GIT_CONFIG_GLOBAL=/dev/null", "GIT_CONFIG_NOSYSTEM=1",
			"GIT_AUTHOR_NAME=drill", "GIT_AUTHOR_EMAIL=drill@example.org", "GIT_COMMITTER_NAME=drill", "GIT_COMMITTER_EMAIL=drill@example.org")
		if out, err := cmd.CombinedOutput(); err != nil {
			t.Fatalf("%s %v: %v\n%s", prog, args, err, out)
		}
	}
	app := filepath.Join(src, "code", "app")
	run(app, "", git, "init", "-q")
	run(app, "", git, "add", "README")
	run(app, "", git, "commit", "-q", "-m", "first")
	var sql strings.Builder
	sql.WriteString("CREATE TABLE items (id INTEGER PRIMARY KEY, name TEXT);\nBEGIN;\n")
	for i := range 3000 {
		fmt.Fprintf(&sql, "INSERT INTO items (name) VALUES ('item %d %x');\n", i, rng.Uint64())
	}
	sql.WriteString("COMMIT;\n")
	run(src, sql.String(), sqlite, filepath.Join(src, "db", "app.sqlite"))
}

type drillJSON struct {
	ID       string `json:"id"`
	Snapshot string `json:"snapshot"`
	Node     string `json:"node"`
	Plan     string `json:"plan"`
	Result   string `json:"result"`
	Files    uint64 `json:"files"`
	Failures []struct {
		Path   string `json:"path"`
		Reason string `json:"reason"`
	} `json:"failures"`
	Probes []struct {
		Name   string `json:"name"`
		Target string `json:"target"`
		OK     bool   `json:"ok"`
		Output string `json:"output"`
	} `json:"probes"`
}

// cairn drill restores, verifies and probes a snapshot and keeps a
// report; after a pack is damaged it fails with exit code 4 naming the
// file; cairn drills lists both reports.
func TestDrill(t *testing.T) {
	e := newEnv(t)
	e.ok("init")
	src := filepath.Join(e.dir, "src")
	drillSource(t, src)
	e.ok("backup", "--node", "lyra", "--plan", "srv", src)
	snap := e.snapshots()[0].ID
	tmp := t.TempDir() // the default scratch goes in TMPDIR
	files := 0
	filepath.Walk(src, func(_ string, fi os.FileInfo, err error) error {
		if err == nil && fi.Mode().IsRegular() {
			files++
		}
		return nil
	})

	r := e.run([]string{"TMPDIR=" + tmp}, "drill", "latest", "--node", "lyra")
	if r.code != 0 {
		t.Fatalf("drill: exit %d\n%s%s", r.code, r.stdout, r.stderr)
	}
	want := regexp.MustCompile(`^drill of snapshot ` + snap[:8] + ` \(lyra/srv\): ok
restored and verified ` + fmt.Sprint(files) + ` files, [0-9.]+ KiB in [0-9.]+ s \([0-9.]+ MB/s\)
probes:
  OK  git fsck +` + regexp.QuoteMeta(src) + `/code/app +[0-9.]+ s
  OK  sqlite integrity_check  ` + regexp.QuoteMeta(src) + `/db/app.sqlite  [0-9.]+ s
report [0-9a-f]{8} saved
$`)
	if !want.MatchString(r.stdout) || r.stderr != "" {
		t.Errorf("summary:\n%s\nstderr: %s", r.stdout, r.stderr)
	}
	if entries, _ := os.ReadDir(tmp); len(entries) != 0 {
		t.Errorf("scratch left behind: %v", entries)
	}

	// Flip a byte every KiB of the data pack (the largest): every file
	// blob of more than a KiB is damaged, the trees are not.
	var biggest string
	var size int64
	filepath.Walk(filepath.Join(e.repo, "packs"), func(p string, fi os.FileInfo, err error) error {
		if err == nil && fi.Mode().IsRegular() && fi.Size() > size {
			biggest, size = p, fi.Size()
		}
		return nil
	})
	os.Chmod(biggest, 0o600)
	data, err := os.ReadFile(biggest)
	if err != nil {
		t.Fatal(err)
	}
	for i := 100; i < len(data)-100; i += 1 << 10 {
		data[i] ^= 0x20
	}
	if err := os.WriteFile(biggest, data, 0o600); err != nil {
		t.Fatal(err)
	}
	r = e.run([]string{"TMPDIR=" + tmp}, "drill", snap[:8])
	if r.code != 4 || !strings.HasPrefix(r.stdout, "drill of snapshot "+snap[:8]+" (lyra/srv): failed\n") || r.stderr != "" {
		t.Fatalf("damaged drill: exit %d\n%s%s", r.code, r.stdout, r.stderr)
	}
	for _, f := range []string{"/db/app.sqlite", "/media/noise.bin"} {
		if !regexp.MustCompile(`(?m)^  ` + regexp.QuoteMeta(src+f) + `: pack [0-9a-f]{8} offset \d+: blob data/[0-9a-f]{8}: message authentication failed$`).MatchString(r.stdout) {
			t.Errorf("%s not named:\n%s", f, r.stdout)
		}
	}
	if entries, _ := os.ReadDir(tmp); len(entries) != 0 {
		t.Errorf("scratch left behind: %v", entries)
	}

	// --scratch: the restore happens in a new directory inside it.
	own := t.TempDir()
	if r := e.run(nil, "drill", "latest", "--scratch", own, "--sample", "1"); r.code != 4 {
		t.Errorf("sampled drill: exit %d\n%s%s", r.code, r.stdout, r.stderr)
	}
	if entries, _ := os.ReadDir(own); len(entries) != 0 {
		t.Errorf("scratch left behind: %v", entries)
	}

	var list []drillJSON
	if err := jsonUnmarshal(e.ok("drills", "--json"), &list); err != nil {
		t.Fatal(err)
	}
	if len(list) != 3 {
		t.Fatalf("%d reports listed", len(list))
	}
	newest, failed, ok := list[0], list[1], list[2]
	if ok.Result != "ok" || ok.Snapshot != snap || ok.Node != "lyra" || ok.Plan != "srv" || ok.Files != uint64(files) ||
		len(ok.Failures) != 0 || len(ok.Probes) != 2 || !ok.Probes[0].OK || !ok.Probes[1].OK {
		t.Errorf("ok report %+v", ok)
	}
	if failed.Result != "failed" || failed.Snapshot != snap || len(failed.Failures) == 0 || newest.Result != "failed" {
		t.Errorf("failed reports %+v %+v", failed, newest)
	}
	named := false
	for _, f := range failed.Failures {
		named = named || f.Path == src+"/db/app.sqlite" && strings.Contains(f.Reason, "message authentication failed")
	}
	if !named {
		t.Errorf("failures %+v", failed.Failures)
	}

	table := e.ok("drills")
	lines := strings.Split(strings.TrimSpace(table), "\n")
	if len(lines) != 4 || !strings.HasPrefix(lines[0], "ID ") ||
		!regexp.MustCompile(`^`+ok.ID[:8]+` +\d{4}-\d\d-\d\d \d\d:\d\d:\d\d \S+ +`+snap[:8]+` +lyra/srv +ok +[0-9.]+ +`+fmt.Sprint(files)+`$`).MatchString(lines[3]) {
		t.Errorf("drills:\n%s", table)
	}
}

// cairn drill by hand runs the probes: the configuration names for the
// snapshot's node/plan, as the scheduled drill job does; --config names
// another configuration.
func TestDrillRunsConfiguredProbes(t *testing.T) {
	e := newEnv(t)
	e.ok("init")
	src := filepath.Join(e.dir, "src")
	if err := os.MkdirAll(src, 0o755); err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(filepath.Join(src, "a.txt"), []byte("a\n"), 0o644); err != nil {
		t.Fatal(err)
	}
	e.ok("backup", "--node", "lyra", "--plan", "srv", src)
	conf := "jobs:\n  drill:\n    probes:\n      lyra/srv: \"echo probe-says-no; false\"\n"
	if err := os.WriteFile(e.repo+".yaml", []byte(conf), 0o600); err != nil {
		t.Fatal(err)
	}
	r := e.run(nil, "drill", "latest", "--json")
	var rep drillJSON
	if err := jsonUnmarshal(r.stdout, &rep); r.code != 4 || err != nil {
		t.Fatalf("drill: exit %d %v\n%s%s", r.code, err, r.stdout, r.stderr)
	}
	if rep.Result != "failed" || len(rep.Probes) != 1 || rep.Probes[0].OK || rep.Probes[0].Output != "probe-says-no" || rep.Probes[0].Target != "echo probe-says-no; false" {
		t.Fatalf("report %+v", rep)
	}
	// Another configuration without probes: the drill passes.
	other := filepath.Join(e.dir, "other.yaml")
	if err := os.WriteFile(other, []byte("jobs: {}\n"), 0o600); err != nil {
		t.Fatal(err)
	}
	snap := e.snapshots()[0].ID
	markOf := func() (string, string) {
		var list []struct {
			ID    string `json:"id"`
			Drill *struct {
				Result string `json:"result"`
				Report string `json:"report"`
			} `json:"drill"`
		}
		if err := jsonUnmarshal(e.ok("snapshots", "--json"), &list); err != nil || len(list) != 1 || list[0].Drill == nil {
			t.Fatalf("snapshots --json: %v %+v", err, list)
		}
		return list[0].Drill.Result, list[0].Drill.Report
	}
	if res, report := markOf(); res != "drilled-failed" || report != rep.ID {
		t.Errorf("after the failed drill: %s %s, want drilled-failed %s", res, report, rep.ID)
	}
	r = e.run(nil, "drill", "latest", "--config", other, "--json")
	var passed drillJSON
	if err := jsonUnmarshal(r.stdout, &passed); r.code != 0 || err != nil || passed.Result != "ok" {
		t.Fatalf("drill --config: exit %d %v\n%s%s", r.code, err, r.stdout, r.stderr)
	}
	if res, report := markOf(); res != "drilled-ok" || report != passed.ID {
		t.Errorf("after the passing drill: %s %s, want drilled-ok %s", res, report, passed.ID)
	}
	table := strings.Split(strings.TrimSpace(e.ok("snapshots")), "\n")
	if len(table) != 2 || !slices.Equal(strings.Fields(table[0]), []string{"ID", "TIME", "NODE", "PLAN", "SIZE", "EXCLUDED", "PATHS", "DRILL"}) ||
		!strings.HasSuffix(table[1], " "+src+"  drilled-ok "+passed.ID[:8]) || !strings.HasPrefix(table[1], snap[:8]+" ") {
		t.Errorf("snapshots:\n%s", strings.Join(table, "\n"))
	}
}
