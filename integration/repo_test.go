package integration

import (
	"encoding/json"
	"fmt"
	"math/rand/v2"
	"os"
	"os/exec"
	"path/filepath"
	"regexp"
	"slices"
	"strings"
	"syscall"
	"testing"

	"github.com/cairnbackup/cairn/repo"
	"github.com/cairnbackup/cairn/repo/repotest"
)

// writeSource makes a source tree with a file big enough for several
// chunks at the default chunk sizes.
func writeSource(t *testing.T, dir string) {
	t.Helper()
	big := make([]byte, 3<<20)
	rng := rand.New(rand.NewPCG(7, 7))
	for i := range big {
		big[i] = byte(rng.Uint32())
	}
	repotest.WriteTree(t, dir, map[string]string{
		"etc/service.yaml":  "port: 8080\n",
		"var/lib/db.dump":   strings.Repeat("INSERT INTO t VALUES (1, 'x');\n", 20000),
		"var/lib/media.bin": string(big),
		"home/.profile":     "export PATH\n",
	})
	if err := os.Symlink("service.yaml", filepath.Join(dir, "etc", "current")); err != nil {
		t.Fatal(err)
	}
}

type snapshotJSON struct {
	ID      string   `json:"id"`
	Node    string   `json:"node"`
	Plan    string   `json:"plan"`
	Paths   []string `json:"paths"`
	Tags    []string `json:"tags"`
	Summary struct {
		Files     uint64 `json:"files"`
		BytesRead uint64 `json:"bytes_read"`
	} `json:"summary"`
}

func (e *env) snapshots() []snapshotJSON {
	e.t.Helper()
	var list []snapshotJSON
	if err := json.Unmarshal([]byte(e.ok("snapshots", "--json")), &list); err != nil {
		e.t.Fatal(err)
	}
	return list
}

func TestInitBackupRestoreCheck(t *testing.T) {
	e := newEnv(t)
	out := e.ok("init")
	if !regexp.MustCompile(`^created repository [0-9a-f]{8} at ` + regexp.QuoteMeta(e.repo) + "\nappliance host key: SHA256:[A-Za-z0-9+/]{43}\nappliance configuration: " + regexp.QuoteMeta(e.repo+".yaml") + "\n$").MatchString(out) {
		t.Fatalf("init output %q", out)
	}
	src := filepath.Join(e.dir, "src")
	writeSource(t, src)

	bk := e.backupJSON("--node", "lyra", "--plan", "files", "--tag", "daily", src)
	if bk.Summary.Files != 4 || bk.Summary.Others != 1 {
		t.Fatalf("summary %+v", bk.Summary)
	}
	list := e.snapshots()
	if len(list) != 1 || list[0].ID != bk.Snapshot || list[0].Node != "lyra" || list[0].Plan != "files" ||
		!slices.Equal(list[0].Tags, []string{"daily"}) || !slices.Equal(list[0].Paths, []string{src}) {
		t.Fatalf("snapshots %+v", list)
	}
	// An unchanged second backup adds no data: at most the trees of the
	// directories above src (/, tmp, the test's directories), whose
	// times may change meanwhile. (It runs before anything here reads
	// the source files, which would change their access times.)
	bk2 := e.backupJSON("--node", "lyra", "--plan", "files", src)
	if bk2.Summary.BlobsAdded > 4 || bk2.Summary.BytesRead != 0 || bk2.Parent != bk.Snapshot {
		t.Fatalf("unchanged backup added %d blobs", bk2.Summary.BlobsAdded)
	}
	if list = e.snapshots(); len(list) != 2 {
		t.Fatal("second snapshot not listed")
	}
	// Table output names the snapshot by its short ID.
	if table := e.ok("snapshots"); !strings.Contains(table, bk.Snapshot[:8]) || !strings.HasPrefix(table, "ID ") {
		t.Fatalf("table %q", table)
	}

	// ls --json streams one object per entry with the recorded hash.
	lines := strings.Split(strings.TrimSpace(e.ok("ls", "--json", "latest:"+src+"/etc")), "\n")
	var names []string
	for _, l := range lines {
		var v struct{ Path, Type, Target, SHA256 string }
		if err := json.Unmarshal([]byte(l), &v); err != nil {
			t.Fatal(err)
		}
		names = append(names, v.Path+" "+v.Type+" "+v.Target+" "+v.SHA256)
	}
	want := []string{
		src + "/etc/current symlink service.yaml ",
		src + "/etc/service.yaml file  " + sha256hex("port: 8080\n"),
	}
	if !slices.Equal(names, want) {
		t.Fatalf("ls:\n%s\nwant\n%s", strings.Join(names, "\n"), strings.Join(want, "\n"))
	}

	dst := filepath.Join(e.dir, "restored")
	out = e.ok("restore", bk.Snapshot[:10]+":"+src, "--target", dst)
	if !strings.HasSuffix(out, "(all file hashes verified)\n") {
		t.Fatalf("restore output %q", out)
	}
	repotest.AssertSameTree(t, src, filepath.Join(dst, "src"))

	out = e.ok("check", "--read-data")
	if !regexp.MustCompile(`^checked 2 snapshots, \d+ trees, \d+ packs, read \d+ packs \([0-9.]+ [KM]iB\): no problems found\n$`).MatchString(out) {
		t.Fatalf("check output %q", out)
	}
}

