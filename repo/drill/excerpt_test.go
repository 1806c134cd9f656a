package drill

import (
	"fmt"
	"strings"
	"testing"
)

// gitFsckCorruptPack is what git fsck --full printed for a repository
// whose pack had one byte flipped, followed by harmless warnings: the
// reason must keep the line that says what failed, not only the tail
// (issue 13).
const gitFsckCorruptPack = `error: /tmp/cairn-drill-1a2b3c4d-1/srv/git/app/.git/objects/pack/pack-5ed8ab6a0d3712288bd3e3fa50ff2cceb292dccb.pack pack checksum mismatch
error: index CRC mismatch for object 02387c23e54685bb737991c69ab14c243b1924ae from /tmp/cairn-drill-1a2b3c4d-1/srv/git/app/.git/objects/pack/pack-5ed8ab6a0d3712288bd3e3fa50ff2cceb292dccb.pack at offset 395610
error: inflate: data stream error (incorrect data check)
error: cannot unpack 02387c23e54685bb737991c69ab14c243b1924ae from /tmp/cairn-drill-1a2b3c4d-1/srv/git/app/.git/objects/pack/pack-5ed8ab6a0d3712288bd3e3fa50ff2cceb292dccb.pack at offset 395610

warning in tree 4b825dc642cb6eb9a060e54bf8d69288fbee4904: zeroPaddedFilemode: contains zero-padded file modes
warning in tree 9bd1a2f3ae8e0c4d5e5f6a7b8c9d0e1f2a3b4c5d: zeroPaddedFilemode: contains zero-padded file modes
warning in tree 1f2e3d4c5b6a79881726354453627180a9b8c7d6: zeroPaddedFilemode: contains zero-padded file modes`

func TestFailReasonKeepsErrorLines(t *testing.T) {
	p := Probe{Name: "git fsck", Target: "/srv/git/app", Error: "exit status 4", Output: gitFsckCorruptPack}
	lines := strings.Split(gitFsckCorruptPack, "\n")
	want := "git fsck: exit status 4: " + strings.Join([]string{lines[0], lines[1], lines[2], "…", lines[5], lines[6], lines[7]}, " | ")
	if got := failReason(p); got != want {
		t.Fatalf("reason\n%s\nwant\n%s", got, want)
	}

	// Thousands of harmless lines, one error in the middle, long lines:
	// the reason stays bounded and keeps the error.
	var out strings.Builder
	for i := range 2000 {
		fmt.Fprintf(&out, "dangling blob %040d\n", i)
		if i == 1000 {
			out.WriteString("fatal: " + strings.Repeat("x", 5000) + "\n")
		}
	}
	p = Probe{Name: "command", Target: "check.sh", Error: "exit status 1", Output: out.String()}
	want = `command "check.sh": exit status 1: … | fatal: ` + strings.Repeat("x", maxLineBytes-len("fatal: ")) + "…" +
		fmt.Sprintf(" | … | dangling blob %040d | dangling blob %040d | dangling blob %040d", 1997, 1998, 1999)
	if got := failReason(p); got != want {
		t.Fatalf("reason\n%s\nwant\n%s", got, want)
	}
}

// The output a report keeps is bounded, but error-looking lines in the
// part left out are kept too (the first few).
func TestBoundedBufferKeepsErrorLines(t *testing.T) {
	var b boundedBuffer
	for i := range 3000 {
		fmt.Fprintf(&b, "dangling blob %040d\n", i)
		if i == 1500 {
			fmt.Fprintf(&b, "error: pack-%d.pack pack checksum mismatch\n", i)
		}
	}
	s := b.String()
	if len(s) > MaxOutput {
		t.Fatalf("%d bytes kept, more than %d", len(s), MaxOutput)
	}
	mid := "\n[… 162133 bytes left out, among them this line …]\nerror: pack-1500.pack pack checksum mismatch\n[…]\n"
	if !strings.Contains(s, mid) || !strings.HasPrefix(s, "dangling blob 0000") || !strings.HasSuffix(s, fmt.Sprintf("dangling blob %040d", 2999)) {
		t.Fatalf("kept:\n%s", s)
	}
}

// Many long error lines: the output kept stays within MaxOutput.
func TestBoundedBufferBound(t *testing.T) {
	var b boundedBuffer
	for i := range 500 {
		fmt.Fprintf(&b, "error %d: %s\n", i, strings.Repeat("é", 700))
	}
	s := b.String()
	if len(s) > MaxOutput || !strings.Contains(s, " bytes left out, among them these 4 lines …]\nerror ") {
		t.Fatalf("%d bytes kept:\n%s", len(s), s)
	}
}
