package integration

import (
	"crypto/rand"
	"encoding/json"
	"fmt"
	"io"
	"net"
	"net/http"
	"net/http/httptest"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/cairnbackup/cairn/repo/snapshot"
	"github.com/cairnbackup/cairn/repo/wire"
	"golang.org/x/crypto/ssh"
)

// hit is one request a test HTTP server received.
type hit struct {
	Method, Path string
	Header       http.Header
	Body         string
}

// receiver is a real HTTP server on 127.0.0.1 standing for a webhook,
// an ntfy server or healthchecks: it answers 200 and hands every
// request to the test.
type receiver struct {
	*httptest.Server
	hits chan hit
}

func newReceiver(t *testing.T) *receiver {
	t.Helper()
	r := &receiver{hits: make(chan hit, 256)}
	r.Server = httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, req *http.Request) {
		b, _ := io.ReadAll(req.Body)
		r.hits <- hit{req.Method, req.URL.Path, req.Header.Clone(), string(b)}
	}))
	t.Cleanup(r.Close)
	return r
}

// next waits for the next request, for at most a minute.
func (r *receiver) next(t *testing.T, what string) hit {
	t.Helper()
	select {
	case h := <-r.hits:
		return h
	case <-time.After(time.Minute):
		t.Fatalf("no request for %s", what)
		return hit{}
	}
}

// event waits for the next webhook request and decodes its event.
func (r *receiver) event(t *testing.T, what string) map[string]any {
	t.Helper()
	h := r.next(t, what)
	if h.Method != "POST" || h.Header.Get("Content-Type") != "application/json" {
		t.Errorf("%s: %s %v", what, h.Method, h.Header)
	}
	var ev map[string]any
	if err := json.Unmarshal([]byte(h.Body), &ev); err != nil {
		t.Fatalf("%s: %v\n%s", what, err, h.Body)
	}
	if _, err := time.Parse(time.RFC3339Nano, fmt.Sprint(ev["time"])); err != nil {
		t.Errorf("%s: time %v", what, ev["time"])
	}
	delete(ev, "time")
	return ev
}

// pings collects n healthchecks requests (each check has its own
// queue, so they come in any order) as "PATH BODY" lines, sorted.
func (r *receiver) pings(t *testing.T, n int, what string) []string {
	t.Helper()
	var out []string
	for range n {
		h := r.next(t, what)
		out = append(out, h.Path+" "+h.Body)
	}
	slices.Sort(out)
	return out
}

// packFiles lists the repository's pack files.
func packFiles(t *testing.T, repo string) map[string]int64 {
	t.Helper()
	out := map[string]int64{}
	filepath.Walk(filepath.Join(repo, "packs"), func(p string, fi os.FileInfo, err error) error {
		if err == nil && fi.Mode().IsRegular() && !strings.HasPrefix(fi.Name(), ".") {
			out[p] = fi.Size()
		}
		return nil
	})
	return out
}

// damageNewest flips a byte every KiB of the largest pack that is not in
// before: the data pack of the pushes since.
func damageNewest(t *testing.T, repo string, before map[string]int64) {
	t.Helper()
	var biggest string
	var size int64
	for p, s := range packFiles(t, repo) {
		if _, old := before[p]; !old && s > size {
			biggest, size = p, s
		}
	}
	if biggest == "" {
		t.Fatal("no new pack to damage")
	}
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
}

// backdate commits, as node n over the wire protocol (what cairn push
// speaks), copies of the node's newest snapshot of plan, one per entry
// of at, with that time, plan as, and the given figures: the history a
// node would have after weeks of pushes. The appliance must accept the
// times (limits.clock_skew wide enough).
func (a *appliance) backdate(n *node, plan, as string, at []time.Time, bytes []uint64, took []time.Duration) {
	t := a.e.t
	t.Helper()
	client, err := ssh.Dial("tcp", fmt.Sprintf("127.0.0.1:%d", a.Port), &ssh.ClientConfig{
		User: n.Name, Auth: []ssh.AuthMethod{ssh.PublicKeys(n.Key.Signer)}, Timeout: 30 * time.Second,
		HostKeyCallback: func(string, net.Addr, ssh.PublicKey) error { return nil },
	})
	if err != nil {
		t.Fatal(err)
	}
	defer client.Close()
	sess, err := client.NewSession()
	if err != nil {
		t.Fatal(err)
	}
	in, _ := sess.StdinPipe()
	out, _ := sess.StdoutPipe()
	if err := sess.Start("cairn-wire"); err != nil {
		t.Fatal(err)
	}
	c, err := wire.Dial(t.Context(), struct {
		io.Reader
		io.WriteCloser
	}{out, in}, "cairn integration test", n.Name)
	if err != nil {
		t.Fatal(err)
	}
	defer c.Close()
	items, err := c.ListSnapshots(t.Context(), plan)
	if err != nil || len(items) == 0 {
		t.Fatalf("list %s: %v (%d)", plan, err, len(items))
	}
	base, err := snapshot.Decode(items[len(items)-1].Record)
	if err != nil {
		t.Fatal(err)
	}
	for i, tm := range at {
		s := *base
		s.Time, s.Plan, s.Parent = tm, as, nil
		s.Summary.Bytes, s.Summary.Duration = bytes[i], took[i]
		rec, _, err := snapshot.Encode(&s)
		if err != nil {
			t.Fatal(err)
		}
		if _, err := c.Commit(t.Context(), rec); err != nil {
			t.Fatalf("commit %s: %v", tm, err)
		}
	}
}

