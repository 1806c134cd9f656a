package integration

import (
	"path/filepath"
	"regexp"
	"strings"
	"testing"
)

// The first backup of a source showed no percentage and no ETA: there
// is no parent to take a total from (issue 13). A scan beside it counts
// the source, as restic does; every line that shows a total shows the
// source's size, and the last says 100%.
func TestFirstBackupProgressOnTerminal(t *testing.T) {
	e := newEnv(t)
	e.ok("init")
	src := filepath.Join(e.dir, "src")
	writeSource(t, src)
	for _, run := range []string{"first", "with a parent"} {
		tty, stdout, code := e.runOnTerminal("backup", "--node", "lyra", "--plan", "files", "--force-read", src)
		final := regexp.MustCompile(`\r4 files, 3\.6 MiB of 3\.6 MiB \(100%\), 3\.6 MiB read, [0-9.]+ [KMG]?i?B/s, \d+s\x1b\[K\n$`)
		if code != 0 || !final.MatchString(tty) || !strings.Contains(stdout, " saved") {
			t.Errorf("%s backup: exit %d, terminal %q, stdout %q", run, code, tty, stdout)
		}
		for _, line := range strings.Split(strings.TrimSuffix(tty, "\n"), "\r")[1:] {
			if strings.Contains(line, " of ") && !regexp.MustCompile(`^\d+ files, [0-9.]+ [KM]?i?B of 3\.6 MiB \(\d+%\), `).MatchString(line) {
				t.Errorf("%s backup: a line with another total: %q", run, line)
			}
		}
	}
}
