package snapfs_test

import (
	"bytes"
	"context"
	"slices"
	"testing"

	"github.com/cairnbackup/cairn/repo"
	"github.com/cairnbackup/cairn/repo/blob"
	"github.com/cairnbackup/cairn/repo/repotest"
	"github.com/cairnbackup/cairn/repo/snapfs"
)

// A cache that keeps only small blobs loads a larger one straight into
// the caller's buffer (no copy, nothing kept) and loads it again when
// asked again; a small one is kept and loaded once. A restore so keeps
// the small chunks many files share without holding (and copying) every
// large chunk it streams: its peak RSS on the peers data set fell from
// 211-230 MB to 115-118 MB.
func TestCacheKeepsSmallBlobsOnly(t *testing.T) {
	r := repotest.New(t)
	small, large := bytes.Repeat([]byte("s"), 100), bytes.Repeat([]byte("L"), 5000)
	s := r.NewSession()
	var hs []blob.Handle
	for _, data := range [][]byte{small, large} {
		id, _, err := s.SaveBlob(t.Context(), blob.Data, data)
		if err != nil {
			t.Fatal(err)
		}
		hs = append(hs, blob.Handle{ID: id, Type: blob.Data})
	}
	if err := s.Flush(t.Context()); err != nil {
		t.Fatal(err)
	}
	cl := newCountingLoader(r)
	c := snapfs.NewCache(cl, 1<<20).KeepAtMost(1000)
	buf := make([]byte, 0, 8192)
	for range 2 {
		got, err := c.LoadBlob(t.Context(), hs[1], buf)
		if err != nil || !bytes.Equal(got, large) {
			t.Fatalf("large blob: %d bytes, %v", len(got), err)
		}
		if &got[0] != &buf[:1][0] {
			t.Fatal("the large blob was not loaded into the caller's buffer")
		}
		got, err = c.LoadBlob(t.Context(), hs[0], nil)
		if err != nil || !bytes.Equal(got, small) {
			t.Fatalf("small blob: %q, %v", got, err)
		}
	}
	if n := c.Size(); n != len(small) {
		t.Fatalf("the cache holds %d bytes, want %d (the small blob only)", n, len(small))
	}
	if cl.loads[hs[0].ID] != 1 || cl.loads[hs[1].ID] != 2 {
		t.Fatalf("loads: small %d, large %d; want 1 and 2", cl.loads[hs[0].ID], cl.loads[hs[1].ID])
	}
}

// recordingLoader is an UnhashedLoader over a repository that records
// which of its methods each load went through.
type recordingLoader struct {
	r     *repo.Repository
	calls []string
}

func (l *recordingLoader) LoadBlob(ctx context.Context, h blob.Handle, buf []byte) ([]byte, error) {
	l.calls = append(l.calls, "hashed")
	return l.r.LoadBlob(ctx, h, buf)
}

func (l *recordingLoader) LoadBlobUnhashed(ctx context.Context, h blob.Handle, buf []byte) ([]byte, error) {
	l.calls = append(l.calls, "unhashed")
	return l.r.LoadBlobUnhashed(ctx, h, buf)
}

// A blob the cache loads unhashed is neither kept nor given to a caller
// of LoadBlob, who expects it hashed; a blob it holds (hashed) serves
// both. Over a loader that cannot skip the hash, LoadBlobUnhashed is
// LoadBlob.
func TestCacheKeepsOnlyHashedBlobs(t *testing.T) {
	r := repotest.New(t)
	data := bytes.Repeat([]byte("u"), 100)
	s := r.NewSession()
	id, _, err := s.SaveBlob(t.Context(), blob.Data, data)
	if err != nil {
		t.Fatal(err)
	}
	if err := s.Flush(t.Context()); err != nil {
		t.Fatal(err)
	}
	h := blob.Handle{ID: id, Type: blob.Data}
	rl := &recordingLoader{r: r}
	c := snapfs.NewCache(rl, 1<<20)
	load := func(unhashed bool) {
		t.Helper()
		f := c.LoadBlob
		if unhashed {
			f = c.LoadBlobUnhashed
		}
		got, err := f(t.Context(), h, nil)
		if err != nil || !bytes.Equal(got, data) {
			t.Fatalf("load (unhashed %v): %q, %v", unhashed, got, err)
		}
	}
	load(true)
	if n := c.Size(); n != 0 {
		t.Fatalf("the cache kept %d bytes of an unhashed load", n)
	}
	load(false)
	load(true)
	load(false)
	if want := []string{"unhashed", "hashed"}; !slices.Equal(rl.calls, want) {
		t.Fatalf("loads went through %v, want %v", rl.calls, want)
	}

	cl := newCountingLoader(r)
	plain := snapfs.NewCache(cl, 1<<20)
	if got, err := plain.LoadBlobUnhashed(t.Context(), h, nil); err != nil || !bytes.Equal(got, data) {
		t.Fatalf("over a plain loader: %q, %v", got, err)
	}
	if cl.loads[id] != 1 {
		t.Fatalf("over a plain loader: %d loads, want 1", cl.loads[id])
	}
}
