package integration

import (
	"bufio"
	"bytes"
	"fmt"
	"io"
	"net"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"sync"
	"syscall"
	"testing"
	"time"

	"github.com/cairnbackup/cairn/repo/repotest/datagen"
)

// BenchmarkBackupRestore backs up and restores the generated ~1 GiB mixed
// tree (datagen.Bench: many small text files, large compressible dumps,
// random binaries, a sparse image) with the real binary and reports, per
// phase, MB/s of the tree's apparent size and the process's peak RSS.
// Run it with -benchtime 1x (make bench does).
func BenchmarkBackupRestore(b *testing.B) {
	dir := b.TempDir()
	src := filepath.Join(dir, "src")
	st, err := datagen.Generate(src, datagen.Bench, 1)
	if err != nil {
		b.Fatal(err)
	}
	pw := filepath.Join(dir, "pw")
	os.WriteFile(pw, []byte("bench"), 0o600)
	env := append(cleanEnviron(), "CAIRN_REPO="+filepath.Join(dir, "repo"), "CAIRN_PASSWORD_FILE="+pw)
	run := func(b *testing.B, args ...string) float64 {
		cmd := exec.Command(cairnBin, args...)
		cmd.Env = env
		var out bytes.Buffer
		cmd.Stdout, cmd.Stderr = &out, &out
		start := time.Now()
		peak, err := runPeakRSS(cmd)
		el := time.Since(start)
		if err != nil {
			b.Fatalf("cairn %v: %v\n%s", args, err, out.String())
		}
		mbs := float64(st.Bytes) / el.Seconds() / 1e6
		b.ReportMetric(mbs, "MB/s")
		b.ReportMetric(peak.peak, "peak-RSS-MiB")
		b.ReportMetric(el.Seconds(), "s")
		return mbs
	}
	runInit := exec.Command(cairnBin, "init")
	runInit.Env = env
	if out, err := runInit.CombinedOutput(); err != nil {
		b.Fatalf("init: %v\n%s", err, out)
	}
	var local, from float64
	b.Run("first-backup", func(b *testing.B) { local = run(b, "backup", "--node", "bench", src) })
	// The same tree pushed to an appliance (a second repository) over
	// loopback SSH, beside the local backup's speed, then restored from
	// it (restore --from) while it still has only that snapshot.
	app := startBenchAppliance(b, dir)
	b.Run("first-push-ssh", func(b *testing.B) {
		push := run(b, app.args("push", src)...)
		b.ReportMetric(push/local, "push/local")
	})
	b.Run("restore-from-ssh", func(b *testing.B) {
		from = run(b, app.args("restore", "latest:"+src, "--target", filepath.Join(dir, "dst-from"))...)
	})
	app.stop()
	b.Run("unchanged-backup", func(b *testing.B) { run(b, "backup", "--node", "bench", src) })
	if _, err := datagen.Mutate(src, 2); err != nil {
		b.Fatal(err)
	}
	b.Run("changed-backup", func(b *testing.B) { run(b, "backup", "--node", "bench", src) })
	b.Run("restore", func(b *testing.B) {
		mbs := run(b, "restore", "latest:"+src, "--target", filepath.Join(dir, "dst"))
		b.ReportMetric(from/mbs, "from/local")
	})
	b.Run("check-read-data", func(b *testing.B) { run(b, "check", "--read-data") })
}

// benchAppliance is an appliance on a repository of its own, with node
// bench (push and read).
type benchAppliance struct {
	addr, key, fp string
	stop          func()
}

// args are the arguments of a cairn command as node bench of the
// appliance: the verb, the appliance (push's destination, restore's
// --from), the node's key and the host key, then more.
func (a *benchAppliance) args(verb string, more ...string) []string {
	args := []string{verb}
	if verb == "push" {
		args = append(args, a.addr)
	} else {
		args = append(args, "--from", a.addr)
	}
	return append(append(args, "-i", a.key, "--host-key", a.fp), more...)
}

// startBenchAppliance starts an appliance on a new repository beside dir's
// others; stop ends it.
func startBenchAppliance(b *testing.B, dir string) *benchAppliance {
	repo := filepath.Join(dir, "appliance")
	pw := filepath.Join(dir, "pw")
	env := append(cleanEnviron(), "CAIRN_REPO="+repo, "CAIRN_PASSWORD_FILE="+pw)
	cairn := func(args ...string) string {
		cmd := exec.Command(cairnBin, args...)
		cmd.Env = env
		out, err := cmd.CombinedOutput()
		if err != nil {
			b.Fatalf("cairn %v: %v\n%s", args, err, out)
		}
		return string(out)
	}
	cairn("init")
	key := filepath.Join(dir, "node_key")
	cairn("keygen", key)
	pub, _ := os.ReadFile(key + ".pub")
	l, _ := net.Listen("tcp", "127.0.0.1:0")
	port := l.Addr().(*net.TCPAddr).Port
	l.Close()
	os.WriteFile(repo+".yaml", []byte(fmt.Sprintf("listen: 127.0.0.1:%d\nnodes:\n  bench:\n    keys: [%q]\n    permissions: [push, read]\n", port, strings.TrimSpace(string(pub)))), 0o600)
	serve := exec.Command(cairnBin, "serve")
	serve.Env = env
	stderr, _ := serve.StderrPipe()
	if err := serve.Start(); err != nil {
		b.Fatal(err)
	}
	var once sync.Once
	stop := func() {
		once.Do(func() {
			serve.Process.Signal(syscall.SIGTERM)
			serve.Wait()
		})
	}
	b.Cleanup(stop)
	sc := bufio.NewScanner(stderr)
	for sc.Scan() {
		if strings.Contains(sc.Text(), "msg=serving") {
			break
		}
	}
	go io.Copy(io.Discard, stderr)
	fp := strings.TrimSpace(cairn("keygen", "--show", repo+".host_key"))
	return &benchAppliance{addr: fmt.Sprintf("ssh://bench@127.0.0.1:%d", port), key: key, fp: fp, stop: stop}
}
