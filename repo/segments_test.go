package repo_test

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"math/rand/v2"
	"path/filepath"
	"slices"
	"strings"
	"sync"
	"sync/atomic"
	"testing"

	"github.com/cairnbackup/cairn/integration/s3test"
	"github.com/cairnbackup/cairn/repo"
	"github.com/cairnbackup/cairn/repo/blob"
	"github.com/cairnbackup/cairn/repo/repotest"
	"github.com/cairnbackup/cairn/repo/storage"
)

// proxied is an object-store repository reached through a counting
// s3test.Proxy, created with init options o.
type proxied struct {
	*s3Repo
	proxy *s3test.Proxy
}

func newProxied(t *testing.T, o repo.InitOptions) *proxied {
	t.Helper()
	srv := s3test.Shared(t)
	proxy := s3test.NewProxy(t, srv.Endpoint)
	s := &s3Repo{srv: srv, bucket: srv.NewBucket(t), state: filepath.Join(t.TempDir(), "state"), cache: filepath.Join(t.TempDir(), "cache")}
	s.url = "s3+http://" + proxy.Endpoint + "/" + s.bucket + "/" + s3Prefix
	s.access = repo.S3Access{Credentials: storage.S3Credentials{AccessKeyID: srv.AccessKey, SecretAccessKey: srv.SecretKey}}
	o.StateDir, o.S3 = s.state, s.access
	if _, err := repo.Init(t.Context(), s.url, repo.Credentials{}, o); err != nil {
		t.Fatal(err)
	}
	return &proxied{s3Repo: s, proxy: proxy}
}

// packGets counts the GETs of packs the proxy has seen.
func (p *proxied) packGets() int {
	n := 0
	for _, q := range p.proxy.Requests() {
		if q.Method == "GET" && strings.Contains(q.Path, "/packs/") {
			n++
		}
	}
	return n
}

// indexed lists the blobs of type typ the index holds, in its order.
func indexed(t *testing.T, r *repo.Repository, typ blob.Type) []blob.Handle {
	t.Helper()
	var hs []blob.Handle
	if err := r.IndexedBlobs(func(h blob.Handle, _ repo.Location) error {
		if h.Type == typ {
			hs = append(hs, h)
		}
		return nil
	}); err != nil {
		t.Fatal(err)
	}
	return hs
}

func randomBytes(seed uint64, n int) []byte {
	b := make([]byte, n)
	rng := rand.New(rand.NewPCG(seed, 7))
	for i := range b {
		b[i] = byte(rng.Uint32())
	}
	return b
}

// A restore from an object store of many files of blobs too large for a
// segment (512 KiB and more: every chunk of the default chunker) reads
// the blobs of a pack that lie together with one request, not one
// request per blob. 40 files of 600 to 990 KiB, one blob each, 31 MiB in
// two 16 MiB packs, and one tree: one request per blob would be 41;
// stretches of up to 4 MiB need 8 and the tree's, and some more where a
// worker's wait sent a short batch (13 to 17 in runs on 2 cores).
func TestObjectStoreRestoreReadsStretches(t *testing.T) {
	p := newProxied(t, repo.InitOptions{}) // the default chunker and pack size
	src := filepath.Join(t.TempDir(), "src")
	files := map[string]string{}
	for i := range 40 {
		files[fmt.Sprintf("f%02d.bin", i)] = string(randomBytes(uint64(i), 600<<10+i*10<<10))
	}
	repotest.WriteTree(t, src, files)
	r := p.open(t, p.options())
	id := backupDir(t, r, src)
	r.Close()
	r = p.open(t, p.options()) // nothing kept from the backup
	before := p.packGets()
	restoreAndCompare(t, r, id, src)
	if n := p.packGets() - before; n > 24 {
		t.Fatalf("%d GETs of packs to restore 40 files of one large blob each, want at most 24", n)
	}
}

