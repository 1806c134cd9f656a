package torture

import (
	"bytes"
	"context"
	"fmt"
	"hash/fnv"
	"math/rand/v2"
	"os"
	"os/exec"
	"path/filepath"
	"slices"
	"strings"
	"sync"
	"sync/atomic"
	"testing"

	"github.com/minio/minio-go/v7"

	"github.com/cairnbackup/cairn/integration/s3test"
	"github.com/cairnbackup/cairn/repo"
	"github.com/cairnbackup/cairn/repo/blob"
	"github.com/cairnbackup/cairn/repo/storage"
)

// The kill and bit-rot rows again, on repositories in a real object store
// (SeaweedFS on loopback, integration/s3test): every kill must leave the
// bucket with no partial object and no incomplete upload after the next
// open, and every damage, made by overwriting an object through the S3
// API behind cairn's back, must be detected and never give wrong bytes.

// s3Store is where an env's object-store repository is.
type s3Store struct {
	srv                 *s3test.Server
	bucket, prefix      string
	state, cache, creds string
}

var s3Prefixes atomic.Int64

// newS3Env returns an env whose repository is a prefix of its own in a
// bucket shared by the test binary's SeaweedFS, with its state and cache
// directories and its credentials file in the test's directory.
func newS3Env(t testing.TB) *env {
	t.Helper()
	srv := s3test.Shared(t)
	e := newEnv(t)
	s := &s3Store{srv: srv, bucket: sharedBucket(t, srv), prefix: fmt.Sprintf("r%d", s3Prefixes.Add(1)),
		state: filepath.Join(e.dir, "state"), cache: filepath.Join(e.dir, "cache"), creds: filepath.Join(e.dir, "s3.env")}
	if err := os.WriteFile(s.creds, []byte(fmt.Sprintf("AWS_ACCESS_KEY_ID=%s\nAWS_SECRET_ACCESS_KEY=%s\n", srv.AccessKey, srv.SecretKey)), 0o600); err != nil {
		t.Fatal(err)
	}
	e.s3 = s
	e.repo = "s3+http://" + srv.Endpoint + "/" + s.bucket + "/" + s.prefix
	e.vars = []string{"CAIRN_REPO=" + e.repo, "TMPDIR=" + e.tmp, "CAIRN_STATE_DIR=" + s.state, "CAIRN_CACHE_DIR=" + s.cache, "CAIRN_S3_CREDENTIALS=" + s.creds}
	return e
}

// s3Bucket is the one bucket of the test binary's object-store
// repositories (each has a prefix of its own).
var s3Bucket struct {
	mu   sync.Mutex
	name string
}

func sharedBucket(t testing.TB, srv *s3test.Server) string {
	s3Bucket.mu.Lock()
	defer s3Bucket.mu.Unlock()
	if s3Bucket.name == "" {
		s3Bucket.name = srv.NewBucket(t)
	}
	return s3Bucket.name
}

// beside is the path of a file beside the repository: DIR.yaml, or
// STATE/cairn.yaml for an object store.
func (e *env) beside(suffix string) string {
	if e.s3 != nil {
		return filepath.Join(e.s3.state, "cairn"+suffix)
	}
	return e.repo + suffix
}

// indexDir is the repository's index directory.
func (e *env) indexDir() string {
	if e.s3 != nil {
		return filepath.Join(e.s3.cache, "index")
	}
	return filepath.Join(e.repo, "index")
}

// repoOptions opens the env's repository in this process.
func (e *env) repoOptions() repo.Options {
	if e.s3 == nil {
		return repo.Options{}
	}
	s := e.s3
	return repo.Options{StateDir: s.state, CacheDir: s.cache,
		S3: repo.S3Access{Credentials: storage.S3Credentials{AccessKeyID: s.srv.AccessKey, SecretAccessKey: s.srv.SecretKey}}}
}

// inIndex is a rot target's pick of a whole file in the index.
func inIndex(name string) func(t *testing.T, e *env, rng *rand.Rand) region {
	return func(t *testing.T, e *env, rng *rand.Rand) region {
		p := filepath.Join(e.indexDir(), name)
		return region{p, 0, fileSize(t, p)}
	}
}

func (s *s3Store) client(t testing.TB) *minio.Client { return s.srv.Client(t) }

// incompleteUploads lists the multipart uploads under the prefix that
// were started and never completed or aborted.
func (s *s3Store) incompleteUploads(t testing.TB) []string {
	var out []string
	for u := range s.client(t).ListIncompleteUploads(context.Background(), s.bucket, s.prefix+"/", true) {
		if u.Err != nil {
			t.Fatal(u.Err)
		}
		out = append(out, "incomplete upload of "+u.Key)
	}
	return out
}

