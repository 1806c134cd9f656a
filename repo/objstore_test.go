package repo_test

import (
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"log/slog"
	"os"
	"os/exec"
	"path/filepath"
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/minio/minio-go/v7"

	"github.com/cairnbackup/cairn/integration/s3test"
	"github.com/cairnbackup/cairn/repo"
	"github.com/cairnbackup/cairn/repo/backup"
	"github.com/cairnbackup/cairn/repo/blob"
	"github.com/cairnbackup/cairn/repo/repotest"
	"github.com/cairnbackup/cairn/repo/snapshot"
	"github.com/cairnbackup/cairn/repo/storage"
)

func TestMain(m *testing.M) {
	code := m.Run()
	s3test.StopShared()
	os.Exit(code)
}

// s3Repo is a repository in a bucket of its own on the test binary's
// SeaweedFS, under the prefix "site/repo", with its state and cache
// directories in t.TempDir().
type s3Repo struct {
	srv          *s3test.Server
	bucket, url  string
	state, cache string
	access       repo.S3Access
	keyFile      string
}

const s3Prefix = "site/repo"

func newS3Repo(t *testing.T) *s3Repo {
	t.Helper()
	srv := s3test.Shared(t)
	s := &s3Repo{srv: srv, bucket: srv.NewBucket(t), state: filepath.Join(t.TempDir(), "state"), cache: filepath.Join(t.TempDir(), "cache")}
	s.url = "s3+http://" + srv.Endpoint + "/" + s.bucket + "/" + s3Prefix
	s.access = repo.S3Access{Credentials: storage.S3Credentials{AccessKeyID: srv.AccessKey, SecretAccessKey: srv.SecretKey}}
	o := repotest.Options()
	o.StateDir, o.S3 = s.state, s.access
	kf, err := repo.Init(t.Context(), s.url, repo.Credentials{}, o)
	if err != nil {
		t.Fatalf("init: %v", err)
	}
	s.keyFile = kf
	return s
}

// newS3RepoBehindProxy is newS3Repo reached through a fault-injecting
// proxy.
func newS3RepoBehindProxy(t *testing.T) (*s3Repo, *s3test.Proxy) {
	t.Helper()
	srv := s3test.Shared(t)
	proxy := s3test.NewProxy(t, srv.Endpoint)
	s := &s3Repo{srv: srv, bucket: srv.NewBucket(t), state: filepath.Join(t.TempDir(), "state"), cache: filepath.Join(t.TempDir(), "cache")}
	s.url = "s3+http://" + proxy.Endpoint + "/" + s.bucket + "/" + s3Prefix
	s.access = repo.S3Access{Credentials: storage.S3Credentials{AccessKeyID: srv.AccessKey, SecretAccessKey: srv.SecretKey}}
	o := repotest.Options()
	o.StateDir, o.S3 = s.state, s.access
	kf, err := repo.Init(t.Context(), s.url, repo.Credentials{}, o)
	if err != nil {
		t.Fatalf("init: %v", err)
	}
	s.keyFile = kf
	return s, proxy
}

func (s *s3Repo) options() repo.Options {
	return repo.Options{StateDir: s.state, CacheDir: s.cache, S3: s.access}
}

// open opens the repository with the default key file; it is closed when
// the test ends.
func (s *s3Repo) open(t *testing.T, o repo.Options) *repo.Repository {
	t.Helper()
	r, err := repo.Open(t.Context(), s.url, repo.Credentials{}, o)
	if err != nil {
		t.Fatalf("open: %v", err)
	}
	t.Cleanup(func() { r.Close() })
	return r
}

// keys lists the keys of the bucket under the repository's prefix,
// relative to it.
func (s *s3Repo) keys(t *testing.T) []string {
	t.Helper()
	var out []string
	for o := range s.srv.Client(t).ListObjects(t.Context(), s.bucket, minio.ListObjectsOptions{Prefix: s3Prefix + "/", Recursive: true}) {
		if o.Err != nil {
			t.Fatal(o.Err)
		}
		out = append(out, strings.TrimPrefix(o.Key, s3Prefix+"/"))
	}
	slices.Sort(out)
	return out
}

