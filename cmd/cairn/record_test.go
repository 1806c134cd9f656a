package main

import (
	"archive/tar"
	"bytes"
	"context"
	"crypto/ed25519"
	"crypto/rand"
	"encoding/json"
	"encoding/pem"
	"fmt"
	"net"
	"os"
	"path/filepath"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/cairnbackup/cairn/repo"
	"github.com/cairnbackup/cairn/repo/appliance"
	"github.com/cairnbackup/cairn/repo/blob"
	"github.com/cairnbackup/cairn/repo/repotest"
	"github.com/cairnbackup/cairn/repo/snapshot"
	"golang.org/x/crypto/ssh"
)

// recordEnv is a repository served by an in-process appliance on a
// loopback port, with node lyra (push), for the three ways a snapshot is
// made: cairn backup here, cairn push over the embedded SSH server, and
// a node's push --stdin/--tar read by the appliance itself.
type recordEnv struct {
	t        *testing.T
	r        *repo.Repository
	addr     string
	identity string // lyra's private key file
	hostKey  string // the appliance's host key fingerprint
	signer   ssh.Signer
	// names replaces what differs from run to run in the records
	// (temporary paths, the host name) with a placeholder.
	names *strings.Replacer
	// anyBlobs leaves the number of blobs added out of the records: a
	// backup of paths stores the directories above them, whose times
	// change when anything on the machine writes in /tmp.
	anyBlobs bool
}

func newRecordEnv(t *testing.T) *recordEnv {
	t.Helper()
	r := repotest.New(t)
	dir := t.TempDir()
	_, priv, _ := ed25519.GenerateKey(rand.Reader)
	signer, err := ssh.NewSignerFromKey(priv)
	if err != nil {
		t.Fatal(err)
	}
	block, err := ssh.MarshalPrivateKey(priv, "lyra")
	if err != nil {
		t.Fatal(err)
	}
	identity := filepath.Join(dir, "id_ed25519")
	if err := os.WriteFile(identity, pem.EncodeToMemory(block), 0o600); err != nil {
		t.Fatal(err)
	}
	cfg := fmt.Sprintf("nodes:\n  lyra:\n    keys: [%q]\n    permissions: [push]\n", strings.TrimSpace(string(ssh.MarshalAuthorizedKey(signer.PublicKey()))))
	if err := os.WriteFile(filepath.Join(dir, "a.yaml"), []byte(cfg), 0o600); err != nil {
		t.Fatal(err)
	}
	fp, err := appliance.GenerateHostKey(filepath.Join(dir, "host_key"))
	if err != nil {
		t.Fatal(err)
	}
	a, err := appliance.New(appliance.Options{Repo: r, ConfigPath: filepath.Join(dir, "a.yaml"), HostKeyPath: filepath.Join(dir, "host_key"), SocketPath: filepath.Join(dir, "s.sock")})
	if err != nil {
		t.Fatal(err)
	}
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan struct{})
	go func() { a.Run(ctx, ln); close(done) }()
	t.Cleanup(func() { cancel(); <-done })
	return &recordEnv{t: t, r: r, addr: ln.Addr().String(), identity: identity, hostKey: fp, signer: signer}
}

// cairn runs the command line args in-process: backup on the
// repository (as the appliance runs an operator's command), push to the
// appliance over the built-in SSH client. It returns the exit code,
// standard output and standard error.
func (e *recordEnv) cairn(stdin []byte, args ...string) (int, string, string) {
	e.t.Helper()
	// Standard error takes the appliance's words (from the SSH
	// session) and a plan's commands' at once, as a file would.
	var stdout, stderr lockedBuffer
	g := &globalOptions{args: args, stdin: bytes.NewReader(stdin), stdout: &stdout, stderr: &stderr}
	switch args[0] {
	case "backup":
		g.shared, g.sharedDir = e.r, e.r.Place().String()
	case "push":
		g.args = append([]string{"push", "ssh://lyra@" + e.addr, "--identity", e.identity, "--host-key", e.hostKey}, args[1:]...)
	}
	code := run(e.t.Context(), g)
	return code, stdout.String(), stderr.String()
}

