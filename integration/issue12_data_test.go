package integration

import (
	"bytes"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/cairnbackup/cairn/repo/repotest"
)

// `tar c -C app . | ssh … push --tar --name app`: the volume's root ("./",
// 0750, owned by 100:101, mtime 2020-01-02) came back as 0755 root:root
// with the time of the push. Pushed every way a tar reaches the appliance
// (ssh without cairn, cairn push from the node, cairn backup through the
// operator socket), /NAME is restored with the root member's mode, owner
// and times.
func TestTarVolumeRootKeepsOwnerModeTimes(t *testing.T) {
	requireRoot(t, "the volume is owned by another user")
	tarBin := requireProgram(t, "tar")
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
			return runSSH(t, bytes.NewReader(tarOut), append(a.sshArgs(vol), "push", "--tar", "--name", name, "--plan", name)...)
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
