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
	var local float64
	b.Run("first-backup", func(b *testing.B) { local = run(b, "backup", "--node", "bench", src) })
	// The same tree pushed to an appliance (a second repository) over
	// loopback SSH, beside the local backup's speed.
	b.Run("first-push-ssh", func(b *testing.B) {
		push := pushBench(b, dir, src, run)
		b.ReportMetric(push/local, "push/local")
	})
	b.Run("unchanged-backup", func(b *testing.B) { run(b, "backup", "--node", "bench", src) })
	if _, err := datagen.Mutate(src, 2); err != nil {
		b.Fatal(err)
	}
	b.Run("changed-backup", func(b *testing.B) { run(b, "backup", "--node", "bench", src) })
	b.Run("restore", func(b *testing.B) { run(b, "restore", "latest:"+src, "--target", filepath.Join(dir, "dst")) })
	b.Run("check-read-data", func(b *testing.B) { run(b, "check", "--read-data") })
}

// pushBench starts an appliance on a new repository and pushes src to it
// with cairn push, returning MB/s.
func pushBench(b *testing.B, dir, src string, run func(*testing.B, ...string) float64) float64 {
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
	os.WriteFile(repo+".yaml", []byte(fmt.Sprintf("listen: 127.0.0.1:%d\nnodes:\n  bench:\n    keys: [%q]\n    permissions: [push]\n", port, strings.TrimSpace(string(pub)))), 0o600)
	serve := exec.Command(cairnBin, "serve")
	serve.Env = env
	stderr, _ := serve.StderrPipe()
	if err := serve.Start(); err != nil {
		b.Fatal(err)
	}
	defer func() {
		serve.Process.Signal(syscall.SIGTERM)
		serve.Wait()
	}()
	sc := bufio.NewScanner(stderr)
	for sc.Scan() {
		if strings.Contains(sc.Text(), "msg=serving") {
			break
		}
	}
	go io.Copy(io.Discard, stderr)
	fp := strings.TrimSpace(cairn("keygen", "--show", repo+".host_key"))
	return run(b, "push", fmt.Sprintf("ssh://bench@127.0.0.1:%d", port), "-i", key, "--host-key", fp, src)
}