// keys lists the objects under the prefix (relative to it) matching
// the glob pattern.
func (s *s3Store) keys(t testing.TB, pattern string) []string {
	var out []string
	for o := range s.client(t).ListObjects(context.Background(), s.bucket, minio.ListObjectsOptions{Prefix: s.prefix + "/", Recursive: true}) {
		if o.Err != nil {
			t.Fatal(o.Err)
		}
		rel := strings.TrimPrefix(o.Key, s.prefix+"/")
		if ok, _ := filepath.Match(pattern, rel); ok {
			out = append(out, rel)
		}
	}
	slices.Sort(out)
	return out
}

func (s *s3Store) get(t testing.TB, rel string) []byte {
	o, err := s.client(t).GetObject(context.Background(), s.bucket, s.prefix+"/"+rel, minio.GetObjectOptions{})
	if err != nil {
		t.Fatal(err)
	}
	defer o.Close()
	var b bytes.Buffer
	if _, err := b.ReadFrom(o); err != nil {
		t.Fatalf("get %s: %v", rel, err)
	}
	return b.Bytes()
}

// put stores b under rel, replacing what is there: through the S3 API,
// behind cairn's back.
func (s *s3Store) put(t testing.TB, rel string, b []byte) {
	if _, err := s.client(t).PutObject(context.Background(), s.bucket, s.prefix+"/"+rel, bytes.NewReader(b), int64(len(b)), minio.PutObjectOptions{}); err != nil {
		t.Fatalf("put %s: %v", rel, err)
	}
}

// clone copies the repository to a new prefix (server-side copies), with
// its state directory and its cache directory (told the new location),
// and returns the new env.
func (s *s3Store) clone(t *testing.T) *env {
	e := newS3Env(t)
	d := e.s3
	ctx := context.Background()
	for o := range s.client(t).ListObjects(ctx, s.bucket, minio.ListObjectsOptions{Prefix: s.prefix + "/", Recursive: true}) {
		if o.Err != nil {
			t.Fatal(o.Err)
		}
		rel := strings.TrimPrefix(o.Key, s.prefix+"/")
		if _, err := s.client(t).CopyObject(ctx, minio.CopyDestOptions{Bucket: d.bucket, Object: d.prefix + "/" + rel},
			minio.CopySrcOptions{Bucket: s.bucket, Object: o.Key}); err != nil {
			t.Fatalf("copy %s: %v", o.Key, err)
		}
	}
	for _, p := range [][2]string{{s.state, d.state}, {s.cache, d.cache}} {
		if out, err := exec.Command("cp", "-a", p[0], p[1]).CombinedOutput(); err != nil {
			t.Fatalf("cp: %v %s", err, out)
		}
	}
	if err := os.WriteFile(filepath.Join(d.cache, "location"), []byte(e.repo+"\n"), 0o600); err != nil {
		t.Fatal(err)
	}
	return e
}

// s3Points are the crash points of an object store's writes that the
// operations on these small repositories pass (packs of 1 MiB go up in
// one PUT: s3-part-stored is the integration tests' and the backend's).
var s3Points = []string{"after-pack-stored", "index-before-pack-key", "before-snapshot-write", "after-snapshot-write"}

func TestCrashObjectStore(t *testing.T) {
	for _, f := range crashFamilies(s3Points) {
		f.mkEnv, f.where = newS3Env, " (object store)"
		t.Run(f.kind, func(t *testing.T) {
			t.Parallel()
			f.run(t)
		})
	}
	t.Run("push", func(t *testing.T) {
		t.Parallel()
		pushCrashes(t, newS3Env, s3Points, " (object store)")
	})
}

// s3RotTargets are the objects (and local files) of an object-store
// repository that rot: objects are overwritten through the S3 API.
type s3RotTarget struct {
	rotTarget
	// object picks the object to damage and the byte range; nil for
	// local files (pick).
	object func(t *testing.T, e *env, rng *rand.Rand) (rel string, lo, hi int64)
}