// lockedBuffer is a bytes.Buffer several goroutines may write.
type lockedBuffer struct {
	mu sync.Mutex
	b  bytes.Buffer
}

func (l *lockedBuffer) Write(p []byte) (int, error) {
	l.mu.Lock()
	defer l.mu.Unlock()
	return l.b.Write(p)
}

func (l *lockedBuffer) String() string {
	l.mu.Lock()
	defer l.mu.Unlock()
	return l.b.String()
}

// backup runs cairn backup ARGS on the repository, with stdin as its
// standard input, and fails the test unless it exits 0.
func (e *recordEnv) backup(stdin []byte, args ...string) {
	e.t.Helper()
	if code, stdout, stderr := e.cairn(stdin, append([]string{"backup"}, args...)...); code != 0 {
		e.t.Fatalf("backup %q: exit %d\n%s%s", args, code, stdout, stderr)
	}
}

// push runs cairn push ssh://lyra@ADDR ARGS with the built-in SSH client
// and fails the test unless it exits 0.
func (e *recordEnv) push(stdin []byte, args ...string) {
	e.t.Helper()
	if code, stdout, stderr := e.cairn(stdin, append([]string{"push"}, args...)...); code != 0 {
		e.t.Fatalf("push %q: exit %d\n%s%s", args, code, stdout, stderr)
	}
}

// nodePush runs COMMAND as node lyra over SSH (what `ssh lyra@appliance
// push --tar` does on a node without cairn).
func (e *recordEnv) nodePush(stdin []byte, command string) {
	e.t.Helper()
	c, err := ssh.Dial("tcp", e.addr, &ssh.ClientConfig{User: "lyra", Auth: []ssh.AuthMethod{ssh.PublicKeys(e.signer)},
		HostKeyCallback: ssh.InsecureIgnoreHostKey(), Timeout: 30 * time.Second})
	if err != nil {
		e.t.Fatal(err)
	}
	defer c.Close()
	s, err := c.NewSession()
	if err != nil {
		e.t.Fatal(err)
	}
	var stdout, stderr bytes.Buffer
	s.Stdin, s.Stdout, s.Stderr = bytes.NewReader(stdin), &stdout, &stderr
	if err := s.Run(command); err != nil {
		e.t.Fatalf("%s: %v\n%s%s", command, err, stdout.String(), stderr.String())
	}
}

// records returns the records of plan, oldest first, as JSON with what
// differs from run to run taken out: the time, the tree (checked to be
// set), the durations, the sizes of what was added (they include trees,
// which hold times), hook output; a parent is named by its position in
// the list ("#0"), an ID by "ID".
func (e *recordEnv) records(plan string) []string {
	e.t.Helper()
	list, err := e.r.Snapshots(e.t.Context(), snapshot.Filter{Node: "lyra", Plan: plan})
	if err != nil {
		e.t.Fatal(err)
	}
	var out []string
	for _, en := range list {
		sn := *en.Snapshot
		if sn.Tree.IsZero() || sn.Time.IsZero() || sn.Summary.Duration <= 0 {
			e.t.Errorf("snapshot %s: tree %s, time %s, duration %s", en.ID.Short(), sn.Tree, sn.Time, sn.Summary.Duration)
		}
		sn.Time, sn.Tree, sn.Summary.Duration = time.Time{}, blob.ID{}, 0
		sn.Summary.BytesAdded, sn.Summary.StoredAdded = 0, 0
		if e.anyBlobs {
			sn.Summary.BlobsAdded = 0
		}
		if sn.Scope != nil {
			sc := *sn.Scope
			sc.Hooks = nil
			for _, h := range sn.Scope.Hooks {
				h.Duration = 0
				sc.Hooks = append(sc.Hooks, h)
			}
			sn.Scope = &sc
		}
		b, err := json.Marshal(&sn)
		if err != nil {
			e.t.Fatal(err)
		}
		s := string(b)
		if sn.Parent != nil {
			for i, p := range list {
				s = strings.ReplaceAll(s, p.ID.String(), fmt.Sprintf("#%d", i))
			}
		}
		if e.names != nil {
			s = e.names.Replace(s)
		}
		out = append(out, s)
	}
	return out
}