// backupSummary is the final JSON line of backup --json.
type backupSummary struct {
	Type     string `json:"type"`
	Snapshot string `json:"snapshot"`
	Parent   string `json:"parent"`
	Summary  struct {
		Files, Dirs, Others uint64
		FilesNew            uint64 `json:"files_new"`
		FilesChanged        uint64 `json:"files_changed"`
		FilesUnchanged      uint64 `json:"files_unchanged"`
		Bytes               uint64 `json:"bytes"`
		BytesRead           uint64 `json:"bytes_read"`
		BlobsAdded          uint64 `json:"blobs_added"`
		BytesAdded          uint64 `json:"bytes_added"`
		Warnings            []string
	} `json:"summary"`
	Excludes []struct {
		Rule  string `json:"rule"`
		Count uint64 `json:"count"`
	} `json:"excludes"`
}

// backupJSON runs backup --json and returns its summary line; every other
// line must be a progress line.
func (e *env) backupJSON(args ...string) backupSummary {
	e.t.Helper()
	out := e.ok(append([]string{"backup", "--json"}, args...)...)
	return parseBackupJSON(e.t, out)
}

func parseBackupJSON(t *testing.T, out string) backupSummary {
	t.Helper()
	lines := strings.Split(strings.TrimSpace(out), "\n")
	var last backupSummary
	for i, l := range lines {
		var ev backupSummary
		if err := json.Unmarshal([]byte(l), &ev); err != nil {
			t.Fatalf("line %d: %v: %s", i, err, l)
		}
		if (i < len(lines)-1) != (ev.Type == "progress") {
			t.Fatalf("line %d has type %q:\n%s", i, ev.Type, out)
		}
		last = ev
	}
	if last.Type != "summary" {
		t.Fatalf("no summary line:\n%s", out)
	}
	return last
}

func sha256hex(s string) string {
	return repoHash([]byte(s))
}

func TestWrongPassphrase(t *testing.T) {
	e := newEnv(t)
	e.ok("init")
	before := listing(t, e.repo)
	bad := filepath.Join(e.dir, "bad")
	os.WriteFile(bad, []byte("not it"), 0o600)
	r := e.run([]string{"CAIRN_PASSWORD_FILE=" + bad}, "snapshots")
	want := "cairn: the password file " + bad + " does not open repository " + e.repo + ": the passphrase opens none of the 1 passphrase keys in " + filepath.Join(e.repo, "keys") + "\n"
	if r.code != 1 || r.stderr != want {
		t.Fatalf("exit %d, stderr %q\nwant %q", r.code, r.stderr, want)
	}
	if after := listing(t, e.repo); !slices.Equal(before, after) {
		t.Fatalf("a failed open changed files:\nbefore %v\nafter  %v", before, after)
	}
}

func TestKeyFileMode(t *testing.T) {
	e := newEnv(t)
	e.vars = []string{"CAIRN_REPO=" + e.repo} // no passphrase
	out := e.ok("init")
	if !strings.Contains(out, "key file: "+e.repo+".key\n") {
		t.Fatalf("init output %q", out)
	}
	e.ok("backup", "--node", "rhea", e.dir+"/repo.key")
	moved := filepath.Join(e.dir, "elsewhere.key")
	os.Rename(e.repo+".key", moved)
	r := e.run(nil, "snapshots")
	if r.code != 1 || !strings.HasPrefix(r.stderr, "cairn: no key: give a passphrase with --password-file") {
		t.Fatalf("exit %d: %s", r.code, r.stderr)
	}
	if got := e.run([]string{"CAIRN_KEY_FILE=" + moved}, "snapshots"); got.code != 0 {
		t.Fatalf("with CAIRN_KEY_FILE: %d %s", got.code, got.stderr)
	}
	if got := e.run(nil, "--key-file", moved, "snapshots"); got.code != 0 {
		t.Fatalf("with --key-file: %d %s", got.code, got.stderr)
	}
}

