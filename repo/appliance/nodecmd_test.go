package appliance

import (
	"archive/tar"
	"bytes"
	"context"
	"crypto/ed25519"
	"crypto/rand"
	"encoding/json"
	"fmt"
	"io"
	"log/slog"
	"net"
	"os"
	"path/filepath"
	"regexp"
	"slices"
	"strings"
	"sync"
	"testing"
	"testing/synctest"

	"github.com/cairnbackup/cairn/repo"
	"github.com/cairnbackup/cairn/repo/repotest"
	"github.com/cairnbackup/cairn/repo/snapshot"
	"github.com/cairnbackup/cairn/repo/wire"
	"golang.org/x/crypto/ssh"
)

// opRecorder stands in for cmd/cairn's operator function (which runs
// the cobra command tree; the integration tests run the real one): it
// records the argument lists node commands hand to it.
type opRecorder struct {
	mu    sync.Mutex
	calls [][]string
}

func (o *opRecorder) run(_ context.Context, req *Request, _ io.Reader, stdout, _ io.Writer) int {
	o.mu.Lock()
	defer o.mu.Unlock()
	o.calls = append(o.calls, slices.Clone(req.Args))
	fmt.Fprintln(stdout, "operator ran")
	return 0
}

func (o *opRecorder) taken() [][]string {
	o.mu.Lock()
	defer o.mu.Unlock()
	c := o.calls
	o.calls = nil
	return c
}

// testAppliance is an appliance on a real repository with three nodes:
// lyra (push), reader (read) and boss (admin). It logs without times,
// so tests can look for exact lines.
type testAppliance struct {
	*Appliance
	r   *repo.Repository
	cfg string
	op  *opRecorder
	log *syncBuffer
}

func newTestAppliance(t *testing.T) *testAppliance {
	t.Helper()
	r := repotest.New(t)
	var b strings.Builder
	b.WriteString("nodes:\n")
	for _, n := range []struct{ name, perms string }{{"lyra", "push"}, {"reader", "read"}, {"boss", "admin"}} {
		_, priv, _ := ed25519.GenerateKey(rand.Reader)
		signer, err := ssh.NewSignerFromKey(priv)
		if err != nil {
			t.Fatal(err)
		}
		fmt.Fprintf(&b, "  %s:\n    keys: [%q]\n    permissions: [%s]\n", n.name, strings.TrimSpace(string(ssh.MarshalAuthorizedKey(signer.PublicKey()))), n.perms)
	}
	cfg := filepath.Join(t.TempDir(), "a.yaml")
	if err := os.WriteFile(cfg, []byte(b.String()), 0o600); err != nil {
		t.Fatal(err)
	}
	ta := &testAppliance{r: r, cfg: cfg, op: &opRecorder{}, log: &syncBuffer{}}
	noTime := func(_ []string, a slog.Attr) slog.Attr {
		if a.Key == slog.TimeKey {
			return slog.Attr{}
		}
		return a
	}
	a, err := New(Options{Repo: r, ConfigPath: cfg, Operator: ta.op.run,
		Logger: slog.New(slog.NewTextHandler(ta.log, &slog.HandlerOptions{ReplaceAttr: noTime}))})
	if err != nil {
		t.Fatal(err)
	}
	ta.Appliance = a
	return ta
}

// node runs command as the configured node with stdin and returns the
// exit code, standard output and standard error.
func (ta *testAppliance) node(t *testing.T, node, command string, stdin io.Reader) (int, string, string) {
	t.Helper()
	n := ta.Config().Nodes[node]
	if n == nil {
		t.Fatalf("no node %s", node)
	}
	if stdin == nil {
		stdin = strings.NewReader("")
	}
	var out, errb bytes.Buffer
	code := ta.NodeSession(t.Context(), node, n.Perms(), n.Isolated, command, stdin, &out, &errb)
	return code, out.String(), errb.String()
}