func (e *recordEnv) expect(plan string, want ...string) {
	e.t.Helper()
	got := e.records(plan)
	if len(got) != len(want) {
		e.t.Errorf("plan %s: %d snapshots, want %d:\n%s", plan, len(got), len(want), strings.Join(got, "\n"))
		return
	}
	for i := range got {
		if got[i] != want[i] {
			e.t.Errorf("plan %s, snapshot #%d:\n got %s\nwant %s", plan, i, got[i], want[i])
		}
	}
}

func tarOf(t *testing.T) []byte {
	t.Helper()
	var b bytes.Buffer
	tw := tar.NewWriter(&b)
	mt := time.Date(2026, 1, 2, 3, 4, 5, 0, time.UTC)
	tw.WriteHeader(&tar.Header{Name: "./", Typeflag: tar.TypeDir, Mode: 0o750, ModTime: mt})
	tw.WriteHeader(&tar.Header{Name: "./a.txt", Typeflag: tar.TypeReg, Mode: 0o640, Size: 5, ModTime: mt})
	tw.Write([]byte("alpha"))
	if err := tw.Close(); err != nil {
		t.Fatal(err)
	}
	return b.Bytes()
}

// zeroTree is the tree of a record as records shows it.
const zeroTree = `"tree":"0000000000000000000000000000000000000000000000000000000000000000"`

