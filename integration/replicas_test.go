package integration

import (
	"encoding/json"
	"fmt"
	"math/rand/v2"
	"os"
	"path/filepath"
	"regexp"
	"strings"
	"testing"

	"github.com/cairnbackup/cairn/integration/apptest"
)

// replicationJSON is one element of cairn replicate --json.
type replicationJSON struct {
	Replica string `json:"replica"`
	Status  string `json:"status"`
	Error   string `json:"error"`
	Report  struct {
		Objects   int   `json:"objects_copied"`
		Bytes     int64 `json:"bytes_copied"`
		Packs     int   `json:"packs_copied"`
		Snapshots int   `json:"snapshots_copied"`
		Drills    int   `json:"drills_copied"`
		Keys      int   `json:"keys_and_config_copied"`
		Repaired  int   `json:"objects_repaired"`
		Lag       int64 `json:"lag_bytes"`
		Stored    int   `json:"stored_packs"`
		Deleted   int   `json:"deleted"`
		Pending   int   `json:"pending_deletes"`
		Failed    []struct {
			Object, Error string
		} `json:"failed"`
		Left []struct {
			ID     string `json:"id"`
			Reason string `json:"reason"`
		} `json:"left"`
	} `json:"report"`
}

func (e *env) replicate(args ...string) []replicationJSON {
	e.t.Helper()
	var out []replicationJSON
	if err := json.Unmarshal([]byte(e.ok(append([]string{"replicate", "--json"}, args...)...)), &out); err != nil {
		e.t.Fatal(err)
	}
	return out
}

