package appliance

import (
	"encoding/json"
	"fmt"
	"net"
	"net/http"
	"os"
	"path/filepath"
	"regexp"
	"strings"
	"testing"
	"time"

	"github.com/cairnbackup/cairn/repo"
	"github.com/cairnbackup/cairn/repo/backup"
	"github.com/cairnbackup/cairn/repo/blob"
	"github.com/cairnbackup/cairn/repo/check"
	"github.com/cairnbackup/cairn/repo/replica"
	"github.com/cairnbackup/cairn/repo/repotest"
	"github.com/cairnbackup/cairn/repo/snapshot"
	"github.com/cairnbackup/cairn/repo/status"
	"github.com/cairnbackup/cairn/scheduler"
)

// replicaAppliance is an appliance (not serving) on a fresh repository
// with configuration text cfg, its page served on 127.0.0.1 (base URL
// returned) and its notifications retried at once.
func replicaAppliance(t *testing.T, cfg string) (*Appliance, string) {
	t.Helper()
	r := repotest.New(t)
	path := filepath.Join(t.TempDir(), "a.yaml")
	if err := os.WriteFile(path, []byte(cfg), 0o600); err != nil {
		t.Fatal(err)
	}
	a, err := New(Options{Repo: r, ConfigPath: path})
	if err != nil {
		t.Fatal(err)
	}
	a.notes.backoff = time.Millisecond
	t.Cleanup(func() { a.notes.close(time.Second) })
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	srv := &http.Server{Handler: a.metricsHandler(ln, http.NotFoundHandler()), ReadHeaderTimeout: 10 * time.Second}
	go srv.Serve(ln)
	t.Cleanup(func() { srv.Close() })
	return a, "http://" + ln.Addr().String()
}

// commitFiles backs up files as a snapshot of lyra/git.
func commitFiles(t *testing.T, r *repo.Repository, files map[string]string) blob.ID {
	t.Helper()
	src := filepath.Join(t.TempDir(), "src")
	repotest.WriteTree(t, src, files)
	s := r.NewSession()
	res, err := backup.Run(t.Context(), s, []string{src}, backup.Options{Params: r.ChunkerParams(), Table: r.ChunkerTable()})
	if err != nil {
		t.Fatal(err)
	}
	id, err := s.Commit(t.Context(), &snapshot.Snapshot{Version: 1, Time: time.Now(), Node: "lyra", Plan: "git", Paths: []string{src}, Tree: res.Tree})
	if err != nil {
		t.Fatal(err)
	}
	return id
}

// event decodes the next webhook request.
func event(t *testing.T, hook *receiver) map[string]any {
	t.Helper()
	var ev map[string]any
	if err := json.Unmarshal([]byte(hook.next(t).Body), &ev); err != nil {
		t.Fatal(err)
	}
	delete(ev, "time")
	delete(ev, "host")
	return ev
}

// recordReplication puts a replication of replica name that got
// through into the job history: started at start, having listed the
// repository at listed.
func recordReplication(t *testing.T, a *Appliance, name string, start, listed time.Time) {
	t.Helper()
	detail, _ := json.Marshal(&replica.Report{Listed: listed, Ended: listed})
	run := scheduler.Run{Job: ReplicaJob("replicate", name), Kind: ReplicaJob("replica", name), Start: start, End: start, Scheduled: start,
		Status: scheduler.StatusOK, Result: scheduler.Result{Summary: "copied", Detail: detail}}
	if err := (History{R: a.r}).Record(run); err != nil {
		t.Fatal(err)
	}
}

