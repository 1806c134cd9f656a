package integration

import (
	"bufio"
	"encoding/json"
	"fmt"
	"os"
	"os/exec"
	"os/user"
	"path/filepath"
	"regexp"
	"strings"
	"syscall"
	"testing"

	"github.com/cairnbackup/cairn/integration/apptest"
	"github.com/cairnbackup/cairn/integration/testenv"
)

// unitDir is where the systemd units live in the source tree.
const unitDir = "../cmd/cairn/dist/systemd"

// unitCapabilities returns the capabilities a unit file grants its
// process (AmbientCapabilities=, which must equal its
// CapabilityBoundingSet=), in setpriv's spelling: "chown", "fowner", …
func unitCapabilities(t *testing.T, unit string) []string {
	t.Helper()
	b, err := os.ReadFile(unit)
	if err != nil {
		t.Fatal(err)
	}
	get := func(key string) []string {
		m := regexp.MustCompile(`(?m)^` + key + `=(.*)$`).FindStringSubmatch(string(b))
		if m == nil {
			t.Fatalf("%s has no %s=", unit, key)
		}
		var caps []string
		for _, c := range strings.Fields(m[1]) {
			caps = append(caps, strings.ToLower(strings.TrimPrefix(c, "CAP_")))
		}
		return caps
	}
	ambient, bounding := get("AmbientCapabilities"), get("CapabilityBoundingSet")
	if strings.Join(ambient, " ") != strings.Join(bounding, " ") {
		t.Fatalf("%s: AmbientCapabilities %v differ from CapabilityBoundingSet %v", unit, ambient, bounding)
	}
	return ambient
}

// asUnit returns the setpriv command line that runs a program as uid:gid
// with exactly caps, and NoNewPrivileges, as systemd runs a unit with
// User=, AmbientCapabilities=, CapabilityBoundingSet= and
// NoNewPrivileges=yes.
func asUnit(t *testing.T, uid, gid int, caps []string, argv ...string) *exec.Cmd {
	t.Helper()
	setpriv := testenv.RequireProgram(t, "setpriv", "util-linux")
	set := "-all"
	for _, c := range caps {
		set += ",+" + c
	}
	args := []string{fmt.Sprintf("--reuid=%d", uid), fmt.Sprintf("--regid=%d", gid), "--clear-groups",
		"--inh-caps=" + set, "--ambient-caps=" + set, "--bounding-set=" + set, "--no-new-privs"}
	return exec.Command(setpriv, append(args, argv...)...)
}