// A directory replica by hand: cairn replicate copies everything, then
// only what is new; the replica is a repository that the same
// passphrase opens and restores from; its drill and verification run
// against it alone; status, the metrics and the runbook show it.
func TestReplicateToDirectory(t *testing.T) {
	e := newEnv(t)
	e.ok("init")
	src := filepath.Join(e.dir, "src")
	writeSource(t, src)
	first := e.backupJSON("--node", "lyra", "--plan", "files", src)
	usb := filepath.Join(e.dir, "usb", "cairn")
	e.writeConfigExtra(apptest.FreePort(t), "replicas:\n  usb:\n    to: "+usb+"\n")

	r := e.run(nil, "replicate")
	if r.code != 0 || !regexp.MustCompile(`^replica usb \(`+regexp.QuoteMeta(usb)+`\): copied \d+ objects \([0-9.]+ [KMG]?i?B\) in [0-9.]+m?s, [0-9.]+ MB/s: \d+ packs, 1 snapshots, 0 drill reports; lag 0 B\n$`).MatchString(r.stdout) {
		t.Fatalf("replicate: exit %d\n%s\n%s", r.code, r.stdout, r.stderr)
	}
	again := e.replicate("usb")
	if len(again) != 1 || again[0].Status != "ok" || again[0].Report.Objects != 0 || again[0].Report.Stored == 0 {
		t.Fatalf("second run: %+v", again)
	}

	second := e.backupJSON("--node", "lyra", "--plan", "files", src) // unchanged: a few trees
	inc := e.replicate()
	if inc[0].Report.Snapshots != 1 || inc[0].Report.Lag != 0 {
		t.Fatalf("incremental run: %+v", inc[0].Report)
	}

	// The replica on its own, with the same passphrase.
	onReplica := []string{"CAIRN_REPO=" + usb}
	list := e.run(onReplica, "snapshots", "--json")
	if list.code != 0 || !strings.Contains(list.stdout, first.Snapshot) || !strings.Contains(list.stdout, second.Snapshot) {
		t.Fatalf("snapshots on the replica: %+v", list)
	}
	dst := filepath.Join(e.dir, "restored")
	if r := e.run(onReplica, "restore", first.Snapshot+":"+src, "--target", dst); r.code != 0 {
		t.Fatalf("restore from the replica: %+v", r)
	}
	repotestAssertSame(t, src, filepath.Join(dst, "src"))
	if r := e.run(onReplica, "check", "--read-data"); r.code != 0 {
		t.Fatalf("check of the replica: %+v", r)
	}

	d := e.run(nil, "drill", "--replica", "usb", "latest")
	if d.code != 0 || !strings.HasPrefix(d.stdout, "drill of snapshot "+second.Snapshot[:8]+" (lyra/files, on replica usb): ok\n") {
		t.Fatalf("drill --replica: %+v", d)
	}
	if r := e.run(nil, "drill", "--replica", "nope", "latest"); r.code != 2 || r.stderr != `cairn: drill: no such replica "nope" (the configuration `+e.repo+`.yaml has: usb)`+"\n" {
		t.Fatalf("drill of an unknown replica: %+v", r)
	}
	if r := e.run(nil, "replicate", "nope"); r.code != 2 || r.stderr != `cairn: replicate: no such replica "nope" (the configuration `+e.repo+`.yaml has: usb)`+"\n" {
		t.Fatalf("replicate an unknown replica: %+v", r)
	}
	v := e.run(nil, "jobs", "run", "verify/usb")
	if v.code != 0 || !regexp.MustCompile(`^verify/usb: ok \([0-9.]+m?s\) verified \d+ packs \(\d+ bytes\) of replica usb: 0 problems\n$`).MatchString(v.stdout) {
		t.Fatalf("verify/usb: %+v", v)
	}
	// A replica's drill proves the replica, not the snapshot: the
	// primary's group has no drill.
	var st struct {
		Groups []struct {
			Drill *struct{} `json:"drill"`
		} `json:"groups"`
		Replicas []struct {
			Name         string `json:"name"`
			Replicated   string `json:"replicated"`
			LagBytes     int64  `json:"lag_bytes"`
			LastStatus   string `json:"last_status"`
			VerifyStatus string `json:"verify_status"`
			DrillStatus  string `json:"drill_status"`
			LastVerified string `json:"last_verified"`
			LastDrilled  string `json:"last_drilled"`
		} `json:"replicas"`
		Attention []string `json:"attention"`
	}
	out := e.ok("status", "--json")
	if err := json.Unmarshal([]byte(out), &st); err != nil {
		t.Fatal(err)
	}
	if len(st.Groups) != 1 || st.Groups[0].Drill != nil || len(st.Replicas) != 1 || st.Replicas[0].Name != "usb" || st.Replicas[0].LagBytes != 0 ||
		st.Replicas[0].LastStatus != "ok" || st.Replicas[0].VerifyStatus != "ok" || st.Replicas[0].DrillStatus != "ok" || st.Replicas[0].Replicated == "" ||
		st.Replicas[0].LastVerified == "" || st.Replicas[0].LastDrilled == "" || len(st.Attention) != 0 {
		t.Fatalf("status: %s", out)
	}
	table := e.ok("status")
	if !regexp.MustCompile(`(?m)^REPLICA +LOCATION +REPLICATED +LAG +LAST RUN +VERIFIED +DRILLED +DELETE\nusb +` + regexp.QuoteMeta(usb) + ` +\S+ \S+ UTC +0 B, 0m +ok \S+ \S+ UTC +ok \S+ \S+ UTC +ok \S+ \S+ UTC +never$`).MatchString(table) {
		t.Fatalf("status table:\n%s", table)
	}
	rb := e.ok("runbook")
	for _, want := range []string{"## Replicas\n", "| usb | `" + usb + "` | ", "## The appliance is lost\n",
		"REPLICA=" + usb + "\nPASSWORD=/root/cairn.password  # a file holding the passphrase\ncairn --repo \"$REPLICA\" --password-file \"$PASSWORD\" repair index\n"} {
		if !strings.Contains(rb, want) {
			t.Fatalf("runbook lacks %q:\n%s", want, rb)
		}
	}

	// A new snapshot makes the replica lag by its packs until the next
	// run, and a replica that never ran with a schedule needs attention.
	big := make([]byte, 2<<20)
	rng := rand.New(rand.NewPCG(15, 15))
	for i := range big {
		big[i] = byte(rng.Uint32())
	}
	os.WriteFile(filepath.Join(src, "new.bin"), big, 0o644)
	e.backupJSON("--node", "lyra", "--plan", "files", src)
	e.writeConfigExtra(apptest.FreePort(t), "replicas:\n  usb:\n    to: "+usb+"\n  later:\n    to: "+filepath.Join(e.dir, "later")+"\n    schedule: \"@daily\"\n")
	r = e.run(nil, "status", "--json")
	if r.code != 5 {
		t.Fatalf("status with a replica never replicated: exit %d", r.code)
	}
	st.Replicas, st.Attention = nil, nil
	json.Unmarshal([]byte(r.stdout), &st)
	if st.Replicas[1].Name != "usb" || st.Replicas[1].LagBytes < int64(len(big))/2 || len(st.Attention) != 1 || st.Attention[0] != "replica later: never replicated (cairn replicate later)" {
		t.Fatalf("status: %s", r.stdout)
	}
}