// lockObject reads the lock object through the S3 API.
func (s *s3Repo) lockObject(t *testing.T) repo.Owner {
	t.Helper()
	obj, err := s.srv.Client(t).GetObject(t.Context(), s.bucket, s3Prefix+"/lock", minio.GetObjectOptions{})
	if err != nil {
		t.Fatal(err)
	}
	defer obj.Close()
	var o repo.Owner
	if err := json.NewDecoder(obj).Decode(&o); err != nil {
		t.Fatalf("lock object: %v", err)
	}
	return o
}

func (s *s3Repo) putLock(t *testing.T, o repo.Owner) {
	t.Helper()
	b, _ := json.Marshal(o)
	if _, err := s.srv.Client(t).PutObject(t.Context(), s.bucket, s3Prefix+"/lock", bytes.NewReader(b), int64(len(b)), minio.PutObjectOptions{}); err != nil {
		t.Fatal(err)
	}
}

func kinds(keys []string) map[string]int {
	out := map[string]int{}
	for _, k := range keys {
		kind, _, _ := strings.Cut(k, "/")
		out[kind]++
	}
	return out
}

// An object-store repository keeps everything in the bucket but its
// index and local lock (cache directory) and its key file (state
// directory); after the cache is lost, the index comes back from the
// bucket alone, and the same data restores.
func TestObjectStoreRoundTrip(t *testing.T) {
	s := newS3Repo(t)
	if want := filepath.Join(s.state, "cairn.key"); s.keyFile != want {
		t.Fatalf("key file %s, want %s", s.keyFile, want)
	}
	if fi, err := os.Stat(s.keyFile); err != nil || fi.Mode().Perm() != 0o600 {
		t.Fatalf("key file: %v %v", fi, err)
	}
	if got := s.keys(t); !slices.Equal(got, []string{"config", "keys/" + s3KeyName(t, s), "lock"}) {
		t.Fatalf("after init the bucket holds %v", got)
	}
	r := s.open(t, s.options())
	if r.Dir() != "" || r.Place().String() != s.url || r.CacheDir() != s.cache {
		t.Fatalf("dir %q place %q cache %q", r.Dir(), r.Place(), r.CacheDir())
	}
	src := sampleTree(t)
	id := backupDir(t, r, src)
	restoreAndCompare(t, r, id, src)
	if err := r.Close(); err != nil {
		t.Fatal(err)
	}
	got := kinds(s.keys(t))
	if got["snapshots"] != 1 || got["packs"] == 0 || got["config"] != 1 || got["keys"] != 1 || got["lock"] != 1 || len(got) != 5 {
		t.Fatalf("the bucket holds %v", got)
	}
	if o := s.lockObject(t); !o.Released || o.PID != os.Getpid() {
		t.Fatalf("lock after close: %+v", o)
	}
	for _, name := range []string{"index", "lock", "location"} {
		if _, err := os.Stat(filepath.Join(s.cache, name)); err != nil {
			t.Fatalf("cache directory: %v", err)
		}
	}
	if b, _ := os.ReadFile(filepath.Join(s.cache, "location")); string(b) != s.url+"\n" {
		t.Fatalf("cache location file %q", b)
	}

	// The cache is lost: open rebuilds the index from the bucket.
	os.RemoveAll(s.cache)
	r = s.open(t, s.options())
	list, err := r.Snapshots(t.Context(), snapshot.Filter{})
	if err != nil || len(list) != 1 || list[0].ID != id {
		t.Fatalf("snapshots after losing the cache: %v %v", list, err)
	}
	restoreAndCompare(t, r, id, src)
	r.Close()

	// repair index rebuilds it from the bucket too.
	r = s.open(t, func() repo.Options { o := s.options(); o.SkipIndex = true; return o }())
	rep, err := r.RebuildIndex(t.Context())
	if err != nil || rep.Snapshots != 1 || rep.Packs != got["packs"] || len(rep.UnreadablePacks) != 0 {
		t.Fatalf("rebuild: %+v %v", rep, err)
	}
	restoreAndCompare(t, r, id, src)
}

