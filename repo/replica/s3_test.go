package replica_test

import (
	"context"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/minio/minio-go/v7"

	"github.com/cairnbackup/cairn/integration/s3test"
	"github.com/cairnbackup/cairn/repo"
	"github.com/cairnbackup/cairn/repo/blob"
	"github.com/cairnbackup/cairn/repo/check"
	"github.com/cairnbackup/cairn/repo/prune"
	"github.com/cairnbackup/cairn/repo/replica"
	"github.com/cairnbackup/cairn/repo/repotest"
	"github.com/cairnbackup/cairn/repo/storage"
)

func TestMain(m *testing.M) {
	code := m.Run()
	s3test.StopShared()
	os.Exit(code)
}

// s3Replica is a bucket of its own on the test binary's SeaweedFS.
type s3Replica struct {
	srv    *s3test.Server
	bucket string
	url    string
	access repo.S3Access
	cache  string
}

func newS3Replica(t *testing.T) *s3Replica {
	srv := s3test.Shared(t)
	s := &s3Replica{srv: srv, bucket: srv.NewBucket(t), cache: filepath.Join(t.TempDir(), "cache")}
	s.url = "s3+http://" + srv.Endpoint + "/" + s.bucket + "/offsite"
	s.access = repo.S3Access{Credentials: storage.S3Credentials{AccessKeyID: srv.AccessKey, SecretAccessKey: srv.SecretKey}}
	return s
}

func (s *s3Replica) replicate(t *testing.T, src *repo.Repository, o replica.Options) *replica.Report {
	t.Helper()
	dst, seeded, err := src.OpenReplica(t.Context(), s.url, repo.ReplicaOptions{Copy: true, CacheDir: s.cache, S3: s.access, Now: o.Now})
	if err != nil {
		t.Fatalf("open replica: %v", err)
	}
	defer dst.Close()
	o.Name, o.Seeded = "offsite", seeded
	rep, err := replica.Run(t.Context(), src, dst, o)
	if err != nil {
		t.Fatalf("replicate: %v", err)
	}
	return rep
}

// keys lists the replica's objects under its prefix, and the incomplete
// multipart uploads there.
func (s *s3Replica) keys(t *testing.T) (objects []string, uploads int) {
	t.Helper()
	c := s.srv.Client(t)
	for o := range c.ListObjects(context.Background(), s.bucket, minio.ListObjectsOptions{Prefix: "offsite/", Recursive: true}) {
		if o.Err != nil {
			t.Fatal(o.Err)
		}
		objects = append(objects, strings.TrimPrefix(o.Key, "offsite/"))
	}
	for u := range c.ListIncompleteUploads(context.Background(), s.bucket, "offsite/", true) {
		if u.Err != nil {
			t.Fatal(u.Err)
		}
		uploads++
	}
	return objects, uploads
}

