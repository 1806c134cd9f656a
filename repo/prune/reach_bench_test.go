package prune_test

import (
	"fmt"
	"slices"
	"strings"
	"testing"

	"github.com/cairnbackup/cairn/repo/blob"
	"github.com/cairnbackup/cairn/repo/prune"
	"github.com/cairnbackup/cairn/repo/repotest"
	"github.com/cairnbackup/cairn/repo/tree"
)

// BenchmarkReach is prune's mark over a real repository: four snapshots
// of 1 111 trees each (three levels of ten directories, 20 files in
// each) that share all but the first directory's 111 trees, walked with
// one set of trees seen: 1 447 distinct trees read.
func BenchmarkReach(b *testing.B) {
	r := repotest.New(b)
	s := r.NewSession()
	save := func(nodes []tree.Node) blob.ID {
		slices.SortFunc(nodes, func(x, y tree.Node) int { return strings.Compare(x.Name, y.Name) })
		data, err := tree.Encode(nil, &tree.Tree{Nodes: nodes})
		if err != nil {
			b.Fatal(err)
		}
		id, _, err := s.SaveBlob(b.Context(), blob.Tree, data)
		if err != nil {
			b.Fatal(err)
		}
		return id
	}
	var build func(snap, depth int, label string) blob.ID
	build = func(snap, depth int, label string) blob.ID {
		var nodes []tree.Node
		for i := range 20 {
			c := blob.Hash(fmt.Appendf(nil, "%s/%d", label, i))
			nodes = append(nodes, tree.Node{Name: fmt.Sprintf("f%02d", i), Type: tree.File, Mode: 0o644, Size: 10,
				FileHash: c, Content: []tree.Chunk{{ID: c, Size: 10}}})
		}
		if depth < 3 {
			for i := range 10 {
				sub := fmt.Sprintf("%s/d%d", label, i)
				if i == 0 && snap > 0 {
					sub = fmt.Sprintf("%s/d0@%d", label, snap) // the one path that differs
				}
				nodes = append(nodes, tree.Node{Name: fmt.Sprintf("d%d", i), Type: tree.Dir, Mode: 0o755,
					Subtree: build(map[bool]int{true: snap, false: 0}[i == 0], depth+1, sub)})
			}
		}
		return save(nodes)
	}
	var roots []blob.ID
	for snap := range 4 {
		roots = append(roots, build(snap, 0, "root"))
	}
	if err := s.Flush(b.Context()); err != nil {
		b.Fatal(err)
	}
	for b.Loop() {
		seen := map[blob.ID]struct{}{}
		for _, root := range roots {
			if err := prune.Reach(b.Context(), r, root, seen, func(blob.Handle) error { return nil }); err != nil {
				b.Fatal(err)
			}
		}
		if len(seen) != 1447 {
			b.Fatalf("%d trees seen, want 1447", len(seen))
		}
	}
}
