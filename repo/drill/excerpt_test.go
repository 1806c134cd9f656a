package drill

import (
	"fmt"
	"strings"
	"testing"

	"github.com/cairnbackup/cairn/repo/output"
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
	want = `command "check.sh": exit status 1: … | fatal: ` + strings.Repeat("x", output.MaxLine-len("fatal: ")) + "…" +
		fmt.Sprintf(" | … | dangling blob %040d | dangling blob %040d | dangling blob %040d", 1997, 1998, 1999)
	if got := failReason(p); got != want {
		t.Fatalf("reason\n%s\nwant\n%s", got, want)
	}
}
