package integration

import (
	"archive/tar"
	"bytes"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/cairnbackup/cairn/integration/tartest"
	"github.com/cairnbackup/cairn/integration/testenv"
	"github.com/cairnbackup/cairn/repo/repotest"
)

// `tar c -C app . | ssh … push --tar --name app`: the volume's root ("./",
// 0750, owned by 100:101, mtime 2020-01-02) came back as 0755 root:root
// with the time of the push. Pushed every way a tar reaches the appliance
// (ssh without cairn, cairn push from the node, cairn backup through the
// operator socket), /NAME is restored with the root member's mode, owner
// and times.
func TestTarVolumeRootKeepsOwnerModeTimes(t *testing.T) {
	testenv.RequireRoot(t, "the volume is owned by another user")
	tarBin := testenv.RequireProgram(t, "tar", "tar")
	e := newEnv(t)
	e.ok("init")
	vol := newNode(t, "docker", "push")
	a := e.serve(vol)
	src := filepath.Join(e.dir, "app")
	repotest.WriteTree(t, src, map[string]string{"data/app.db": "rows\n"})
	mt := time.Date(2020, 1, 2, 3, 4, 5, 0, time.UTC)
	for _, p := range []string{filepath.Join(src, "data", "app.db"), filepath.Join(src, "data"), src} {
		if err := os.Chown(p, 100, 101); err != nil {
			t.Fatal(err)
		}
		if err := os.Chtimes(p, mt, mt); err != nil {
			t.Fatal(err)
		}
	}
	if err := os.Chmod(src, 0o750); err != nil {
		t.Fatal(err)
	}
	tarOut, err := exec.Command(tarBin, "--format=posix", "-C", src, "-c", ".").Output()
	if err != nil {
		t.Fatal(err)
	}
	push := map[string]func(name string) result{
		"ssh push --tar": func(name string) result {
			return runSSH(t, bytes.NewReader(tarOut), append(a.SSHArgs(vol), "push", "--tar", "--name", name, "--plan", name)...)
		},
		"cairn push --tar": func(name string) result {
			return a.push(vol, bytes.NewReader(tarOut), "--tar", "--name", name, "--plan", name)
		},
		"cairn backup --tar": func(name string) result {
			return e.runIn(bytes.NewReader(tarOut), nil, "backup", "--node", "docker", "--tar", "--name", name, "--plan", name)
		},
	}
	for how, name := range map[string]string{"ssh push --tar": "app1", "cairn push --tar": "app2", "cairn backup --tar": "app3"} {
		if r := push[how](name); r.code != 0 {
			t.Fatalf("%s: exit %d\n%s%s", how, r.code, r.stdout, r.stderr)
		}
		var list []struct{ Paths []string }
		if err := jsonUnmarshal(e.ok("snapshots", "--json", "--plan", name), &list); err != nil || len(list) != 1 || strings.Join(list[0].Paths, ",") != "/"+name {
			t.Fatalf("%s: snapshots %+v %v", how, list, err)
		}
		dst := filepath.Join(e.dir, "restored-"+name)
		e.ok("restore", "latest:/"+name, "--plan", name, "--target", dst)
		for rel, mode := range map[string]os.FileMode{name: 0o750, name + "/data": 0o755, name + "/data/app.db": 0o644} {
			fi, err := os.Lstat(filepath.Join(dst, rel))
			if err != nil {
				t.Fatal(err)
			}
			st := fi.Sys().(*syscall.Stat_t)
			got := fmt.Sprintf("%v %d:%d %s", fi.Mode().Perm(), st.Uid, st.Gid, fi.ModTime().UTC().Format(time.RFC3339))
			want := fmt.Sprintf("%v 100:101 2020-01-02T03:04:05Z", mode)
			if got != want {
				t.Errorf("%s: /%s restored as %s, want %s", how, rel, got, want)
			}
		}
	}
}

