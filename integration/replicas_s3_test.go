package integration

import (
	"bytes"
	"context"
	"encoding/json"
	"fmt"
	"io"
	"math/rand/v2"
	"net/http"
	"os"
	"path/filepath"
	"regexp"
	"slices"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/minio/minio-go/v7"

	"github.com/cairnbackup/cairn/integration/apptest"
	"github.com/cairnbackup/cairn/integration/s3test"
)

// replicaEnv is a directory repository with two replicas: offsite, a
// prefix of a bucket of its own on a real SeaweedFS (reached at
// endpoint, the server or a proxy in front of it), and usb, a directory.
type replicaEnv struct {
	*env
	srv      *s3test.Server
	bucket   string
	endpoint string
	offsite  string // the replica's URL
	usb      string
	creds    string
	cache    string // the appliance's cache directory for offsite
	extra    string // more configuration
}

func newReplicaEnv(t *testing.T, srv *s3test.Server, endpoint string) *replicaEnv {
	t.Helper()
	e := newEnv(t)
	r := &replicaEnv{env: e, srv: srv, bucket: srv.NewBucket(t), endpoint: endpoint}
	r.offsite = "s3+http://" + endpoint + "/" + r.bucket + "/offsite"
	r.usb = filepath.Join(e.dir, "usb", "cairn")
	r.creds = filepath.Join(e.dir, "offsite.env")
	r.cache = filepath.Join(e.dir, "offsite-cache")
	if err := os.WriteFile(r.creds, []byte(fmt.Sprintf("AWS_ACCESS_KEY_ID=%s\nAWS_SECRET_ACCESS_KEY=%s\n", srv.AccessKey, srv.SecretKey)), 0o600); err != nil {
		t.Fatal(err)
	}
	return r
}

// config is the replicas: part of the configuration.
func (r *replicaEnv) config() string {
	return fmt.Sprintf("replicas:\n  offsite:\n    to: %s\n    s3_credentials: %s\n    cache_dir: %s\n  usb:\n    to: %s\n%s",
		r.offsite, r.creds, r.cache, r.usb, r.extra)
}

func (r *replicaEnv) writeConfig() { r.writeConfigExtra(apptest.FreePort(r.t), r.config()) }

// on returns the variables that make cairn work on replica name as a
// repository of its own, with a cache directory of its own (fresh for
// each tag).
func (r *replicaEnv) on(name, tag string) []string {
	if name == "usb" {
		return []string{"CAIRN_REPO=" + r.usb}
	}
	return []string{"CAIRN_REPO=" + r.offsite, "CAIRN_S3_CREDENTIALS=" + r.creds,
		"CAIRN_CACHE_DIR=" + filepath.Join(r.dir, "cache-"+tag), "CAIRN_STATE_DIR=" + filepath.Join(r.dir, "state-"+tag)}
}

// checkReplica runs check --read-data on replica name (a fresh cache:
// the index rebuilt from the replica alone) and fails on any finding.
func (r *replicaEnv) checkReplica(name, tag string) int {
	r.t.Helper()
	res := r.run(r.on(name, tag), "check", "--read-data", "--json")
	var rep struct {
		Snapshots int   `json:"snapshots"`
		Findings  []any `json:"findings"`
	}
	if res.code != 0 || json.Unmarshal([]byte(res.stdout), &rep) != nil || len(rep.Findings) != 0 {
		r.t.Fatalf("check of replica %s: exit %d\n%s\n%s", name, res.code, res.stdout, res.stderr)
	}
	return rep.Snapshots
}

// restores restores every snapshot the replica holds that is among ids
// and compares it with its copy; it returns how many it restored.
func (r *replicaEnv) restores(name, tag string, ids, copies []string) int {
	r.t.Helper()
	have := r.snapshotIDs(r.on(name, tag))
	src := filepath.Join(r.dir, "src")
	n := 0
	for i, id := range ids {
		if !have[id] {
			continue
		}
		dst := filepath.Join(r.dir, "from-"+name+"-"+tag+"-"+id[:8])
		if out := r.run(r.on(name, tag), "restore", id[:12]+":"+src, "--target", dst); out.code != 0 {
			r.t.Fatalf("restore %s from replica %s: %+v", id[:8], name, out)
		}
		repotestAssertSame(r.t, copies[i], filepath.Join(dst, "src"))
		os.RemoveAll(dst)
		n++
	}
	return n
}