// The record each of the three ways of making a snapshot writes, field
// by field (issue 18, item 1): cairn backup, cairn push and a node's
// push --stdin/--tar through the appliance, for each source they take.
// The repository is shared, so what each adds depends on what came
// before (a push counts what it sent; trees of other sessions are sent
// again, so a node never borrows a tree it does not own).
func TestSnapshotRecords(t *testing.T) {
	e := newRecordEnv(t)
	dump := []byte("CREATE TABLE t;\n")
	ts := tarOf(t)
	src := filepath.Join(t.TempDir(), "src")
	repotest.WriteTree(t, src, map[string]string{"a.txt": "alpha", "d/b.txt": "beta", "d/skip.o": "x"})
	planFile := filepath.Join(t.TempDir(), "plan.yaml")
	host, _ := os.Hostname()
	e.names = strings.NewReplacer(src, "SRC", planFile, "PLAN", `"host":"`+host+`"`, `"host":"HOST"`)
	const v = `{"version":1,"time":"0001-01-01T00:00:00Z","node":"lyra",`

	t.Run("stdin", func(t *testing.T) {
		e.t = t
		for range 2 {
			e.backup(dump, "--node", "lyra", "--host", "h1", "--plan", "b-stdin", "--tag", "t1", "--tag", "t2", "--stdin", "--name", "db.sql")
			e.push(dump, "--host", "h2", "--plan", "p-stdin", "--tag", "t1", "--stdin", "--name", "db.sql")
			e.nodePush(dump, "push --stdin --name db.sql --plan n-stdin --tag t1")
		}
		sum := func(blobs int) string {
			return fmt.Sprintf(`"summary":{"files":1,"dirs":0,"files_new":1,"files_changed":0,"files_unchanged":0,"bytes":16,"bytes_read":16,"blobs_added":%d,"bytes_added":0,"stored_added":0,"duration_ns":0}}`, blobs)
		}
		e.expect("b-stdin",
			v+`"plan":"b-stdin","host":"h1","paths":["/db.sql"],"tags":["t1","t2"],`+zeroTree+`,`+sum(2),
			v+`"plan":"b-stdin","host":"h1","paths":["/db.sql"],"tags":["t1","t2"],`+zeroTree+`,"parent":"#0",`+sum(1))
		e.expect("p-stdin",
			v+`"plan":"p-stdin","host":"h2","paths":["/db.sql"],"tags":["t1"],`+zeroTree+`,`+sum(1),
			v+`"plan":"p-stdin","host":"h2","paths":["/db.sql"],"tags":["t1"],`+zeroTree+`,"parent":"#0",`+sum(1))
		// The appliance cannot know the node's host name: none is
		// recorded. The parent is found as for backup and push.
		e.expect("n-stdin",
			v+`"plan":"n-stdin","paths":["/db.sql"],"tags":["t1"],`+zeroTree+`,`+sum(1),
			v+`"plan":"n-stdin","paths":["/db.sql"],"tags":["t1"],`+zeroTree+`,"parent":"#0",`+sum(1))
	})

	t.Run("tar", func(t *testing.T) {
		e.t = t
		e.backup(ts, "--node", "lyra", "--plan", "b-tar", "--tar", "--name", "etc")
		e.push(ts, "--plan", "p-tar", "--tar", "--name", "etc")
		e.nodePush(ts, "push --tar --name etc --plan n-tar")
		e.backup(ts, "--node", "lyra", "--plan", "b-tar-root", "--tar")
		e.push(ts, "--plan", "p-tar-root", "--tar")
		e.nodePush(ts, "push --tar --plan n-tar-root")
		rec := func(plan, host, path string, blobs int) string {
			if host != "" {
				host = `"host":"` + host + `",`
			}
			return fmt.Sprintf(v+`"plan":"%s",%s"paths":["%s"],`+zeroTree+`,"summary":{"files":1,"dirs":0,"files_new":1,"files_changed":0,"files_unchanged":0,"bytes":5,"bytes_read":5,"blobs_added":%d,"bytes_added":0,"stored_added":0,"duration_ns":0}}`,
				plan, host, path, blobs)
		}
		e.expect("b-tar", rec("b-tar", "HOST", "/etc", 3))
		e.expect("p-tar", rec("p-tar", "HOST", "/etc", 2))
		e.expect("n-tar", rec("n-tar", "", "/etc", 0))
		e.expect("b-tar-root", rec("b-tar-root", "HOST", "/", 0))
		e.expect("p-tar-root", rec("p-tar-root", "HOST", "/", 1))
		e.expect("n-tar-root", rec("n-tar-root", "", "/", 0))
	})

	dirs := strings.Count(src, "/") + 1 // the directories above src are in the tree
	t.Run("paths", func(t *testing.T) {
		e.t, e.anyBlobs = t, true
		for range 2 {
			e.backup(nil, "--node", "lyra", "--plan", "b-paths", "--exclude", "*.o", src)
			e.push(nil, "--plan", "p-paths", "--exclude", "*.o", src)
		}
		rec := func(plan string, second bool, blobs int) string {
			parent, files := "", `"files_new":2,"files_changed":0,"files_unchanged":0,"bytes":9,"bytes_read":9`
			if second {
				parent, files = `"parent":"#0",`, `"files_new":0,"files_changed":0,"files_unchanged":2,"bytes":9,"bytes_read":0`
			}
			return fmt.Sprintf(v+`"plan":"%s","host":"HOST","paths":["SRC"],`+zeroTree+`,%s"excludes":[{"rule":"--exclude \"*.o\"","count":1}],"summary":{"files":2,"dirs":%d,%s,"blobs_added":%d,"bytes_added":0,"stored_added":0,"duration_ns":0}}`,
				plan, parent, dirs, files, blobs)
		}
		e.expect("b-paths", rec("b-paths", false, 0), rec("b-paths", true, 0))
		e.expect("p-paths", rec("p-paths", false, 0), rec("p-paths", true, 0))
	})

	t.Run("plan file", func(t *testing.T) {
		e.t, e.anyBlobs = t, true
		os.WriteFile(planFile, []byte(fmt.Sprintf(`sources:
  - name: code
    class: files
    why: what we write
    paths: [%s]
    before: [echo before]
  - name: db
    class: database
    why: all application data
    command: printf 'CREATE TABLE t;\n'
    file: db.sql
`, src)), 0o644)
		e.backup(nil, "--node", "lyra", "--plan", planFile, "--tag", "t1")
		e.push(nil, "--plan", planFile, "--tag", "t1")
		code := func(second bool) string {
			parent, files := "", `"files_new":3,"files_changed":0,"files_unchanged":0,"bytes":10,"bytes_read":10,"blobs_added":0`
			if second {
				parent, files = `"parent":"#0",`, `"files_new":0,"files_changed":0,"files_unchanged":3,"bytes":10,"bytes_read":0,"blobs_added":0`
			}
			return fmt.Sprintf(v+`"plan":"code","host":"HOST","paths":["SRC"],"tags":["t1"],`+zeroTree+`,%s"scope":{"plan_file":"PLAN","class":"files","why":"what we write","exclude_caches":true,"hooks":[{"phase":"before","command":"echo before","exit":0,"output":"before","duration_ns":0}]},"summary":{"files":3,"dirs":%d,%s,"bytes_added":0,"stored_added":0,"duration_ns":0}}`,
				parent, dirs, files)
		}
		e.expect("code", code(false), code(true))
		db := func(parent string) string {
			return v + `"plan":"db","host":"HOST","paths":["/db.sql"],"tags":["t1"],` + zeroTree + `,` + parent + `"scope":{"plan_file":"PLAN","class":"database","why":"all application data","command":"printf 'CREATE TABLE t;\\n'"},"summary":{"files":1,"dirs":0,"files_new":1,"files_changed":0,"files_unchanged":0,"bytes":16,"bytes_read":16,"blobs_added":0,"bytes_added":0,"stored_added":0,"duration_ns":0}}`
		}
		e.expect("db", db(""), db(`"parent":"#0",`))
	})
}