// A directory repository replicated to a bucket: the copy opens with the
// repository's passphrase from a cache directory of its own (its index
// rebuilt from the bucket), restores bit-identical and reads clean; a
// second run copies nothing. A pack of several parts damaged on the
// primary leaves no object and no incomplete upload behind.
func TestReplicateToObjectStore(t *testing.T) {
	o := repotest.Options()
	o.PackSize = 16 << 20
	src := repotest.Open(t, repotest.Init(t, o))
	t0 := time.Date(2026, 12, 1, 3, 0, 0, 0, time.UTC)
	a := snap(t, src, t0, map[string][]byte{"big": randomBytes(1, 20<<20), "small": []byte("x")})
	s := newS3Replica(t)
	rep := s.replicate(t, src, replica.Options{})
	packs, _ := src.StoredPacks(t.Context())
	if rep.Packs != len(packs) || rep.Snapshots != 1 || !rep.OK() {
		t.Fatalf("report %+v", rep)
	}
	if again := s.replicate(t, src, replica.Options{}); again.Objects != 0 {
		t.Fatalf("second run copied %d objects", again.Objects)
	}
	cp, err := repo.Open(t.Context(), s.url, repotest.Credentials(), repo.Options{CacheDir: filepath.Join(t.TempDir(), "c2"), StateDir: t.TempDir(), S3: s.access})
	if err != nil {
		t.Fatal(err)
	}
	restores(t, cp, a)
	rc, err := check.Run(t.Context(), cp, check.Options{ReadData: true})
	if err != nil || !rc.Clean() {
		t.Fatalf("check of the replica: %v %+v", err, rc)
	}
	cp.Close()

	// A pack of 16 MiB (two parts) damaged on the primary.
	b := snap(t, src, t0.Add(time.Hour), map[string][]byte{"other": randomBytes(2, 20<<20)})
	after, _ := src.StoredPacks(t.Context())
	var victim blob.ID
	for id, size := range after {
		if _, ok := packs[id]; !ok && size > 9<<20 {
			victim = id
		}
	}
	if victim.IsZero() {
		t.Fatal("no new pack of several parts")
	}
	flip(t, filepath.Join(src.Dir(), "packs", victim.String()[:2], victim.String()), 12<<20)
	rep = s.replicate(t, src, replica.Options{})
	if len(rep.Failed) != 1 || !strings.Contains(rep.Failed[0].Error, "does not hash to its name: it is damaged") || len(rep.Left) != 1 || rep.Left[0].ID != b.id {
		t.Fatalf("report %+v", rep)
	}
	objects, uploads := s.keys(t)
	for _, k := range objects {
		if strings.HasSuffix(k, victim.String()) || strings.HasSuffix(k, b.id.String()) {
			t.Fatalf("%s is on the replica", k)
		}
	}
	if uploads != 0 {
		t.Fatalf("%d incomplete uploads left", uploads)
	}
}

// Deletions propagate to an object store after the delay, snapshots
// before packs.
func TestReplicaDeleteAfterOnObjectStore(t *testing.T) {
	src := repotest.New(t)
	t0 := time.Date(2026, 12, 1, 3, 0, 0, 0, time.UTC)
	a := snap(t, src, t0, map[string][]byte{"gone": randomBytes(1, 2<<20)})
	b := snap(t, src, t0.Add(time.Hour), map[string][]byte{"kept": randomBytes(2, 1<<20)})
	s := newS3Replica(t)
	now := t0.Add(2 * time.Hour)
	clock := func() time.Time { return now }
	week := 7 * 24 * time.Hour
	s.replicate(t, src, replica.Options{DeleteAfter: week, Now: clock})
	before, _ := s.keys(t)
	if err := src.DeleteSnapshot(t.Context(), a.id); err != nil {
		t.Fatal(err)
	}
	if _, err := prune.Run(t.Context(), src, prune.Options{}); err != nil {
		t.Fatal(err)
	}
	first := s.replicate(t, src, replica.Options{DeleteAfter: week, Now: clock})
	now = now.Add(week)
	due := s.replicate(t, src, replica.Options{DeleteAfter: week, Now: clock})
	after, _ := s.keys(t)
	if first.Deleted != 0 || first.PendingDeletes == 0 || due.Deleted != first.PendingDeletes || len(after) != len(before)-due.Deleted {
		t.Fatalf("first %+v\ndue %+v\n%d objects before, %d after", first, due, len(before), len(after))
	}
	for _, k := range after {
		if strings.HasSuffix(k, a.id.String()) {
			t.Fatal("the forgotten snapshot is still on the replica")
		}
	}
	cp, err := repo.Open(t.Context(), s.url, repotest.Credentials(), repo.Options{CacheDir: filepath.Join(t.TempDir(), "c"), StateDir: t.TempDir(), S3: s.access})
	if err != nil {
		t.Fatal(err)
	}
	defer cp.Close()
	restores(t, cp, b)
}
