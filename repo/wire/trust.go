package wire

import (
	"errors"

	"github.com/cairnbackup/cairn/repo/blob"
	"github.com/cairnbackup/cairn/repo/tree"
)

// What a node may reference and learn.
//
// A blob ID is not a read capability: a node that knows another node's
// tree ID (from a log, a screen, a leaked listing) must not make that
// tree part of its own snapshot and restore it. So, for every node but
// an admin one (which may load and reference anything):
//
//   - Trees. A snapshot may reference, as its root or as a subtree, only
//     trees the node sent in this session and trees of its own snapshots:
//     those it learnt as it listed and walked them, and every subtree of
//     such a tree. Have-blobs answers "no" for any other tree, whether
//     the repository has it or not; an honest client then sends the
//     tree (trees are small) and the repository stores it once.
//   - Chunks. A data blob listed by a tree the node sent must be one it
//     sent in this session, one of a tree of its own snapshots (as
//     walked) or, for a node that is not isolated, one have-blobs told it
//     the repository has in this session: dedup across nodes is on by
//     design, and knowing a chunk's SHA-256 is knowing its content. The
//     chunks of the node's own trees need no check.
//   - Permission comes before existence: a refusal is the same whether
//     the repository has the blob or not, so it tells an isolated node
//     nothing.
//
// Memory: trees are kept by whole ID, because a tree grants what it
// lists (a node that could pass off a tree of its making as one it owns
// would borrow anything through it, and with 8-byte prefixes two trees
// sharing one take only 2^32 hashes to make). Chunks are kept as 8-byte
// prefixes ([blob.IDSet]): a chunk grants only itself, and borrowing a
// given chunk of another node would need a chunk of the node's own with
// the same prefix, a 2^64 search. Every set holds only IDs of blobs the
// repository has (sent, told present, or reached from the node's
// snapshots), so none outgrows the repository's blob count.

// sentSet is what a node sent in this session: trees by whole ID,
// chunks by 8-byte prefix. The session's mu guards it.
type sentSet struct {
	trees map[blob.ID]bool
	data  blob.IDSet
}

func (ss *sentSet) add(h blob.Handle) {
	if h.Type != blob.Tree {
		ss.data.Add(h.ID)
		return
	}
	if ss.trees == nil {
		ss.trees = map[blob.ID]bool{}
	}
	ss.trees[h.ID] = true
}

func (ss *sentSet) has(h blob.Handle) bool {
	if h.Type != blob.Tree {
		return ss.data.Has(h.ID)
	}
	return ss.trees[h.ID]
}

func (s *session) sentBlob(h blob.Handle) bool {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.sent.has(h)
}

// ownTree reports whether tree id is reachable from the node's own
// snapshots, as far as it listed and walked them.
func (s *session) ownTree(id blob.ID) bool {
	s.tmu.Lock()
	defer s.tmu.Unlock()
	return s.trees[id]
}

// have answers one have-blobs question (see the rules above). An
// isolated node learns only about blobs it sent in this session. Another
// node learns whether the repository has a chunk, and may then reference
// it; whether it has a tree, only for a tree it may reference.
func (s *session) have(h blob.Handle) (bool, error) {
	if s.sc.Isolated {
		return s.sentBlob(h), nil
	}
	if h.Type == blob.Tree && !s.sc.Perms.Has(PermAdmin) && !s.ownTree(h.ID) && !s.sentBlob(h) {
		return false, nil
	}
	ok, err := s.store.Known(h)
	if ok && err == nil && h.Type == blob.Data {
		s.tmu.Lock()
		s.present.Add(h.ID)
		s.tmu.Unlock()
	}
	return ok, err
}

// mayReferenceData reports whether a tree the node sent may list chunk
// id.
func (s *session) mayReferenceData(id blob.ID) bool {
	if s.sentBlob(blob.Handle{ID: id, Type: blob.Data}) {
		return true
	}
	s.tmu.Lock()
	defer s.tmu.Unlock()
	return s.data.Has(id) || !s.sc.Isolated && s.present.Has(id)
}

