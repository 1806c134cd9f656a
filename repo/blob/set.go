package blob

import "encoding/binary"

// IDSet is a compact set of IDs, for sets that grow with a node's data
// (a session's chunks, a push's blobs). It keeps only the first 8 bytes
// of each ID, in a map of uint64: about 10 to 20 bytes per ID where a map
// of whole IDs takes 40 to 80. So [IDSet.Has] also reports true for an
// ID that shares its first 8 bytes with a member.
//
// What that false "yes" costs an attacker to provoke decides where an
// IDSet may stand in for exact membership. Making data whose ID shares
// its first 8 bytes with one given ID is a second-preimage search of
// 2^64 SHA-256 computations (2^64/N against any of N given IDs). Making
// two pieces of data whose IDs share them, both chosen freely, takes
// only 2^32 (a birthday search). So an IDSet may answer "may this node
// have blob X" where X is someone else's blob and a "yes" grants X alone
// (a chunk), but not where a "yes" extends trust to what X lists (a
// tree): there a node would pair a tree it owns with a tree of its
// making.
//
// The zero value is an empty set. An IDSet is not safe for concurrent
// use.
type IDSet struct {
	m map[uint64]struct{}
}

func idKey(id ID) uint64 { return binary.BigEndian.Uint64(id[:8]) }

// Add puts id in the set.
func (s *IDSet) Add(id ID) {
	if s.m == nil {
		s.m = map[uint64]struct{}{}
	}
	s.m[idKey(id)] = struct{}{}
}

// Has reports whether the set holds id, or an ID with the same first 8
// bytes.
func (s *IDSet) Has(id ID) bool {
	_, ok := s.m[idKey(id)]
	return ok
}

// Len is the number of distinct 8-byte prefixes in the set.
func (s *IDSet) Len() int { return len(s.m) }
