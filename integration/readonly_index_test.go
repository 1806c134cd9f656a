package integration

import (
	"fmt"
	"os"
	"path/filepath"
	"slices"
	"testing"
)

// indexFiles lists every file of the index directory with its size and
// modification time.
func indexFiles(t *testing.T, dir string) []string {
	t.Helper()
	entries, err := os.ReadDir(dir)
	if err != nil {
		t.Fatal(err)
	}
	var out []string
	for _, e := range entries {
		fi, err := e.Info()
		if err != nil {
			t.Fatal(err)
		}
		out = append(out, fmt.Sprintf("%s %d %d", e.Name(), fi.Size(), fi.ModTime().UnixNano()))
	}
	return out
}

// Commands that only read open the index read-only: none of them
// changes a file of the index (before, every open added a value log
// file and rewrote the manifest, and the first open after a large
// backup ran badger's compactions, whatever the command).
func TestReadersLeaveTheIndexAlone(t *testing.T) {
	e := newEnv(t)
	e.ok("init")
	src := filepath.Join(e.dir, "src")
	writeSource(t, src)
	e.ok("backup", "--node", "lyra", "--plan", "files", src)
	e.ok("backup", "--node", "lyra", "--plan", "files", src)
	list := e.snapshots()
	if len(list) != 2 {
		t.Fatalf("%d snapshots, want 2", len(list))
	}
	idx := filepath.Join(e.repo, "index")
	before := indexFiles(t, idx)
	for _, args := range [][]string{
		{"snapshots"},
		{"ls", "latest:" + src},
		{"find", "db.dump"},
		{"diff", list[0].ID, list[1].ID},
		{"dump", "latest:" + filepath.Join(src, "etc/service.yaml")},
		{"stats"},
		{"check"},
		{"status"},
		{"restore", "latest:" + src, "--target", filepath.Join(e.dir, "restored")},
	} {
		e.ok(args...)
		if after := indexFiles(t, idx); !slices.Equal(before, after) {
			t.Fatalf("cairn %v changed the index:\nbefore %q\nafter  %q", args, before, after)
		}
	}
	repotestAssertSame(t, src, filepath.Join(e.dir, "restored", "src"))

	// A standalone mount, read through.
	requireFUSE(t)
	mnt := t.TempDir()
	m := startMount(t, append(cleanEnviron(), e.vars...), mnt)
	got, err := os.ReadFile(filepath.Join(mnt, "nodes", "lyra", "files", "latest", src, "var/lib/db.dump"))
	if err != nil {
		t.Fatal(err)
	}
	want, _ := os.ReadFile(filepath.Join(src, "var/lib/db.dump"))
	if !slices.Equal(got, want) {
		t.Fatal("db.dump read through the mount differs from its source")
	}
	m.stop()
	if after := indexFiles(t, idx); !slices.Equal(before, after) {
		t.Fatalf("cairn mount changed the index:\nbefore %q\nafter  %q", before, after)
	}

	// A writer still writes: a third backup, then readers see it.
	e.ok("backup", "--node", "lyra", "--plan", "files", "--tag", "third", src)
	if list := e.snapshots(); len(list) != 3 || !slices.Equal(list[2].Tags, []string{"third"}) {
		t.Fatalf("snapshots after a third backup: %+v", list)
	}
}
