package integration

import (
	"context"
	"crypto/sha256"
	"fmt"
	"os"
	"path"
	"path/filepath"
	"regexp"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/cairnbackup/cairn/integration/s3test"
)

// incompleteUploads lists the multipart uploads under the repository's
// prefix that were started and never completed or aborted.
func (s *s3env) incompleteUploads() []string {
	s.t.Helper()
	var out []string
	for u := range s.srv.Client(s.t).ListIncompleteUploads(context.Background(), s.bucket, s.prefix+"/", true) {
		if u.Err != nil {
			s.t.Fatal(u.Err)
		}
		out = append(out, strings.TrimPrefix(u.Key, s.prefix+"/"))
	}
	return out
}

// newS3EnvBehind is newS3Env with the repository reached through a
// fault-injecting proxy in front of srv.
func newS3EnvBehind(t *testing.T, srv *s3test.Server) (*s3env, *s3test.Proxy) {
	t.Helper()
	proxy := s3test.NewProxy(t, srv.Endpoint)
	s := newS3Env(t, srv)
	s.repo = "s3+http://" + proxy.Endpoint + "/" + s.bucket + "/" + s.prefix
	s.vars[0] = "CAIRN_REPO=" + s.repo
	return s, proxy
}

// bigSource writes a tree with 20 MiB of data that does not compress,
// so the first pack (16 MiB, the default) goes up as a multipart upload.
func bigSource(t *testing.T, dir string) {
	t.Helper()
	writeSource(t, dir)
	if err := os.WriteFile(filepath.Join(dir, "var", "lib", "big.bin"), randomish(99, 20<<20), 0o644); err != nil {
		t.Fatal(err)
	}
}

// A backup killed (SIGKILL) while a pack's multipart upload is under way
// leaves no partial object under any pack's name and no snapshot; the
// next run takes over the dead process's lock, aborts the incomplete
// uploads, and backs up; the repository checks clean.
func TestObjectStoreKilledMidUpload(t *testing.T) {
	s := newS3Env(t, s3test.Shared(t))
	s.ok("init")
	src := filepath.Join(s.dir, "src")
	bigSource(t, src)
	r := s.record(s.run([]string{"CAIRN_CRASHPOINT=s3-part-stored"}, "backup", "--node", "lyra", src))
	if r.code != -1 {
		t.Fatalf("backup was not killed: exit %d %s", r.code, r.stderr)
	}
	// Two pack writes are in flight to an object store: a pack that
	// went up whole before the kill may be there, but no object is
	// partial: every one holds the bytes its name is the hash of.
	for _, k := range s.packObjects() {
		if got := fmt.Sprintf("%x", sha256.Sum256(s.object(k))); got != path.Base(k) {
			t.Fatalf("pack object %s after the kill holds bytes hashing to %s", k, got)
		}
	}
	up := s.incompleteUploads()
	if len(up) == 0 || len(up) > 2 {
		t.Fatalf("incomplete uploads after the kill: %v, want the one or two in flight", up)
	}
	res := s.record(s.run(nil, "snapshots", "--json"))
	if res.code != 0 || strings.TrimSpace(res.stdout) != "[]" {
		t.Fatalf("snapshots after the kill: %d %q %s", res.code, res.stdout, res.stderr)
	}
	if !strings.Contains(res.stderr, `msg="taking over the repository's lock from a process that has ended"`) {
		t.Fatalf("the next run did not say it took over the lock:\n%s", res.stderr)
	}
	for _, u := range up {
		if !strings.HasPrefix(u, "packs/") || !strings.Contains(res.stderr, `msg="aborted an incomplete upload left by an interrupted write" key=`+s.prefix+"/"+u) {
			t.Fatalf("the next run did not say it aborted the upload of %s:\n%s", u, res.stderr)
		}
	}
	if up := s.incompleteUploads(); len(up) != 0 {
		t.Fatalf("incomplete uploads left: %v", up)
	}
	s.ok("backup", "--node", "lyra", src)
	s.checkClean()
	dst := filepath.Join(s.dir, "dst")
	s.ok("restore", "latest:"+src, "--target", dst)
	repotestAssertSame(t, src, filepath.Join(dst, "src"))
	s.noSecret()
}