// backup and push pick the parent the same way (issue 18, item 1,
// backup.FindParent): the latest snapshot of the same node, plan and
// paths, where "no plan" is a plan of its own (backup took the latest of
// any plan); --parent is "latest" or an unambiguous ID prefix of at
// least 4 hex digits (push took the first snapshot whose ID started with
// what was given, however short, and refused "latest").
func TestParentSelection(t *testing.T) {
	e := newRecordEnv(t)
	for _, verb := range []string{"backup", "push"} {
		t.Run(verb, func(t *testing.T) {
			e.t = t
			src := filepath.Join(t.TempDir(), "src")
			repotest.WriteTree(t, src, map[string]string{"a.txt": "alpha"})
			args := func(more ...string) []string {
				if verb == "backup" {
					return append([]string{"backup", "--node", "lyra"}, more...)
				}
				return append([]string{"push"}, more...)
			}
			ok := func(more ...string) {
				t.Helper()
				if code, stdout, stderr := e.cairn(nil, args(more...)...); code != 0 {
					t.Fatalf("%s %q: exit %d\n%s%s", verb, more, code, stdout, stderr)
				}
			}
			list := func(plan string) []snapshot.Entry {
				t.Helper()
				l, err := e.r.Snapshots(t.Context(), snapshot.Filter{Node: "lyra", Plan: plan, Path: src})
				if err != nil {
					t.Fatal(err)
				}
				return l
			}
			ok("--plan", "other-"+verb, src)
			other := list("other-" + verb)[0]
			ok(src)
			ok(src)
			own := list(snapshot.NoPlan)
			if len(own) != 2 || own[0].Parent != nil || own[1].Parent == nil || *own[1].Parent != own[0].ID {
				t.Fatalf("without a plan: parents %v, %v; want none, then %s (not %s of another plan)", own[0].Parent, own[len(own)-1].Parent, own[0].ID.Short(), other.ID.Short())
			}
			// --parent names a snapshot among those the command
			// sees: backup all of the repository's, push the node's
			// of the plan.
			ok("--plan", "other-"+verb, "--parent", "latest", src)
			latest := other.ID
			if verb == "backup" {
				latest = own[1].ID
			}
			if l := list("other-" + verb); len(l) != 2 || l[1].Parent == nil || *l[1].Parent != latest {
				t.Fatalf("--parent latest: %+v, want parent %s", l, latest.Short())
			}
			ok("--plan", "other-"+verb, "--parent", other.ID.String()[:4], src)
			code, _, stderr := e.cairn(nil, args("--plan", "other-"+verb, "--parent", other.ID.String()[:3], src)...)
			want := fmt.Sprintf("cairn: --parent: snapshot %q: give at least 4 hex digits of its id, or latest\n", other.ID.String()[:3])
			if verb == "push" {
				want = "cairn: push: " + want[len("cairn: "):]
			}
			if code != 1 || stderr != want {
				t.Fatalf("--parent with 3 digits: exit %d, %q; want 1, %q", code, stderr, want)
			}
		})
	}
}
