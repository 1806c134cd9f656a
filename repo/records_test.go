package repo_test

import (
	"errors"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"testing"

	"github.com/cairnbackup/cairn/repo/blob"
	"github.com/cairnbackup/cairn/repo/repotest"
	"github.com/cairnbackup/cairn/repo/storage"
)

func TestRecords(t *testing.T) {
	r := repotest.New(t)
	ctx := t.Context()
	if ids, err := r.ListRecords(ctx, storage.Drills); err != nil || len(ids) != 0 {
		t.Fatalf("empty list: %v %v", ids, err)
	}
	a, b := []byte(`{"report":"a"}`), []byte(`{"report":"b"}`)
	ida, err := r.PutRecord(ctx, storage.Drills, a)
	if err != nil || ida != blob.Hash(a) {
		t.Fatalf("put: %v %v", ida, err)
	}
	if again, err := r.PutRecord(ctx, storage.Drills, a); err != nil || again != ida {
		t.Fatalf("put again: %v %v", again, err)
	}
	idb, err := r.PutRecord(ctx, storage.Drills, b)
	if err != nil {
		t.Fatal(err)
	}
	got, err := r.GetRecord(ctx, storage.Drills, ida)
	if err != nil || string(got) != string(a) {
		t.Fatalf("get: %q %v", got, err)
	}
	want := []blob.ID{ida, idb}
	slices.SortFunc(want, func(x, y blob.ID) int { return strings.Compare(x.String(), y.String()) })
	if ids, err := r.ListRecords(ctx, storage.Drills); err != nil || !slices.Equal(ids, want) {
		t.Fatalf("list %v %v, want %v", ids, err, want)
	}
	// The file is sealed: the plaintext is not in it.
	dir := filepath.Join(r.Dir(), "drills")
	raw, err := os.ReadFile(filepath.Join(dir, ida.String()))
	if err != nil || strings.Contains(string(raw), "report") {
		t.Fatalf("stored %q %v", raw, err)
	}

	if _, err := r.GetRecord(ctx, storage.Drills, blob.Hash([]byte("none"))); !errors.Is(err, blob.ErrNotFound) {
		t.Errorf("missing: %v", err)
	}
	// A record under another record's name does not authenticate.
	os.Chmod(filepath.Join(dir, idb.String()), 0o600)
	if err := os.Rename(filepath.Join(dir, idb.String()), filepath.Join(dir, blob.Hash([]byte("x")).String())); err != nil {
		t.Fatal(err)
	}
	if _, err := r.GetRecord(ctx, storage.Drills, blob.Hash([]byte("x"))); !errors.Is(err, blob.ErrCorrupt) {
		t.Errorf("renamed: %v", err)
	}
	// A flipped byte does not authenticate.
	raw[len(raw)/2] ^= 1
	os.Chmod(filepath.Join(dir, ida.String()), 0o600)
	if err := os.WriteFile(filepath.Join(dir, ida.String()), raw, 0o600); err != nil {
		t.Fatal(err)
	}
	if _, err := r.GetRecord(ctx, storage.Drills, ida); !errors.Is(err, blob.ErrCorrupt) {
		t.Errorf("damaged: %v", err)
	}
	// Files that are not records are not listed.
	os.WriteFile(filepath.Join(dir, "notes.txt"), []byte("x"), 0o600)
	if ids, err := r.ListRecords(ctx, storage.Drills); err != nil || len(ids) != 2 {
		t.Errorf("list with a stray file: %v %v", ids, err)
	}
	for _, k := range []storage.Kind{storage.Snapshot, storage.Packs, storage.Keys, storage.Config, ""} {
		if _, err := r.PutRecord(ctx, k, a); err == nil {
			t.Errorf("kind %q accepted", k)
		}
	}
}