// The disposable excludes applied to every class: a files source lost
// crt1.o, crti.o and the other C start-up files, drills passed and status
// said all was well. A files source now keeps them (only CACHEDIR.TAG
// caches are left out); a git source leaves out build output; and every
// snapshot records, and snapshots, status and the runbook show, how many
// entries each rule left out.
func TestPlanKeepsFilesAndCountsExcludes(t *testing.T) {
	e := newEnv(t)
	e.ok("init")
	lyra := newNode(t, "lyra", "push")
	a := e.serve(lyra)
	tag := "Signature: 8a477f597d28d172789f06886806bc55\n"
	libc := filepath.Join(e.dir, "sdk")
	repotest.WriteTree(t, libc, map[string]string{
		"lib/crt1.o": "start", "lib/crti.o": "init", "lib/crtn.o": "fini", "lib/libc.so": "libc",
		"share/node_modules/x.js": "served", "share/notes.tmp": "kept",
		"cache/CACHEDIR.TAG": tag, "cache/a": "a", "cache/b": "b",
	})
	code := filepath.Join(e.dir, "code")
	repotest.WriteTree(t, code, map[string]string{
		"repo.git/HEAD": "ref: refs/heads/main\n", "work/main.c": "int main;",
		"work/main.o": "obj", "work/util.o": "obj", "work/node_modules/y.js": "dep", "work/node_modules/z.js": "dep", "work/a.tmp": "t",
		"work/.build-cache/CACHEDIR.TAG": tag, "work/.build-cache/blob": "c",
	})
	planFile := filepath.Join(e.dir, "plan.yaml")
	os.WriteFile(planFile, []byte(fmt.Sprintf(`sources:
  - name: sdk
    class: files
    why: the C runtime we ship
    paths: [%s]
  - name: code
    class: git
    why: the source of truth for our code
    paths: [%s]
`, libc, code)), 0o644)
	if r := a.push(lyra, nil, "--plan", planFile); r.code != 0 {
		t.Fatalf("push: %d\n%s%s", r.code, r.stdout, r.stderr)
	}
	var list []struct {
		ID       string `json:"id"`
		Plan     string `json:"plan"`
		Excludes []struct {
			Rule  string `json:"rule"`
			Count uint64 `json:"count"`
		} `json:"excludes"`
	}
	if err := jsonUnmarshal(e.ok("snapshots", "--json"), &list); err != nil || len(list) != 2 {
		t.Fatalf("snapshots: %v %+v", err, list)
	}
	got := map[string]string{}
	for _, s := range list {
		for _, x := range s.Excludes {
			got[s.Plan] += fmt.Sprintf("%d %s\n", x.Count, x.Rule)
		}
	}
	src := "plan " + planFile + " source code disposable "
	want := map[string]string{
		"sdk":  "2 --exclude-caches\n",
		"code": "1 --exclude-caches\n2 " + src + `"*.o"` + "\n1 " + src + `"*.tmp"` + "\n1 " + src + `"node_modules/"` + "\n",
	}
	for plan := range want {
		if got[plan] != want[plan] {
			t.Errorf("%s excludes:\n%s\nwant\n%s", plan, got[plan], want[plan])
		}
	}

	// The files source restores whole, build-output names and all
	// (only the cache's contents are left out).
	dst := filepath.Join(e.dir, "restored")
	e.ok("restore", "latest:"+libc, "--plan", "sdk", "--target", dst)
	for _, f := range []string{"crt1.o", "crti.o", "crtn.o", "libc.so"} {
		if _, err := os.Stat(filepath.Join(dst, "sdk", "lib", f)); err != nil {
			t.Errorf("files source: %v", err)
		}
	}
	for _, f := range []string{"share/node_modules/x.js", "share/notes.tmp", "cache/CACHEDIR.TAG"} {
		if _, err := os.Stat(filepath.Join(dst, "sdk", f)); err != nil {
			t.Errorf("files source: %v", err)
		}
	}
	if _, err := os.Stat(filepath.Join(dst, "sdk", "cache", "a")); err == nil {
		t.Errorf("the contents of a CACHEDIR.TAG cache were backed up")
	}

	// snapshots: the EXCLUDED column.
	table := strings.Split(strings.TrimSpace(e.ok("snapshots")), "\n")
	if len(table) != 3 {
		t.Fatalf("snapshots:\n%s", strings.Join(table, "\n"))
	}
	for i, n := range map[int]string{1: "2", 2: "5"} {
		f := strings.Fields(table[i])
		if len(f) < 9 || f[8] != n || f[0] != list[i-1].ID[:8] { // TIME is three fields (date, time, zone), SIZE two

			t.Errorf("snapshots row %d: %q, want EXCLUDED %s", i, table[i], n)
		}
	}
	// status: per node/plan, each rule of the newest snapshot.
	st := e.run(nil, "status")
	// Groups are named with their paths; columns are compared word by word.
	codeGroup, sdkGroup := "lyra/code ["+code+"]", "lyra/sdk ["+libc+"]"
	wantStatus := "left out of the newest snapshots by exclude rules:\n" +
		"NODE/PLAN ENTRIES RULE\n" +
		codeGroup + " 1 --exclude-caches\n" +
		codeGroup + " 2 " + src + `"*.o"` + "\n" +
		codeGroup + " 1 " + src + `"*.tmp"` + "\n" +
		codeGroup + " 1 " + src + `"node_modules/"` + "\n" +
		sdkGroup + " 2 --exclude-caches\n"
	var squeezed strings.Builder
	for _, l := range strings.Split(st.stdout, "\n") {
		squeezed.WriteString(strings.Join(strings.Fields(l), " ") + "\n")
	}
	if !strings.Contains(squeezed.String(), wantStatus) {
		t.Errorf("status:\n%s\nwant\n%s", st.stdout, wantStatus)
	}
	// runbook: the snapshot it restores and what was left out of it.
	rb := e.ok("runbook")
	wantRB := "- Left out of snapshot " + list[1].ID[:8] + " by exclude rules (not restored below): 1 entry by `--exclude-caches`, 2 entries by `" + src + `"*.o"` +
		"`, 1 entry by `" + src + `"*.tmp"` + "`, 1 entry by `" + src + `"node_modules/"` + "`\n"
	if !strings.Contains(rb, wantRB) {
		t.Errorf("runbook:\n%s\nwant\n%s", rb, wantRB)
	}
}

