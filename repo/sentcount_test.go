package repo_test

import (
	"bytes"
	"context"
	"math/rand/v2"
	"testing"

	"github.com/cairnbackup/cairn/repo/blob"
	"github.com/cairnbackup/cairn/repo/repotest"
)

// A SentCounter's figures are those a plain session reports into an
// empty repository, whatever the repository holds: the same blobs (one
// of them twice) into an empty repository, where the counter stores
// them, and again into that repository, which has them all.
func TestSentCounterCountsWhatItWasGiven(t *testing.T) {
	random := make([]byte, 200<<10)
	rand.NewChaCha8([32]byte{3}).Read(random)
	puts := []struct {
		t    blob.Type
		data []byte
	}{
		{blob.Data, random},
		{blob.Data, bytes.Repeat([]byte("compressible "), 5000)},
		{blob.Data, random}, // a duplicate: counted once
		{blob.Tree, []byte("a tree's bytes, as far as the session cares")},
	}
	type uploader interface {
		SaveBlob(ctx context.Context, t blob.Type, data []byte) (blob.ID, bool, error)
	}
	save := func(up uploader) {
		t.Helper()
		for _, p := range puts {
			if _, _, err := up.SaveBlob(t.Context(), p.t, p.data); err != nil {
				t.Fatal(err)
			}
		}
	}
	plain := repotest.New(t).NewSession()
	save(plain)
	want := plain.Stats()
	want.Packs = 0
	if want.BlobsAdded != 3 {
		t.Fatalf("the plain session added %d blobs", want.BlobsAdded)
	}

	r := repotest.New(t)
	for _, round := range []string{"into an empty repository", "into a repository that has every blob"} {
		s := r.NewSession()
		c := s.CountSent()
		save(c)
		if got := c.Stats(); got != want {
			t.Fatalf("%s: counted %+v, want %+v", round, got, want)
		}
		if err := s.Flush(t.Context()); err != nil {
			t.Fatal(err)
		}
		stored := s.Stats()
		if round == "into an empty repository" && stored.BlobsAdded != 3 || round != "into an empty repository" && stored.BlobsAdded != 0 {
			t.Fatalf("%s: the session stored %+v", round, stored)
		}
	}
	var hs []blob.Handle
	for _, p := range puts {
		hs = append(hs, blob.Handle{ID: blob.Hash(p.data), Type: p.t})
	}
	has, err := r.HasBlobs(hs)
	if err != nil {
		t.Fatal(err)
	}
	for i, ok := range has {
		if !ok {
			t.Fatalf("blob %d was not stored", i)
		}
	}
}
