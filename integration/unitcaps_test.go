package integration

import (
	"encoding/binary"
	"os"
	"os/exec"
	"path/filepath"
	"slices"
	"strings"
	"syscall"
	"testing"

	"github.com/cairnbackup/cairn/integration/testenv"
	"golang.org/x/sys/unix"
)

// serviceUID is the unprivileged user the drills below run as, like the
// package's cairn user (no passwd entry is needed).
const serviceUID = 64123

// capabilitySource writes a tree that needs each of cairn.service's
// capabilities to be restored as recorded: files of other users with
// modes that shut others out and a user xattr, a set-group-ID file of a
// group the service is not in, a file capability, a device node, and a
// sticky directory holding others' files.
func capabilitySource(t *testing.T, src string) {
	t.Helper()
	must := func(err error) {
		t.Helper()
		if err != nil {
			t.Fatal(err)
		}
	}
	must(os.MkdirAll(filepath.Join(src, "private"), 0o700))
	write := func(name string, mode os.FileMode, uid, gid int) string {
		p := filepath.Join(src, name)
		must(os.WriteFile(p, []byte("contents of "+name+"\n"), 0o600))
		must(os.Chown(p, uid, gid))
		must(os.Chmod(p, mode))
		return p
	}
	note := write("note", 0o440, 1001, 1002)
	must(unix.Setxattr(note, "user.note", []byte("kept"), 0))
	write("private/secret", 0o400, 1003, 1003)
	must(os.Chown(filepath.Join(src, "private"), 1003, 1003))
	// chmod after chown: chown clears set-ID bits.
	write("setgid", os.ModeSetgid|0o755, 1004, 1005)
	ping := write("ping", 0o755, 0, 0)
	// security.capability, VFS_CAP_REVISION_2 with the effective flag:
	// cap_net_raw permitted, as Debian's ping has.
	fcap := make([]byte, 20)
	binary.LittleEndian.PutUint32(fcap[0:], 0x02000001)
	binary.LittleEndian.PutUint32(fcap[4:], 1<<unix.CAP_NET_RAW)
	must(unix.Setxattr(ping, "security.capability", fcap, 0))
	must(unix.Mknod(filepath.Join(src, "null"), unix.S_IFCHR|0o666, int(unix.Mkdev(1, 3))))
	must(os.Mkdir(filepath.Join(src, "shared"), 0o755))
	write("shared/theirs", 0o644, 1006, 1006)
	must(os.Chown(filepath.Join(src, "shared"), 1007, 1007))
	must(os.Chmod(filepath.Join(src, "shared"), os.ModeSticky|0o777))
}

// What each capability of cairn.service is for, measured: a drill run
// as an unprivileged user with exactly the unit's capabilities (and
// NoNewPrivileges) restores and verifies a tree of other users' files,
// set-group-ID bits, file capabilities, extended attributes and a
// device node; without any one of them it fails, or (CAP_CHOWN) a
// restore cannot give files their recorded owners, so a drill could not
// check them. README's Install section lists the same reasons.
func TestUnitCapabilitiesForDrills(t *testing.T) {
	testenv.RequireRoot(t, "a drill restores other users' files and devices")
	caps := unitCapabilities(t, filepath.Join(unitDir, "cairn.service"))
	want := []string{"chown", "dac_override", "fowner", "fsetid", "mknod", "setfcap"}
	if !slices.Equal(caps, want) {
		t.Fatalf("cairn.service grants %v; this test measures %v", caps, want)
	}
	e := newEnv(t)
	e.ok("init")
	src := filepath.Join(e.dir, "src")
	capabilitySource(t, src)
	e.ok("backup", "--node", "lyra", "--plan", "srv", src)
	// The repository belongs to the service user, as /var/lib/cairn does.
	os.Chmod(e.dir, 0o755)
	os.Chmod(filepath.Dir(e.dir), 0o755)
	for _, p := range []string{e.repo, e.repo + ".yaml", e.repo + ".host_key", filepath.Join(e.dir, "password")} {
		filepath.Walk(p, func(p string, _ os.FileInfo, err error) error {
			if err == nil {
				err = os.Lchown(p, serviceUID, serviceUID)
			}
			return err
		})
	}
	run := func(caps []string, args ...string) result {
		t.Helper()
		cmd := asUnit(t, serviceUID, serviceUID, caps, append([]string{cairnBin}, args...)...)
		cmd.Env = append(cleanEnviron(), e.vars...)
		var out, errb strings.Builder
		cmd.Stdout, cmd.Stderr = &out, &errb
		err := cmd.Run()
		r := result{stdout: out.String(), stderr: errb.String()}
		if ee, ok := err.(*exec.ExitError); ok {
			r.code = ee.ExitCode()
		} else if err != nil {
			t.Fatal(err)
		}
		return r
	}
	scratch := func() string {
		d := t.TempDir()
		os.Chmod(filepath.Dir(d), 0o755)
		os.Chown(d, serviceUID, serviceUID)
		return d
	}

	if r := run(caps, "drill", "latest", "--scratch", scratch()); r.code != 0 || strings.Contains(r.stdout+r.stderr, "warning") {
		t.Fatalf("a drill with the unit's capabilities: exit %d, want 0 and no warning\n%s%s", r.code, r.stdout, r.stderr)
	}
	// The restore the drill verified gives files their recorded owners.
	target := scratch()
	if r := run(caps, "restore", "latest", "--target", target); r.code != 0 {
		t.Fatalf("restore with the unit's capabilities: exit %d\n%s%s", r.code, r.stdout, r.stderr)
	}
	owner := func(p string) [2]uint32 {
		var st syscall.Stat_t
		if err := syscall.Lstat(p, &st); err != nil {
			t.Fatal(err)
		}
		return [2]uint32{st.Uid, st.Gid}
	}
	restored := filepath.Join(target, strings.TrimPrefix(src, "/"))
	if got := owner(filepath.Join(restored, "note")); got != [2]uint32{1001, 1002} {
		t.Fatalf("restored note owned by %v, want 1001:1002", got)
	}

	lacks := map[string]string{
		"mknod":   "null: device node not restored: only root can create it (CAP_MKNOD)",
		"setfcap": "ping: extended attributes: security.capability: operation not permitted",
	}
	for _, c := range caps {
		without := slices.DeleteFunc(slices.Clone(caps), func(x string) bool { return x == c })
		if c == "chown" {
			target := scratch()
			run(without, "restore", "latest", "--target", target)
			if got := owner(filepath.Join(target, strings.TrimPrefix(src, "/"), "note")); got == [2]uint32{1001, 1002} {
				t.Errorf("without CAP_CHOWN the restore still set the recorded owner")
			}
			continue
		}
		// Without it the drill fails, or (devices, file capabilities)
		// passes with a warning that it could not restore and so did
		// not prove that part.
		r := run(without, "drill", "latest", "--scratch", scratch())
		if why, ok := lacks[c]; r.code != 4 && !(ok && r.code == 0 && strings.Contains(r.stdout+r.stderr, why)) {
			t.Errorf("a drill without CAP_%s: exit %d, want 4 (failed) or a warning\n%s%s", strings.ToUpper(c), r.code, r.stdout, r.stderr)
		}
	}
}