// A second process gets a clear error naming the process that has the
// repository open, and exit code 11.
func TestRepositoryInUse(t *testing.T) {
	e := newEnv(t)
	e.ok("init")
	r, err := repo.Open(t.Context(), e.repo, repo.Credentials{Password: []byte("integration secret")}, repo.Options{})
	if err != nil {
		t.Fatal(err)
	}
	res := e.run(nil, "snapshots")
	r.Close()
	want := fmt.Sprintf("cairn: repository is in use by PID %d (%s)\n", os.Getpid(), e.repo)
	if res.code != 11 || res.stderr != want {
		t.Fatalf("exit %d, stderr %q\nwant %q", res.code, res.stderr, want)
	}
	e.ok("snapshots") // free again once closed
}

// A backup killed while writing a pack leaves its temporary file and no
// snapshot; the next run removes the file, and everything works.
func TestKilledMidPack(t *testing.T) {
	e := newEnv(t)
	e.ok("init")
	src := filepath.Join(e.dir, "src")
	writeSource(t, src)
	r := e.run([]string{"CAIRN_CRASHPOINT=storage-half-written"}, "backup", "--node", "lyra", src)
	if r.code != -1 { // killed by a signal
		t.Fatalf("exit %d, want killed: %s", r.code, r.stderr)
	}
	temps := findTemps(t, e.repo)
	if len(temps) != 1 || !strings.Contains(temps[0], "/packs/") {
		t.Fatalf("temporary files after the kill: %v", temps)
	}
	fi, _ := os.Stat(temps[0])
	if fi.Size() == 0 {
		t.Fatal("temporary file is empty: the kill came before the half-written point")
	}
	var packs []string
	filepath.Walk(filepath.Join(e.repo, "packs"), func(p string, fi os.FileInfo, err error) error {
		if err == nil && fi.Mode().IsRegular() && !strings.HasPrefix(fi.Name(), ".tmp-") {
			packs = append(packs, p)
		}
		return nil
	})
	if len(packs) != 0 {
		t.Fatalf("packs after a kill in the first pack: %v", packs)
	}
	// The next command removes the temporary file, indexes nothing
	// from it, and lists no snapshot.
	res := e.run(nil, "snapshots", "--json")
	if res.code != 0 || strings.TrimSpace(res.stdout) != "[]" {
		t.Fatalf("snapshots after kill: %d %q %s", res.code, res.stdout, res.stderr)
	}
	if !strings.Contains(res.stderr, "removed a temporary file left by an interrupted write") {
		t.Fatalf("cleanup not logged: %s", res.stderr)
	}
	if temps := findTemps(t, e.repo); len(temps) != 0 {
		t.Fatalf("temporary files left: %v", temps)
	}
	var rep struct {
		Packs    int   `json:"packs"`
		Findings []any `json:"findings"`
	}
	if err := json.Unmarshal([]byte(e.ok("check", "--json")), &rep); err != nil {
		t.Fatal(err)
	}
	if rep.Packs != 0 || len(rep.Findings) != 0 {
		t.Fatalf("check after cleanup: %+v", rep)
	}
	e.ok("backup", "--node", "lyra", src)
	dst := filepath.Join(e.dir, "dst")
	e.ok("restore", "latest:"+src, "--target", dst)
	repotest.AssertSameTree(t, src, filepath.Join(dst, "src"))
}

// A backup killed after its packs are stored and indexed but before the
// snapshot file is written leaves no snapshot; the next backup reuses the
// stored packs.
func TestKilledBeforeSnapshot(t *testing.T) {
	e := newEnv(t)
	e.ok("init")
	src := filepath.Join(e.dir, "src")
	writeSource(t, src)
	r := e.run([]string{"CAIRN_CRASHPOINT=before-snapshot-write"}, "backup", "--node", "lyra", src)
	if r.code != -1 {
		t.Fatalf("exit %d, want killed: %s", r.code, r.stderr)
	}
	if list := e.snapshots(); len(list) != 0 {
		t.Fatalf("snapshots after kill: %+v", list)
	}
	bk := e.backupJSON("--node", "lyra", src)
	// Only the trees above src (whose times moved) are new.
	if bk.Summary.BlobsAdded > 6 {
		t.Fatalf("the backup after the kill added %d blobs: stored data was not reused", bk.Summary.BlobsAdded)
	}
	e.ok("check", "--read-data")
}

func findTemps(t *testing.T, dir string) []string {
	var out []string
	filepath.Walk(dir, func(p string, fi os.FileInfo, err error) error {
		if err == nil && strings.HasPrefix(fi.Name(), ".tmp-") {
			out = append(out, p)
		}
		return nil
	})
	return out
}