func (s *session) refuseTree(id blob.ID) error {
	return coded(CodePermissionDenied, "tree %s is not part of node %s's snapshots and was not sent in this session", id.Short(), s.sc.Node)
}

func (s *session) refuseData(id blob.ID) error {
	if s.sc.Isolated {
		return coded(CodePermissionDenied, "data blob %s is not part of node %s's snapshots and was not sent in this session", id.Short(), s.sc.Node)
	}
	return coded(CodePermissionDenied, "data blob %s is not part of node %s's snapshots, was not sent in this session and was not reported present by have-blobs in this session", id.Short(), s.sc.Node)
}

func missingBlob(h blob.Handle) error {
	return coded(CodeNotFound, "the snapshot refers to blob %s, which the repository does not have; push again with --force-read", h)
}

// complete checks, before a snapshot with root tree root is written,
// that the node may reference every blob reachable from it (the rules
// above) and that every one is stored, so an acknowledged snapshot can
// always be restored.
//
// Whether a tree is the node's own can depend on the path: a tree it
// neither sent nor walked is still its own as a subtree of one it did.
// So a tree or chunk not allowed when first reached is only doubted, and
// refused at the end unless the walk reached it (or its tree) as own
// meanwhile. A tree is loaded, and a chunk looked up, only once allowed:
// permission before existence. Each tree is read once, or twice when a
// later path shows it to be own. The walk keeps its own stack, so a deep
// chain of trees costs heap (proportional to the trees the node sent),
// not goroutine stack.
func (s *session) complete(root blob.ID) error {
	check := !s.sc.Perms.Has(PermAdmin)
	const (
		unseen  = iota
		doubted // reached through trees the node sent only, and neither sent nor its own
		strict  // sent, reached through trees the node sent only: its subtrees and chunks are checked
		own     // one of the node's own trees or a subtree of one (or any tree, for an admin)
	)
	type visit struct {
		id  blob.ID
		own bool // reached as a subtree of an own tree
	}
	type doubt struct {
		tree  blob.ID
		chunk blob.ID // zero: the tree itself is doubted
	}
	state := map[blob.ID]uint8{}
	var doubts []doubt
	stack := []visit{{id: root}}
	for len(stack) > 0 {
		v := stack[len(stack)-1]
		stack = stack[:len(stack)-1]
		h := blob.Handle{ID: v.id, Type: blob.Tree}
		st := state[v.id]
		isOwn := v.own || !check || s.ownTree(v.id)
		switch {
		case st == own || !isOwn && st != unseen:
			continue
		case isOwn:
			state[v.id] = own
		case s.sentBlob(h):
			state[v.id] = strict
		default:
			state[v.id] = doubted
			doubts = append(doubts, doubt{tree: v.id})
			continue
		}
		data, err := s.b.LoadBlob(s.ctx, h, nil)
		if errors.Is(err, blob.ErrNotFound) {
			return missingBlob(h)
		}
		if err != nil {
			return err
		}
		t, err := tree.Decode(data)
		if err != nil {
			return coded(CodeBadBlob, "tree %s: %v", v.id.Short(), err)
		}
		doubtful := false // one doubted chunk is enough to doubt the tree
		for _, n := range t.Nodes {
			switch n.Type {
			case tree.Dir:
				stack = append(stack, visit{id: n.Subtree, own: isOwn})
			case tree.File:
				for _, c := range n.Content {
					if c.ID.IsZero() || doubtful {
						continue
					}
					if !isOwn && !s.mayReferenceData(c.ID) {
						doubtful = true
						doubts = append(doubts, doubt{tree: v.id, chunk: c.ID})
						continue
					}
					dh := blob.Handle{ID: c.ID, Type: blob.Data}
					ok, err := s.store.Known(dh)
					if err != nil {
						return err
					}
					if !ok {
						return missingBlob(dh)
					}
				}
			}
		}
	}
	for _, d := range doubts {
		switch {
		case state[d.tree] == own:
		case d.chunk.IsZero():
			return s.refuseTree(d.tree)
		default:
			return s.refuseData(d.chunk)
		}
	}
	return nil
}
