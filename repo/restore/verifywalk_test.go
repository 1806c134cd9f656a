package restore_test

import (
	"os"
	"path/filepath"
	"slices"
	"testing"

	"github.com/cairnbackup/cairn/repo/backup"
	"github.com/cairnbackup/cairn/repo/repotest"
	"github.com/cairnbackup/cairn/repo/restore"
)

// Verify names a missing directory once (not what it held), what the
// target holds beyond the snapshot, in the root and below, and a file
// that changed; a subdirectory verified alone is compared the same way.
func TestVerifyWalk(t *testing.T) {
	r := repotest.New(t)
	src := filepath.Join(t.TempDir(), "src")
	repotest.WriteTree(t, src, map[string]string{
		"a/deep/one.txt": "1", "a/deep/two.txt": "2", "a/keep.txt": "k",
		"b/x.txt": "x", "top.txt": "t",
	})
	s := r.NewSession()
	res, err := backup.Run(t.Context(), s, []string{src}, backup.Options{Params: r.ChunkerParams(), Table: r.ChunkerTable()})
	if err != nil {
		t.Fatal(err)
	}
	if err := s.Flush(t.Context()); err != nil {
		t.Fatal(err)
	}
	target := t.TempDir()
	if _, err := restore.Run(t.Context(), r, res.Tree, src, target, restore.Options{}); err != nil {
		t.Fatal(err)
	}
	at := func(p string) string { return filepath.Join(target, "src", p) }
	if err := os.RemoveAll(at("a/deep")); err != nil {
		t.Fatal(err)
	}
	for p, data := range map[string]string{"extra.txt": "e", "b/stray": "s", "b/x.txt": "changed"} {
		if err := os.WriteFile(at(p), []byte(data), 0o644); err != nil {
			t.Fatal(err)
		}
	}
	show := func(sub, target string) []string {
		t.Helper()
		diffs, err := restore.Verify(t.Context(), r, res.Tree, sub, target, restore.Options{})
		if err != nil {
			t.Fatal(err)
		}
		var out []string
		for _, d := range diffs {
			if d.What == "missing" || d.What == "not in the snapshot" || len(d.What) > 4 && d.What[:4] == "size" {
				out = append(out, d.String())
			}
		}
		return out
	}
	want := []string{
		"src/a/deep: missing",
		"src/b/stray: not in the snapshot",
		"src/b/x.txt: size 7, the snapshot has 1",
		"src/extra.txt: not in the snapshot",
	}
	if got := show(src, target); !slices.Equal(got, want) {
		t.Errorf("verify\n%q\nwant\n%q", got, want)
	}
	// b restored alone lies in the target as b.
	want = []string{"b/stray: not in the snapshot", "b/x.txt: size 7, the snapshot has 1"}
	if got := show(src+"/b", filepath.Join(target, "src")); !slices.Equal(got, want) {
		t.Errorf("verify of b\n%q\nwant\n%q", got, want)
	}
}