// A replica that lags past its schedule (never replicated, or its
// newest replication that got through older than two intervals) is told
// by the staleness job as replica_lag, with why, once per repeat while
// it lasts, and again once it ended and came back; the status page shows
// it late, with its lag in bytes.
func TestReplicaLagNotified(t *testing.T) {
	hook := newReceiver(t, nil)
	offsite, usb := filepath.Join(t.TempDir(), "offsite"), filepath.Join(t.TempDir(), "usb")
	a, base := replicaAppliance(t, "replicas:\n  offsite:\n    to: "+offsite+"\n    schedule: \"@daily\"\n  usb:\n    to: "+usb+"\n    schedule: \"@weekly\"\n"+
		"notifications:\n  webhooks: [{url: \""+hook.URL+"\"}]\n")
	cfg := a.Config()
	old := time.Now().Add(-74*time.Hour - 20*time.Second).Truncate(time.Second)
	recordReplication(t, a, "offsite", old, old)
	commitFiles(t, a.r, map[string]string{"a.txt": "alpha", "b.txt": strings.Repeat("beta ", 1000)})
	st, err := a.Status(t.Context(), cfg)
	if err != nil {
		t.Fatal(err)
	}
	lag := st.StoredBytes
	if lag == 0 || len(st.Replicas) != 2 || st.Replicas[0].LagBytes != lag {
		t.Fatalf("status %+v", st)
	}
	why := fmt.Sprintf("last replicated 3d2h ago (%s), its schedule runs every 1d; %s behind", old.UTC().Format(time.RFC3339), status.HumanBytes(uint64(lag)))

	for range 2 {
		res, err := a.StalenessJob(t.Context(), cfg)
		if err != nil {
			t.Fatal(err)
		}
		if want := "all 1 node/plans backed up on time; replicas late: offsite (" + why + "), usb (never replicated (cairn replicate usb))"; !res.Attention || res.Summary != want {
			t.Fatalf("staleness: attention %v, summary %q\nwant %q", res.Attention, res.Summary, want)
		}
	}
	want := []string{
		fmt.Sprint(map[string]any{"event": "replica_lag", "replica": "offsite", "reason": why, "title": "cairn: replica offsite is late",
			"message": "Replica offsite (" + offsite + "): " + why}),
		fmt.Sprint(map[string]any{"event": "replica_lag", "replica": "usb", "reason": "never replicated (cairn replicate usb)", "title": "cairn: replica usb is late",
			"message": "Replica usb (" + usb + "): never replicated (cairn replicate usb)"}),
	}
	for _, w := range want {
		if got := fmt.Sprint(event(t, hook)); got != w {
			t.Errorf("event %s\nwant  %s", got, w)
		}
	}

	code, _, page := get(t, "GET", base+"/", nil)
	for _, w := range []string{
		`<tr data-replica="offsite" data-state="late" data-lag-bytes="` + fmt.Sprint(lag) + `">`,
		`<tr data-replica="usb" data-state="late" data-lag-bytes="` + fmt.Sprint(lag) + `">`,
		"<li>replica offsite: " + why + "</li>",
		"<li>replica usb: never replicated (cairn replicate usb)</li>",
	} {
		if code != 200 || !strings.Contains(page, w) {
			t.Errorf("the page (%d) lacks %s", code, w)
		}
	}

	// offsite is replicated: its lag is over; usb's goes on, and is not
	// told again within the repeat. The next request the webhook gets
	// is offsite's once it is late again.
	start := time.Now()
	done, err := a.ReplicateJob(t.Context(), cfg, "offsite")
	if err != nil || done.Attention {
		t.Fatalf("replicate: %+v %v", done, err)
	}
	run := scheduler.Run{Job: "replicate/offsite", Kind: "replica/offsite", Start: start, End: time.Now(), Scheduled: start, Status: scheduler.StatusOK, Result: done}
	if err := (History{R: a.r}).Record(run); err != nil { // as the scheduler does
		t.Fatal(err)
	}
	res, err := a.StalenessJob(t.Context(), cfg)
	if err != nil {
		t.Fatal(err)
	}
	if res.Summary != "all 1 node/plans backed up on time; replicas late: usb (never replicated (cairn replicate usb))" {
		t.Errorf("staleness after the replication: %q", res.Summary)
	}
	recordReplication(t, a, "offsite", time.Now().Add(time.Second), old)
	if _, err := a.StalenessJob(t.Context(), cfg); err != nil {
		t.Fatal(err)
	}
	if ev := event(t, hook); ev["event"] != "replica_lag" || ev["replica"] != "offsite" || !regexp.MustCompile(`^last replicated 3d2h ago \(`).MatchString(fmt.Sprint(ev["reason"])) {
		t.Errorf("offsite late again: %v", ev)
	}
}