// snapshotIDs lists the IDs of the snapshots cairn snapshots --json
// lists with the variables extra (the primary's with none).
func (r *replicaEnv) snapshotIDs(extra []string) map[string]bool {
	r.t.Helper()
	res := r.run(extra, "snapshots", "--json")
	var list []snapshotJSON
	if err := json.Unmarshal([]byte(res.stdout), &list); res.code != 0 || err != nil {
		r.t.Fatalf("snapshots: %+v %v", res, err)
	}
	out := map[string]bool{}
	for _, s := range list {
		out[s.ID] = true
	}
	return out
}

// seeded reports whether replica name holds a config: a repository.
func (r *replicaEnv) seeded(name string) bool {
	if name == "usb" {
		_, err := os.Stat(filepath.Join(r.usb, "config"))
		return err == nil
	}
	_, err := r.srv.Client(r.t).StatObject(context.Background(), r.bucket, "offsite/config", minio.StatObjectOptions{})
	return err == nil
}

// uploads lists the incomplete multipart uploads under the replica's
// prefix.
func (r *replicaEnv) uploads() []string {
	var out []string
	for u := range r.srv.Client(r.t).ListIncompleteUploads(context.Background(), r.bucket, "offsite/", true) {
		if u.Err != nil {
			r.t.Fatal(u.Err)
		}
		out = append(out, u.Key)
	}
	return out
}

// Replication killed (SIGKILL) at every phase and at random offsets,
// into an object store and a directory: right after each kill the
// replicas hold no snapshot whose data they lack (check --read-data of
// each, from a fresh cache, is clean) and no partial object; the next
// run completes; at the end every snapshot restores bit-identical from
// each replica.
func TestReplicateKilledAnywhere(t *testing.T) {
	srv := s3test.Shared(t)
	r := newReplicaEnv(t, srv, srv.Endpoint)
	r.ok("init")
	r.writeConfig()
	src := filepath.Join(r.dir, "src")
	bigSource(t, src)
	seed := rand.Uint64()
	t.Logf("seed %d", seed)
	rng := rand.New(rand.NewPCG(seed, 1))
	var ids, copies []string
	backup := func(i int) {
		os.WriteFile(filepath.Join(src, "var", "lib", "version.bin"), randomish(uint64(i+1), 9<<20), 0o644)
		bk := r.backupJSON("--node", "lyra", "--plan", "data", src)
		cp := filepath.Join(r.dir, fmt.Sprintf("copy%d", i))
		r.ok("restore", bk.Snapshot[:12]+":"+src, "--target", cp)
		ids, copies = append(ids, bk.Snapshot), append(copies, filepath.Join(cp, "src"))
	}
	backup(0)

	// Learn every point a whole run passes, into a throwaway replica.
	trace := filepath.Join(r.dir, "trace")
	learn := newReplicaEnv(t, srv, srv.Endpoint)
	learn.env = r.env
	learn.usb = filepath.Join(r.dir, "learn-usb")
	learn.offsite = "s3+http://" + srv.Endpoint + "/" + r.bucket + "/learn"
	learn.cache = filepath.Join(r.dir, "learn-cache")
	learn.writeConfig()
	if out := r.run([]string{"CAIRN_CRASHPOINT_TRACE=" + trace}, "replicate"); out.code != 0 {
		t.Fatalf("traced run: %+v", out)
	}
	learned := strings.Fields(string(mustRead(t, trace)))
	r.writeConfig()
	if !slices.Contains(learned, "s3-part-stored") || !slices.Contains(learned, "storage-before-rename") || !slices.Contains(learned, "replicate-snapshot-copied") {
		t.Fatalf("the traced run passed %v", learned)
	}
	deliberate := []string{"replicate-pack-copied:1", "s3-part-stored:1", "storage-before-rename:2", "replicate-packs-done:1", "replicate-snapshot-copied:1", "replicate-packs-done:2"}
	killed := 0
	for i := range 10 {
		backup(i + 1)
		point := deliberate[i%len(deliberate)]
		if i >= len(deliberate) {
			j := rng.IntN(len(learned))
			point = fmt.Sprintf("%s:%d", learned[j], count(learned[:j+1], learned[j]))
		}
		out := r.run([]string{"CAIRN_CRASHPOINT=" + point}, "replicate")
		if out.code != -1 {
			t.Logf("replicate with %s ran to its end: exit %d", point, out.code)
			if out.code != 0 {
				t.Fatalf("%+v", out)
			}
			continue
		}
		killed++
		tag := fmt.Sprintf("k%d", i)
		for _, name := range []string{"offsite", "usb"} {
			if r.seeded(name) { // a replica the killed run had not begun holds nothing yet
				r.checkReplica(name, tag)
			}
		}
	}
	if killed < len(deliberate)-1 {
		t.Fatalf("only %d of the runs were killed", killed)
	}
	for _, rep := range r.replicate() {
		if rep.Status != "ok" || rep.Report.Lag != 0 {
			t.Fatalf("the run after the kills: %+v", rep)
		}
	}
	if u := r.uploads(); len(u) != 0 {
		t.Fatalf("incomplete uploads left: %v", u)
	}
	if tmp := findTemps(t, r.usb); len(tmp) != 0 {
		t.Fatalf("temporary files left in the directory replica: %v", tmp)
	}
	for _, name := range []string{"offsite", "usb"} {
		if n := r.restores(name, "end", ids, copies); n != len(ids) {
			t.Fatalf("replica %s restored %d of %d snapshots", name, n, len(ids))
		}
	}
}

