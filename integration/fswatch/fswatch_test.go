package fswatch

import (
	"os"
	"path/filepath"
	"slices"
	"testing"
)

func TestEvents(t *testing.T) {
	dir := t.TempDir()
	file := filepath.Join(dir, "f")
	if err := os.WriteFile(file, []byte("x"), 0o600); err != nil {
		t.Fatal(err)
	}
	sub := filepath.Join(dir, "sub")
	if err := os.Mkdir(sub, 0o700); err != nil {
		t.Fatal(err)
	}
	w := New(t, file, sub)
	if ev := w.Events(); len(ev) != 0 {
		t.Fatalf("events before anything happened: %q", ev)
	}
	if _, err := os.ReadFile(file); err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(filepath.Join(sub, "new"), nil, 0o600); err != nil {
		t.Fatal(err)
	}
	ev := w.Events()
	for _, want := range []string{
		file + " mask 0x20",     // IN_OPEN
		file + " mask 0x1",      // IN_ACCESS
		sub + "/new mask 0x100", // IN_CREATE
	} {
		if !slices.Contains(ev, want) {
			t.Errorf("no event %q in %q", want, ev)
		}
	}
	if ev := w.Events(); len(ev) != 0 {
		t.Fatalf("events twice: %q", ev)
	}
}