// The Debian package, for real: make package builds it, dpkg -i
// installs it on this machine, the installed cairn says its version, the
// installed units pass systemd-analyze verify, the installed completion
// completes in bash, and the installed appliance runs the way
// cairn.service runs it (its ExecStart, as the cairn user the package
// created, with the unit's capabilities and NoNewPrivileges) and tells
// the service manager READY=1 and STOPPING=1. dpkg --purge then leaves
// nothing behind.
func TestPackageInstall(t *testing.T) {
	testenv.RequireRoot(t, "dpkg -i installs the package on this machine")
	dpkg := testenv.RequireProgram(t, "dpkg", "dpkg")
	analyze := testenv.RequireProgram(t, "systemd-analyze", "systemd")
	testenv.RequireProgram(t, "make", "make")
	testenv.RequireProgram(t, "man", "man-db")
	git := testenv.RequireProgram(t, "git", "git")
	requireBashCompletion(t)
	// The machine must not have cairn already: the test installs and
	// purges it, and must not take away what someone else installed.
	if out, err := exec.Command("dpkg-query", "-W", "-f=${Status}", "cairn").Output(); err == nil && strings.Contains(string(out), "installed") {
		t.Fatalf("a cairn package is installed on this machine (%s); the test would replace it", out)
	}
	for _, p := range []string{"/etc/cairn", "/var/lib/cairn", "/var/cache/cairn", "/usr/bin/cairn"} {
		if _, err := os.Lstat(p); err == nil {
			t.Fatalf("%s exists before the package is installed: not a clean machine", p)
		}
	}
	if _, err := user.Lookup("cairn"); err == nil {
		t.Fatal("the user cairn exists before the package is installed: not a clean machine")
	}

	out := t.TempDir()
	build := exec.Command("make", "-C", "..", "package", "PKG_OUT="+out, "PKG_BUILD="+filepath.Join(out, "build"))
	b, err := build.CombinedOutput()
	if err != nil {
		t.Fatalf("make package: %v\n%s", err, b)
	}
	var deb string
	for _, line := range strings.Split(string(b), "\n") {
		if strings.HasPrefix(line, out+"/cairn_") && strings.HasSuffix(line, ".deb") {
			deb = line
		}
	}
	if deb == "" {
		t.Fatalf("make package printed no .deb in %s:\n%s", out, b)
	}

	purged := false
	purge := func() {
		if purged {
			return
		}
		purged = true
		// What a test run of the appliance made is not the package's:
		// remove it, so that purge leaves nothing.
		for _, p := range []string{"/var/lib/cairn/repo", "/var/lib/cairn/repo.key", "/var/lib/cairn/repo.host_key", "/var/lib/cairn/repo.yaml", "/var/lib/cairn/repo.sock"} {
			os.RemoveAll(p)
		}
		if b, err := exec.Command(dpkg, "--purge", "cairn").CombinedOutput(); err != nil {
			t.Errorf("dpkg --purge cairn: %v\n%s", err, b)
		}
	}
	t.Cleanup(purge)
	if b, err := exec.Command(dpkg, "-i", deb).CombinedOutput(); err != nil {
		t.Fatalf("dpkg -i %s: %v\n%s", deb, err, b)
	}

	// The installed binary is the one built from this checkout.
	describe, _ := exec.Command(git, "-C", "..", "describe", "--tags", "--always", "--dirty").Output()
	head, _ := exec.Command(git, "-C", "..", "rev-parse", "HEAD").Output()
	b, err = exec.Command("/usr/bin/cairn", "version", "--json").Output()
	if err != nil {
		t.Fatalf("cairn version: %v", err)
	}
	var v struct{ Version, Commit string }
	if err := json.Unmarshal(b, &v); err != nil || v.Version != strings.TrimSpace(string(describe)) || v.Commit != strings.TrimSpace(string(head)) {
		t.Fatalf("installed cairn version: %s (%v), want %s and %s", b, err, describe, head)
	}

	// The units as installed, with the binary and man pages they name.
	units := []string{"cairn.service", "cairn-push@.service", "cairn-push@.timer", "cairn-mount.service"}
	var paths []string
	for _, u := range units {
		paths = append(paths, "/lib/systemd/system/"+u)
	}
	b, err = exec.Command(analyze, append([]string{"verify"}, paths...)...).CombinedOutput()
	if err != nil || len(b) != 0 {
		t.Fatalf("systemd-analyze verify: %v\n%s", err, b)
	}
	for _, page := range []string{"cairn", "cairn-serve", "cairn-push", "cairn-mount", "cairn-restore", "cairn-version"} {
		if b, err := exec.Command("man", "-w", page).CombinedOutput(); err != nil || strings.TrimSpace(string(b)) != "/usr/share/man/man1/"+page+".1.gz" {
			t.Errorf("man -w %s: %v %s", page, err, b)
		}
	}
	for _, f := range []string{"/usr/share/zsh/vendor-completions/_cairn", "/usr/share/fish/vendor_completions.d/cairn.fish", "/usr/share/doc/cairn/examples/plan.yaml", "/usr/share/doc/cairn/docs/operating.md", "/etc/cairn/push.env"} {
		if _, err := os.Stat(f); err != nil {
			t.Errorf("not installed: %v", err)
		}
	}
	// bash-completion loads the installed completion on demand.
	cmd := exec.Command("bash", "--norc", "--noprofile", "-c", `source /usr/share/bash-completion/bash_completion
_completion_loader cairn
COMP_WORDS=(cairn vers)
COMP_CWORD=1
COMP_LINE="cairn vers"
COMP_POINT=${#COMP_LINE}
__start_cairn
printf '%s\n' "${COMPREPLY[@]}"`)
	cmd.Env = append(cleanEnviron(), "PATH=/usr/bin:/bin")
	cmd.Stderr = nil
	if b, err := cmd.Output(); err != nil || string(b) != "version\n" {
		t.Errorf("bash completion through the installed script: %v %q", err, b)
	}

	// The user the appliance runs as.
	u, err := user.Lookup("cairn")
	if err != nil {
		t.Fatalf("the package made no user cairn: %v", err)
	}
	var uid, gid int
	fmt.Sscan(u.Uid, &uid)
	fmt.Sscan(u.Gid, &gid)
	var st syscall.Stat_t
	if err := syscall.Stat("/var/lib/cairn", &st); err != nil || int(st.Uid) != uid || int(st.Gid) != gid {
		t.Fatalf("/var/lib/cairn: %v, owner %d:%d, want cairn %d:%d", err, st.Uid, st.Gid, uid, gid)
	}

	// Run the appliance as cairn.service does. Its ExecStart, with the
	// example configuration installed in /etc/cairn (listening on a free
	// loopback port instead of 0.0.0.0:2222, and metrics on another).
	unit := string(mustRead(t, "/lib/systemd/system/cairn.service"))
	m := regexp.MustCompile(`(?m)^ExecStart=(.*)$`).FindStringSubmatch(unit)
	if m == nil {
		t.Fatal("cairn.service has no ExecStart")
	}
	argv := strings.Fields(m[1])
	initRepo := exec.Command("/usr/bin/cairn", "--repo", "/var/lib/cairn/repo", "init")
	initRepo.SysProcAttr = &syscall.SysProcAttr{Credential: &syscall.Credential{Uid: uint32(uid), Gid: uint32(gid)}}
	if b, err := initRepo.CombinedOutput(); err != nil {
		t.Fatalf("cairn init as cairn: %v\n%s", err, b)
	}
	dir := t.TempDir()
	os.Chmod(dir, 0o755)
	config := filepath.Join(dir, "appliance.yaml")
	port, metricsPort := apptest.FreePort(t), apptest.FreePort(t)
	example := string(mustRead(t, "/etc/cairn/appliance.yaml"))
	example = strings.Replace(example, "listen: 0.0.0.0:2222", fmt.Sprintf("listen: 127.0.0.1:%d", port), 1)
	example = strings.Replace(example, "metrics: 127.0.0.1:9100", fmt.Sprintf("metrics: 127.0.0.1:%d", metricsPort), 1)
	if err := os.WriteFile(config, []byte(example), 0o644); err != nil {
		t.Fatal(err)
	}
	for i, a := range argv {
		if a == "/etc/cairn/appliance.yaml" {
			argv[i] = config
		}
	}
	ns := newNotifySocket(t)
	os.Chown(filepath.Dir(ns.path), uid, gid)
	os.Chown(ns.path, uid, gid)
	serve := asUnit(t, uid, gid, unitCapabilities(t, "/lib/systemd/system/cairn.service"), argv...)
	// In a mount namespace of its own, as ProtectSystem= and PrivateTmp=
	// give it: mounts propagate in, not out.
	serve.Args = append([]string{testenv.RequireProgram(t, "unshare", "util-linux"), "--mount", "--propagation", "slave"}, serve.Args...)
	serve.Path = serve.Args[0]
	serve.Env = []string{"PATH=/usr/bin:/bin", "NOTIFY_SOCKET=" + ns.path}
	serve.SysProcAttr = &syscall.SysProcAttr{Pdeathsig: syscall.SIGKILL}
	stderr, _ := serve.StderrPipe()
	if err := serve.Start(); err != nil {
		t.Fatal(err)
	}
	served := make(chan struct{})
	t.Cleanup(func() { // before the purge: userdel refuses while cairn runs
		serve.Process.Kill()
		<-served
	})
	var log lockedBuffer
	logged := make(chan struct{})
	go func() {
		sc := bufio.NewScanner(stderr)
		for sc.Scan() {
			log.Write([]byte(sc.Text() + "\n"))
		}
		close(logged)
	}()
	var waitErr error
	go func() {
		<-logged
		waitErr = serve.Wait()
		close(served)
	}()
	if got := ns.next(); got != fmt.Sprintf("READY=1\nSTATUS=serving 0 nodes on 127.0.0.1:%d", port) {
		t.Fatalf("the appliance under the unit's settings said %q:\n%s", got, log.String())
	}
	if m := scrape(t, metricsPort); !strings.Contains(m, `cairn_job_failures_total{job="drill"} 0`) {
		t.Errorf("metrics of the installed appliance:\n%s", m)
	}
	// cairn-mount.service's ExecStart, as cairn with the unit's one
	// capability: the snapshots appear at its path for everyone.
	if fi, err := os.Stat("/dev/fuse"); err == nil {
		// Debian's fuse3 makes /dev/fuse 0666 (a udev rule); a machine
		// without udev (a container) may have it 0600: as on Debian,
		// for the length of the test.
		if mode := fi.Mode().Perm(); mode != 0o666 {
			os.Chmod("/dev/fuse", 0o666)
			t.Cleanup(func() { os.Chmod("/dev/fuse", mode) })
		}
		unit := string(mustRead(t, "/lib/systemd/system/cairn-mount.service"))
		m := regexp.MustCompile(`(?m)^ExecStart=(.*)$`).FindStringSubmatch(unit)
		mount := asUnit(t, uid, gid, unitCapabilities(t, "/lib/systemd/system/cairn-mount.service"), strings.Fields(m[1])...)
		mount.Env = []string{"PATH=/usr/bin:/bin"}
		mp := startMountCmd(t, mount, "/var/lib/cairn/snapshots")
		if got := names(t, "/var/lib/cairn/snapshots"); strings.Join(got, " ") != "nodes snapshots tags" {
			t.Errorf("/var/lib/cairn/snapshots holds %v", got)
		}
		mp.stop()
	} else if testenv.CI() {
		t.Errorf("CI=true but /dev/fuse is missing: %v", err)
	}
	serve.Process.Signal(syscall.SIGTERM)
	if got := ns.next(); got != "STOPPING=1\nSTATUS=stopping: 0 sessions in flight" {
		t.Errorf("after SIGTERM %q", got)
	}
	<-served
	if waitErr != nil {
		t.Fatalf("the appliance under the unit's settings: %v\n%s", waitErr, log.String())
	}

	// Purge leaves the machine as it was.
	purge()
	for _, p := range []string{"/etc/cairn", "/var/lib/cairn", "/var/cache/cairn", "/usr/bin/cairn", "/lib/systemd/system/cairn.service",
		"/usr/share/man/man1/cairn.1.gz", "/usr/share/bash-completion/completions/cairn"} {
		if _, err := os.Lstat(p); err == nil {
			t.Errorf("%s is left after dpkg --purge", p)
		}
	}
	if _, err := user.Lookup("cairn"); err == nil {
		t.Error("the user cairn is left after dpkg --purge")
	}
}