// flipPacks flips a byte in the middle of the largest pack under dir.
func flipLargestPack(t *testing.T, dir string) {
	t.Helper()
	packs, _ := filepath.Glob(filepath.Join(dir, "packs", "*", "*"))
	var victim string
	var size int64
	for _, p := range packs {
		if fi, err := os.Stat(p); err == nil && fi.Size() > size {
			victim, size = p, fi.Size()
		}
	}
	b, err := os.ReadFile(victim)
	if err != nil {
		t.Fatal(err)
	}
	b[len(b)/2] ^= 0x10
	if err := os.WriteFile(victim, b, 0o600); err != nil {
		t.Fatal(err)
	}
}

// What a replica's jobs find is told naming the replica and the job:
// damage its verification found as verify_failed, each group whose
// drill on the replica failed as drill_failed (as the repository's
// own), a replication that left something behind as job_failed; a
// replica's job that fails outright is told by its kind too.
func TestReplicaJobsNotified(t *testing.T) {
	hook := newReceiver(t, nil)
	usb, nas := filepath.Join(t.TempDir(), "usb"), filepath.Join(t.TempDir(), "nas")
	a, _ := replicaAppliance(t, "replicas:\n  usb:\n    to: "+usb+"\n  nas:\n    to: "+nas+"\n"+
		"notifications:\n  webhooks: [{url: \""+hook.URL+"\"}]\n")
	cfg := a.Config()
	snap := commitFiles(t, a.r, map[string]string{"a.txt": strings.Repeat("alpha ", 5000), "b.bin": string(blob.Hash([]byte("b")).String())})
	sn, err := a.r.LoadSnapshot(t.Context(), snap)
	if err != nil {
		t.Fatal(err)
	}
	if res, err := a.ReplicateJob(t.Context(), cfg, "usb"); err != nil || res.Attention {
		t.Fatalf("replicate: %+v %v", res, err)
	}
	flipLargestPack(t, usb)

	res, err := a.VerifyReplicaJob(t.Context(), cfg, "usb")
	if err != nil || !res.Attention {
		t.Fatalf("verify/usb: %+v %v", res, err)
	}
	var found check.Report
	json.Unmarshal(res.Detail, &found)
	var lines []string
	for _, f := range found.Findings[:min(5, len(found.Findings))] {
		lines = append(lines, f.String())
	}
	reason := strings.Join(lines, "\n")
	n := len(found.Findings)
	want := map[string]any{"event": "verify_failed", "job": "verify/usb", "replica": "usb", "reason": reason,
		"title":   fmt.Sprintf("cairn: verification of replica usb found %d problems", n),
		"message": fmt.Sprintf("Verification of replica usb (%s) found %d problems (copied again from the repository at the next replication):\n%s", usb, n, reason)}
	if ev := event(t, hook); n == 0 || fmt.Sprint(ev) != fmt.Sprint(want) {
		t.Errorf("event %v\nwant  %v", ev, want)
	}

	res, err = a.DrillReplicaJob(t.Context(), cfg, "usb")
	if err != nil || !res.Attention {
		t.Fatalf("drill/usb: %+v %v", res, err)
	}
	var items []struct {
		Report blob.ID `json:"report"`
		Reason string  `json:"reason"`
	}
	json.Unmarshal(res.Detail, &items)
	if len(items) != 1 || items[0].Reason == "" {
		t.Fatalf("drill/usb: %s", res.Detail)
	}
	src := sn.Paths[0]
	want = map[string]any{"event": "drill_failed", "job": "drill/usb", "replica": "usb", "node": "lyra", "plan": "git", "paths": []any{src},
		"snapshot": snap.String(), "report": items[0].Report.String(), "reason": items[0].Reason,
		"title":   "cairn: drill of lyra/git on replica usb failed",
		"message": fmt.Sprintf("The drill of lyra/git [%s] (snapshot %s) on replica usb (%s) failed: %s (cairn drills %s)", src, snap.Short(), usb, items[0].Reason, items[0].Report.Short())}
	if ev := event(t, hook); fmt.Sprint(ev) != fmt.Sprint(want) {
		t.Errorf("event %v\nwant  %v", ev, want)
	}

	// A pack damaged on the repository is not copied to nas, nor the
	// snapshot that needs it.
	flipLargestPack(t, a.r.Dir())
	res, err = a.ReplicateJob(t.Context(), cfg, "nas")
	if err != nil || !res.Attention {
		t.Fatalf("replicate/nas: %+v %v", res, err)
	}
	want = map[string]any{"event": "job_failed", "job": "replicate/nas", "replica": "nas", "reason": res.Summary,
		"title": "cairn: replication to replica nas left objects behind", "message": "Replica nas (" + nas + "): " + res.Summary}
	if ev := event(t, hook); fmt.Sprint(ev) != fmt.Sprint(want) {
		t.Errorf("event %v\nwant  %v", ev, want)
	}

	// Jobs that fail outright, as the scheduler tells them.
	for _, c := range [][2]string{{"verify/nas", "verify_failed"}, {"drill/nas", "drill_failed"}, {"replicate/nas", "job_failed"}} {
		a.notify(t.Context(), scheduler.Run{Job: c[0], Kind: "replica/nas", Status: scheduler.StatusFailed, Error: "replica nas: unreachable"})
		want = map[string]any{"event": c[1], "job": c[0], "replica": "nas", "reason": "replica nas: unreachable",
			"title": "cairn: job " + c[0] + " failed", "message": "The " + c[0] + " job failed: replica nas: unreachable"}
		if ev := event(t, hook); fmt.Sprint(ev) != fmt.Sprint(want) {
			t.Errorf("event %v\nwant  %v", ev, want)
		}
	}
}

