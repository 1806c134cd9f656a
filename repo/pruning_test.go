package repo_test

import (
	"bytes"
	"slices"
	"strings"
	"testing"

	"github.com/cairnbackup/cairn/repo/blob"
	"github.com/cairnbackup/cairn/repo/repotest"
)

// A prune protects what the sessions in flight when it begins rely on
// (blobs they were told exist) and what they added but have not yet
// written: exactly those, from every such session.
func TestBeginPruneProtectsSessionsInFlight(t *testing.T) {
	r := repotest.New(t)
	s := r.NewSession()
	old, _, err := s.SaveBlob(t.Context(), blob.Data, []byte(strings.Repeat("indexed ", 100)))
	if err != nil {
		t.Fatal(err)
	}
	if err := s.Flush(t.Context()); err != nil {
		t.Fatal(err)
	}
	s.Abort()

	relying := r.NewSession()
	defer relying.Abort()
	relied := blob.Handle{ID: old, Type: blob.Data}
	if ok, err := relying.Known(relied); !ok || err != nil {
		t.Fatalf("known: %v %v", ok, err)
	}
	adding := r.NewSession()
	defer adding.Abort()
	added, _, err := adding.SaveBlob(t.Context(), blob.Tree, []byte(strings.Repeat("pending ", 100)))
	if err != nil {
		t.Fatal(err)
	}
	idle := r.NewSession()
	defer idle.Abort()

	p, err := r.BeginPrune()
	if err != nil {
		t.Fatal(err)
	}
	defer p.End()
	got := slices.Clone(p.Protected)
	slices.SortFunc(got, func(a, b blob.Handle) int { return bytes.Compare(a.ID[:], b.ID[:]) })
	want := []blob.Handle{relied, {ID: added, Type: blob.Tree}}
	slices.SortFunc(want, func(a, b blob.Handle) int { return bytes.Compare(a.ID[:], b.ID[:]) })
	if !slices.Equal(got, want) {
		t.Errorf("protected = %v, want %v", got, want)
	}
}