// A replica with its own retention keeps a longer history than the
// repository: after the repository forgets, the replica's policy decides
// over all of its snapshots, deletes only those the repository no
// longer has and the policy does not keep, and prunes what they alone
// used; what it keeps restores.
func TestReplicaRetention(t *testing.T) {
	e := newEnv(t)
	e.ok("init", "--pack-size", "1MiB")
	ids, copies := backupVersions(t, e, 4)
	usb := filepath.Join(e.dir, "usb")
	e.writeConfigExtra(apptest.FreePort(t), "replicas:\n  usb:\n    to: "+usb+"\n    retention:\n      default: {keep_last: 1}\n")
	e.replicate()
	e.ok("forget", "--keep-last", "2", "--prune")
	rep := e.replicate()
	if !strings.Contains(e.ok("jobs"), "retention forgot 2 snapshots, freed ") || rep[0].Status != "ok" {
		t.Fatalf("replicate with retention: %+v\n%s", rep, e.ok("jobs"))
	}
	onReplica := []string{"CAIRN_REPO=" + usb}
	var list []snapshotJSON
	if err := json.Unmarshal([]byte(e.run(onReplica, "snapshots", "--json").stdout), &list); err != nil || len(list) != 2 || list[0].ID != ids[2] || list[1].ID != ids[3] {
		t.Fatalf("the replica's snapshots: %+v %v; want %s and %s", list, err, ids[2][:8], ids[3][:8])
	}
	if r := e.run(onReplica, "check", "--read-data"); r.code != 0 {
		t.Fatalf("check of the replica: %+v", r)
	}
	for i := 2; i < 4; i++ {
		dst := filepath.Join(e.dir, fmt.Sprintf("r%d", i))
		if r := e.run(onReplica, "restore", ids[i][:12]+":"+filepath.Join(e.dir, "src"), "--target", dst); r.code != 0 {
			t.Fatalf("restore: %+v", r)
		}
		repotestAssertSame(t, copies[i], filepath.Join(dst, "src"))
	}
	// The next replication copies nothing back.
	if again := e.replicate(); again[0].Report.Objects != 0 {
		t.Fatalf("the run after the retention copied %d objects", again[0].Report.Objects)
	}
}

// cairn repair packs runs in the running appliance (which holds the
// repository's lock: run on its own it would be refused): a pack
// damaged under it is put back from the replica, and the appliance's
// check is clean afterwards. repair index still needs the repository to
// itself.
func TestRepairPacksBesideAppliance(t *testing.T) {
	e := newEnv(t)
	e.ok("init")
	ids, copies := backupVersions(t, e, 2)
	usb := filepath.Join(e.dir, "usb")
	a := e.serveWith("replicas:\n  usb:\n    to: " + usb + "\n")
	e.replicate()
	packs, _ := filepath.Glob(filepath.Join(e.repo, "packs", "*", "*"))
	victim := packs[len(packs)-1]
	raw := mustRead(t, victim)
	raw[len(raw)/2] ^= 0x04
	os.WriteFile(victim, raw, 0o600)
	r := e.run(nil, "repair", "packs", "--read-data")
	if r.code != 0 || r.stdout != "packs/"+filepath.Base(victim)+": repaired from replica usb ("+usb+")\n1 of 1 repaired\n" {
		t.Fatalf("repair packs: %+v\n%s", r, a.Log())
	}
	e.ok("check", "--read-data")
	for i, id := range ids {
		dst := filepath.Join(e.dir, fmt.Sprintf("r%d", i))
		e.ok("restore", id[:12]+":"+filepath.Join(e.dir, "src"), "--target", dst)
		repotestAssertSame(t, copies[i], filepath.Join(dst, "src"))
	}
	if r := e.run(nil, "repair", "index"); r.code == 0 {
		t.Fatalf("repair index beside the appliance: %+v", r)
	}
}

// cairn replicate shows its progress on a terminal, and only there: a
// line redrawn in place, ending with every byte it copied of its total.
// (Run without an appliance, the job's own "job finished" line is
// logged at info level on standard error too: --log-level warn leaves
// it out here.)
func TestReplicateProgressOnTerminal(t *testing.T) {
	e := newEnv(t)
	e.ok("init")
	src := filepath.Join(e.dir, "src")
	writeSource(t, src)
	e.ok("backup", "--node", "lyra", "--plan", "files", src)
	usb := filepath.Join(e.dir, "usb")
	e.writeConfigExtra(apptest.FreePort(t), "replicas:\n  usb:\n    to: "+usb+"\n")
	tty, stdout, code := e.runOnTerminal("--log-level", "warn", "replicate")
	m := regexp.MustCompile(`^(\r[^\r\n]*\x1b\[K)*\rreplicate to usb: ([0-9.]+ [KMG]?i?B) of ([0-9.]+ [KMG]?i?B), [0-9.]+ [KMG]?i?B/s, \d+s\x1b\[K\n$`).FindStringSubmatch(tty)
	if code != 0 || m == nil || m[2] != m[3] || !strings.HasPrefix(stdout, "replica usb ("+usb+"): copied ") {
		t.Fatalf("replicate: exit %d, terminal %q, stdout %q", code, tty, stdout)
	}
	os.WriteFile(filepath.Join(src, "new.bin"), randomish(5, 1<<20), 0o644)
	e.ok("backup", "--node", "lyra", "--plan", "files", src)
	if r := e.run(nil, "--log-level", "warn", "replicate"); r.code != 0 || r.stderr != "" {
		t.Fatalf("replicate without a terminal: exit %d, stderr %q", r.code, r.stderr)
	}
}