// The job history keeps a job's newest runs only; a replica whose last
// replication that got through is older than all of them (a long
// outage of its target) still shows when that was, not "never
// replicated", and its lag is told from it.
func TestReplicaReplicatedOutlivesHistory(t *testing.T) {
	a, _ := replicaAppliance(t, "replicas:\n  offsite:\n    to: "+filepath.Join(t.TempDir(), "offsite")+"\n    schedule: \"@hourly\"\n")
	cfg := a.Config()
	good := time.Now().Add(-300 * time.Hour).Truncate(time.Second)
	recordReplication(t, a, "offsite", good, good)
	for i := range repo.JobRunsKept + 5 {
		start := good.Add(time.Duration(i+1) * time.Hour)
		run := scheduler.Run{Job: ReplicaJob("replicate", "offsite"), Kind: ReplicaJob("replica", "offsite"), Start: start, End: start, Scheduled: start,
			Status: scheduler.StatusFailed, Error: "target unreachable"}
		if err := (History{R: a.r}).Record(run); err != nil {
			t.Fatal(err)
		}
	}
	states, err := a.ReplicaStates(t.Context(), cfg)
	if err != nil {
		t.Fatal(err)
	}
	if len(states) != 1 || !states[0].Replicated.Equal(good) || states[0].LastStatus != scheduler.StatusFailed || states[0].LastError != "target unreachable" {
		t.Fatalf("replica state %+v, want replicated at %v", states, good)
	}
	res, err := a.StalenessJob(t.Context(), cfg)
	if err != nil {
		t.Fatal(err)
	}
	if !strings.Contains(res.Summary, "offsite (last replicated 12d12h ago ("+good.UTC().Format(time.RFC3339)+")") {
		t.Fatalf("staleness: %q", res.Summary)
	}
}
