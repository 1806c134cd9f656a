package restore_test

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"io"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"sync/atomic"
	"testing"
	"time"

	"github.com/minio/minio-go/v7"

	"github.com/cairnbackup/cairn/integration/s3test"
	"github.com/cairnbackup/cairn/repo"
	"github.com/cairnbackup/cairn/repo/backup"
	"github.com/cairnbackup/cairn/repo/blob"
	"github.com/cairnbackup/cairn/repo/repotest"
	"github.com/cairnbackup/cairn/repo/repotest/datagen"
	"github.com/cairnbackup/cairn/repo/restore"
	"github.com/cairnbackup/cairn/repo/snapfs"
	"github.com/cairnbackup/cairn/repo/snapshot"
	"github.com/cairnbackup/cairn/repo/storage"
	"github.com/cairnbackup/cairn/repo/tree"
)

func TestMain(m *testing.M) {
	code := m.Run()
	s3test.StopShared()
	os.Exit(code)
}

// batched is a repository in a directory whose reads a restore plans as
// it does an object store's: the real repository, LoadBlobs and all,
// only BatchReads says yes.
type batched struct{ *repo.Repository }

func (batched) BatchReads() bool { return true }

// backupTree backs src up into r and returns the snapshot's root tree.
func backupTree(t *testing.T, r *repo.Repository, src string) blob.ID {
	t.Helper()
	s := r.NewSession()
	res, err := backup.Run(t.Context(), s, []string{src}, backup.Options{Params: r.ChunkerParams(), Table: r.ChunkerTable()})
	if err != nil {
		t.Fatal(err)
	}
	if _, err := s.Commit(t.Context(), &snapshot.Snapshot{Version: snapshot.Version, Time: time.Now(), Node: "lyra", Paths: []string{src}, Tree: res.Tree}); err != nil {
		t.Fatal(err)
	}
	return res.Tree
}

// A planned restore holds at most its budget of plaintext, however large
// the files, by its own accounting; it gives everything back by the end,
// reads blobs many per request, and restores the tree exactly.
func TestPlanMemoryBound(t *testing.T) {
	const budget = 512 << 10 // twice the largest chunk of repotest's chunker
	restore.SetPlanBudget(t, budget)
	var stats []restore.PlanStats
	restore.OnPlanned(t, func(s restore.PlanStats) { stats = append(stats, s) })
	src := filepath.Join(t.TempDir(), "src")
	if _, err := datagen.Generate(src, datagen.Spec{
		SmallFiles:   300,
		Dumps:        []int64{3 << 20},
		RandomFiles:  []int64{6 << 20, 1 << 20},
		SparseImages: []int64{8 << 20},
		Symlinks:     3,
		Hardlinks:    2,
	}, 1); err != nil {
		t.Fatal(err)
	}
	r := repotest.New(t)
	root := backupTree(t, r, src)
	target := filepath.Join(t.TempDir(), "target")
	if _, err := restore.Run(t.Context(), batched{r}, root, src, target, restore.Options{Workers: 2}); err != nil {
		t.Fatal(err)
	}
	repotest.AssertSameTree(t, src, filepath.Join(target, "src"))
	if len(stats) != 1 {
		t.Fatalf("%d planned restores, want 1", len(stats))
	}
	s := stats[0]
	t.Logf("%+v", s)
	if s.Peak > budget || s.Peak == 0 {
		t.Errorf("the plan held up to %d bytes; the budget is %d", s.Peak, budget)
	}
	if s.Held != 0 {
		t.Errorf("the plan still holds %d bytes at the end", s.Held)
	}
	if s.Admitted < 300 || s.Batches >= s.Blobs {
		t.Errorf("%d chunks admitted, %d blobs asked for in %d batches: nothing was read together", s.Admitted, s.Blobs, s.Batches)
	}
}