func s3KeyName(t *testing.T, s *s3Repo) string {
	t.Helper()
	b, err := os.ReadFile(s.keyFile)
	if err != nil {
		t.Fatal(err)
	}
	var kf repo.KeyFile
	if err := json.Unmarshal(b, &kf); err != nil {
		t.Fatal(err)
	}
	return kf.Key
}

// A second owner is refused with the holder's host, PID, start and
// heartbeat, whichever machine it runs on; exit code 11 comes from
// matching ErrLocked.
func TestObjectStoreSecondOwner(t *testing.T) {
	s := newS3Repo(t)
	s.open(t, s.options())
	holder := s.lockObject(t)
	o := s.options()
	o.CacheDir = filepath.Join(t.TempDir(), "other-cache")
	_, err := repo.Open(t.Context(), s.url, repo.Credentials{}, o)
	host, _ := os.Hostname()
	want := fmt.Sprintf("repository is in use by %s pid %d since %s (heartbeat %s); if that process is dead, cairn unlock --force frees the repository (lock %s/lock)",
		host, os.Getpid(), holder.Started.UTC().Format(time.RFC3339), holder.Heartbeat.UTC().Format(time.RFC3339), s.url)
	if !errors.Is(err, repo.ErrLocked) || err == nil || err.Error() != want {
		t.Fatalf("second owner: %v\nwant %s", err, want)
	}
	// The same cache directory is refused by its local lock first.
	_, err = repo.Open(t.Context(), s.url, repo.Credentials{}, s.options())
	if want := fmt.Sprintf("repository is in use by PID %d (%s)", os.Getpid(), s.cache); !errors.Is(err, repo.ErrLocked) || err.Error() != want {
		t.Fatalf("same cache: %v\nwant %s", err, want)
	}
}

// A lock whose owner ran on this machine and has ended (SIGKILL, a
// crash) is taken over at the next open; one of another host is refused
// however old its heartbeat, and called stale.
func TestObjectStoreDeadOwner(t *testing.T) {
	s := newS3Repo(t)
	r := s.open(t, s.options())
	me := s.lockObject(t)
	r.Close()

	cmd := exec.Command("true")
	if err := cmd.Run(); err != nil {
		t.Fatal(err)
	}
	dead := me
	dead.Released, dead.PID, dead.Token = false, cmd.Process.Pid, "dead"
	s.putLock(t, dead)
	var log bytes.Buffer
	o := s.options()
	o.Logger = slog.New(slog.NewTextHandler(&log, nil))
	r = s.open(t, o)
	if !strings.Contains(log.String(), fmt.Sprintf(`msg="taking over the repository's lock from a process that has ended" holder="%s pid %d since`, me.Host, cmd.Process.Pid)) ||
		!strings.Contains(log.String(), fmt.Sprintf(`why="process %d is not running"`, cmd.Process.Pid)) {
		t.Fatalf("log:\n%s", log.String())
	}
	if got := s.lockObject(t); got.PID != os.Getpid() || got.Released {
		t.Fatalf("lock after takeover: %+v", got)
	}
	r.Close()

	other := me
	other.Released, other.Host, other.Machine, other.PID, other.Token = false, "vega", "0123", 4242, "vega"
	other.Started = time.Date(2026, 1, 2, 3, 4, 5, 0, time.UTC)
	other.Heartbeat = other.Started.Add(time.Hour)
	s.putLock(t, other)
	_, err := repo.Open(t.Context(), s.url, repo.Credentials{}, s.options())
	wantPrefix := "repository is in use by vega pid 4242 since 2026-01-02T03:04:05Z (heartbeat 2026-01-02T04:04:05Z, "
	wantSuffix := " ago: stale); the owner has stopped refreshing its lock and is probably dead; if it is, cairn unlock --force frees the repository (lock " + s.url + "/lock)"
	if !errors.Is(err, repo.ErrLocked) || !strings.HasPrefix(err.Error(), wantPrefix) || !strings.HasSuffix(err.Error(), wantSuffix) {
		t.Fatalf("stale lock of another host: %v", err)
	}
}