func count(list []string, s string) int {
	n := 0
	for _, x := range list {
		if x == s {
			n++
		}
	}
	return n
}

// The store killed in the middle of a replication: the run fails naming
// the object and the endpoint; once the store is back the next run
// completes and the replica checks clean and restores.
func TestReplicateStoreKilled(t *testing.T) {
	srv := s3test.Start(t)
	proxy := s3test.NewProxy(t, srv.Endpoint)
	r := newReplicaEnv(t, srv, proxy.Endpoint)
	r.ok("init")
	r.writeConfig()
	ids, copies := backupVersions(t, r.env, 2)
	var once sync.Once
	proxy.OnRequest(func(q s3test.Request) {
		if q.Method == "PUT" && strings.Contains(q.Path, "/packs/") {
			once.Do(srv.Kill)
		}
	})
	out := r.run(nil, "replicate", "offsite")
	want := regexp.MustCompile(`(?m)^cairn: replica offsite \(` + regexp.QuoteMeta(r.offsite) + `\): .*` + regexp.QuoteMeta(r.offsite) + `/.*\(gave up after 8 attempts\)`)
	if out.code != 1 || !want.MatchString(out.stderr) {
		t.Fatalf("replicate with the store down: exit %d\n%s\n%s", out.code, out.stdout, out.stderr)
	}
	st := r.run(nil, "status")
	if st.code != 5 || !strings.Contains(st.stdout, "job replicate/offsite failed at ") {
		t.Fatalf("status after the failed run: %+v", st)
	}
	srv.Restart(t)
	rep := r.replicate("offsite")
	if rep[0].Status != "ok" || rep[0].Report.Lag != 0 || rep[0].Report.Snapshots != 2 {
		t.Fatalf("after the restart: %+v", rep)
	}
	r.checkReplica("offsite", "a")
	if n := r.restores("offsite", "a", ids, copies); n != 2 {
		t.Fatalf("restored %d", n)
	}
}