// relay runs req through the operator socket's server side, as `cairn
// serve --stdio` or a forwarded operator command reaches it, with the
// real client on the other end of an in-memory connection.
func (ta *testAppliance) relay(t *testing.T, req *Request, stdin string) (int, string, string) {
	t.Helper()
	client, server := net.Pipe()
	done := make(chan struct{})
	go func() {
		defer close(done)
		ta.serveSocket(t.Context(), server)
	}()
	var out, errb bytes.Buffer
	code, err := call(t.Context(), client, req, strings.NewReader(stdin), &out, &errb)
	client.Close()
	<-done
	if err != nil {
		t.Fatalf("relay: %v", err)
	}
	return code, out.String(), errb.String()
}

func tarOf(t *testing.T, files map[string]string) []byte {
	t.Helper()
	var b bytes.Buffer
	tw := tar.NewWriter(&b)
	for _, name := range slices.Sorted(func(yield func(string) bool) {
		for k := range files {
			if !yield(k) {
				return
			}
		}
	}) {
		if err := tw.WriteHeader(&tar.Header{Name: name, Mode: 0o644, Size: int64(len(files[name])), Typeflag: tar.TypeReg}); err != nil {
			t.Fatal(err)
		}
		tw.Write([]byte(files[name]))
	}
	if err := tw.Close(); err != nil {
		t.Fatal(err)
	}
	return b.Bytes()
}

const (
	forgetUsage = "usage: forget [--node NAME] [--plan NAME] [--tag TAG]... [--path PATH]" +
		" [--keep-last N] [--keep-hourly N] [--keep-daily N] [--keep-weekly N] [--keep-monthly N] [--keep-yearly N]" +
		" [--keep-within SPAN] [--keep-tag TAG]... [--keep-drilled N] [--group-by FIELDS]" +
		" [--dry-run] [--explain] [--prune] [--max-unused P%] [--max-repack SIZE] [--json]\n"
	pruneUsage = "usage: prune [--dry-run] [--max-unused P%] [--max-repack SIZE] [--json]\n"
	pushUsage  = "usage: push [--tar] [--stdin] [--name NAME] [--plan NAME] [--tag TAG]...\n"
	nodesMay   = "nodes may run: cairn-wire, push, snapshots, and with admin forget, prune\n"
)