// cairn unlock --force takes the lock from an owner that is in fact
// alive: the owner's next heartbeat fails instead of overwriting the new
// owner's lock, and from then on it writes nothing.
func TestObjectStoreUnlockForce(t *testing.T) {
	s := newS3Repo(t)
	a := s.open(t, s.options())
	src := sampleTree(t)
	backupDir(t, a, src)

	res, err := repo.Unlock(t.Context(), s.url, false, s.options())
	if !errors.Is(err, repo.ErrLocked) || res.Holder == nil || res.Holder.PID != os.Getpid() || res.Released {
		t.Fatalf("unlock without --force: %+v %v", res, err)
	}
	res, err = repo.Unlock(t.Context(), s.url, true, s.options())
	if err != nil || !res.Released || res.Holder.PID != os.Getpid() || res.Lock != s.url+"/lock" {
		t.Fatalf("unlock --force: %+v %v", res, err)
	}
	if got := s.lockObject(t); !got.Released || !strings.HasPrefix(got.ReleasedBy, "cairn unlock --force on ") {
		t.Fatalf("lock after unlock --force: %+v", got)
	}
	o := s.options()
	o.CacheDir = filepath.Join(t.TempDir(), "b-cache")
	b := s.open(t, o)
	bLock := s.lockObject(t)

	err = a.RefreshLock(t.Context())
	if !errors.Is(err, repo.ErrLockLost) {
		t.Fatalf("old owner's heartbeat: %v", err)
	}
	if got := s.lockObject(t); got != bLock {
		t.Fatalf("the old owner's heartbeat changed the new owner's lock:\n%+v\n%+v", got, bLock)
	}
	// The old owner writes nothing more: no pack, no snapshot.
	before := s.keys(t)
	fresh := filepath.Join(t.TempDir(), "fresh")
	repotest.WriteTree(t, fresh, map[string]string{"new.txt": strings.Repeat("not stored yet\n", 5000)})
	sess := a.NewSession()
	res2, err := backup.Run(t.Context(), sess, []string{fresh}, backup.Options{Params: a.ChunkerParams(), Table: a.ChunkerTable()})
	if err == nil {
		_, err = sess.Commit(t.Context(), &snapshot.Snapshot{Version: snapshot.Version, Time: time.Now(), Node: "lyra", Paths: []string{fresh}, Tree: res2.Tree, Summary: res2.Summary})
	}
	if !errors.Is(err, repo.ErrLockLost) {
		t.Fatalf("backup after losing the lock: %v", err)
	}
	if after := s.keys(t); !slices.Equal(before, after) {
		t.Fatalf("the old owner wrote:\nbefore %v\nafter  %v", before, after)
	}
	// The new owner works.
	backupDir(t, b, src)
	if err := b.RefreshLock(t.Context()); err != nil {
		t.Fatal(err)
	}
	if err := a.Close(); err != nil {
		t.Fatal(err)
	}
	if got := s.lockObject(t); got.Token != bLock.Token || got.Released {
		t.Fatalf("closing the old owner changed the lock: %+v", got)
	}
}

