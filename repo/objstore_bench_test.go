package repo_test

import (
	"math/rand/v2"
	"path/filepath"
	"testing"

	"github.com/cairnbackup/cairn/integration/s3test"
	"github.com/cairnbackup/cairn/repo"
	"github.com/cairnbackup/cairn/repo/blob"
	"github.com/cairnbackup/cairn/repo/repotest"
	"github.com/cairnbackup/cairn/repo/storage"
)

// BenchmarkObjectStoreRebuildIndex rebuilds the index of an object-store
// repository of 200 packs from the bucket alone (what open does when the
// cache directory is lost, and repair index), on SeaweedFS on loopback,
// and reports packs per second: the time for a large repository is its
// number of packs divided by that (a pack holds up to 16 MiB).
func BenchmarkObjectStoreRebuildIndex(b *testing.B) {
	const packs = 200
	srv := s3test.Shared(b)
	url := "s3+http://" + srv.Endpoint + "/" + srv.NewBucket(b) + "/bench"
	access := repo.S3Access{Credentials: storage.S3Credentials{AccessKeyID: srv.AccessKey, SecretAccessKey: srv.SecretKey}}
	state := filepath.Join(b.TempDir(), "state")
	o := repotest.Options()
	o.StateDir, o.S3 = state, access
	if _, err := repo.Init(b.Context(), url, repo.Credentials{}, o); err != nil {
		b.Fatal(err)
	}
	open := func(skip bool) *repo.Repository {
		r, err := repo.Open(b.Context(), url, repo.Credentials{}, repo.Options{StateDir: state, CacheDir: filepath.Join(b.TempDir(), "cache"), S3: access, SkipIndex: skip})
		if err != nil {
			b.Fatal(err)
		}
		return r
	}
	r := open(false)
	s := r.NewSession()
	rng := rand.New(rand.NewPCG(1, 1))
	buf := make([]byte, 200<<10)
	for s.Stats().Packs < packs {
		for i := range buf {
			buf[i] = byte(rng.Uint32())
		}
		if _, _, err := s.SaveBlob(b.Context(), blob.Data, buf); err != nil {
			b.Fatal(err)
		}
	}
	s.Abort()
	r.Close()
	b.ResetTimer()
	for b.Loop() {
		r := open(true)
		rep, err := r.RebuildIndex(b.Context())
		if err != nil || rep.Packs < packs {
			b.Fatalf("rebuild: %+v %v", rep, err)
		}
		r.Close()
	}
	b.ReportMetric(float64(packs*b.N)/b.Elapsed().Seconds(), "packs/s")
}