// Every node command runs with the flags it declares: push stores a
// stream or a tar, snapshots lists the node's own, cairn-wire speaks the
// protocol, and forget and prune reach the operator function only as an
// argument list rebuilt from the parsed values, every value in
// --flag=value form, plus the appliance's own configuration.
func TestNodeCommandsRun(t *testing.T) {
	ta := newTestAppliance(t)
	ctx := t.Context()

	code, out, errs := ta.node(t, "lyra", "push --stdin --name db.sql --plan postgres --tag nightly --tag=weekly", strings.NewReader("dump\n"))
	if code != 0 || errs != "" || !regexp.MustCompile(`^snapshot [0-9a-f]{8} saved: 1 file, 5 B, [0-9]+ B added\n$`).MatchString(out) {
		t.Fatalf("push --stdin: exit %d, stdout %q, stderr %q", code, out, errs)
	}
	code, out, errs = ta.node(t, "lyra", "push --tar --name=app", bytes.NewReader(tarOf(t, map[string]string{"a.txt": "alpha\n"})))
	if code != 0 || errs != "" || !strings.HasPrefix(out, "snapshot ") {
		t.Fatalf("push --tar: exit %d, stdout %q, stderr %q", code, out, errs)
	}
	list, err := ta.r.Snapshots(ctx, snapshot.Filter{})
	if err != nil || len(list) != 2 {
		t.Fatalf("snapshots: %v %d", err, len(list))
	}
	got := [][]string{}
	for _, s := range list {
		got = append(got, append([]string{s.Node, s.Plan, strings.Join(s.Paths, ",")}, s.Tags...))
	}
	slices.SortFunc(got, func(a, b []string) int { return strings.Compare(a[1], b[1]) })
	want := [][]string{{"lyra", "", "/app"}, {"lyra", "postgres", "/db.sql", "nightly", "weekly"}}
	if !slices.EqualFunc(got, want, slices.Equal) {
		t.Fatalf("snapshots %q, want %q", got, want)
	}

	code, out, errs = ta.node(t, "lyra", "snapshots", nil)
	var items []struct {
		ID     string            `json:"id"`
		Record snapshot.Snapshot `json:"record"`
	}
	if code != 0 || errs != "" || json.Unmarshal([]byte(out), &items) != nil || len(items) != 2 {
		t.Fatalf("snapshots: exit %d, stdout %q, stderr %q", code, out, errs)
	}
	if code, out, errs = ta.node(t, "boss", "snapshots", nil); code != 0 || out != "[]\n" || errs != "" {
		t.Fatalf("boss's snapshots: exit %d, stdout %q, stderr %q", code, out, errs)
	}

	// cairn-wire: the protocol over the session's streams.
	cr, sw := io.Pipe()
	sr, cw := io.Pipe()
	wireDone := make(chan int, 1)
	go func() {
		n := ta.Config().Nodes["lyra"]
		wireDone <- ta.NodeSession(ctx, "lyra", n.Perms(), false, "cairn-wire", sr, sw, io.Discard)
		sw.Close()
	}()
	c, err := wire.Dial(ctx, struct {
		io.Reader
		io.Writer
		io.Closer
	}{cr, cw, cw}, "test", "lyra")
	if err != nil {
		t.Fatal(err)
	}
	wl, err := c.ListSnapshots(ctx, "")
	if err != nil || len(wl) != 2 {
		t.Fatalf("cairn-wire list: %v %d", err, len(wl))
	}
	c.Close()
	if code := <-wireDone; code != 0 {
		t.Fatalf("cairn-wire: exit %d", code)
	}

	for _, c := range []struct {
		command string
		args    []string
	}{
		{"forget --keep-last 2 --keep-daily=7 --keep-within 7d --keep-tag a --keep-tag=b --node lyra --plan etc --tag t --tag=a=b --path /etc" +
			" --group-by node,plan --keep-drilled 1 --dry-run --explain --prune --max-unused 10% --max-repack 1GiB --json",
			[]string{"forget", "--node=lyra", "--plan=etc", "--tag=t", "--tag=a=b", "--path=/etc",
				"--keep-last=2", "--keep-daily=7", "--keep-within=7d", "--keep-tag=a", "--keep-tag=b", "--keep-drilled=1", "--group-by=node,plan",
				"--dry-run", "--explain", "--prune", "--max-unused=10%", "--max-repack=1GiB", "--json", "--config=" + ta.cfg}},
		// Numbers are rewritten from their value; a value that looks
		// like a flag stays a value.
		{"forget --keep-last 007 --keep-tag=--config=/etc/shadow", []string{"forget", "--keep-last=7", "--keep-tag=--config=/etc/shadow", "--config=" + ta.cfg}},
		{"forget", []string{"forget", "--config=" + ta.cfg}},
		{"prune", []string{"prune"}},
		{"prune --json --max-repack=10GiB --dry-run --max-unused 2%", []string{"prune", "--dry-run", "--max-unused=2%", "--max-repack=10GiB", "--json"}},
	} {
		code, out, errs := ta.node(t, "boss", c.command, nil)
		calls := ta.op.taken()
		if code != 0 || out != "operator ran\n" || errs != "" || len(calls) != 1 || !slices.Equal(calls[0], c.args) {
			t.Errorf("%s: exit %d, stdout %q, stderr %q, operator got %q, want %q", c.command, code, out, errs, calls, c.args)
		}
	}
	if !strings.Contains(ta.log.String(), `level=INFO msg="admin command" node=boss command="prune --json --max-repack=10GiB --dry-run --max-unused 2%" exit=0`) ||
		!strings.Contains(ta.log.String(), ` ran="prune --dry-run --max-unused=2% --max-repack=10GiB --json"`+"\n") {
		t.Errorf("no admin command log line:\n%s", ta.log.String())
	}
}

