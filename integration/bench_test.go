package integration

import (
	"os"
	"os/exec"
	"path/filepath"
	"syscall"
	"testing"
	"time"

	"github.com/cairnbackup/cairn/integration/datagen"
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
	run := func(b *testing.B, args ...string) {
		cmd := exec.Command(cairnBin, args...)
		cmd.Env = env
		start := time.Now()
		out, err := cmd.CombinedOutput()
		el := time.Since(start)
		if err != nil {
			b.Fatalf("cairn %v: %v\n%s", args, err, out)
		}
		b.ReportMetric(float64(st.Bytes)/el.Seconds()/1e6, "MB/s")
		b.ReportMetric(float64(cmd.ProcessState.SysUsage().(*syscall.Rusage).Maxrss)/1024, "peak-RSS-MiB")
		b.ReportMetric(el.Seconds(), "s")
	}
	runInit := exec.Command(cairnBin, "init")
	runInit.Env = env
	if out, err := runInit.CombinedOutput(); err != nil {
		b.Fatalf("init: %v\n%s", err, out)
	}
	b.Run("first-backup", func(b *testing.B) { run(b, "backup", "--node", "bench", src) })
	b.Run("unchanged-backup", func(b *testing.B) { run(b, "backup", "--node", "bench", src) })
	if _, err := datagen.Mutate(src, 2); err != nil {
		b.Fatal(err)
	}
	b.Run("changed-backup", func(b *testing.B) { run(b, "backup", "--node", "bench", src) })
	b.Run("restore", func(b *testing.B) { run(b, "restore", "latest:"+src, "--target", filepath.Join(dir, "dst")) })
	b.Run("check-read-data", func(b *testing.B) { run(b, "check", "--read-data") })
}
