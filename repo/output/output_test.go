package output

import (
	"fmt"
	"strings"
	"testing"
)

// The output a report keeps is bounded, but error-looking lines in the
// part left out are kept too (the first few).
func TestBoundedBufferKeepsErrorLines(t *testing.T) {
	var b Buffer
	for i := range 3000 {
		fmt.Fprintf(&b, "dangling blob %040d\n", i)
		if i == 1500 {
			fmt.Fprintf(&b, "error: pack-%d.pack pack checksum mismatch\n", i)
		}
	}
	s := b.String()
	if len(s) > Max {
		t.Fatalf("%d bytes kept, more than %d", len(s), Max)
	}
	mid := "\n[… 162133 bytes left out, among them this line …]\nerror: pack-1500.pack pack checksum mismatch\n[…]\n"
	if !strings.Contains(s, mid) || !strings.HasPrefix(s, "dangling blob 0000") || !strings.HasSuffix(s, fmt.Sprintf("dangling blob %040d", 2999)) {
		t.Fatalf("kept:\n%s", s)
	}
}

// Many long error lines: the output kept stays within Max.
func TestBoundedBufferBound(t *testing.T) {
	var b Buffer
	for i := range 500 {
		fmt.Fprintf(&b, "error %d: %s\n", i, strings.Repeat("é", 700))
	}
	s := b.String()
	if len(s) > Max || !strings.Contains(s, " bytes left out, among them these 4 lines …]\nerror ") {
		t.Fatalf("%d bytes kept:\n%s", len(s), s)
	}
}

func TestBoundedBuffer(t *testing.T) {
	var b Buffer
	b.Write([]byte("start\n"))
	for range 1000 {
		b.Write([]byte("0123456789"))
	}
	b.Write([]byte("\nthe end\n"))
	s := b.String()
	if len(s) > Max || s[:6] != "start\n" || s[len(s)-8:] != "\nthe end" {
		t.Errorf("%d bytes: %q … %q", len(s), s[:20], s[len(s)-20:])
	}
	var small Buffer
	small.Write([]byte("ok\n"))
	if small.String() != "ok" {
		t.Errorf("%q", small.String())
	}
}
