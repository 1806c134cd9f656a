package integration

import (
	"encoding/json"
	"path/filepath"
	"regexp"
	"testing"

	"github.com/cairnbackup/cairn/integration/s3test"
)

// While the object store is down, the appliance still answers what the
// operator asks it from its local index: status (with the snapshots, the
// drill marks and the replicas), snapshots and drills, through its
// socket. Only what needs the bucket's data fails, naming the store; the
// next push after the store is back succeeds.
func TestObjectStoreOutageStatus(t *testing.T) {
	s, proxy := newS3EnvBehind(t, s3test.Start(t))
	s.ok("init")
	src := filepath.Join(s.dir, "src")
	writeSource(t, src)
	lyra := newNode(t, "lyra", "push, read")
	a := s.serveWith("s3_credentials: "+s.creds+"\n", lyra)
	if r := s.record(a.push(lyra, nil, "--plan", "etc", src)); r.code != 0 {
		t.Fatalf("push: %d %s", r.code, r.stderr)
	}
	before := s.ok("snapshots")

	proxy.SetRule(func(s3test.Request) s3test.Fault { return s3test.Fail500 })
	// The operator on the appliance's box: the appliance's own key,
	// no password file to prove first.
	noPass := []string{"CAIRN_PASSWORD_FILE="}
	if r := s.record(s.run(noPass, "snapshots")); r.code != 0 || r.stdout != before {
		t.Fatalf("snapshots during the outage: exit %d\n%q %q\nbefore:\n%s\nlog: %s", r.code, r.stdout, r.stderr, before, a.Log())
	}
	st := s.record(s.run(noPass, "status", "--json"))
	if st.code != 0 && st.code != 5 {
		t.Fatalf("status during the outage: exit %d\n%s", st.code, st.stderr)
	}
	var doc struct {
		Groups []struct {
			Node      string `json:"node"`
			Snapshots int    `json:"snapshots"`
		} `json:"groups"`
	}
	if err := json.Unmarshal([]byte(st.stdout), &doc); err != nil || len(doc.Groups) != 1 || doc.Groups[0].Node != "lyra" || doc.Groups[0].Snapshots != 1 {
		t.Fatalf("status during the outage: %v\n%s", err, st.stdout)
	}
	// The whole list of drill reports is the bucket's drills/; a
	// password file is proved against the bucket's keys/.
	gaveUp := regexp.QuoteMeta(" (HTTP 500 InternalError) (gave up after 8 attempts)") + "\n$"
	dr := s.record(s.run(noPass, "drills"))
	if want := regexp.MustCompile(`^cairn: drill reports: storage: list ` + regexp.QuoteMeta(s.repo) + `/drills/: fault injected by s3test\.Proxy` + gaveUp); dr.code != 1 || !want.MatchString(dr.stderr) {
		t.Fatalf("drills during the outage: exit %d %q", dr.code, dr.stderr)
	}
	pw := s.record(s.run(nil, "snapshots"))
	if want := regexp.MustCompile(`^cairn: the password file ` + regexp.QuoteMeta(filepath.Join(s.dir, "password")) + ` could not be checked against repository ` + regexp.QuoteMeta(s.repo) + `: storage: open s3\+http://` + regexp.QuoteMeta(proxy.Endpoint+"/"+s.bucket) + `: fault injected by s3test\.Proxy` + gaveUp); pw.code != 1 || !want.MatchString(pw.stderr) {
		t.Fatalf("snapshots with a password file during the outage: exit %d %q", pw.code, pw.stderr)
	}
	proxy.SetRule(nil)
	if r := s.record(a.push(lyra, nil, "--plan", "etc", src)); r.code != 0 {
		t.Fatalf("push after the outage: %d %s", r.code, r.stderr)
	}
	a.stop()
	s.checkClean()
	s.noSecret()
}