// A prune killed at each of its steps on an object store: the next run
// completes, check --read-data is clean (after an index repair at most),
// every kept snapshot restores bit-identical, and no partial object is
// visible in the bucket.
func TestObjectStoreKilledMidPrune(t *testing.T) {
	srv := s3test.Shared(t)
	for _, point := range []string{"prune-after-repack", "prune-after-index", "prune-mid-delete", "prune-mid-delete:2"} {
		t.Run(point, func(t *testing.T) {
			s := newS3Env(t, srv)
			s.ok("init", "--pack-size", "1MiB")
			ids, copies := backupVersions(t, s.env, 3)
			s.ok("forget", "--keep-last", "2")
			r := s.record(s.run([]string{"CAIRN_CRASHPOINT=" + point}, "prune", "--max-unused", "0.1%"))
			if r.code != -1 {
				t.Fatalf("prune was not killed at %s: exit %d %s", point, r.code, r.stderr)
			}
			if up := s.incompleteUploads(); len(up) != 0 {
				t.Fatalf("incomplete uploads: %v", up)
			}
			if c := s.record(s.run(nil, "check", "--read-data")); c.code != 0 {
				s.ok("repair", "index")
			}
			s.checkClean() // every pack in the bucket read whole and hashed to its name
			src := filepath.Join(s.dir, "src")
			for i := 1; i < 3; i++ {
				dst := filepath.Join(s.dir, fmt.Sprintf("after%d", i))
				s.ok("restore", ids[i][:12], "--target", dst)
				repotestAssertSame(t, copies[i], filepath.Join(dst, strings.TrimPrefix(src, "/")))
			}
			s.ok("prune", "--max-unused", "0.1%")
			if packs := s.checkClean(); packs != len(s.packObjects()) {
				t.Fatalf("check read %d packs, the bucket holds %d", packs, len(s.packObjects()))
			}
		})
	}
}

// The store killed in the middle of a backup: the backup fails, naming
// the object and the endpoint, after its retries; once the store is back
// the next backup succeeds and the repository checks clean.
func TestObjectStoreServerKilledMidBackup(t *testing.T) {
	srv := s3test.Start(t)
	s, proxy := newS3EnvBehind(t, srv)
	s.ok("init")
	src := filepath.Join(s.dir, "src")
	bigSource(t, src)
	var once sync.Once
	proxy.OnRequest(func(r s3test.Request) {
		if r.Method == "PUT" && strings.Contains(r.Path, "/packs/") {
			once.Do(srv.Kill)
		}
	})
	start := time.Now()
	r := s.record(s.run(nil, "backup", "--node", "lyra", src))
	t.Logf("failed backup took %s:\n%s", time.Since(start), r.stderr)
	want := regexp.MustCompile(`(?m)^cairn: .*pack [0-9a-f]{8}: storage: put ` + regexp.QuoteMeta(s.repo) + `/packs/[0-9a-f]{2}/[0-9a-f]{64}: .* \(gave up after 8 attempts\)$`)
	if r.code != 1 || !want.MatchString(r.stderr) {
		t.Fatalf("backup with the store down: exit %d\n%s", r.code, r.stderr)
	}
	proxy.OnRequest(nil)
	srv.Restart(t)
	s.ok("backup", "--node", "lyra", src)
	s.checkClean()
	dst := filepath.Join(s.dir, "dst")
	s.ok("restore", "latest:"+src, "--target", dst)
	repotestAssertSame(t, src, filepath.Join(dst, "src"))
	s.noSecret()
}

// Errors the store answers with half of the first requests (500s and
// dropped responses) are retried: the backup succeeds and checks clean.
func TestObjectStoreFlakyStore(t *testing.T) {
	s, proxy := newS3EnvBehind(t, s3test.Shared(t))
	s.ok("init", "--pack-size", "1MiB")
	// Half of the first 60 requests fail (each retry waits a quarter
	// of a second or more, so later ones pass).
	base := len(proxy.Requests())
	proxy.SetRule(func(r s3test.Request) s3test.Fault {
		switch n := r.N - base; {
		case n > 60:
		case n%4 == 1:
			return s3test.Fail500
		case n%4 == 2:
			return s3test.DropResponse
		}
		return s3test.Pass
	})
	src := filepath.Join(s.dir, "src")
	writeSource(t, src)
	s.ok("backup", "--node", "lyra", src)
	dst := filepath.Join(s.dir, "dst")
	s.ok("restore", "latest:"+src, "--target", dst)
	repotestAssertSame(t, src, filepath.Join(dst, "src"))
	s.checkClean()
	faults := 0
	for _, r := range proxy.Requests() {
		if r.Fault != s3test.Pass {
			faults++
		}
	}
	if faults != 30 {
		t.Fatalf("only %d faults injected", faults)
	}
}

