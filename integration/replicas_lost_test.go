package integration

import (
	"bufio"
	"bytes"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"sync"
	"syscall"
	"testing"
	"time"

	"github.com/cairnbackup/cairn/integration/s3test"
)

// "Rhea is gone": three nodes push to the appliance, which replicates to
// a bucket of a real SeaweedFS and to a directory; then everything of
// the appliance is deleted (the repository, its key file, its
// configuration and host key). On a new machine, with only the key file
// and the configuration kept off the box, the runbook's blocks are run
// as written: each replica's index is rebuilt from the replica alone and
// checks clean, every snapshot restores bit-identical from each, the
// replica in the bucket is promoted (served by the runbook's command
// line) and the nodes push into it again.
func TestApplianceLost(t *testing.T) {
	srv := s3test.Shared(t)
	r := newReplicaEnv(t, srv, srv.Endpoint)
	r.vars = []string{"CAIRN_REPO=" + r.repo} // key file mode: the runbook brings the key file
	r.ok("init")
	nodes := []*node{newNode(t, "lyra", "push, read"), newNode(t, "vega", "push"), newNode(t, "proxima", "push")}
	a := r.serveWith(r.config(), nodes...)
	type version struct{ id, path, copy string }
	var versions []version
	for round := range 2 {
		for i, n := range nodes {
			src := filepath.Join(r.dir, "nodes", n.Name, "data")
			os.MkdirAll(src, 0o755)
			os.WriteFile(filepath.Join(src, "base.bin"), randomish(uint64(i+1), 2<<20), 0o644)
			os.WriteFile(filepath.Join(src, fmt.Sprintf("day%d.log", round)), randomish(uint64(100*round+i), 300<<10), 0o644)
			out := a.push(n, nil, "--json", src)
			if out.code != 0 {
				t.Fatalf("push %s: %+v", n.Name, out)
			}
			id := ackedID(t, out.stdout)
			cp := filepath.Join(r.dir, "copies", fmt.Sprintf("%s-%d", n.Name, round))
			r.ok("restore", id[:12]+":"+src, "--target", cp)
			versions = append(versions, version{id, src, filepath.Join(cp, "data")})
		}
	}
	for _, rep := range r.replicate() {
		if rep.Status != "ok" || rep.Report.Snapshots != 6 {
			t.Fatalf("replicate: %+v", rep)
		}
	}
	book := r.ok("runbook")

	// Off the box: the key file and the configuration. Then rhea is gone.
	offbox := filepath.Join(r.dir, "offbox")
	os.MkdirAll(offbox, 0o700)
	key := filepath.Join(offbox, "rhea.key")
	config := filepath.Join(offbox, "cairn.yaml")
	os.WriteFile(key, mustRead(t, r.repo+".key"), 0o600)
	os.WriteFile(config, mustRead(t, r.repo+".yaml"), 0o600)
	a.stop()
	for _, p := range []string{r.repo, r.repo + ".key", r.repo + ".yaml", r.repo + ".host_key", r.repo + ".sock", r.cache} {
		if err := os.RemoveAll(p); err != nil {
			t.Fatal(err)
		}
	}

	// The new machine runs the runbook's blocks as written, with its own
	// paths for the variables.
	newBox := filepath.Join(r.dir, "newbox")
	vars := func(replica string) map[string]string {
		return map[string]string{"KEY": key, "CREDENTIALS": r.creds, "STATE": filepath.Join(newBox, replica, "state"),
			"CACHE": filepath.Join(newBox, replica, "cache"), "CONFIG": config}
	}
	env := append(cleanEnviron(), "PATH="+filepath.Dir(cairnBin)+":"+os.Getenv("PATH"))
	for _, name := range []string{"offsite", "usb"} {
		block := runbookBlock(t, book, "From "+name+":")
		script := setVars(t, block, vars(name))
		cmd := exec.Command("bash", "-euo", "pipefail", "-c", script)
		cmd.Env = env
		out, err := cmd.CombinedOutput()
		if err != nil {
			t.Fatalf("the runbook's block for %s failed: %v\n%s\n%s", name, err, script, out)
		}
		for _, v := range versions {
			if !strings.Contains(string(out), v.id[:8]) {
				t.Fatalf("replica %s does not list %s:\n%s", name, v.id[:8], out)
			}
		}
		on := []string{"CAIRN_KEY_FILE=" + key}
		if name == "offsite" {
			on = append(on, "CAIRN_REPO="+r.offsite, "CAIRN_S3_CREDENTIALS="+r.creds, "CAIRN_STATE_DIR="+vars(name)["STATE"], "CAIRN_CACHE_DIR="+vars(name)["CACHE"])
		} else {
			on = append(on, "CAIRN_REPO="+r.usb)
		}
		for _, v := range versions {
			dst := filepath.Join(newBox, name, "restore-"+v.id[:8])
			if res := r.run(on, "restore", v.id[:12]+":"+v.path, "--target", dst); res.code != 0 {
				t.Fatalf("restore %s from %s: %+v", v.id[:8], name, res)
			}
			repotestAssertSame(t, v.copy, filepath.Join(dst, "data"))
		}
		// The rest of what works on the replica with the key file
		// alone: a drill, and the snapshots mounted.
		newest := versions[len(versions)-1]
		if res := r.run(on, "drill", newest.id[:12]); res.code != 0 || !strings.HasPrefix(res.stdout, "drill of snapshot "+newest.id[:8]+" (proxima/@none): ok\n") {
			t.Fatalf("drill on replica %s: %+v", name, res)
		}
		t.Run("mount "+name, func(t *testing.T) {
			requireFUSE(t)
			mnt := t.TempDir()
			m := startMount(t, append(cleanEnviron(), on...), mnt)
			for _, v := range versions {
				got, err := os.ReadFile(filepath.Join(mnt, "snapshots", v.id[:8], v.path, "base.bin"))
				if err != nil || !bytes.Equal(got, mustRead(t, filepath.Join(v.copy, "base.bin"))) {
					t.Fatalf("%s read through the mount of replica %s: %d bytes, %v", v.id[:8], name, len(got), err)
				}
			}
			m.stop()
		})
	}

	// Promote the bucket: serve it with the runbook's command line; the
	// nodes push into it again.
	serve := setVars(t, runbookBlock(t, book, "Serving offsite:"), vars("offsite"))
	promoted := startScript(t, serve, env)
	lyra := nodes[0]
	src := versions[0].path
	os.WriteFile(filepath.Join(src, "after.log"), []byte("written after rhea was lost\n"), 0o644)
	push := r.run(nil, "push", fmt.Sprintf("ssh://lyra@127.0.0.1:%d", a.Port), "-i", lyra.Key.PrivatePath, "--host-key", promoted.hostKey, "--json", src)
	if push.code != 0 {
		t.Fatalf("push to the promoted replica: %+v\n%s", push, promoted.log())
	}
	id := ackedID(t, push.stdout)
	on := []string{"CAIRN_REPO=" + r.offsite, "CAIRN_KEY_FILE=" + key, "CAIRN_S3_CREDENTIALS=" + r.creds, "CAIRN_STATE_DIR=" + vars("offsite")["STATE"]}
	list := r.run(on, "snapshots") // through the promoted appliance's socket
	if list.code != 0 || !strings.Contains(list.stdout, id[:8]) {
		t.Fatalf("snapshots of the promoted replica: %+v", list)
	}
	dst := filepath.Join(newBox, "after")
	if res := r.run(on, "restore", id[:12]+":"+src, "--target", dst); res.code != 0 {
		t.Fatalf("restore the new snapshot: %+v", res)
	}
	repotestAssertSame(t, src, filepath.Join(dst, "data"))
	if res := r.run(on, "check", "--read-data"); res.code != 0 {
		t.Fatalf("check of the promoted replica: %+v", res)
	}
	promoted.stop(t)
}

