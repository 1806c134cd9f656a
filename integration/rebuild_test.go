package integration

import (
	"fmt"
	"os"
	"os/exec"
	"os/user"
	"path/filepath"
	"regexp"
	"slices"
	"strconv"
	"strings"
	"syscall"
	"testing"

	"github.com/cairnbackup/cairn/integration/apptest"
	"github.com/cairnbackup/cairn/integration/testenv"
)

// pgCluster is a throwaway PostgreSQL server serving only a Unix socket
// in its own temporary directory, run as the postgres user.
type pgCluster struct {
	sock string // the socket directory (PGHOST)
	port int
}

// pgProgram finds a PostgreSQL server program: on the PATH, or where
// Debian's postgresql package puts it (/usr/lib/postgresql/N/bin).
func pgProgram(name string) (string, error) {
	if p, err := exec.LookPath(name); err == nil {
		return p, nil
	}
	found, _ := filepath.Glob("/usr/lib/postgresql/*/bin/" + name)
	slices.SortFunc(found, func(a, b string) int { // the newest version
		va, _ := strconv.Atoi(filepath.Base(filepath.Dir(filepath.Dir(a))))
		vb, _ := strconv.Atoi(filepath.Base(filepath.Dir(filepath.Dir(b))))
		return vb - va
	})
	if len(found) == 0 {
		return "", fmt.Errorf("%s is not installed (Debian: apt-get install postgresql)", name)
	}
	return found[0], nil
}

// startPostgres initialises and starts a cluster, stopped and removed at
// cleanup. Without PostgreSQL or the postgres user the test is skipped,
// except under CI=true, where it fails.
func startPostgres(t *testing.T) *pgCluster {
	t.Helper()
	testenv.RequireRoot(t, "initdb and pg_ctl run as the postgres user")
	missing := func(err error) { testenv.Missing(t, "PostgreSQL is missing: %v", err) }
	initdb, err := pgProgram("initdb")
	if err != nil {
		missing(err)
	}
	pgctl, err := pgProgram("pg_ctl")
	if err != nil {
		missing(err)
	}
	for _, p := range []string{"pg_dump", "pg_restore", "psql", "createdb"} {
		if _, err := exec.LookPath(p); err != nil {
			missing(fmt.Errorf("%s is not installed", p))
		}
	}
	u, err := user.Lookup("postgres")
	if err != nil {
		missing(fmt.Errorf("no postgres user: %w", err))
	}
	uid, _ := strconv.Atoi(u.Uid)
	gid, _ := strconv.Atoi(u.Gid)
	// The postgres user owns its directory: not below the test's own
	// temporary directory, which is root's alone.
	dir, err := os.MkdirTemp("", "cairn-pg-")
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { os.RemoveAll(dir) })
	c := &pgCluster{sock: filepath.Join(dir, "sock"), port: apptest.FreePort(t)}
	data := filepath.Join(dir, "data")
	for _, d := range []string{data, c.sock} {
		if err := os.Mkdir(d, 0o700); err != nil {
			t.Fatal(err)
		}
	}
	for _, d := range []string{dir, data, c.sock} {
		if err := os.Chown(d, uid, gid); err != nil {
			t.Fatal(err)
		}
	}
	asPostgres := func(prog string, args ...string) error {
		cmd := exec.Command(prog, args...)
		cmd.Dir = dir
		cmd.Env = []string{"PATH=/usr/bin:/bin", "HOME=" + dir, "LANG=C.UTF-8"}
		cmd.SysProcAttr = &syscall.SysProcAttr{Credential: &syscall.Credential{Uid: uint32(uid), Gid: uint32(gid)}}
		out, err := cmd.CombinedOutput()
		if err != nil {
			return fmt.Errorf("%s %s: %v\n%s", prog, strings.Join(args, " "), err, out)
		}
		return nil
	}
	if err := asPostgres(initdb, "-D", data, "-U", "postgres", "--auth=trust", "--encoding=UTF8", "--no-sync"); err != nil {
		t.Fatal(err)
	}
	opts := fmt.Sprintf("-p %d -k %s -c listen_addresses= -c fsync=off", c.port, c.sock)
	if err := asPostgres(pgctl, "-D", data, "-o", opts, "-l", filepath.Join(dir, "log"), "-w", "start"); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() {
		if err := asPostgres(pgctl, "-D", data, "-m", "immediate", "-w", "stop"); err != nil {
			t.Error(err)
		}
	})
	return c
}

// env is what a client program needs to reach the cluster as postgres.
func (c *pgCluster) env() []string {
	return []string{"PGHOST=" + c.sock, "PGPORT=" + strconv.Itoa(c.port), "PGUSER=postgres"}
}

// psql runs SQL in database db and returns its unaligned output.
func (c *pgCluster) psql(t *testing.T, db, sql string) string {
	t.Helper()
	cmd := exec.Command("psql", "-X", "-v", "ON_ERROR_STOP=1", "-tA", "--dbname", db, "-c", sql)
	cmd.Env = append(os.Environ(), c.env()...)
	out, err := cmd.CombinedOutput()
	if err != nil {
		t.Fatalf("psql %s: %v\n%s", sql, err, out)
	}
	return strings.TrimSpace(string(out))
}