// smallBlobs backs up three small files into p and returns their
// blobs and where they are stored, in the order of their offsets in the
// one pack that holds them all.
func smallBlobs(t *testing.T, p *proxied) ([3]blob.Handle, [3]repo.Location) {
	t.Helper()
	src := filepath.Join(t.TempDir(), "src")
	files := map[string]string{}
	for i, name := range []string{"a", "b", "c"} {
		files[name+".txt"] = strings.Repeat(fmt.Sprintf("small file %d\n", i), 200)
	}
	repotest.WriteTree(t, src, files)
	r := p.open(t, p.options())
	backupDir(t, r, src)
	var hs [3]blob.Handle
	var locs [3]repo.Location
	i := 0
	for _, content := range files {
		hs[i] = blob.Handle{ID: blob.Hash([]byte(content)), Type: blob.Data}
		loc, ok, err := r.Lookup(hs[i])
		if err != nil || !ok {
			t.Fatalf("blob %s: %v %v", hs[i], ok, err)
		}
		locs[i] = loc
		i++
	}
	r.Close()
	for i := range 3 {
		for j := i + 1; j < 3; j++ {
			if locs[j].Offset < locs[i].Offset {
				hs[i], hs[j], locs[i], locs[j] = hs[j], hs[i], locs[j], locs[i]
			}
		}
	}
	if locs[0].Pack != locs[1].Pack || locs[1].Pack != locs[2].Pack {
		t.Fatalf("the blobs are in packs %s, %s and %s", locs[0].Pack.Short(), locs[1].Pack.Short(), locs[2].Pack.Short())
	}
	return hs, locs
}

// packGetRanges returns the Range headers of the GETs of packs after the
// first n requests.
func (p *proxied) packGetRanges(n int) []string {
	var rs []string
	for _, q := range p.proxy.Requests()[n:] {
		if q.Method == "GET" && strings.Contains(q.Path, "/packs/") {
			rs = append(rs, q.Range)
		}
	}
	return rs
}

// A small blob far from anything read from an object store is read
// alone. One near what was read brings the 4 MiB of its pack around it,
// aligned, so the blob stored before it costs no request either (trees
// are read root first, the opposite of the order a backup writes them),
// and nothing held already is read again.
func TestObjectStoreSegmentReadAround(t *testing.T) {
	p := newProxied(t, repotest.Options())
	hs, locs := smallBlobs(t, p)
	r := p.open(t, p.options())
	before := len(p.proxy.Requests())
	for _, i := range []int{2, 1, 0} {
		if _, err := r.LoadBlob(t.Context(), hs[i], nil); err != nil {
			t.Fatal(err)
		}
	}
	want := []string{
		fmt.Sprintf("bytes=%d-%d", locs[2].Offset, locs[2].Offset+uint64(locs[2].Length)-1), // alone
		fmt.Sprintf("bytes=0-%d", locs[2].Offset-1),                                         // its segment, up to what is held
	}
	if got := p.packGetRanges(before); !slices.Equal(got, want) {
		t.Fatalf("GETs of packs with ranges %q, want %q", got, want)
	}
}

// Two readers that want the same segment at once cost one request: the
// second waits for the first's read.
func TestObjectStoreSegmentReadOnce(t *testing.T) {
	p := newProxied(t, repotest.Options())
	hs, _ := smallBlobs(t, p)
	r := p.open(t, p.options())
	if _, err := r.LoadBlob(t.Context(), hs[2], nil); err != nil { // what the others are near
		t.Fatal(err)
	}

	// The proxy holds the next GET of a pack until the second reader
	// waits for it, or until a second GET comes (which fails the test).
	var (
		gets     atomic.Int32
		arrived  = make(chan struct{})
		release  = make(chan struct{})
		released sync.Once
	)
	free := func() { released.Do(func() { close(release) }) }
	t.Cleanup(free)
	p.proxy.OnRequest(func(q s3test.Request) {
		if q.Method != "GET" || !strings.Contains(q.Path, "/packs/") {
			return
		}
		if gets.Add(1) == 1 {
			close(arrived)
			<-release
			return
		}
		free()
	})
	repo.OnSegmentWait(t, free)

	var g sync.WaitGroup
	errs := make([]error, 2)
	g.Go(func() { _, errs[0] = r.LoadBlob(t.Context(), hs[1], nil) })
	<-arrived
	g.Go(func() { _, errs[1] = r.LoadBlob(t.Context(), hs[0], nil) })
	g.Wait()
	if err := errors.Join(errs...); err != nil {
		t.Fatal(err)
	}
	if n := gets.Load(); n != 1 {
		t.Fatalf("%d GETs of packs for two small blobs of one segment read at once; want 1", n)
	}
}