// Init refuses a prefix that holds objects of a repository, and a second
// init at the same place.
func TestObjectStoreInitRefuses(t *testing.T) {
	s := newS3Repo(t)
	o := repotest.Options()
	o.StateDir, o.S3 = filepath.Join(t.TempDir(), "state2"), s.access
	_, err := repo.Init(t.Context(), s.url, repotest.Credentials(), o)
	if err == nil || err.Error() != "init: "+s.url+" holds a repository already" {
		t.Fatalf("second init: %v", err)
	}
	other := "s3+http://" + s.srv.Endpoint + "/" + s.bucket + "/other"
	name := strings.Repeat("ab", 32)
	body := []byte("not a pack")
	if _, err := s.srv.Client(t).PutObject(t.Context(), s.bucket, "other/packs/ab/"+name, bytes.NewReader(body), int64(len(body)), minio.PutObjectOptions{}); err != nil {
		t.Fatal(err)
	}
	_, err = repo.Init(t.Context(), other, repotest.Credentials(), o)
	if err == nil || err.Error() != "init: "+other+" is not empty: it holds "+other+"/packs/"+name+"; give a bucket or prefix of its own" {
		t.Fatalf("init on a prefix with objects: %v", err)
	}
}

// A restore of many small files from an object store reads their blobs
// a segment of a pack at a time, not one request each.
func TestObjectStoreSmallBlobsShareRequests(t *testing.T) {
	s, proxy := newS3RepoBehindProxy(t)
	src := filepath.Join(t.TempDir(), "src")
	files := map[string]string{}
	for i := range 300 {
		files[fmt.Sprintf("f%03d.txt", i)] = strings.Repeat(fmt.Sprintf("small file %d\n", i), 50+i)
	}
	repotest.WriteTree(t, src, files)
	r := s.open(t, s.options())
	id := backupDir(t, r, src)
	r.Close()
	r = s.open(t, s.options()) // nothing cached
	before := len(proxy.Requests())
	restoreAndCompare(t, r, id, src)
	gets := 0
	for _, q := range proxy.Requests()[before:] {
		if q.Method == "GET" && strings.Contains(q.Path, "/packs/") {
			gets++
		}
	}
	if gets == 0 || gets > 10 {
		t.Fatalf("%d GETs of packs to restore 300 small files", gets)
	}
}

// The owner's heartbeat rewrites the lock object while it works, and
// stops when it closes.
func TestObjectStoreHeartbeat(t *testing.T) {
	repo.SetLockHeartbeat(t, 20*time.Millisecond)
	s := newS3Repo(t)
	r := s.open(t, s.options())
	first := s.lockObject(t)
	deadline := time.Now().Add(30 * time.Second)
	for s.lockObject(t).Heartbeat.Equal(first.Heartbeat) {
		if time.Now().After(deadline) {
			t.Fatal("the heartbeat did not change within 30 s")
		}
		time.Sleep(10 * time.Millisecond)
	}
	backupDir(t, r, sampleTree(t)) // writes while the heartbeat runs
	if err := r.Close(); err != nil {
		t.Fatal(err)
	}
	closed := s.lockObject(t)
	if !closed.Released || closed.Token != first.Token {
		t.Fatalf("lock after close: %+v", closed)
	}
	if again := s.lockObject(t); again != closed {
		t.Fatalf("the lock changed after close: %+v", again)
	}
}

