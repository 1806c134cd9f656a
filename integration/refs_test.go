package integration

import (
	"encoding/json"
	"fmt"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"
)

// snapshotTimes returns each snapshot's ID and time, oldest first.
func (e *env) snapshotTimes() (ids []string, times []time.Time) {
	e.t.Helper()
	var list []struct {
		ID   string    `json:"id"`
		Time time.Time `json:"time"`
	}
	if err := json.Unmarshal([]byte(e.ok("snapshots", "--json")), &list); err != nil {
		e.t.Fatal(err)
	}
	for _, s := range list {
		ids, times = append(ids, s.ID[:8]), append(times, s.Time.UTC())
	}
	return ids, times
}

// latest:PATH names the newest snapshot that holds PATH, and says so
// when that is not the newest snapshot; when none holds it, or the one
// that should does not, the error names the snapshot (issue 13: the
// README's own `cairn ls latest:/etc/ssh` failed after a stream push).
func TestLatestWithPath(t *testing.T) {
	e := newEnv(t)
	e.ok("init")
	etc := filepath.Join(e.dir, "etc")
	repotestWrite(t, etc, map[string]string{"ssh/sshd_config": "Port 22\n", "hosts": "127.0.0.1 localhost\n"})
	e.ok("backup", "--node", "lyra", "--plan", "etc", etc)
	r := e.runIn(strings.NewReader("hello\n"), nil, "backup", "--node", "lyra", "--stdin", "--name", "hello.txt")
	if r.code != 0 {
		t.Fatalf("backup --stdin: %d %s", r.code, r.stderr)
	}
	ids, times := e.snapshotTimes()
	if len(ids) != 2 {
		t.Fatalf("snapshots %v", ids)
	}
	stamp := func(i int) string { return times[i].Format(time.RFC3339) }

	r = e.run(nil, "ls", "latest:"+etc+"/ssh")
	wantNote := fmt.Sprintf("note: latest:%s/ssh is snapshot %s (lyra/etc, %s), the newest that holds %s/ssh (1 newer snapshot holds other paths)\n", etc, ids[0], stamp(0), etc)
	if r.code != 0 || !strings.Contains(r.stdout, etc+"/ssh/sshd_config") || r.stderr != wantNote {
		t.Fatalf("ls latest:PATH: exit %d\nstdout: %s\nstderr: %q\nwant:   %q", r.code, r.stdout, r.stderr, wantNote)
	}
	// The newest holds the path: no note.
	r = e.run(nil, "dump", "latest:/hello.txt")
	if r.code != 0 || r.stdout != "hello\n" || r.stderr != "" {
		t.Fatalf("dump latest:/hello.txt: %d %q %q", r.code, r.stdout, r.stderr)
	}
	// No snapshot holds it.
	r = e.run(nil, "ls", "latest:/nonexistent")
	want := fmt.Sprintf("cairn: latest:/nonexistent: not found in any snapshot; the newest is %s (lyra, %s), which holds /hello.txt\n", ids[1], stamp(1))
	if r.code != 1 || r.stderr != want {
		t.Fatalf("ls latest:/nonexistent: exit %d\nstderr: %q\nwant:   %q", r.code, r.stderr, want)
	}
	// The snapshot that should hold it does not: the error names it.
	r = e.run(nil, "restore", "latest:"+etc+"/missing", "--target", filepath.Join(e.dir, "dst"))
	want = fmt.Sprintf("note: latest:%s/missing is snapshot %s (lyra/etc, %s), the newest that holds %s/missing (1 newer snapshot holds other paths)\n"+
		"cairn: snapshot %s: %s/missing: no such file or directory in the snapshot: not found\n", etc, ids[0], stamp(0), etc, ids[0], strings.TrimPrefix(etc, "/"))
	if r.code != 1 || r.stderr != want {
		t.Fatalf("restore latest:missing: exit %d\nstderr: %q\nwant:   %q", r.code, r.stderr, want)
	}
}

// --verify-only compares only the snapshot's own paths: a target that
// holds much else (a node's /) matches; differences inside the paths
// are listed with readable times and counted (issue 13).
func TestVerifyOnlyOwnPaths(t *testing.T) {
	e := newEnv(t)
	e.ok("init")
	data := filepath.Join(e.dir, "node", "srv", "data")
	repotestWrite(t, data, map[string]string{"a.txt": "alpha\n", "sub/b.txt": "beta\n"})
	mt := time.Date(2026, 3, 4, 5, 6, 7, 890000000, time.UTC)
	os.Chtimes(filepath.Join(data, "a.txt"), mt, mt)
	e.ok("backup", "--node", "lyra", "--plan", "data", data)
	ids, _ := e.snapshotTimes()

	// A whole system around the restored paths, as on a node's /.
	root := filepath.Join(e.dir, "root")
	e.ok("restore", "latest", "--target", root)
	repotestWrite(t, root, map[string]string{"usr/bin/sh": "#!", "etc/hostname": "lyra\n", strings.TrimPrefix(filepath.Dir(data), "/") + "/other/x": "not ours"})
	anc := filepath.Join(root, filepath.Dir(filepath.Dir(data)))
	os.Chmod(anc, 0o711)
	os.Chtimes(anc, mt, mt)
	r := e.run(nil, "restore", "latest", "--target", root, "--verify-only")
	if r.code != 0 || r.stdout != fmt.Sprintf("%s matches snapshot %s\n", root, ids[0]) {
		t.Fatalf("verify-only of the snapshot's own paths: exit %d\nstdout: %s\nstderr: %s", r.code, r.stdout, r.stderr)
	}

	// Inside its paths every difference counts.
	rel := strings.TrimPrefix(data, "/")
	later := mt.Add(90 * time.Minute)
	os.Chtimes(filepath.Join(root, rel, "a.txt"), later, later)
	os.WriteFile(filepath.Join(root, rel, "sub", "new.txt"), nil, 0o644)
	os.Chtimes(filepath.Join(root, rel, "sub"), mt, mt) // the new file changed it; put it back
	sub, _ := os.Stat(filepath.Join(data, "sub"))
	os.Chtimes(filepath.Join(root, rel, "sub"), sub.ModTime(), sub.ModTime())
	r = e.run(nil, "restore", "latest", "--target", root, "--verify-only")
	want := fmt.Sprintf("%s/a.txt: mtime 2026-03-04T06:36:07.89Z, the snapshot has 2026-03-04T05:06:07.89Z\n"+
		"%s/sub/new.txt: not in the snapshot\n"+
		"2 differences between %s and snapshot %s\n", rel, rel, root, ids[0])
	if r.code != 4 || r.stdout != want || r.stderr != "" {
		t.Fatalf("verify-only with differences: exit %d\nstdout: %q\nwant:   %q\nstderr: %s", r.code, r.stdout, want, r.stderr)
	}
}