// What the segments keep stays within their bound however much is read,
// through LoadBlob and LoadBlobs alike.
func TestObjectStoreSegmentsBounded(t *testing.T) {
	p := newProxied(t, repo.InitOptions{Chunker: repo.ChunkerParams{Min: 64 << 10, Avg: 128 << 10, Max: 256 << 10}})
	src := filepath.Join(t.TempDir(), "src")
	files := map[string]string{}
	for i := range 6 {
		files[fmt.Sprintf("f%d.bin", i)] = string(randomBytes(uint64(100+i), 10<<20))
	}
	repotest.WriteTree(t, src, files)
	r := p.open(t, p.options())
	backupDir(t, r, src)
	r.Close()
	r = p.open(t, p.options())
	hs := indexed(t, r, blob.Data)
	if len(hs) < 200 {
		t.Fatalf("%d data blobs, want 60 MiB of blobs under 256 KiB", len(hs))
	}
	for _, h := range hs[:len(hs)/2] {
		if _, err := r.LoadBlob(t.Context(), h, nil); err != nil {
			t.Fatal(err)
		}
		if n := repo.SegmentBytes(r); n > repo.SegmentCacheSize {
			t.Fatalf("the segments keep %d bytes, more than %d", n, repo.SegmentCacheSize)
		}
	}
	var mu sync.Mutex
	err := r.LoadBlobs(t.Context(), hs, func(i int, data []byte, err error) {
		mu.Lock()
		defer mu.Unlock()
		if err != nil {
			t.Errorf("blob %s: %v", hs[i], err)
		}
		if n := repo.SegmentBytes(r); n > repo.SegmentCacheSize {
			t.Errorf("the segments keep %d bytes, more than %d", n, repo.SegmentCacheSize)
		}
	})
	if err != nil {
		t.Fatal(err)
	}
	if n := repo.SegmentBytes(r); n == 0 {
		t.Fatal("the segments keep nothing")
	}
}

// LoadBlobs gives each blob once, with the bytes LoadBlob gives, or the
// error LoadBlob gives for it; on a directory and on an object store.
func TestLoadBlobs(t *testing.T) {
	check := func(t *testing.T, r *repo.Repository) {
		src := sampleTree(t)
		backupDir(t, r, src)
		hs := append(indexed(t, r, blob.Data), indexed(t, r, blob.Tree)...)
		unknown := blob.Handle{ID: blob.Hash([]byte("stored nowhere")), Type: blob.Data}
		hs = append(hs, unknown, hs[0]) // a blob twice: asked twice, given twice
		got := make([][]byte, len(hs))
		errs := make([]error, len(hs))
		calls := make([]int, len(hs))
		var mu sync.Mutex
		if err := r.LoadBlobs(t.Context(), hs, func(i int, data []byte, err error) {
			mu.Lock()
			defer mu.Unlock()
			calls[i]++
			got[i], errs[i] = data, err
		}); err != nil {
			t.Fatal(err)
		}
		for i, h := range hs {
			if calls[i] != 1 {
				t.Errorf("blob %s: %d calls", h, calls[i])
			}
			if h == unknown {
				if !errors.Is(errs[i], blob.ErrNotFound) || errs[i].Error() != "blob "+h.String()+": "+blob.ErrNotFound.Error() {
					t.Errorf("unknown blob: %v", errs[i])
				}
				continue
			}
			want, err := r.LoadBlob(t.Context(), h, nil)
			if err != nil || errs[i] != nil || !bytes.Equal(got[i], want) {
				t.Errorf("blob %s: %d bytes (%v), LoadBlob gives %d (%v)", h, len(got[i]), errs[i], len(want), err)
			}
		}
		ctx, cancel := context.WithCancel(t.Context())
		cancel()
		if err := r.LoadBlobs(ctx, hs, func(int, []byte, error) {}); !errors.Is(err, context.Canceled) {
			t.Errorf("cancelled: %v", err)
		}
	}
	t.Run("directory", func(t *testing.T) { check(t, repotest.New(t)) })
	t.Run("object store", func(t *testing.T) {
		s := newS3Repo(t)
		check(t, s.open(t, s.options()))
	})
}