// Every refusal: exit 2, a message naming the command and the flag, a
// log line, and nothing run. Global flags (--repo, --config, profiles,
// key and password files, the socket, the log level) exist for nobody
// but the operator: no node command declares them.
func TestNodeCommandRefusals(t *testing.T) {
	ta := newTestAppliance(t)
	long := "forget" + strings.Repeat(" --keep-tag=x", 400)
	for _, c := range []struct {
		node, command string
		stderr        string
	}{
		{"boss", "", "cairn: no command given; " + nodesMay},
		{"boss", " \t ", "cairn: no command given; " + nodesMay},
		{"lyra", "sh -c id", `cairn: node lyra may not run "sh"; ` + nodesMay},
		{"boss", "cairn forget", `cairn: node boss may not run "cairn"; ` + nodesMay},
		{"boss", "forget --config /etc/shadow", "cairn: forget: unknown flag \"--config\"\n" + forgetUsage},
		{"boss", "forget --config=/etc/shadow", "cairn: forget: unknown flag \"--config\"\n" + forgetUsage},
		{"boss", "forget --keep-last 1 --cpuprofile /tmp/x", "cairn: forget: unknown flag \"--cpuprofile\"\n" + forgetUsage},
		{"boss", "forget --keep-last 1 --memprofile=/tmp/x", "cairn: forget: unknown flag \"--memprofile\"\n" + forgetUsage},
		{"boss", "forget --keep-last 1 --repo /srv/other", "cairn: forget: unknown flag \"--repo\"\n" + forgetUsage},
		{"boss", "forget --keep-last 1 -r /srv/other", "cairn: forget: unknown flag \"-r\"\n" + forgetUsage},
		{"boss", "forget --keep-last 1 --key-file /root/k", "cairn: forget: unknown flag \"--key-file\"\n" + forgetUsage},
		{"boss", "forget --keep-last 1 --password-file /root/p", "cairn: forget: unknown flag \"--password-file\"\n" + forgetUsage},
		{"boss", "forget --keep-last 1 --socket /run/x.sock", "cairn: forget: unknown flag \"--socket\"\n" + forgetUsage},
		{"boss", "forget --keep-last 1 --log-level debug", "cairn: forget: unknown flag \"--log-level\"\n" + forgetUsage},
		{"boss", "forget --help", "cairn: forget: unknown flag \"--help\"\n" + forgetUsage},
		{"boss", "forget -n --keep-last 1", "cairn: forget: unknown flag \"-n\"\n" + forgetUsage},
		{"boss", "forget --keep-last 1 -- --config /etc/shadow", "cairn: forget: unknown flag \"--\"\n" + forgetUsage},
		{"boss", "prune --config /etc/shadow", "cairn: prune: unknown flag \"--config\"\n" + pruneUsage},
		{"boss", "prune --cpuprofile=/tmp/x", "cairn: prune: unknown flag \"--cpuprofile\"\n" + pruneUsage},
		{"boss", "prune --keep-last 1", "cairn: prune: unknown flag \"--keep-last\"\n" + pruneUsage},
		{"boss", "forget --keep-last", "cairn: forget: --keep-last needs a value\n" + forgetUsage},
		{"boss", "forget --keep-last=", "cairn: forget: --keep-last needs a value\n" + forgetUsage},
		{"boss", "forget --keep-tag --dry-run", "cairn: forget: --keep-tag needs a value\n" + forgetUsage},
		{"boss", "forget --keep-last -1", "cairn: forget: --keep-last needs a value\n" + forgetUsage},
		{"boss", "prune --max-unused", "cairn: prune: --max-unused needs a value\n" + pruneUsage},
		{"boss", "forget --keep-last x", "cairn: forget: --keep-last \"x\": want a whole number (0 or more)\n" + forgetUsage},
		{"boss", "forget --keep-last=-1", "cairn: forget: --keep-last \"-1\": want a whole number (0 or more)\n" + forgetUsage},
		{"boss", "forget --keep-daily 1e9", "cairn: forget: --keep-daily \"1e9\": want a whole number (0 or more)\n" + forgetUsage},
		{"boss", "forget --keep-daily 99999999999", "cairn: forget: --keep-daily \"99999999999\": want a whole number (0 or more)\n" + forgetUsage},
		{"boss", "forget --keep-last 1 --dry-run=false", "cairn: forget: --dry-run takes no value\n" + forgetUsage},
		{"boss", "forget --keep-last 1 --keep-last 2", "cairn: forget: --keep-last given twice\n" + forgetUsage},
		{"boss", "forget --keep-last 1 lyra", "cairn: forget: unexpected argument \"lyra\"\n" + forgetUsage},
		{"boss", long, fmt.Sprintf("cairn: the command is %d bytes long; a node's command is at most 4096\n", len(long))},
		{"lyra", "forget --keep-last 1", "cairn: node lyra may not run \"forget\": it needs the admin permission (push and read are append-only)\n"},
		{"lyra", "forget --config /etc/shadow", "cairn: node lyra may not run \"forget\": it needs the admin permission (push and read are append-only)\n"},
		{"reader", "prune", "cairn: node reader may not run \"prune\": it needs the admin permission (push and read are append-only)\n"},
		{"reader", "push --stdin --name x", "cairn: node reader may not run \"push\": it needs the push permission\n"},
		{"lyra", "snapshots --all", "cairn: snapshots: unknown flag \"--all\"\nusage: snapshots\n"},
		{"lyra", "snapshots lyra", "cairn: snapshots: unexpected argument \"lyra\"\nusage: snapshots\n"},
		{"lyra", "cairn-wire --version", "cairn: cairn-wire: unknown flag \"--version\"\nusage: cairn-wire\n"},
		{"lyra", "push --tar --config /etc/shadow", "cairn: push: unknown flag \"--config\"\n" + pushUsage},
		{"lyra", "push --tar --stdin", "cairn: push: give --tar [--name NAME] or --stdin --name NAME\n" + pushUsage},
		{"lyra", "push --stdin", "cairn: push: give --tar [--name NAME] or --stdin --name NAME\n" + pushUsage},
		{"lyra", "push", "cairn: push: give --tar [--name NAME] or --stdin --name NAME\n" + pushUsage},
		{"lyra", "push --tar --plan ../x", "cairn: push: snapshot: plan name \"../x\" starts with a dot\n" + pushUsage},
		{"lyra", "push --tar --tar", "cairn: push: --tar given twice\n" + pushUsage},
	} {
		logged := `msg="command refused" node=` + c.node + " "
		before := strings.Count(ta.log.String(), logged)
		code, out, errs := ta.node(t, c.node, c.command, strings.NewReader("must not be read"))
		if code != 2 || out != "" || errs != c.stderr {
			t.Errorf("%s %q: exit %d, stdout %q, stderr %q, want exit 2 and %q", c.node, c.command, code, out, errs, c.stderr)
		}
		if n := strings.Count(ta.log.String(), logged); n != before+1 {
			t.Errorf("%s %q: %d refusals logged, want 1", c.node, c.command, n-before)
		}
	}
	if calls := ta.op.taken(); len(calls) != 0 {
		t.Errorf("the operator function ran %q", calls)
	}
	if list, err := ta.r.Snapshots(t.Context(), snapshot.Filter{}); err != nil || len(list) != 0 {
		t.Errorf("snapshots after refusals: %v %d", err, len(list))
	}
	for _, line := range []string{
		`level=WARN msg="command refused" node=boss command=forget why="unknown flag \"--config\""` + "\n",
		`level=WARN msg="command refused" node=lyra command=forget why="needs the admin permission"` + "\n",
		`level=WARN msg="command refused" node=lyra command=sh why="unknown command"` + "\n",
	} {
		if !strings.Contains(ta.log.String(), line) {
			t.Errorf("no log line %q:\n%s", line, ta.log.String())
		}
	}
}