// A pack whose upload has begun is stored and indexed, or neither, even
// when the session's context ends while it is on its way: on an object
// store a request the client gives up on may still have been carried out
// (here the store kept the pack but its answer was lost, and the session
// ended while the client asked again), and a pack in the bucket but not
// in the index is what check reports as a problem until the next open.
func TestObjectStorePackUploadOutlivesCancel(t *testing.T) {
	s, proxy := newS3RepoBehindProxy(t)
	r := s.open(t, s.options())

	ctx, cancel := context.WithCancel(t.Context())
	defer cancel()
	packPuts := 0 // read and written by the rule only, under the proxy's lock
	proxy.SetRule(func(q s3test.Request) s3test.Fault {
		if q.Method == "PUT" && strings.Contains(q.Path, "/packs/") {
			if packPuts++; packPuts == 1 {
				return s3test.LoseResponse // stored, but the answer is lost
			}
		}
		return s3test.Pass
	})
	proxy.OnRequest(func(q s3test.Request) {
		if q.Method == "PUT" && strings.Contains(q.Path, "/packs/") && q.Fault == s3test.Pass {
			cancel() // the session ends while the client asks again
		}
	})
	sess := r.NewSession()
	data := []byte(strings.Repeat("a blob on its way when the session ends\n", 100))
	id, _, err := sess.SaveBlob(ctx, blob.Data, data)
	if err != nil {
		t.Fatal(err)
	}
	flushErr := sess.Flush(ctx)
	sess.Abort()
	proxy.SetRule(nil)
	proxy.OnRequest(nil)

	stored := kinds(s.keys(t))["packs"]
	indexed := 0
	if err := r.PackRecords(func(repo.PackRecord) error { indexed++; return nil }); err != nil {
		t.Fatal(err)
	}
	if stored != indexed {
		t.Fatalf("after the session ended during the upload (flush: %v): %d packs in the bucket, %d in the index", flushErr, stored, indexed)
	}
	if stored != 1 || flushErr != nil {
		t.Fatalf("flush: %v, %d packs stored; want the upload carried to its end", flushErr, stored)
	}
	got, err := r.LoadBlob(t.Context(), blob.Handle{ID: id, Type: blob.Data}, nil)
	if err != nil || !bytes.Equal(got, data) {
		t.Fatalf("load the blob: %v", err)
	}
}

// A heartbeat the store carried out but whose answer never came (the
// client gave up while asking again) leaves the lock object the owner's
// with an ETag the owner has not seen: the next heartbeat and the
// release still recognise it as theirs, rather than stopping every write
// as if cairn unlock --force had taken the lock.
func TestObjectStoreHeartbeatAnswerLost(t *testing.T) {
	repo.SetLockHeartbeat(t, time.Hour) // the test's heartbeats only
	s, proxy := newS3RepoBehindProxy(t)
	r := s.open(t, s.options())

	ctx, cancel := context.WithCancel(t.Context())
	defer cancel()
	isLock := func(q s3test.Request) bool { return q.Method == "PUT" && strings.HasSuffix(q.Path, "/lock") }
	lockPuts := 0 // read and written by the rule only, under the proxy's lock
	proxy.SetRule(func(q s3test.Request) s3test.Fault {
		if isLock(q) {
			if lockPuts++; lockPuts == 1 {
				return s3test.LoseResponse // written, but the answer is lost
			}
		}
		return s3test.Pass
	})
	proxy.OnRequest(func(q s3test.Request) {
		if isLock(q) && q.Fault == s3test.Pass {
			cancel() // the heartbeat's time is up while it asks again
		}
	})
	if err := r.RefreshLock(ctx); err == nil {
		t.Fatal("a heartbeat whose answer was lost and whose context ended succeeded")
	}
	proxy.SetRule(nil)
	proxy.OnRequest(nil)

	if err := r.RefreshLock(t.Context()); err != nil {
		t.Fatalf("the next heartbeat: %v", err)
	}
	backupDir(t, r, sampleTree(t)) // still writes
	if err := r.Close(); err != nil {
		t.Fatal(err)
	}
	if closed := s.lockObject(t); !closed.Released {
		t.Fatalf("lock after close: %+v", closed)
	}
}

// A session writes two packs at once to an object store and one to a
// directory; the memory its data packs may take (what a backup's memory
// limit counts) says so. A limit of one pack too few kept a backup into
// SeaweedFS collecting garbage back to back (447 collections, 7 % of
// its CPU, against 64).
func TestSessionPackMemory(t *testing.T) {
	s := newS3Repo(t)
	r := s.open(t, s.options())
	if got, want := r.SessionPackMemory(), 4*int64(r.PackBufferSize()); got != want {
		t.Fatalf("object store: %d, want four packs (%d)", got, want)
	}
	d := repotest.New(t)
	if got, want := d.SessionPackMemory(), 3*int64(d.PackBufferSize()); got != want {
		t.Fatalf("directory: %d, want three packs (%d)", got, want)
	}
}
