package drill

import (
	"context"
	"encoding/binary"
	"errors"
	"math/rand/v2"
	"path"
	"slices"
	"strings"

	"github.com/cairnbackup/cairn/repo/blob"
	"github.com/cairnbackup/cairn/repo/filter"
	"github.com/cairnbackup/cairn/repo/snapfs"
	"github.com/cairnbackup/cairn/repo/tree"
)

// selection is what a sampled drill restores. Paths are in the
// snapshot, with a leading "/".
type selection struct {
	files    uint64   // regular files in the snapshot
	sampled  bool     // some files are left out: only the selection is restored
	sample   []string // the n files drawn at random
	whole    []string // directories restored whole: git repositories
	extra    []string // files probes may need
	failures []Failure
}

// choose walks the snapshot whose root tree is root ([snapfs.Walk]) and
// draws n of its regular files (reservoir sampling, with a generator
// seeded by seed, so the same snapshot always gives the same sample),
// besides the git repositories and the files probes may need. Trees that
// cannot be read are failures: nothing below them can be restored.
func choose(ctx context.Context, l snapfs.BlobLoader, root blob.ID, n int, seed blob.ID, class string) (*selection, error) {
	s := &selection{}
	rng := rand.New(rand.NewPCG(binary.LittleEndian.Uint64(seed[0:8]), binary.LittleEndian.Uint64(seed[8:16])))
	var eligible uint64
	// A git directory and a bare repository are restored whole: the walk
	// does not enter them, their files are counted apart.
	skip := func(e snapfs.Entry) bool { return e.Node.Name == ".git" || isBareRepo(e.Dir) }
	var bare blob.ID // the last bare repository counted, by its tree
	for e, err := range snapfs.Walk(ctx, l, root, snapfs.WalkOptions{Skip: skip}) {
		if err != nil {
			var te *snapfs.TreeError
			if ctx.Err() != nil || !errors.As(err, &te) {
				return nil, err
			}
			s.failures = append(s.failures, Failure{Path: displayDir(slashed(te.Path)), Reason: oneLine(te.Err.Error())})
			continue
		}
		nd := e.Node
		p := slashed(e.Path)
		switch {
		case isBareRepo(e.Dir):
			if e.Tree != bare {
				bare = e.Tree
				dir := p[:len(p)-len(nd.Name)-1]
				s.whole = append(s.whole, dir)
				s.files += countFiles(ctx, l, e.Dir)
			}
		case nd.Type == tree.Dir && nd.Name == ".git":
			s.whole = append(s.whole, p)
			s.files += countFiles(ctx, l, &tree.Tree{Nodes: []tree.Node{*nd}})
		case nd.Type == tree.File:
			s.files++
			if probeCandidate(nd.Name, class) {
				s.extra = append(s.extra, p)
				continue
			}
			if eligible < uint64(n) {
				s.sample = append(s.sample, p)
			} else if j := rng.Uint64N(eligible + 1); j < uint64(n) {
				s.sample[j] = p
			}
			eligible++
		}
	}
	if err := ctx.Err(); err != nil {
		return nil, err
	}
	s.sampled = eligible > uint64(n) // otherwise everything is restored anyway
	return s, nil
}

// slashed returns a walk's path as a snapshot path, with a leading "/"
// ("" for the root).
func slashed(p string) string {
	if p == "" {
		return ""
	}
	return "/" + p
}

// countFiles counts the regular files of listing t and below it. Trees
// that cannot be read count nothing: the restore reports them.
func countFiles(ctx context.Context, l snapfs.BlobLoader, t *tree.Tree) uint64 {
	var n uint64
	for i := range t.Nodes {
		switch nd := &t.Nodes[i]; nd.Type {
		case tree.File:
			n++
		case tree.Dir:
			for e, err := range snapfs.Walk(ctx, l, nd.Subtree, snapfs.WalkOptions{}) {
				if err == nil && e.Node.Type == tree.File {
					n++
				}
			}
		}
	}
	return n
}

// isBareRepo reports whether a listing looks like a git directory: a HEAD
// file and objects and refs directories. A listing is sorted by name:
// each is found by binary search.
func isBareRepo(t *tree.Tree) bool {
	has := func(name string, typ tree.NodeType) bool {
		i, ok := slices.BinarySearchFunc(t.Nodes, name, func(n tree.Node, name string) int { return strings.Compare(n.Name, name) })
		return ok && t.Nodes[i].Type == typ
	}
	return has("HEAD", tree.File) && has("objects", tree.Dir) && has("refs", tree.Dir)
}

// probeCandidate says whether a file of this name may be something a
// probe checks, so that a sample must include it. Its contents decide
// once it is restored.
func probeCandidate(name, class string) bool {
	if class == "database" {
		return true
	}
	if name == "toc.dat" {
		return true
	}
	for _, suffix := range []string{"-wal", "-journal", "-shm"} {
		name = strings.TrimSuffix(name, suffix)
	}
	switch strings.ToLower(path.Ext(name)) {
	case ".db", ".sqlite", ".sqlite3", ".db3", ".dump", ".pgdump", ".backup":
		return true
	}
	return false
}

// matcher returns the include rules restoring the selection.
func (s *selection) matcher() (*filter.Matcher, error) {
	var rules []filter.Rule
	for _, p := range append(s.sample, s.extra...) {
		rules = append(rules, filter.Rule{Pattern: escape(p), Source: "drill sample"})
	}
	for _, d := range s.whole {
		rules = append(rules, filter.Rule{Pattern: escape(d) + "/**", Source: "drill repository"})
	}
	return filter.New(rules)
}

// escape makes a snapshot path a pattern that matches only itself.
func escape(p string) string {
	var b strings.Builder
	for _, c := range []byte(p) {
		switch c {
		case '\\', '*', '?', '[':
			b.WriteByte('\\')
		}
		b.WriteByte(c)
	}
	return b.String()
}

func displayDir(dir string) string {
	if dir == "" {
		return "/"
	}
	return dir
}