// A forced command naming a node that is not in the configuration used
// to get push permission silently; it is refused, with a message for
// the node and a log line for the operator.
func TestRelayedUnknownNodeRefused(t *testing.T) {
	ta := newTestAppliance(t)
	code, out, errs := ta.relay(t, &Request{Kind: "node", Node: "ghost", Command: "push --stdin --name x", Repo: ta.r.Dir()}, "data")
	if code != 1 || out != "" || errs != "cairn: node ghost is not in the appliance's configuration; the forced command names a node the operator has not added\n" {
		t.Fatalf("ghost: exit %d, stdout %q, stderr %q", code, out, errs)
	}
	if line := `level=WARN msg="session refused" node=ghost why="not in the configuration" config=` + ta.cfg + "\n"; !strings.Contains(ta.log.String(), line) {
		t.Fatalf("no log line %q:\n%s", line, ta.log.String())
	}
	if list, err := ta.r.Snapshots(t.Context(), snapshot.Filter{}); err != nil || len(list) != 0 {
		t.Fatalf("snapshots after ghost's push: %v %d", err, len(list))
	}
	// A configured node is relayed as before.
	code, out, errs = ta.relay(t, &Request{Kind: "node", Node: "lyra", Command: "push --stdin --name x", Repo: ta.r.Dir()}, "data")
	if code != 0 || !strings.HasPrefix(out, "snapshot ") || errs != "" {
		t.Fatalf("lyra: exit %d, stdout %q, stderr %q", code, out, errs)
	}
}