// Every kind of event reaches a webhook (exact JSON), an ntfy topic
// (title, priority, tags, message) and the healthchecks ping URLs of
// the node and node/plan (start, success, fail), from the real appliance:
// pushes over SSH, a failed push, a failed drill of a damaged pack, a
// verification that finds the damage, missed backups and nodes never
// seen (once per repeat, not at every check).
func TestNotificationsFromAppliance(t *testing.T) {
	e := newEnv(t)
	e.ok("init")
	hook, ntfy, hc := newReceiver(t), newReceiver(t), newReceiver(t)
	host, _ := os.Hostname()
	lyra, vega := newNode(t, "lyra", "push, read"), newNode(t, "vega", "push")
	extra := "  clock_skew: 2000h\nexpect: {lyra/old: 24h}\n" +
		"jobs:\n  drill: {schedule: \"0 3 1 1 *\", scratch: " + t.TempDir() + "}\n  verify: {schedule: \"0 3 1 1 *\", cycle: 1d}\n  staleness: {schedule: \"0 3 1 1 *\"}\n" +
		"notifications:\n  webhooks: [{url: \"" + hook.URL + "/hook\"}]\n  ntfy: [{url: \"" + ntfy.URL + "/cairn\"}]\n" +
		"  healthchecks:\n    lyra: \"" + hc.URL + "/hc/lyra\"\n    lyra/git: \"" + hc.URL + "/hc/lyra-git\"\n    lyra/db: \"" + hc.URL + "/hc/lyra-db\"\n  timeout: 5s\n"
	a := e.serveWith(extra, lyra, vega)

	// cairn config check knows the keys.
	bad := filepath.Join(e.dir, "bad.yaml")
	os.WriteFile(bad, []byte("metrics: 0.0.0.0:9100\nnotifications:\n  webhooks: [{url: \"ftp://x\"}]\n  healthchecks: {orion: \"https://hc.example.org/1\"}\n  retries: 99\n"), 0o600)
	r := e.run(nil, "config", "check", bad)
	want := bad + ":1: metrics: 0.0.0.0:9100 listens beyond this machine: give metrics_auth (token_file, or user and password_file), or listen on 127.0.0.1\n" +
		bad + `:3: notifications.webhooks[0].url: scheme "ftp": give an http:// or https:// URL` + "\n" +
		bad + ":4: notifications.healthchecks.orion: node orion is not in nodes: its pushes would never ping\n" +
		bad + ":5: notifications.retries: 99 is above the most allowed, 10\n"
	if r.code != 1 || r.stdout != want || r.stderr != "cairn: "+bad+": 4 problems\n" {
		t.Errorf("config check: exit %d\n%s\nwant:\n%s%s", r.code, r.stdout, want, r.stderr)
	}

	// A push over SSH: start of the node's check, then success of the
	// node/plan's and the node's (cairn push names its plan only in its
	// commit).
	src := filepath.Join(e.dir, "src")
	repotestWrite(t, src, map[string]string{"app/main.go": strings.Repeat("package main // lyra\n", 4000), "README": "lyra's code\n", "app/blob.bin": noise(64 << 10)})
	before := packFiles(t, e.repo)
	if r := a.push(lyra, nil, "--plan", "git", src); r.code != 0 {
		t.Fatalf("push: exit %d\n%s%s", r.code, r.stdout, r.stderr)
	}
	snap := e.snapshots()[0].ID
	if got, want := hc.pings(t, 3, "push pings"), sorted("/hc/lyra/start ", "/hc/lyra 1 snapshots saved", "/hc/lyra-git snapshot "+snap+" saved"); !slices.Equal(got, want) {
		t.Errorf("push pings %q\nwant %q", got, want)
	}

	// A push that fails: a tar stream that is not one. The node's
	// error is the event's reason.
	r = runSSH(t, strings.NewReader(strings.Repeat("not a tar stream\n", 100)), append(a.SSHArgs(lyra), "push --tar --plan git")...)
	why := strings.TrimSpace(strings.TrimPrefix(r.stderr, "cairn: "))
	if r.code == 0 || why == "" {
		t.Fatalf("bad tar: exit %d %q", r.code, r.stderr)
	}
	wantEv := map[string]any{"event": "push_failed", "host": host, "node": "lyra", "plan": "git", "reason": why,
		"title": "cairn: push from lyra/git failed", "message": "A push from node lyra, plan git, failed: " + why}
	if ev := hook.event(t, "push_failed"); fmt.Sprint(ev) != fmt.Sprint(wantEv) {
		t.Errorf("push_failed %v\nwant %v", ev, wantEv)
	}
	h := ntfy.next(t, "ntfy push_failed")
	if h.Method != "POST" || h.Path != "/cairn" || h.Header.Get("Title") != "cairn: push from lyra/git failed" || h.Header.Get("Priority") != "high" ||
		h.Header.Get("Tags") != "cairn,push_failed" || h.Body != wantEv["message"] {
		t.Errorf("ntfy %s %s %v %q", h.Method, h.Path, h.Header, h.Body)
	}
	if got, want := hc.pings(t, 4, "failed push pings"), sorted("/hc/lyra-git/fail "+why, "/hc/lyra-git/start ", "/hc/lyra/fail "+why, "/hc/lyra/start "); !slices.Equal(got, want) {
		t.Errorf("failed push pings %q\nwant %q", got, want)
	}

	// lyra/old: a snapshot two days old (for the missed backup below).
	a.backdate(lyra, "git", "old", []time.Time{time.Now().Add(-49 * time.Hour)}, []uint64{1}, []time.Duration{time.Second})
	if got, want := hc.pings(t, 2, "backdated push pings"), sorted("/hc/lyra/start ", "/hc/lyra 1 snapshots saved"); !slices.Equal(got, want) {
		t.Errorf("backdated push pings %q\nwant %q", got, want)
	}

	// A source that fails on the node (its before command): cairn push
	// tells the appliance, whose alert carries the node's own error and
	// names the source's plan.
	planFile := filepath.Join(e.dir, "plan.yaml")
	os.WriteFile(planFile, []byte("sources:\n  - name: etc\n    class: config\n    why: settings\n    paths: ["+src+"/README]\n"+
		"  - name: db\n    class: database\n    why: all data\n    command: printf 'CREATE TABLE t;\\n'\n    file: db.sql\n    before: \"echo cannot flush >&2; exit 4\"\n"), 0o644)
	r = a.push(lyra, nil, "--plan", planFile)
	nodeWhy := `source db: before command "echo cannot flush >&2; exit 4" failed: exit status 4: cannot flush; the source was skipped, nothing saved`
	if r.code != 1 || !strings.Contains(r.stderr, "cairn: "+nodeWhy+"\n") {
		t.Fatalf("plan push: exit %d\n%s%s", r.code, r.stdout, r.stderr)
	}
	why = "the node reported: " + nodeWhy
	wantEv = map[string]any{"event": "push_failed", "host": host, "node": "lyra", "plan": "db", "reason": why,
		"title": "cairn: push from lyra/db failed", "message": "A push from node lyra, plan db, failed: " + why}
	if ev := hook.event(t, "the node's push_failed"); fmt.Sprint(ev) != fmt.Sprint(wantEv) {
		t.Errorf("node's push_failed %v\nwant %v", ev, wantEv)
	}
	if got, want := hc.pings(t, 5, "plan push pings"), sorted("/hc/lyra/start ", "/hc/lyra 1 snapshots saved", "/hc/lyra/start ", "/hc/lyra/fail "+why, "/hc/lyra-db/fail "+why); !slices.Equal(got, want) {
		t.Errorf("plan push pings %q\nwant %q", got, want)
	}

	// A drill of a damaged pack fails: the event names the group, the
	// snapshot, the report and the drill's reason.
	damageNewest(t, e.repo, before)
	if r := e.run(nil, "jobs", "run", "drill"); r.code != 5 {
		t.Fatalf("drill job: exit %d\n%s%s", r.code, r.stdout, r.stderr)
	}
	var st statusJSON
	r = e.run(nil, "status", "--json")
	if err := json.Unmarshal([]byte(r.stdout), &st); err != nil {
		t.Fatalf("status: %v\n%s", err, r.stdout)
	}
	gi := slices.IndexFunc(st.Groups, func(g statusGroup) bool { return g.Plan == "git" })
	if gi < 0 || st.Groups[gi].Drill == nil {
		t.Fatalf("status:\n%s", r.stdout)
	}
	d := st.Groups[gi].Drill
	wantEv = map[string]any{"event": "drill_failed", "host": host, "node": "lyra", "plan": "git", "paths": []any{src}, "snapshot": snap, "report": d.Report,
		"reason": d.Reason, "title": "cairn: drill of lyra/git failed",
		"message": fmt.Sprintf("The drill of lyra/git [%s] (snapshot %s) failed: %s (cairn drills %s)", src, snap[:8], d.Reason, d.Report[:8])}
	// One drill_failed per group whose drill failed, in the job's order:
	// git and old hold the damaged blob; etc may too, depending on which
	// pack its README's chunk went into.
	if r := e.run(nil, "jobs", "run", "verify"); r.code != 5 {
		t.Fatalf("verify job: exit %d\n%s%s", r.code, r.stdout, r.stderr)
	}
	drills := map[any]map[string]any{}
	ev := hook.event(t, "drill_failed")
	for ; ev["event"] == "drill_failed"; ev = hook.event(t, "drill_failed or verify_failed") {
		drills[ev["plan"]] = ev
	}
	if got := drills["git"]; fmt.Sprint(got) != fmt.Sprint(wantEv) || d.Reason == "" {
		t.Errorf("drill_failed %v\nwant %v", got, wantEv)
	}
	if drills["old"] == nil || len(drills) > 3 || len(drills) == 3 && drills["etc"] == nil {
		t.Errorf("drill_failed events %v", drills)
	}

	// Verification finds the damage: ev is its event.
	var problems int
	fmt.Sscanf(fmt.Sprint(ev["title"]), "cairn: verification found %d problems", &problems)
	reason := fmt.Sprint(ev["reason"])
	if ev["event"] != "verify_failed" || ev["job"] != "verify" || problems == 0 || !strings.Contains(reason, "pack ") ||
		ev["message"] != fmt.Sprintf("Verification found %d problems:\n%s", problems, reason) {
		t.Errorf("verify_failed %v", ev)
	}

	// Missed backups: lyra/old's newest snapshot is two days old (it is
	// expected daily); vega never pushed. Told once, not at every check.
	// (lyra/old was backdated above, before the damage.)
	for range 2 {
		if r := e.run(nil, "jobs", "run", "staleness"); r.code != 5 {
			t.Fatalf("staleness: exit %d\n%s%s", r.code, r.stdout, r.stderr)
		}
	}
	late := hook.event(t, "backup_late")
	if late["event"] != "backup_late" || late["node"] != "lyra" || late["plan"] != "old" || !strings.HasPrefix(fmt.Sprint(late["reason"]), "last backup 2d1h ago (") ||
		!strings.HasSuffix(fmt.Sprint(late["reason"]), "), expected every 24h") || late["title"] != "cairn: lyra/old missed its backup" {
		t.Errorf("backup_late %v", late)
	}
	wantEv = map[string]any{"event": "never_seen", "host": host, "node": "vega", "reason": "never backed up", "title": "cairn: vega never backed up", "message": "vega: never backed up"}
	if ev := hook.event(t, "never_seen"); fmt.Sprint(ev) != fmt.Sprint(wantEv) {
		t.Errorf("never_seen %v\nwant %v", ev, wantEv)
	}
	// The second staleness run told nothing: the next event is the
	// next failed push.
	runSSH(t, strings.NewReader("garbage"), append(a.SSHArgs(vega), "push --tar")...)
	if ev := hook.event(t, "vega's push_failed"); ev["event"] != "push_failed" || ev["node"] != "vega" {
		t.Errorf("after the second staleness run: %v", ev)
	}
}

// noise is n incompressible bytes.
func noise(n int) string {
	b := make([]byte, n)
	rand.Read(b)
	return string(b)
}

func sorted(s ...string) []string { slices.Sort(s); return s }

// statusJSON is what the tests read of cairn status --json.
type statusJSON struct {
	Groups []statusGroup `json:"groups"`
	Never  []struct {
		Node string `json:"node"`
		Plan string `json:"plan"`
	} `json:"never"`
	StoredBytes      int64    `json:"stored_bytes"`
	VerifiedFraction float64  `json:"verified_fraction"`
	Attention        []string `json:"attention"`
}

// statusGroup is one group of cairn status --json.
type statusGroup struct {
	Node      string   `json:"node"`
	Plan      string   `json:"plan"`
	Paths     []string `json:"paths"`
	Snapshots int      `json:"snapshots"`
	Last      struct {
		ID    string `json:"id"`
		Bytes uint64 `json:"bytes"`
	} `json:"last"`
	Drill *struct {
		Report         string  `json:"report"`
		Result         string  `json:"result"`
		RestoreSeconds float64 `json:"restore_seconds"`
		Reason         string  `json:"reason"`
	} `json:"drill"`
}