// A damaged blob in the middle of a stretch of a pack read with one
// request fails only the files made of it; the other files of the same
// request restore, verified. On a real object store (SeaweedFS), with
// the pack overwritten behind cairn's back, and on a directory.
func TestPlanDamagedBlobFailsItsFilesOnly(t *testing.T) {
	src := filepath.Join(t.TempDir(), "src")
	files := map[string]string{}
	for i := range 40 {
		files[fmt.Sprintf("f%02d", i)] = strings.Repeat(fmt.Sprintf("file %d of the stretch\n", i), 40+i)
	}
	damaged := strings.Repeat("this blob will rot\n", 60)
	files["f20-rot"] = damaged
	files["f33-rot-too"] = damaged // the same blob
	repotest.WriteTree(t, src, files)
	bad := blob.Handle{ID: blob.Hash([]byte(damaged)), Type: blob.Data}

	check := func(t *testing.T, l snapfs.BatchLoader, root blob.ID, gets func() int, maxGets int) {
		var stats []restore.PlanStats
		restore.OnPlanned(t, func(s restore.PlanStats) { stats = append(stats, s) })
		target := filepath.Join(t.TempDir(), "target")
		before := gets()
		_, err := restore.Run(t.Context(), l, root, src, target, restore.Options{Workers: 2})
		var re *restore.Error
		if !errors.As(err, &re) {
			t.Fatalf("restore: %v", err)
		}
		var failed []string
		for _, e := range re.Errs {
			if !errors.Is(e, blob.ErrCorrupt) {
				t.Errorf("not reported as corruption: %v", e)
			}
			p, _, _ := strings.Cut(e.Error(), ":")
			failed = append(failed, filepath.Base(p))
		}
		slices.Sort(failed)
		if want := []string{"f20-rot", "f33-rot-too"}; !slices.Equal(failed, want) {
			t.Fatalf("failed %v, want %v:\n%v", failed, want, err)
		}
		for name, content := range files {
			got, err := os.ReadFile(filepath.Join(target, "src", name))
			switch {
			case content == damaged && !errors.Is(err, os.ErrNotExist):
				t.Errorf("%s: left in the target (%v)", name, err)
			case content != damaged && string(got) != content:
				t.Errorf("%s: restored %d bytes, want %d (%v)", name, len(got), len(content), err)
			}
		}
		if len(stats) != 1 || stats[0].Admitted != 42 {
			t.Fatalf("plan %+v: want 42 chunks admitted", stats)
		}
		if n := gets() - before; n > maxGets {
			t.Errorf("%d reads of packs for the trees and %d blobs, want at most %d", n, stats[0].Blobs, maxGets)
		}
	}

	t.Run("directory", func(t *testing.T) {
		dir := repotest.Init(t, repotest.Options())
		r := repotest.Open(t, dir)
		root := backupTree(t, r, src)
		loc := locate(t, r, bad)
		p := filepath.Join(dir, "packs", loc.Pack.String()[:2], loc.Pack.String())
		b, err := os.ReadFile(p)
		if err != nil {
			t.Fatal(err)
		}
		b[loc.Offset+uint64(loc.Length/2)] ^= 0x40
		os.Chmod(p, 0o600)
		if err := os.WriteFile(p, b, 0o400); err != nil {
			t.Fatal(err)
		}
		check(t, batched{r}, root, func() int { return 0 }, 0)
	})

	t.Run("object store", func(t *testing.T) {
		srv := s3test.Shared(t)
		proxy := s3test.NewProxy(t, srv.Endpoint)
		bucket := srv.NewBucket(t)
		url := "s3+http://" + proxy.Endpoint + "/" + bucket + "/repo"
		o := repotest.Options()
		o.StateDir = filepath.Join(t.TempDir(), "state")
		o.S3 = repo.S3Access{Credentials: storage.S3Credentials{AccessKeyID: srv.AccessKey, SecretAccessKey: srv.SecretKey}}
		if _, err := repo.Init(t.Context(), url, repo.Credentials{}, o); err != nil {
			t.Fatal(err)
		}
		r, err := repo.Open(t.Context(), url, repo.Credentials{}, repo.Options{StateDir: o.StateDir, CacheDir: filepath.Join(t.TempDir(), "cache"), S3: o.S3})
		if err != nil {
			t.Fatal(err)
		}
		t.Cleanup(func() { r.Close() })
		if !r.BatchReads() {
			t.Fatal("an object store's reads are not batched")
		}
		root := backupTree(t, r, src)
		loc := locate(t, r, bad)
		key := "repo/packs/" + loc.Pack.String()[:2] + "/" + loc.Pack.String()
		c := srv.Client(t)
		obj, err := c.GetObject(t.Context(), bucket, key, minio.GetObjectOptions{})
		if err != nil {
			t.Fatal(err)
		}
		b, err := io.ReadAll(obj)
		obj.Close()
		if err != nil {
			t.Fatal(err)
		}
		b[loc.Offset+uint64(loc.Length/2)] ^= 0x40
		if _, err := c.PutObject(t.Context(), bucket, key, bytes.NewReader(b), int64(len(b)), minio.PutObjectOptions{}); err != nil {
			t.Fatal(err)
		}
		check(t, r, root, func() int {
			n := 0
			for _, q := range proxy.Requests() {
				if q.Method == "GET" && strings.Contains(q.Path, "/packs/") {
					n++
				}
			}
			return n
		}, 6) // per pack (data, trees): the first blob alone, then the segments on either side of it
	})
}