var s3RotTargets = []s3RotTarget{
	{rotTarget{name: "pack: blob data", class: "data"}, func(t *testing.T, e *env, rng *rand.Rand) (string, int64, int64) {
		id := packIDsBy(t, e, blob.Data)[0]
		n := int64(len(e.s3.get(t, "packs/"+id[:2]+"/"+id)))
		return "packs/" + id[:2] + "/" + id, 16, n * 3 / 4
	}},
	{rotTarget{name: "pack: header and footer", class: "header"}, func(t *testing.T, e *env, rng *rand.Rand) (string, int64, int64) {
		id := packIDsBy(t, e, blob.Data)[0]
		n := int64(len(e.s3.get(t, "packs/"+id[:2]+"/"+id)))
		return "packs/" + id[:2] + "/" + id, n - 200, n
	}},
	{rotTarget{name: "pack: trees", class: "data"}, func(t *testing.T, e *env, rng *rand.Rand) (string, int64, int64) {
		ids := packIDsBy(t, e, blob.Tree)
		id := ids[rng.IntN(len(ids))]
		n := int64(len(e.s3.get(t, "packs/"+id[:2]+"/"+id)))
		return "packs/" + id[:2] + "/" + id, 16, n * 3 / 4
	}},
	{rotTarget{name: "snapshot object", class: "snapshot"}, wholeObject("snapshots/*")},
	{rotTarget{name: "key (keys/)", class: "secret"}, wholeObject("keys/*")},
	{rotTarget{name: "config", class: "secret"}, wholeObject("config")},
	{rotTarget{name: "key file (STATE/cairn.key)", class: "secret", pick: func(t *testing.T, e *env, rng *rand.Rand) region {
		p := e.beside(".key")
		return region{p, 0, fileSize(t, p)}
	}}, nil},
	{rotTarget{name: "index: table (.sst)", class: "index", pick: func(t *testing.T, e *env, rng *rand.Rand) region {
		ms, _ := filepath.Glob(filepath.Join(e.indexDir(), "*.sst"))
		slices.SortFunc(ms, func(a, b string) int { return int(fileSize(t, b) - fileSize(t, a)) })
		return region{ms[0], 0, fileSize(t, ms[0])}
	}}, nil},
}

func wholeObject(pattern string) func(t *testing.T, e *env, rng *rand.Rand) (string, int64, int64) {
	return func(t *testing.T, e *env, rng *rand.Rand) (string, int64, int64) {
		keys := e.s3.keys(t, pattern)
		rel := keys[rng.IntN(len(keys))]
		return rel, 0, int64(len(e.s3.get(t, rel)))
	}
}

func TestBitRotObjectStore(t *testing.T) {
	rng := rand.New(rand.NewPCG(seed, 0x53b17))
	g := makeGolden(t, rng, newS3Env)
	names := []string{"pack: blob data", "pack: header and footer", "snapshot object", "config", "index: table (.sst)"}
	if *fullRun {
		names = nil
		for _, tg := range s3RotTargets {
			names = append(names, tg.name)
		}
	}
	for _, name := range names {
		i := slices.IndexFunc(s3RotTargets, func(tg s3RotTarget) bool { return tg.name == name })
		tg := s3RotTargets[i]
		dmgs := []int{rng.IntN(len(damages))}
		if *fullRun {
			dmgs = []int{0, 1, 2}
		}
		for _, dmg := range dmgs {
			withFUSE := name == "pack: blob data" && (dmg == 0 || !*fullRun)
			t.Run(name+"/"+damages[dmg].name, func(t *testing.T) {
				h := fnv.New64a()
				h.Write([]byte(t.Name()))
				rng := rand.New(rand.NewPCG(seed, h.Sum64()))
				e := g.clone(t)
				var putBack func()
				var how string
				if tg.object != nil {
					// Bit rot in the store: the object is read, damaged
					// as a file would be, and written back through the
					// S3 API, bypassing cairn.
					rel, lo, hi := tg.object(t, e, rng)
					orig := e.s3.get(t, rel)
					tmp := filepath.Join(e.dir, "rot-object")
					if err := os.WriteFile(tmp, orig, 0o600); err != nil {
						t.Fatal(err)
					}
					how = damages[dmg].apply(t, region{tmp, lo, hi}, rng)
					damaged, err := os.ReadFile(tmp)
					if err != nil {
						t.Fatal(err)
					}
					e.s3.put(t, rel, damaged)
					how = rel + ": " + how
					putBack = func() { e.s3.put(t, rel, orig) }
				} else {
					reg := tg.pick(t, e, rng)
					orig, err := os.ReadFile(reg.path)
					if err != nil {
						t.Fatal(err)
					}
					how = damages[dmg].apply(t, reg, rng)
					putBack = func() {
						if err := os.WriteFile(reg.path, orig, 0o600); err != nil {
							t.Fatal(err)
						}
					}
				}
				t.Logf("%s: %s (%s)", name, damages[dmg].name, how)
				detected, lost, note := judgeRot(t, g, e, tg.rotTarget, dmg, how, withFUSE, putBack)
				d := 0
				if detected {
					d = 1
				}
				record("bit rot (object store): "+name, 1, d, lost, damages[dmg].name+": "+note)
			})
		}
	}
}