// writeFrame writes one socket frame as a client would.
func writeFrame(t *testing.T, w io.Writer, kind byte, data []byte) {
	t.Helper()
	if err := (&muxWriter{w: w}).frame(kind, data); err != nil {
		t.Error(err)
	}
}

// A relayed session whose command never reads its input used to leave
// the goroutine that feeds the input (and its frame buffer) blocked
// forever, one per session. Fifty such sessions run in a synctest
// bubble: synctest.Test fails the test if any goroutine started in the
// bubble is still there, blocked, when the sessions are over.
func TestRelayedSessionsLeaveNoGoroutines(t *testing.T) {
	ta := newTestAppliance(t)
	dir := ta.r.Dir()
	synctest.Test(t, func(t *testing.T) {
		for i := range 50 {
			client, server := net.Pipe()
			served := make(chan struct{})
			go func() {
				defer close(served)
				ta.serveSocket(context.Background(), server)
			}()
			sent := make(chan struct{})
			go func() {
				defer close(sent)
				req, _ := json.Marshal(&Request{Kind: "node", Node: "lyra", Command: "sh", Repo: dir})
				writeFrame(t, client, frameRequest, req)
				// Input the refused command never reads, and no end
				// of input: the node keeps its side open.
				writeFrame(t, client, frameStdin, bytes.Repeat([]byte{'x'}, 64<<10))
			}()
			// Every goroutine of the bubble is blocked now: the feeder
			// holds the input, the command waits to write its answer.
			synctest.Wait()
			var errb bytes.Buffer
			code := -1
			for code < 0 {
				kind, data, err := readFrame(client, nil)
				if err != nil {
					t.Fatalf("session %d: %v", i, err)
				}
				switch kind {
				case frameStderr:
					errb.Write(data)
				case frameExit:
					code = int(data[3])
				}
			}
			if code != 2 || errb.String() != `cairn: node lyra may not run "sh"; `+nodesMay {
				t.Fatalf("session %d: exit %d, stderr %q", i, code, errb.String())
			}
			<-sent
			<-served
			client.Close()
		}
	})
}
