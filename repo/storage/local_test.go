package storage

import (
	"errors"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"testing"
)

func newLocal(t *testing.T) *Local {
	l := NewLocal(t.TempDir())
	if err := l.Init(); err != nil {
		t.Fatal(err)
	}
	return l
}

func TestPutOpenListDelete(t *testing.T) {
	l := newLocal(t)
	ctx := t.Context()
	name := strings.Repeat("ab", 32)
	h := Handle{Kind: Packs, Name: name}
	if err := l.Put(ctx, h, strings.NewReader("pack bytes")); err != nil {
		t.Fatal(err)
	}
	if _, err := os.Stat(filepath.Join(l.Dir(), "packs", "ab", name)); err != nil {
		t.Fatalf("pack not at packs/ab/<name>: %v", err)
	}
	got, err := ReadAll(ctx, l, h, 100)
	if err != nil || string(got) != "pack bytes" {
		t.Fatalf("read %q, %v", got, err)
	}
	if err := l.Put(ctx, h, strings.NewReader("other")); !errors.Is(err, ErrExist) {
		t.Fatalf("second put: %v, want ErrExist", err)
	}
	got, _ = ReadAll(ctx, l, h, 100)
	if string(got) != "pack bytes" {
		t.Fatalf("object replaced: %q", got)
	}
	if _, err := ReadAll(ctx, l, h, 3); err == nil || err.Error() != "packs/"+name+": 10 bytes is more than the limit of 3" {
		t.Fatalf("limit: %v", err)
	}
	if err := l.Put(ctx, Handle{Kind: Snapshot, Name: "s1"}, strings.NewReader("")); err != nil {
		t.Fatal(err)
	}
	// A temporary file is never listed.
	os.WriteFile(filepath.Join(l.Dir(), "packs", "ab", TempPrefix+"x"), nil, 0o600)
	var names []string
	l.List(ctx, Packs, func(n string, size int64) error {
		names = append(names, n)
		if size != 10 {
			t.Errorf("size %d", size)
		}
		return nil
	})
	if !slices.Equal(names, []string{name}) {
		t.Fatalf("list = %v", names)
	}
	removed, err := l.CleanTemp()
	if err != nil || len(removed) != 1 || filepath.Base(removed[0]) != TempPrefix+"x" {
		t.Fatalf("clean: %v %v", removed, err)
	}
	if err := l.Delete(ctx, h); err != nil {
		t.Fatal(err)
	}
	if _, err := l.Open(ctx, h); !errors.Is(err, ErrNotExist) {
		t.Fatalf("open deleted: %v", err)
	}
	if err := l.Delete(ctx, h); err != nil {
		t.Fatalf("delete twice: %v", err)
	}
}

func TestBadNames(t *testing.T) {
	l := newLocal(t)
	for _, n := range []string{"", ".", "..", "a/b", "x\x00", TempPrefix + "1", "a"} {
		kind := Snapshot
		if n == "a" {
			kind = Packs
		}
		err := l.Put(t.Context(), Handle{Kind: kind, Name: n}, strings.NewReader("x"))
		if err == nil || !strings.HasPrefix(err.Error(), "storage: invalid") {
			t.Errorf("put %q: %v", n, err)
		}
	}
}

// A failing write (here: a full file system is simulated by a reader
// that fails) leaves no object and no temporary file.
func TestPutFailureLeavesNothing(t *testing.T) {
	l := newLocal(t)
	h := Handle{Kind: Snapshot, Name: "s"}
	err := l.Put(t.Context(), h, failingReader{})
	if err == nil || err.Error() != "storage: put snapshots/s: no space left on device" {
		t.Fatalf("err = %v", err)
	}
	entries, _ := os.ReadDir(filepath.Join(l.Dir(), "snapshots"))
	if len(entries) != 0 {
		t.Fatalf("left behind: %v", entries)
	}
}

type failingReader struct{}

func (failingReader) Read([]byte) (int, error) { return 0, errors.New("no space left on device") }