// A tar member with a name no file system holds (a component over 255
// bytes) was stored with exit 0, and every restore and drill of the
// snapshot then failed. The push skips it with a warning naming it (exit
// 3, saved with warnings); the snapshot restores and drills.
func TestTarPushSkipsNameTooLong(t *testing.T) {
	e := newEnv(t)
	e.ok("init")
	vol := newNode(t, "docker", "push")
	a := e.serve(vol)
	long := strings.Repeat("n", 256)
	stream := tartest.Stream(t,
		tartest.Member{Hdr: tar.Header{Name: "./ok.txt", Typeflag: tar.TypeReg}, Body: "abc"},
		tartest.Member{Hdr: tar.Header{Name: "./" + long, Typeflag: tar.TypeReg}, Body: "abc"})
	r := runSSH(t, bytes.NewReader(stream), append(a.SSHArgs(vol), "push", "--tar", "--name", "vol")...)
	want := "warning: tar: \"./" + long + "\": skipped: the name \"" + long + "\" is 256 bytes, longer than a file system allows (255)\n"
	if r.code != 3 || r.stderr != want || !strings.HasPrefix(r.stdout, "snapshot ") {
		t.Fatalf("push: exit %d\nstdout %q\nstderr %q\nwant   %q", r.code, r.stdout, r.stderr, want)
	}
	dst := filepath.Join(e.dir, "dst")
	e.ok("restore", "latest", "--target", dst)
	if b, err := os.ReadFile(filepath.Join(dst, "vol", "ok.txt")); err != nil || string(b) != "abc" {
		t.Fatalf("ok.txt: %q %v", b, err)
	}
	scratch := filepath.Join(e.dir, "scratch")
	os.Mkdir(scratch, 0o700)
	if out := e.ok("drill", "latest", "--scratch", scratch); !strings.Contains(out, ": ok") {
		t.Fatalf("drill: %s", out)
	}
}
