// Package tartest builds tar streams for the tests that push them
// (integration's and the torture suite's): members written in order,
// as a node's tar would send them, hostile names and all.
package tartest

import (
	"archive/tar"
	"bytes"
	"testing"
	"time"
)

// ModTime is the modification time of every member.
var ModTime = time.Unix(1700000000, 0)

// Member is one tar member: its header and, for a regular file, its
// contents (the header's Size is set from them).
type Member struct {
	Hdr  tar.Header
	Body string
}

// Stream returns the tar stream of members in order. A member without
// a mode gets 0644; every member gets [ModTime]. A header the writer
// refuses fails the test.
func Stream(t testing.TB, members ...Member) []byte {
	t.Helper()
	var b bytes.Buffer
	w := tar.NewWriter(&b)
	for _, m := range members {
		h := m.Hdr
		if h.Typeflag == tar.TypeReg {
			h.Size = int64(len(m.Body))
		}
		if h.Mode == 0 {
			h.Mode = 0o644
		}
		h.ModTime = ModTime
		if err := w.WriteHeader(&h); err != nil {
			t.Fatalf("tar header %q: %v", h.Name, err)
		}
		if _, err := w.Write([]byte(m.Body)); err != nil {
			t.Fatalf("tar member %q: %v", h.Name, err)
		}
	}
	if err := w.Close(); err != nil {
		t.Fatalf("tar: %v", err)
	}
	return b.Bytes()
}