// A pack damaged on the object-store replica: its verification finds it
// and marks it, the next replication copies it again, and the replica
// checks clean. A pack damaged on the primary is healed from the
// replica by cairn repair packs, which names where it came from.
func TestReplicaDamageBothWays(t *testing.T) {
	srv := s3test.Shared(t)
	r := newReplicaEnv(t, srv, srv.Endpoint)
	r.ok("init")
	r.writeConfig()
	ids, copies := backupVersions(t, r.env, 2)
	r.replicate()

	c := srv.Client(t)
	var key string
	var size int64
	for o := range c.ListObjects(context.Background(), r.bucket, minio.ListObjectsOptions{Prefix: "offsite/packs/", Recursive: true}) {
		if o.Size > size {
			key, size = o.Key, o.Size
		}
	}
	obj, err := c.GetObject(context.Background(), r.bucket, key, minio.GetObjectOptions{})
	if err != nil {
		t.Fatal(err)
	}
	var buf bytes.Buffer
	buf.ReadFrom(obj)
	b := buf.Bytes()
	b[len(b)/2] ^= 0x01
	if _, err := c.PutObject(context.Background(), r.bucket, key, bytes.NewReader(b), int64(len(b)), minio.PutObjectOptions{}); err != nil {
		t.Fatal(err)
	}
	v := r.run(nil, "jobs", "run", "verify/offsite")
	if v.code != 5 || !strings.Contains(v.stdout, "objects marked to be copied again from the primary at the next replication") {
		t.Fatalf("verify/offsite: %+v", v)
	}
	st := r.run(nil, "status", "--json")
	if st.code != 5 || !strings.Contains(st.stdout, "replica offsite: the last verification found damage: verified ") {
		t.Fatalf("status: %+v", st)
	}
	rep := r.replicate("offsite")
	if rep[0].Report.Repaired != 1 || rep[0].Report.Packs != 1 {
		t.Fatalf("the next replication: %+v", rep[0].Report)
	}
	r.checkReplica("offsite", "after")

	// The other way: a pack of the primary damaged.
	packs, _ := filepath.Glob(filepath.Join(r.repo, "packs", "*", "*"))
	victim := packs[0]
	raw := mustRead(t, victim)
	raw[len(raw)/3] ^= 0x80
	os.WriteFile(victim, raw, 0o600)
	if out := r.run(nil, "check", "--read-data"); out.code != 4 {
		t.Fatalf("check of the damaged primary: %+v", out)
	}
	h := r.run(nil, "repair", "packs", "--read-data", "--replica", "offsite")
	want := "packs/" + filepath.Base(victim) + ": repaired from replica offsite (" + r.offsite + ")\n1 of 1 repaired\n"
	if h.code != 0 || h.stdout != want {
		t.Fatalf("repair packs: exit %d\n%s\nwant\n%s\n%s", h.code, h.stdout, want, h.stderr)
	}
	r.ok("check", "--read-data")
	for i, id := range ids {
		dst := filepath.Join(r.dir, "healed"+id[:8])
		r.ok("restore", id[:12]+":"+filepath.Join(r.dir, "src"), "--target", dst)
		repotestAssertSame(t, copies[i], filepath.Join(dst, "src"))
	}
}