// Damage is reported with the snapshot and path, and exit code 4.
func TestCheckDamageExitCode(t *testing.T) {
	e := newEnv(t)
	e.ok("init")
	src := filepath.Join(e.dir, "src")
	writeSource(t, src)
	e.ok("backup", "--node", "lyra", src)
	id := e.snapshots()[0].ID
	// Damage the middle of the largest pack.
	var biggest string
	var size int64
	filepath.Walk(filepath.Join(e.repo, "packs"), func(p string, fi os.FileInfo, err error) error {
		if err == nil && fi.Mode().IsRegular() && fi.Size() > size {
			biggest, size = p, fi.Size()
		}
		return nil
	})
	f, _ := os.OpenFile(biggest, os.O_RDWR, 0)
	f.WriteAt([]byte{0xff, 0xff, 0xff, 0xff}, size/2)
	f.Close()
	if r := e.run(nil, "check"); r.code != 0 {
		t.Fatalf("structure check: exit %d: %s", r.code, r.stdout)
	}
	r := e.run(nil, "check", "--read-data")
	if r.code != 4 {
		t.Fatalf("exit %d, want 4: %s %s", r.code, r.stdout, r.stderr)
	}
	if !strings.Contains(r.stdout, "affects snapshot "+id[:8]+" (lyra): "+src+"/var/lib/") ||
		!strings.Contains(r.stdout, "problems found\n") {
		t.Fatalf("report:\n%s", r.stdout)
	}
	// The index can be rebuilt; the damage is still reported.
	if err := os.RemoveAll(filepath.Join(e.repo, "index")); err != nil {
		t.Fatal(err)
	}
	out := e.ok("repair", "index")
	if !regexp.MustCompile(`^index rebuilt: \d+ packs, \d+ blobs, 1 snapshots\n$`).MatchString(out) {
		t.Fatalf("repair output %q", out)
	}
	if r := e.run(nil, "check", "--read-data"); r.code != 4 {
		t.Fatalf("after repair: exit %d", r.code)
	}
}

func TestUsageErrors(t *testing.T) {
	e := newEnv(t)
	e.vars = nil
	for _, c := range []struct {
		args []string
		code int
		err  string
	}{
		{[]string{"snapshots"}, 2, "cairn: no repository: give --repo DIR or set CAIRN_REPO\n"},
		{[]string{"--repo", "x", "check", "--subset", "1/2"}, 2, "cairn: --subset needs --read-data\n"},
		{[]string{"--repo", "x", "snapshots", "--bogus"}, 2, "cairn: unknown flag: --bogus\n"},
		{[]string{"--repo", filepath.Join(e.dir, "nothing"), "snapshots"}, 1, "cairn: " + filepath.Join(e.dir, "nothing") + " is not a cairn repository (no config file); create one with cairn init\n"},
	} {
		r := e.run(nil, c.args...)
		if r.code != c.code || r.stderr != c.err {
			t.Errorf("cairn %v: exit %d, stderr %q; want %d, %q", c.args, r.code, r.stderr, c.code, c.err)
		}
	}
}

// An unreadable file is skipped with a warning: the snapshot is saved and
// the exit code is 3.
func TestBackupWarningsExitCode(t *testing.T) {
	e := newEnv(t)
	e.ok("init")
	src := filepath.Join(e.dir, "src")
	repotest.WriteTree(t, src, map[string]string{"ok.txt": "fine", "secret.txt": "hidden"})
	secret := filepath.Join(src, "secret.txt")
	os.Chmod(secret, 0)
	var cred *syscall.Credential
	if os.Geteuid() == 0 {
		// root reads everything: run the backup as nobody, who owns
		// the repository but not the secret.
		const nobody = 65534
		cred = &syscall.Credential{Uid: nobody, Gid: nobody}
		os.Chmod(filepath.Dir(e.dir), 0o755)
		filepath.Walk(e.dir, func(p string, fi os.FileInfo, err error) error {
			if err == nil && p != secret {
				os.Lchown(p, nobody, nobody)
			}
			return nil
		})
	}
	cmd := exec.Command(cairnBin, "backup", "--node", "lyra", src)
	cmd.Env = append(cleanEnviron(), e.vars...)
	cmd.SysProcAttr = &syscall.SysProcAttr{Credential: cred}
	out, err := cmd.CombinedOutput()
	ee, ok := err.(*exec.ExitError)
	if !ok || ee.ExitCode() != 3 {
		t.Fatalf("exit %v, want 3: %s", err, out)
	}
	want := "warning: " + secret + ": open " + secret + ": permission denied\n"
	if !strings.HasPrefix(string(out), want) {
		t.Fatalf("output %q\nwant prefix %q", out, want)
	}
	list := e.snapshots()
	if len(list) != 1 || list[0].Summary.Files != 1 {
		t.Fatalf("snapshots %+v", list)
	}
}

// listing returns every path under dir with its size and modification time.
func listing(t *testing.T, dir string) []string {
	var out []string
	filepath.Walk(dir, func(p string, fi os.FileInfo, err error) error {
		if err != nil {
			return err
		}
		out = append(out, fmt.Sprintf("%s %d %d", p, fi.Size(), fi.ModTime().UnixNano()))
		return nil
	})
	return out
}