// ackedID returns the snapshot ID of push --json's output.
func ackedID(t *testing.T, out string) string {
	t.Helper()
	for _, line := range strings.Split(strings.TrimSpace(out), "\n") {
		var ack struct {
			Snapshot string `json:"snapshot"`
		}
		if jsonUnmarshal(line, &ack) == nil && ack.Snapshot != "" {
			return ack.Snapshot
		}
	}
	t.Fatalf("no snapshot acknowledged: %s", out)
	return ""
}

// runbookBlock returns the sh block that follows the line title.
func runbookBlock(t *testing.T, book, title string) []string {
	t.Helper()
	i := strings.Index(book, "\n"+title+"\n")
	if i < 0 {
		t.Fatalf("the runbook has no %q:\n%s", title, book)
	}
	blocks := shBlocks(book[i:])
	if len(blocks) == 0 {
		t.Fatalf("no block after %q", title)
	}
	return blocks[0]
}

// setVars replaces the values of the variable lines a runbook block
// begins with; a variable the test does not know fails it, except
// REPLICA, kept as written.
func setVars(t *testing.T, block []string, vars map[string]string) string {
	t.Helper()
	out := make([]string, len(block))
	for i, line := range block {
		out[i] = line
		m := runbookVar.FindStringSubmatch(line)
		if m == nil || m[1] == "REPLICA" {
			continue
		}
		v, ok := vars[m[1]]
		if !ok {
			t.Fatalf("the block sets %s, which this test does not know:\n%s", m[1], strings.Join(block, "\n"))
		}
		out[i] = m[1] + "=" + v
	}
	return strings.Join(out, "\n") + "\n"
}