// Nodes push, forget and prune run and replications run, all at once
// through the running appliance, round after round: every replication
// either succeeds or leaves what it could not copy for the next, prunes
// keep what a replication holds, and at the end both replicas check
// clean from a fresh cache and every snapshot they hold restores
// bit-identical to its source as pushed.
func TestReplicationDuringPushesAndPrune(t *testing.T) {
	began := time.Now().Truncate(time.Second)
	srv := s3test.Shared(t)
	r := newReplicaEnv(t, srv, srv.Endpoint)
	r.ok("init", "--pack-size", "1MiB")
	nodes := []*node{newNode(t, "lyra", "push"), newNode(t, "vega", "push")}
	metrics := fmt.Sprintf("127.0.0.1:%d", apptest.FreePort(t))
	a := r.serveWith("metrics: "+metrics+"\n"+r.config(), nodes...)
	type acked struct{ id, path, oracle string }
	var (
		mu   sync.Mutex
		acks []acked
	)
	push := func(round int, n *node) {
		src := filepath.Join(r.dir, "nodes", n.Name)
		os.MkdirAll(src, 0o755)
		os.WriteFile(filepath.Join(src, "stable.bin"), randomish(uint64(len(n.Name)), 1<<20), 0o644)
		os.WriteFile(filepath.Join(src, fmt.Sprintf("round%d.bin", round)), randomish(uint64(round*10+len(n.Name)), 600<<10), 0o644)
		oracle := filepath.Join(r.dir, "oracle", fmt.Sprintf("%s-%d", n.Name, round))
		if err := os.CopyFS(oracle, os.DirFS(src)); err != nil {
			t.Error(err)
			return
		}
		out := a.push(n, nil, "--json", src)
		if out.code != 0 {
			t.Errorf("push %s round %d: %+v", n.Name, round, out)
			return
		}
		var ack struct {
			Snapshot string `json:"snapshot"`
		}
		for _, line := range strings.Split(strings.TrimSpace(out.stdout), "\n") {
			if json.Unmarshal([]byte(line), &ack) == nil && ack.Snapshot != "" {
				mu.Lock()
				acks = append(acks, acked{ack.Snapshot, src, oracle})
				mu.Unlock()
			}
		}
	}
	for round := range 4 {
		var wg sync.WaitGroup
		for _, n := range nodes {
			wg.Go(func() { push(round, n) })
		}
		wg.Go(func() {
			if out := r.run(nil, "forget", "--keep-last", "2", "--prune"); out.code != 0 {
				t.Errorf("forget --prune: %+v", out)
			}
		})
		wg.Go(func() {
			if out := r.run(nil, "replicate", "--json"); out.code != 0 && out.code != 5 {
				t.Errorf("replicate: %+v", out)
			}
		})
		wg.Wait()
		if t.Failed() {
			t.Fatalf("round %d; appliance log:\n%s", round, a.Log())
		}
	}
	if len(acks) != 8 {
		t.Fatalf("%d pushes acknowledged", len(acks))
	}
	for _, rep := range r.replicate() {
		if rep.Status != "ok" || rep.Report.Lag != 0 {
			t.Fatalf("the last run: %+v", rep)
		}
	}
	// The metrics and the status page show both replicas up to date.
	for _, want := range []string{`cairn_replica_lag_bytes{replica="offsite"} 0`, `cairn_replica_lag_bytes{replica="usb"} 0`,
		`cairn_replica_last_run_success{replica="offsite"} 1`, `cairn_replica_overdue{replica="usb"} 0`} {
		if got := httpGet(t, "http://"+metrics+"/metrics"); !strings.Contains(got, "\n"+want+"\n") {
			t.Fatalf("/metrics lacks %s:\n%s", want, got)
		}
	}
	// The newest replication that got through ended during this test.
	for _, name := range []string{"offsite", "usb"} {
		m := regexp.MustCompile(`\ncairn_replica_last_success_timestamp_seconds\{replica="` + name + `"\} ([0-9.e+]+)\n`).FindStringSubmatch(httpGet(t, "http://"+metrics+"/metrics"))
		var ts float64
		if m != nil {
			fmt.Sscan(m[1], &ts)
		}
		if ts < float64(began.Unix()) || ts > float64(time.Now().Unix()) {
			t.Fatalf("cairn_replica_last_success_timestamp_seconds of %s: %v, not between %v and now", name, m, began)
		}
	}
	page := httpGet(t, "http://"+metrics+"/")
	for _, name := range []string{"offsite", "usb"} {
		if !strings.Contains(page, `<tr data-replica="`+name+`" data-state="ok" data-lag-bytes="0">`) {
			t.Fatalf("the status page has no row for replica %s up to date:\n%s", name, page)
		}
	}
	primary := r.snapshotIDs(nil)
	for _, name := range []string{"offsite", "usb"} {
		n := r.checkReplica(name, "end")
		list := r.snapshotIDs(r.on(name, "end"))
		restored := 0
		for _, ack := range acks {
			if !list[ack.id] {
				if primary[ack.id] {
					t.Fatalf("snapshot %s is on the primary but not on replica %s", ack.id[:8], name)
				}
				continue
			}
			dst := filepath.Join(r.dir, "restored-"+name+"-"+ack.id[:8])
			if out := r.run(r.on(name, "end"), "restore", ack.id[:12]+":"+ack.path, "--target", dst); out.code != 0 {
				t.Fatalf("restore %s from %s: %+v", ack.id[:8], name, out)
			}
			sameContents(t, ack.oracle, filepath.Join(dst, filepath.Base(ack.path)))
			restored++
		}
		if restored != n || restored < 4 {
			t.Fatalf("replica %s: %d snapshots, %d restored", name, n, restored)
		}
	}
}

