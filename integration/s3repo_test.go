package integration

import (
	"bytes"
	"context"
	"encoding/json"
	"fmt"
	"io"
	"os"
	"path/filepath"
	"regexp"
	"slices"
	"strings"
	"testing"

	"github.com/minio/minio-go/v7"

	"github.com/cairnbackup/cairn/integration/s3test"
)

// s3env is an env whose repository is in a bucket of its own on a real
// SeaweedFS: s3+http://ENDPOINT/BUCKET/backups/main, with its state and
// cache directories in the test's scratch directory and its credentials
// in a 0600 file named by CAIRN_S3_CREDENTIALS. Everything cairn prints
// goes through record, so the test can prove the secret never shows.
type s3env struct {
	*env
	srv    *s3test.Server
	bucket string
	prefix string
	creds  string // the credentials file
	cache  string
	seen   []string // every output of cairn, for the secret check
}

const s3TestPrefix = "backups/main"

func newS3Env(t *testing.T, srv *s3test.Server) *s3env {
	t.Helper()
	e := newEnv(t)
	s := &s3env{env: e, srv: srv, bucket: srv.NewBucket(t), prefix: s3TestPrefix}
	e.repo = "s3+http://" + srv.Endpoint + "/" + s.bucket + "/" + s.prefix
	e.state = filepath.Join(e.dir, "state")
	s.cache = filepath.Join(e.dir, "cache")
	s.creds = filepath.Join(e.dir, "s3.env")
	if err := os.WriteFile(s.creds, []byte(fmt.Sprintf("AWS_ACCESS_KEY_ID=%s\nAWS_SECRET_ACCESS_KEY=%s\n", srv.AccessKey, srv.SecretKey)), 0o600); err != nil {
		t.Fatal(err)
	}
	e.vars = []string{"CAIRN_REPO=" + e.repo, "CAIRN_PASSWORD_FILE=" + filepath.Join(e.dir, "password"),
		"CAIRN_STATE_DIR=" + e.state, "CAIRN_CACHE_DIR=" + s.cache, "CAIRN_S3_CREDENTIALS=" + s.creds}
	return s
}

// record keeps outputs for the secret check.
func (s *s3env) record(r result) result {
	s.seen = append(s.seen, r.stdout, r.stderr)
	return r
}

// ok runs cairn, records its output and fails the test unless it exits 0.
func (s *s3env) ok(args ...string) string {
	s.t.Helper()
	r := s.record(s.run(nil, args...))
	if r.code != 0 {
		s.t.Fatalf("cairn %s: exit %d\nstdout: %s\nstderr: %s", strings.Join(args, " "), r.code, r.stdout, r.stderr)
	}
	return r.stdout
}

// objects lists the bucket under the repository's prefix: key (relative
// to the prefix) to size.
func (s *s3env) objects() map[string]int64 {
	s.t.Helper()
	out := map[string]int64{}
	for o := range s.srv.Client(s.t).ListObjects(context.Background(), s.bucket, minio.ListObjectsOptions{Prefix: s.prefix + "/", Recursive: true}) {
		if o.Err != nil {
			s.t.Fatal(o.Err)
		}
		out[strings.TrimPrefix(o.Key, s.prefix+"/")] = o.Size
	}
	return out
}

// object returns the bytes of key (relative to the prefix).
func (s *s3env) object(key string) []byte {
	s.t.Helper()
	o, err := s.srv.Client(s.t).GetObject(context.Background(), s.bucket, s.prefix+"/"+key, minio.GetObjectOptions{})
	if err != nil {
		s.t.Fatal(err)
	}
	defer o.Close()
	data, err := io.ReadAll(o)
	if err != nil {
		s.t.Fatalf("read %s: %v", key, err)
	}
	return data
}

// packObjects lists the pack objects in the bucket.
func (s *s3env) packObjects() []string {
	var out []string
	for k := range s.objects() {
		if strings.HasPrefix(k, "packs/") {
			out = append(out, k)
		}
	}
	slices.Sort(out)
	return out
}

// checkJSON runs check --read-data --json and returns its packs and
// findings.
func (s *s3env) checkClean() int {
	s.t.Helper()
	var rep struct {
		Packs    int   `json:"packs"`
		Findings []any `json:"findings"`
	}
	if err := json.Unmarshal([]byte(s.ok("check", "--read-data", "--json")), &rep); err != nil {
		s.t.Fatal(err)
	}
	if len(rep.Findings) != 0 {
		s.t.Fatalf("check --read-data found %v", rep.Findings)
	}
	return rep.Packs
}

// noSecret fails the test if the secret key shows in anything cairn
// printed or in any file under the test's directory but the credentials
// file itself.
func (s *s3env) noSecret() {
	s.t.Helper()
	secret := s.srv.SecretKey
	for i, out := range s.seen {
		if strings.Contains(out, secret) {
			s.t.Errorf("output %d shows the secret key:\n%s", i, out)
		}
	}
	filepath.Walk(s.dir, func(p string, fi os.FileInfo, err error) error {
		if err != nil || !fi.Mode().IsRegular() || p == s.creds {
			return nil
		}
		if b, err := os.ReadFile(p); err == nil && bytes.Contains(b, []byte(secret)) {
			s.t.Errorf("%s holds the secret key", p)
		}
		return nil
	})
}