// script is a long-running script (an appliance started by a runbook's
// command line) and its log.
type script struct {
	cmd     *exec.Cmd
	exited  chan struct{}
	hostKey string
	mu      sync.Mutex
	logs    strings.Builder
}

func (s *script) log() string {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.logs.String()
}

// startScript runs script with bash until its appliance logs that it
// serves; the appliance stops at the end of the test.
func startScript(t *testing.T, sh string, env []string) *script {
	t.Helper()
	s := &script{exited: make(chan struct{})}
	s.cmd = exec.Command("bash", "-euo", "pipefail", "-c", strings.Replace(sh, "cairn --repo", "exec cairn --repo", 1))
	s.cmd.Env = env
	s.cmd.SysProcAttr = &syscall.SysProcAttr{Pdeathsig: syscall.SIGKILL}
	stderr, err := s.cmd.StderrPipe()
	if err != nil {
		t.Fatal(err)
	}
	if err := s.cmd.Start(); err != nil {
		t.Fatal(err)
	}
	serving := make(chan string, 1)
	go func() {
		sc := bufio.NewScanner(stderr)
		for sc.Scan() {
			s.mu.Lock()
			s.logs.WriteString(sc.Text() + "\n")
			s.mu.Unlock()
			if strings.Contains(sc.Text(), "msg=serving") {
				select {
				case serving <- sc.Text():
				default:
				}
			}
		}
		s.cmd.Wait()
		close(s.exited)
	}()
	t.Cleanup(func() { s.stop(t) })
	select {
	case line := <-serving:
		for _, f := range strings.Fields(line) {
			if v, ok := strings.CutPrefix(f, "host_key="); ok {
				s.hostKey = v
			}
		}
	case <-s.exited:
		t.Fatalf("the promoted appliance exited:\n%s\n%s", sh, s.log())
	case <-time.After(2 * time.Minute):
		t.Fatalf("the promoted appliance did not serve within 2 minutes:\n%s", s.log())
	}
	return s
}

func (s *script) stop(t *testing.T) {
	select {
	case <-s.exited:
		return
	default:
	}
	s.cmd.Process.Signal(syscall.SIGTERM)
	select {
	case <-s.exited:
	case <-time.After(time.Minute):
		s.cmd.Process.Kill()
		t.Errorf("the promoted appliance did not stop on SIGTERM")
	}
}