// Wrong credentials, a credentials file others may read, no credentials
// and a missing bucket are refused with what is wrong, naming the
// endpoint and never the secret; credentials from the environment work.
func TestObjectStoreAccess(t *testing.T) {
	srv := s3test.Shared(t)
	s := newS3Env(t, srv)
	s.ok("init")
	wrong := filepath.Join(s.dir, "wrong.env")
	os.WriteFile(wrong, []byte("AWS_ACCESS_KEY_ID="+srv.AccessKey+"\nAWS_SECRET_ACCESS_KEY=wrong-secret-1234\n"), 0o600)
	r := s.record(s.run([]string{"CAIRN_S3_CREDENTIALS=" + wrong}, "snapshots"))
	wantPrefix := "cairn: storage: open s3+http://" + srv.Endpoint + "/" + s.bucket + ": access denied, check the access key and secret: "
	if r.code != 1 || !strings.HasPrefix(r.stderr, wantPrefix) || strings.Contains(r.stderr, "wrong-secret-1234") || strings.Count(r.stderr, "\n") != 1 {
		t.Fatalf("wrong secret: exit %d %q", r.code, r.stderr)
	}

	open := filepath.Join(s.dir, "open.env")
	os.WriteFile(open, mustRead(t, s.creds), 0o644)
	r = s.record(s.run([]string{"CAIRN_S3_CREDENTIALS=" + open}, "snapshots"))
	if want := "cairn: S3 credentials file " + open + " has mode 0644, open to group or others: make it 0600 (chmod 600 " + open + ")\n"; r.code != 1 || r.stderr != want {
		t.Fatalf("credentials file mode 0644: exit %d %q\nwant %q", r.code, r.stderr, want)
	}
	os.Remove(open) // it holds the secret, as the test made it

	// No file, no environment, and a configuration without
	// s3_credentials.
	os.WriteFile(s.beside(".yaml"), []byte("listen: 127.0.0.1:2222\n"), 0o600)
	r = s.record(s.run([]string{"CAIRN_S3_CREDENTIALS="}, "snapshots"))
	want := "cairn: no S3 credentials for " + s.repo + ": set AWS_ACCESS_KEY_ID and AWS_SECRET_ACCESS_KEY, name a credentials file with --s3-credentials or CAIRN_S3_CREDENTIALS, or with s3_credentials: in " + s.beside(".yaml") + "\n"
	if r.code != 1 || r.stderr != want {
		t.Fatalf("no credentials: exit %d %q\nwant %q", r.code, r.stderr, want)
	}
	// The environment's.
	r = s.record(s.run([]string{"CAIRN_S3_CREDENTIALS=", "AWS_ACCESS_KEY_ID=" + srv.AccessKey, "AWS_SECRET_ACCESS_KEY=" + srv.SecretKey}, "snapshots", "--json"))
	if r.code != 0 || strings.TrimSpace(r.stdout) != "[]" {
		t.Fatalf("credentials from the environment: exit %d %q %q", r.code, r.stdout, r.stderr)
	}

	missing := "s3+http://" + srv.Endpoint + "/no-such-bucket/x"
	r = s.record(s.run([]string{"CAIRN_REPO=" + missing}, "snapshots"))
	if want := "cairn: storage: open s3+http://" + srv.Endpoint + "/no-such-bucket: bucket \"no-such-bucket\" does not exist\n"; r.code != 1 || r.stderr != want {
		t.Fatalf("missing bucket: exit %d %q\nwant %q", r.code, r.stderr, want)
	}
	r = s.record(s.run([]string{"CAIRN_REPO=s3+http://" + srv.Endpoint + "/" + s.bucket + "/empty"}, "snapshots"))
	if want := "cairn: s3+http://" + srv.Endpoint + "/" + s.bucket + "/empty is not a cairn repository (no config object); create one with cairn init\n"; r.code != 1 || r.stderr != want {
		t.Fatalf("no repository at the prefix: exit %d %q\nwant %q", r.code, r.stderr, want)
	}
	s.noSecret()
}

// cairn unlock --force while the appliance is in fact alive: the lock is
// released and named; the appliance's next snapshot is refused (it
// confirms its lock before writing one) and it writes nothing more; a new
// owner opens the repository.
func TestObjectStoreUnlockForceAliveOwner(t *testing.T) {
	s := newS3Env(t, s3test.Shared(t))
	s.ok("init")
	lyra := newNode(t, "lyra", "push")
	a := s.serveWith("s3_credentials: "+s.creds+"\n", lyra)
	host, _ := os.Hostname()
	out := s.ok("unlock", "--force")
	want := regexp.MustCompile(`^released the lock ` + regexp.QuoteMeta(s.repo) + `/lock of ` + regexp.QuoteMeta(host) + ` pid ` + fmt.Sprint(a.Cmd.Process.Pid) +
		` since \S+ \(heartbeat \S+\)
if that process is still running, it stops writing at its next heartbeat or snapshot
$`)
	if !want.MatchString(out) {
		t.Fatalf("unlock --force:\n%s", out)
	}
	src := filepath.Join(s.dir, "src")
	writeSource(t, src)
	before := s.objects()
	r := s.record(a.push(lyra, nil, src))
	if r.code != 1 || !strings.Contains(r.stderr, "this process no longer holds the repository's lock: "+s.repo+"/lock holds a lock released by cairn unlock --force on ") {
		t.Fatalf("push after unlock --force: exit %d %q", r.code, r.stderr)
	}
	a.WaitFor(`msg="lost the repository's lock: stopping every write"`)
	for k := range s.objects() {
		if _, ok := before[k]; !ok && !strings.HasPrefix(k, "packs/") {
			t.Errorf("the old owner wrote %s after losing its lock", k)
		}
	}
	// Another owner takes the repository while the old one still runs.
	other := s.record(s.run([]string{"CAIRN_CACHE_DIR=" + filepath.Join(s.dir, "other-cache"), "CAIRN_SOCKET=" + filepath.Join(s.dir, "none.sock")}, "backup", "--node", "lyra", src))
	if other.code != 0 {
		t.Fatalf("backup by a new owner: exit %d %s", other.code, other.stderr)
	}
	a.stop()
	s.ok("check", "--read-data")
	s.noSecret()
}