func gitIn(t *testing.T, dir string, args ...string) string {
	t.Helper()
	cmd := exec.Command("git", append([]string{"-C", dir}, args...)...)
	cmd.Env = append(os.Environ(), "GIT_AUTHOR_NAME=a", "GIT_AUTHOR_EMAIL=a@example.org", "GIT_COMMITTER_NAME=a", "GIT_COMMITTER_EMAIL=a@example.org",
		"GIT_CONFIG_NOSYSTEM=1", "HOME="+dir)
	out, err := cmd.CombinedOutput()
	if err != nil {
		t.Fatalf("git %v: %v\n%s", args, err, out)
	}
	return strings.TrimSpace(string(out))
}

// runbookVar is a variable line a runbook block starts with.
var runbookVar = regexp.MustCompile(`^([A-Z]+)=(\S*)(\s+#.*)?$`)

// A rebuild from scratch by the runbook alone: a node pushes a git
// source (a work tree and a bare repository), a files source and a
// PostgreSQL database (pg_dump -Fc) through the real appliance; a drill
// writes runbook.md; every command of it then runs, with only its
// variables set to scratch directories (the rebuilt node's /, the
// appliance's staging space) and a fresh PostgreSQL server. Both ways
// must work: on the node (restore --from with its key and the pinned
// host key) and on the appliance (then rsync to the node). Files come
// back identical, the repositories pass git fsck, the database has its
// rows (issue 13 items 6, 7, 8).
func TestRunbookRebuild(t *testing.T) {
	old := startPostgres(t)
	testenv.RequireProgram(t, "git", "git")
	testenv.RequireProgram(t, "rsync", "rsync")
	bash := testenv.RequireProgram(t, "bash", "bash")
	e := newEnv(t)
	e.vars = []string{"CAIRN_REPO=" + e.repo} // key file mode: the runbook's commands need no passphrase
	e.ok("init")
	lyra := newNode(t, "lyra", "push, read")
	a := e.serveWith("jobs:\n  drill: {schedule: \"0 4 * * *\"}\n", lyra)

	// The node as it was.
	was := filepath.Join(e.dir, "lyra")
	app := filepath.Join(was, "srv", "git", "app")
	repotestWrite(t, app, map[string]string{"README": "our app\n", "src/main.go": "package main\n"})
	gitIn(t, app, "init", "-q", "-b", "main")
	gitIn(t, app, "add", "-A")
	gitIn(t, app, "commit", "-q", "-m", "first")
	os.WriteFile(filepath.Join(app, "README"), []byte("our app, second edition\n"), 0o644)
	gitIn(t, app, "commit", "-q", "-am", "second")
	gitIn(t, filepath.Dir(app), "clone", "-q", "--bare", app, "site.git")
	etc := filepath.Join(was, "etc", "app")
	repotestWrite(t, etc, map[string]string{"config.yaml": "port: 8080\n", "tls/key.pem": "secret\n"})
	os.Chmod(filepath.Join(etc, "tls", "key.pem"), 0o600)
	old.psql(t, "postgres", "CREATE DATABASE shop")
	old.psql(t, "shop", `CREATE TABLE orders (id serial PRIMARY KEY, item text NOT NULL, amount numeric(10,2));
		INSERT INTO orders (item, amount) SELECT 'item ' || i, i * 1.25 FROM generate_series(1, 500) i;
		CREATE INDEX orders_item ON orders (item); CREATE VIEW big AS SELECT * FROM orders WHERE amount > 100`)
	want := old.psql(t, "shop", "SELECT count(*), sum(amount), count(*) FILTER (WHERE id IN (SELECT id FROM big)) FROM orders")
	plan := filepath.Join(e.dir, "plan.yaml")
	os.WriteFile(plan, []byte(fmt.Sprintf(`sources:
  - name: code
    class: git
    why: our code
    paths: [%s]
  - name: etc
    class: config
    why: the application's configuration
    paths: [%s]
  - name: shop
    class: database
    why: the orders
    command: pg_dump -Fc -h %s -p %d -U postgres shop
    file: shop.dump
`, filepath.Dir(app), etc, old.sock, old.port)), 0o644)
	if r := a.push(lyra, nil, "--plan", plan); r.code != 0 {
		t.Fatalf("push: %d %s %s", r.code, r.stdout, r.stderr)
	}
	if out := e.ok("jobs", "run", "drill"); !strings.HasPrefix(out, "drill: ok") || !strings.Contains(out, "3 drills, 0 failed") {
		t.Fatalf("drill job: %q", out)
	}
	book := string(mustRead(t, filepath.Join(e.repo, "runbook.md")))
	pin := "--host-key " + a.HostKey
	if !strings.Contains(book, fmt.Sprintf("cairn restore --from ssh://lyra@127.0.0.1:%d ", a.Port)) || !strings.Contains(book, pin) {
		t.Fatalf("the runbook does not restore on the node with the appliance's address and host key (%s):\n%s", pin, book)
	}
	for _, g := range []string{filepath.Join(app, ".git"), filepath.Join(filepath.Dir(app), "site.git")} {
		if !strings.Contains(book, `git -c core.fsmonitor=false --git-dir="$ROOT"/`+strings.TrimPrefix(g, "/")+" fsck --full\n") {
			t.Fatalf("the runbook does not check %s:\n%s", g, book)
		}
	}

	// The rebuilt node: a fresh system with a fresh database server.
	scratch := t.TempDir()
	root := filepath.Join(scratch, "node")   // the node's /, restored on the node
	copied := filepath.Join(scratch, "copy") // the node's /, copied from the appliance
	repotestWrite(t, root, map[string]string{"usr/bin/true": "#!/bin/sh\n", "etc/hostname": "lyra\n"})
	fresh := startPostgres(t)
	vars := map[string]func(old string) string{
		"KEY":  func(string) string { return lyra.Key.PrivatePath },
		"ROOT": func(string) string { return root },
		"DEST": func(string) string { return copied },
		"STAGE": func(old string) string {
			return filepath.Join(scratch, "stage", strings.ReplaceAll(strings.TrimPrefix(old, "/"), "/", "_"))
		},
	}
	blocks := shBlocks(book)
	if len(blocks) != 6 {
		t.Fatalf("%d sh blocks, want 6 (on the node and on the appliance, for 3 sources):\n%s", len(blocks), book)
	}
	env := append(cleanEnviron(), "PATH="+filepath.Dir(cairnBin)+":"+os.Getenv("PATH"))
	env = append(env, fresh.env()...)
	for i, b := range blocks {
		for j, line := range b {
			m := runbookVar.FindStringSubmatch(line)
			if m == nil {
				continue
			}
			set, ok := vars[m[1]]
			if !ok {
				t.Fatalf("block %d sets %s, which this test does not know:\n%s", i+1, m[1], strings.Join(b, "\n"))
			}
			b[j] = m[1] + "=" + set(m[2])
		}
		script := strings.Join(b, "\n") + "\n"
		cmd := exec.Command(bash, "-euo", "pipefail", "-c", script)
		cmd.Env, cmd.Dir = env, scratch
		out, err := cmd.CombinedOutput()
		if err != nil {
			t.Fatalf("block %d of the runbook failed: %v\n%s\noutput:\n%s", i+1, err, script, out)
		}
	}

	for _, dst := range []string{root, copied} {
		for _, src := range []string{filepath.Dir(app), etc} {
			repotestAssertSame(t, src, filepath.Join(dst, src))
		}
		for _, g := range []string{filepath.Join(app, ".git"), filepath.Join(filepath.Dir(app), "site.git")} {
			gitIn(t, dst, "--git-dir="+filepath.Join(dst, g), "fsck", "--full", "--strict")
			if got, want := gitIn(t, dst, "--git-dir="+filepath.Join(dst, g), "rev-parse", "main"), gitIn(t, app, "rev-parse", "main"); got != want {
				t.Fatalf("%s: main is %s, want %s", filepath.Join(dst, g), got, want)
			}
		}
	}
	if b, err := os.ReadFile(filepath.Join(root, "etc", "hostname")); err != nil || string(b) != "lyra\n" {
		t.Fatalf("the node's other files were touched: %q %v", b, err)
	}
	if got := fresh.psql(t, "shop", "SELECT count(*), sum(amount), count(*) FILTER (WHERE id IN (SELECT id FROM big)) FROM orders"); got != want {
		t.Fatalf("the restored database has %q, want %q", got, want)
	}
}