// Every command works on an object-store repository as on a directory:
// init, backup, restore (and --from), ls, find, diff, dump, stats, check
// --read-data, mount, forget, prune with repack (the bucket loses the
// packs), drill, repair index, serve with a node pushing, status and
// runbook through the appliance, a second owner refused, unlock. The
// secret key shows in no output, file or process argument.
func TestObjectStoreEveryCommand(t *testing.T) {
	s := newS3Env(t, s3test.Shared(t))
	out := s.ok("init", "--pack-size", "1MiB")
	want := regexp.MustCompile(`^created repository [0-9a-f]{8} at ` + regexp.QuoteMeta(s.repo) + `
state directory \(key file, configuration, host key\): ` + regexp.QuoteMeta(s.state) + `
cache directory \(index, rebuilt from the bucket when lost\): ` + regexp.QuoteMeta(s.cache) + `
appliance host key: SHA256:[A-Za-z0-9+/]{43}
appliance configuration: ` + regexp.QuoteMeta(s.beside(".yaml")) + "\n$")
	if !want.MatchString(out) {
		t.Fatalf("init:\n%s", out)
	}
	if conf := string(mustRead(t, s.beside(".yaml"))); !strings.HasSuffix(conf, "\ns3_credentials: "+s.creds+"\n") {
		t.Fatalf("the configuration does not name the credentials file:\n%s", conf)
	}

	// backup and restore, bit-identical.
	ids, copies := backupVersions(t, s.env, 3)
	src := filepath.Join(s.dir, "src")

	// ls, find, diff, dump, stats.
	if out := s.ok("ls", ids[2][:12]+":"+src+"/var/lib"); !strings.Contains(out, " "+src+"/var/lib/version.bin\n") || !strings.Contains(out, " "+src+"/var/lib/media.bin\n") {
		t.Errorf("ls:\n%s", out)
	}
	if out := s.ok("find", "version.bin"); strings.Count(out, " "+src+"/var/lib/version.bin\n") != 3 {
		t.Errorf("find:\n%s", out)
	}
	if out := s.ok("diff", ids[0][:12], ids[1][:12]); !strings.Contains(out, "M "+src+"/var/lib/version.bin\n") || !strings.Contains(out, "0 added, 0 removed, 1 modified, ") {
		t.Errorf("diff:\n%s", out)
	}
	if out := s.ok("dump", ids[1][:12]+":"+src+"/var/lib/version.bin"); out != string(randomish(2, 1<<20)) {
		t.Errorf("dump: %d bytes, not the second version", len(out))
	}
	if out := s.ok("stats"); !strings.HasPrefix(out, "snapshots:         3 (all)\n") {
		t.Errorf("stats:\n%s", out)
	}
	packs := s.checkClean()
	if got := s.packObjects(); len(got) != packs {
		t.Fatalf("check read %d packs, the bucket holds %d: %v", packs, len(got), got)
	}

	t.Run("mount", func(t *testing.T) {
		requireFUSE(t)
		mnt := t.TempDir()
		m := startMount(t, append(cleanEnviron(), s.vars...), mnt)
		s.seen = append(s.seen, m.ready)
		b, err := os.ReadFile(filepath.Join(mnt, "snapshots", ids[2][:8], src, "var", "lib", "version.bin"))
		if err != nil || !bytes.Equal(b, randomish(3, 1<<20)) {
			t.Fatalf("read through the mount: %d bytes, %v", len(b), err)
		}
		m.stop()
		s.seen = append(s.seen, m.stdout.String(), m.stderr.String())
	})

	// forget and prune with repacking: the bucket loses the packs the
	// index no longer lists, and what is kept restores bit-identical.
	s.ok("forget", "--keep-last", "2")
	before := s.packObjects()
	var pr struct {
		PacksDeleted  int `json:"packs_deleted"`
		PacksRepacked int `json:"packs_repacked"`
	}
	if err := json.Unmarshal([]byte(s.ok("prune", "--max-unused", "0.1%", "--json")), &pr); err != nil {
		t.Fatal(err)
	}
	after := s.packObjects()
	gone := 0
	for _, k := range before {
		if !slices.Contains(after, k) {
			gone++
		}
	}
	// Unused packs are deleted; partly used ones are repacked (their
	// blobs go to new packs) and deleted.
	if gone == 0 || gone != pr.PacksDeleted+pr.PacksRepacked {
		t.Fatalf("prune reports %d packs deleted (%d repacked); %d left the bucket (before %d, after %d)", pr.PacksDeleted, pr.PacksRepacked, gone, len(before), len(after))
	}
	if packs := s.checkClean(); packs != len(after) {
		t.Fatalf("check read %d packs, the bucket holds %d", packs, len(after))
	}
	for i := 1; i < 3; i++ {
		dst := filepath.Join(s.dir, fmt.Sprintf("after%d", i))
		s.ok("restore", ids[i][:12], "--target", dst)
		repotestAssertSame(t, copies[i], filepath.Join(dst, strings.TrimPrefix(src, "/")))
	}

	// drill, drills.
	if out := s.ok("drill", "latest", "--node", "lyra"); !strings.HasPrefix(out, "drill of snapshot "+ids[2][:8]+" (lyra/data): ok\n") {
		t.Errorf("drill:\n%s", out)
	}
	if out := s.ok("drills"); strings.Count(out, "\n") != 2 {
		t.Errorf("drills:\n%s", out)
	}

	// The cache is lost: the next command rebuilds the index from the
	// bucket; repair index does it on purpose.
	os.RemoveAll(s.cache)
	if list := s.snapshots(); len(list) != 2 || list[0].ID != ids[1] || list[1].ID != ids[2] {
		t.Fatalf("snapshots after losing the cache: %+v", list)
	}
	if out := s.ok("repair", "index"); !strings.HasPrefix(out, fmt.Sprintf("index rebuilt: %d packs, ", len(after))) {
		t.Fatalf("repair index:\n%s", out)
	}
	s.checkClean()

	// The appliance: a node pushes into the bucket and restores from
	// it; operator commands go through its socket.
	lyra := newNode(t, "lyra", "push, read")
	a := s.serveWith("s3_credentials: "+s.creds+"\n", lyra)
	r := s.record(a.push(lyra, nil, "--plan", "pushed", src))
	if r.code != 0 {
		t.Fatalf("push: %d %s", r.code, r.stderr)
	}
	if list := s.snapshots(); len(list) != 3 || list[2].Plan != "pushed" {
		t.Fatalf("snapshots through the appliance: %+v", list)
	}
	dst := filepath.Join(s.dir, "from")
	r = s.record(s.runIn(nil, nil, "restore", "--from", fmt.Sprintf("ssh://lyra@127.0.0.1:%d", a.Port), "-i", lyra.Key.PrivatePath, "--host-key", a.HostKey, "latest", "--target", dst))
	if r.code != 0 || !strings.Contains(r.stdout, "(all file hashes verified)") {
		t.Fatalf("restore --from: %d %s %s", r.code, r.stdout, r.stderr)
	}
	repotestAssertSame(t, src, filepath.Join(dst, src))
	st := s.record(s.run(nil, "status"))
	if st.code != 0 && st.code != 5 {
		t.Fatalf("status: %d %s", st.code, st.stderr)
	}
	book := s.ok("runbook")
	if !strings.Contains(book, "cairn --repo "+s.repo+" --state-dir "+s.state+" restore ") || !strings.Contains(book, "The repository is in an object store") {
		t.Fatalf("runbook:\n%s", book)
	}
	// A second owner (another cache, no socket: as another machine
	// would) is refused with the appliance named.
	r = s.record(s.run([]string{"CAIRN_CACHE_DIR=" + filepath.Join(s.dir, "other-cache"), "CAIRN_SOCKET=" + filepath.Join(s.dir, "none.sock")}, "snapshots"))
	host, _ := os.Hostname()
	wantLocked := regexp.MustCompile(`^cairn: repository is in use by ` + regexp.QuoteMeta(host) + ` pid ` + fmt.Sprint(a.Cmd.Process.Pid) +
		` since \d{4}-\d\d-\d\dT\d\d:\d\d:\d\dZ \(heartbeat \d{4}-\d\d-\d\dT\d\d:\d\d:\d\dZ\); if that process is dead, cairn unlock --force frees the repository \(lock ` +
		regexp.QuoteMeta(s.repo) + `/lock\)\n$`)
	if r.code != 11 || !wantLocked.MatchString(r.stderr) {
		t.Fatalf("second owner: exit %d %q", r.code, r.stderr)
	}
	r = s.record(s.run(nil, "unlock"))
	if r.code != 11 || !wantLocked.MatchString(r.stderr) {
		t.Fatalf("unlock while the appliance runs: exit %d %q", r.code, r.stderr)
	}
	if cmdline, err := os.ReadFile(fmt.Sprintf("/proc/%d/cmdline", a.Cmd.Process.Pid)); err != nil || bytes.Contains(cmdline, []byte(s.srv.SecretKey)) {
		t.Errorf("the appliance's arguments: %q %v", cmdline, err)
	}
	a.stop()
	s.seen = append(s.seen, a.Log())
	if out := s.ok("unlock"); out != "the repository "+s.repo+" is not locked ("+s.repo+"/lock)\n" {
		t.Fatalf("unlock after the appliance stopped: %q", out)
	}
	s.checkClean()
	s.noSecret()
}

// stop sends the appliance SIGTERM and waits for it to exit 0.
func (a *appliance) stop() {
	t := a.e.t
	t.Helper()
	code, err := a.Terminate()
	if err != nil {
		t.Fatalf("%v:\n%s", err, a.Log())
	}
	if code != 0 {
		t.Fatalf("the appliance exited %d:\n%s", code, a.Log())
	}
}