func locate(t *testing.T, r *repo.Repository, h blob.Handle) repo.Location {
	t.Helper()
	loc, ok, err := r.Lookup(h)
	if err != nil || !ok {
		t.Fatalf("blob %s: %v %v", h, ok, err)
	}
	return loc
}

// cancelling is a batched repository whose context is cancelled once
// after blobs have been loaded.
type cancelling struct {
	batched
	after  int64
	loaded atomic.Int64
	cancel context.CancelFunc
}

func (c *cancelling) LoadBlobs(ctx context.Context, hs []blob.Handle, fn func(int, []byte, error)) error {
	return c.batched.LoadBlobs(ctx, hs, c.count(fn))
}

func (c *cancelling) LoadBlobsUnhashed(ctx context.Context, hs []blob.Handle, fn func(int, []byte, error)) error {
	return c.batched.LoadBlobsUnhashed(ctx, hs, c.count(fn))
}

// count cancels the restore when the after-th blob is delivered.
func (c *cancelling) count(fn func(int, []byte, error)) func(int, []byte, error) {
	return func(i int, data []byte, err error) {
		if c.loaded.Add(1) == c.after {
			c.cancel()
		}
		fn(i, data, err)
	}
}

// A planned restore cancelled while it reads returns the context's
// error, whatever the walker, the planner and the workers were waiting
// for (a hang here is the test's timeout).
func TestPlanCancelled(t *testing.T) {
	restore.SetPlanBudget(t, 1<<20) // the planner waits for room too
	src := filepath.Join(t.TempDir(), "src")
	if _, err := datagen.Generate(src, datagen.Spec{SmallFiles: 200, RandomFiles: []int64{3 << 20}, Hardlinks: 2}, 1); err != nil {
		t.Fatal(err)
	}
	r := repotest.New(t)
	root := backupTree(t, r, src)
	for _, after := range []int64{1, 10, 100} {
		ctx, cancel := context.WithCancel(t.Context())
		target := filepath.Join(t.TempDir(), "target")
		_, err := restore.Run(ctx, &cancelling{batched: batched{r}, after: after, cancel: cancel}, root, src, target, restore.Options{Workers: 2})
		cancel()
		if !errors.Is(err, context.Canceled) {
			t.Fatalf("cancelled after %d blobs: %v", after, err)
		}
	}
}

// A tree whose chunk claims more bytes than any blob holds fails its
// file as damaged, in a planned restore as in one that is not, and the
// claim takes no room in the plan.
func TestPlanHostileChunkSize(t *testing.T) {
	m := blobs{}
	put := func(typ blob.Type, b []byte) blob.ID {
		m[blob.Handle{ID: blob.Hash(b), Type: typ}] = b
		return blob.Hash(b)
	}
	put(blob.Data, []byte("good"))
	huge := fileNode("a-huge", "good", 0)
	huge.Content[0].Size, huge.Size = 1<<63+4, 1<<63+4
	enc, err := tree.Encode(nil, &tree.Tree{Nodes: []tree.Node{huge, fileNode("b-good", "good", 0)}})
	if err != nil {
		t.Fatal(err)
	}
	root := put(blob.Tree, enc)
	for _, l := range []snapfs.BlobLoader{m, batchedBlobs{m}} {
		var stats []restore.PlanStats
		restore.OnPlanned(t, func(s restore.PlanStats) { stats = append(stats, s) })
		target := filepath.Join(t.TempDir(), "target")
		_, err := restore.Run(t.Context(), l, root, "", target, restore.Options{Workers: 2})
		var re *restore.Error
		if !errors.As(err, &re) || len(re.Errs) != 1 || !errors.Is(re.Errs[0], blob.ErrCorrupt) || !strings.HasPrefix(re.Errs[0].Error(), "a-huge: ") {
			t.Fatalf("%T: %v", l, err)
		}
		if b, err := os.ReadFile(filepath.Join(target, "b-good")); string(b) != "good" {
			t.Errorf("%T: b-good: %q %v", l, b, err)
		}
		if _, planned := l.(batchedBlobs); planned && (len(stats) != 1 || stats[0].Peak != 4) {
			t.Errorf("plan %+v: want 4 bytes held at most", stats)
		}
	}
}