func httpGet(t *testing.T, url string) string {
	t.Helper()
	resp, err := http.Get(url)
	if err != nil {
		t.Fatal(err)
	}
	defer resp.Body.Close()
	b, err := io.ReadAll(resp.Body)
	if err != nil || resp.StatusCode != 200 {
		t.Fatalf("GET %s: %d %v", url, resp.StatusCode, err)
	}
	return string(b)
}

// sameContents fails the test unless the directories hold the same
// files with the same bytes (the oracle copies of pushed trees keep no
// times).
func sameContents(t *testing.T, want, got string) {
	t.Helper()
	names := func(dir string) []string {
		var out []string
		filepath.WalkDir(dir, func(p string, d os.DirEntry, err error) error {
			if err == nil && !d.IsDir() {
				rel, _ := filepath.Rel(dir, p)
				out = append(out, rel)
			}
			return err
		})
		return out
	}
	w, g := names(want), names(got)
	if !slices.Equal(w, g) {
		t.Fatalf("files %v, want %v", g, w)
	}
	for _, n := range w {
		if !bytes.Equal(mustRead(t, filepath.Join(want, n)), mustRead(t, filepath.Join(got, n))) {
			t.Fatalf("%s differs", n)
		}
	}
}

// transfers: N objects at once: with transfers: 3 the store sees three
// packs being put at the same time (the proxy holds each pack's PUT
// until three are in flight), and the replica restores.
func TestReplicateTransfersAtOnce(t *testing.T) {
	srv := s3test.Shared(t)
	proxy := s3test.NewProxy(t, srv.Endpoint)
	r := newReplicaEnv(t, srv, proxy.Endpoint)
	r.ok("init", "--pack-size", "1MiB")
	r.writeConfigExtra(apptest.FreePort(t), fmt.Sprintf("replicas:\n  offsite:\n    to: %s\n    s3_credentials: %s\n    cache_dir: %s\n    transfers: 3\n", r.offsite, r.creds, r.cache))
	src := filepath.Join(r.dir, "src")
	os.MkdirAll(src, 0o755)
	os.WriteFile(filepath.Join(src, "data.bin"), randomish(3, 6<<20), 0o644)
	bk := r.backupJSON("--node", "lyra", "--plan", "data", src)

	var (
		mu       sync.Mutex
		puts     = map[string]bool{}
		release  = make(chan struct{})
		once     sync.Once
		timedOut bool
	)
	proxy.OnRequest(func(q s3test.Request) {
		if q.Method != "PUT" || !strings.Contains(q.Path, "/offsite/packs/") {
			return
		}
		mu.Lock()
		puts[q.Path] = true
		if len(puts) >= 3 {
			once.Do(func() { close(release) })
		}
		mu.Unlock()
		select {
		case <-release:
		case <-time.After(time.Minute): // a bound, should the run put one pack at a time
			mu.Lock()
			timedOut = true
			mu.Unlock()
		}
	})
	rep := r.replicate("offsite")
	mu.Lock()
	defer mu.Unlock()
	if timedOut || rep[0].Status != "ok" || rep[0].Report.Packs < 5 || len(puts) != rep[0].Report.Packs {
		t.Fatalf("replicate: %d packs put, fewer than 3 at once: %v; %+v", len(puts), timedOut, rep)
	}
	dst := filepath.Join(r.dir, "restored")
	if out := r.run(r.on("offsite", "a"), "restore", bk.Snapshot[:12]+":"+src, "--target", dst); out.code != 0 {
		t.Fatalf("restore from the replica: %+v", out)
	}
	sameContents(t, src, filepath.Join(dst, "src"))
}
