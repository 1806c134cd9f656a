package blob

import "testing"

func TestIDSet(t *testing.T) {
	var s IDSet // the zero value is an empty set
	a, b := Hash([]byte("a")), Hash([]byte("b"))
	if s.Has(a) || s.Len() != 0 {
		t.Fatal("the empty set has a member")
	}
	s.Add(a)
	s.Add(a)
	if !s.Has(a) || s.Has(b) || s.Len() != 1 {
		t.Fatalf("after adding a: has a %v, has b %v, len %d", s.Has(a), s.Has(b), s.Len())
	}
	// An ID that shares the first 8 bytes with a member is reported as a
	// member: the documented price of the compact form.
	twin := a
	twin[8] ^= 0xff
	twin[31] ^= 0xff
	if !s.Has(twin) {
		t.Fatal("an ID sharing the first 8 bytes with a member is not reported")
	}
	other := a
	other[7] ^= 1
	if s.Has(other) {
		t.Fatal("an ID differing in its first 8 bytes is reported")
	}
}
