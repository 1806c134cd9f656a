package integration

import (
	"bytes"
	"fmt"
	"io"
	"math/rand/v2"
	"os"
	"os/exec"
	"path/filepath"
	"testing"
	"time"
)

// BenchmarkFUSE measures the mount with the real binary, serving from a
// child process:
//
//   - read-1GiB: a 1 GiB file of random data read sequentially through
//     the mount with a 1 MiB buffer (cold: a fresh mount, so no page
//     cache of the mount), against cairn restore and cairn dump of the
//     same file; MB/s, the mount/restore ratio, and the mount process's
//     peak RSS;
//   - find-50k and ls-lR-50k: find and ls -lR over a snapshot of 50 000
//     files in 500 directories, each on a fresh mount; seconds and
//     entries per second.
//
// The repository's packs are in the page cache (just written), so the
// figures are CPU-bound: decryption, decompression and re-hashing.
// Run it with -benchtime 1x.
func BenchmarkFUSE(b *testing.B) {
	requireFUSE(b)
	dir := b.TempDir()
	pw := filepath.Join(dir, "pw")
	os.WriteFile(pw, []byte("bench"), 0o600)
	env := append(cleanEnviron(), "CAIRN_REPO="+filepath.Join(dir, "repo"), "CAIRN_PASSWORD_FILE="+pw)
	cairn := func(b *testing.B, stdout io.Writer, args ...string) time.Duration {
		cmd := exec.Command(cairnBin, args...)
		cmd.Env = env
		var errb bytes.Buffer
		cmd.Stdout, cmd.Stderr = stdout, &errb
		start := time.Now()
		if err := cmd.Run(); err != nil {
			b.Fatalf("cairn %v: %v\n%s", args, err, errb.String())
		}
		return time.Since(start)
	}
	cairn(b, io.Discard, "init")

	const bigSize = 1 << 30
	bigDir := filepath.Join(dir, "big")
	big := filepath.Join(bigDir, "random.bin")
	writeRandomFile(b, big, bigSize)
	cairn(b, io.Discard, "backup", "--node", "bench", "--plan", "big", bigDir)

	const smallFiles = 50000
	smallDir := filepath.Join(dir, "small")
	for d := range smallFiles / 100 {
		sub := filepath.Join(smallDir, fmt.Sprintf("dir%03d", d))
		if err := os.MkdirAll(sub, 0o755); err != nil {
			b.Fatal(err)
		}
		for f := range 100 {
			if err := os.WriteFile(filepath.Join(sub, fmt.Sprintf("file%03d.txt", f)), fmt.Appendf(nil, "file %d of directory %d\n", f, d), 0o644); err != nil {
				b.Fatal(err)
			}
		}
	}
	cairn(b, io.Discard, "backup", "--node", "bench", "--plan", "small", smallDir)

	b.Run("read-1GiB", func(b *testing.B) {
		for range b.N {
			mnt := b.TempDir()
			m := startMount(b, env, mnt)
			f, err := os.Open(filepath.Join(mnt, "nodes", "bench", "big", "latest", big))
			if err != nil {
				b.Fatal(err)
			}
			buf := make([]byte, 1<<20)
			start := time.Now()
			n, err := io.CopyBuffer(io.Discard, struct{ io.Reader }{f}, buf)
			el := time.Since(start)
			f.Close()
			if err != nil || n != bigSize {
				b.Fatalf("read %d bytes: %v", n, err)
			}
			peak := vmHWM(m.cmd.Process.Pid)
			m.stop()
			mount := bigSize / el.Seconds() / 1e6

			restore := bigSize / cairn(b, io.Discard, "restore", "latest:"+big, "--plan", "big", "--target", b.TempDir()).Seconds() / 1e6
			null, err := os.OpenFile(os.DevNull, os.O_WRONLY, 0)
			if err != nil {
				b.Fatal(err)
			}
			dump := bigSize / cairn(b, null, "dump", "latest:"+big, "--plan", "big").Seconds() / 1e6
			null.Close()

			b.ReportMetric(mount, "mount-MB/s")
			b.ReportMetric(restore, "restore-MB/s")
			b.ReportMetric(mount/restore, "mount/restore")
			b.ReportMetric(dump, "dump-MB/s")
			b.ReportMetric(peak, "mount-peak-RSS-MiB")
		}
	})

	// tree runs a program over the small snapshot on a fresh mount and
	// reports its time.
	tree := func(b *testing.B, name string, args ...string) {
		for range b.N {
			mnt := b.TempDir()
			m := startMount(b, env, mnt)
			root := filepath.Join(mnt, "nodes", "bench", "small", "latest", smallDir)
			cmd := exec.Command(name, append(args, root)...)
			var out bytes.Buffer
			cmd.Stdout = &out
			start := time.Now()
			if err := cmd.Run(); err != nil {
				b.Fatalf("%s: %v", name, err)
			}
			el := time.Since(start)
			peak := vmHWM(m.cmd.Process.Pid)
			m.stop()
			lines := bytes.Count(out.Bytes(), []byte("\n"))
			if lines < smallFiles {
				b.Fatalf("%s printed %d lines for %d files", name, lines, smallFiles)
			}
			b.ReportMetric(el.Seconds(), "s")
			b.ReportMetric(smallFiles/el.Seconds(), "files/s")
			b.ReportMetric(peak, "mount-peak-RSS-MiB")
		}
	}
	b.Run("find-50k", func(b *testing.B) { tree(b, "find") })
	b.Run("ls-lR-50k", func(b *testing.B) { tree(b, "ls", "-lR") })
}

// writeRandomFile writes size bytes of random data to p.
func writeRandomFile(b *testing.B, p string, size int) { writeRandomFileSeed(b, p, size, 0) }

// writeRandomFileSeed writes size bytes of random data from seed to p.
func writeRandomFileSeed(b *testing.B, p string, size int, seed byte) {
	if err := os.MkdirAll(filepath.Dir(p), 0o755); err != nil {
		b.Fatal(err)
	}
	f, err := os.Create(p)
	if err != nil {
		b.Fatal(err)
	}
	rng := rand.NewChaCha8([32]byte{'c', 'a', 'i', 'r', 'n', seed})
	buf := make([]byte, 1<<20)
	for written := 0; written < size; written += len(buf) {
		rng.Read(buf)
		if _, err := f.Write(buf); err != nil {
			b.Fatal(err)
		}
	}
	if err := f.Close(); err != nil {
		b.Fatal(err)
	}
}