// shBlocks returns the lines of each fenced "sh" block of a runbook.
func shBlocks(book string) [][]string {
	var blocks [][]string
	var cur []string
	in := false
	for line := range strings.SplitSeq(book, "\n") {
		switch {
		case !in && line == "```sh":
			in, cur = true, nil
		case in && line == "```":
			in = false
			blocks = append(blocks, cur)
		case in:
			cur = append(cur, line)
		}
	}
	return blocks
}

// runbook --node names a node there is: an unknown one is a usage error
// (exit 2) naming the nodes (issue 13 item 9).
func TestRunbookUnknownNode(t *testing.T) {
	e := newEnv(t)
	e.ok("init")
	e.writeConfig(apptest.FreePort(t), newNode(t, "lyra", "push"), newNode(t, "vega", "push, read"))
	r := e.run(nil, "runbook", "--node", "nosuch")
	if r.code != 2 || r.stdout != "" || r.stderr != "cairn: runbook: unknown node nosuch; the nodes are lyra, vega\n" {
		t.Fatalf("runbook --node nosuch: exit %d %q %q", r.code, r.stdout, r.stderr)
	}
	out := e.ok("runbook", "--node", "vega")
	if !strings.Contains(out, "## Node vega\n\n") || !strings.Contains(out, "\n- **vega has never backed up**: there is no snapshot to restore.\n") {
		t.Fatalf("runbook --node vega:\n%s", out)
	}
}
