package integration

import (
	"bytes"
	"encoding/binary"
	"io"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"testing"
	"time"

	"github.com/cairnbackup/cairn/repo"
	"github.com/cairnbackup/cairn/repo/blob"
	"github.com/cairnbackup/cairn/repo/repotest"
)

// BenchmarkLargeIndex checks that memory stays flat as the repository
// grows: it fills a repository with CAIRN_BENCH_BLOBS (default 5 000 000)
// distinct tiny blobs through the repository's own session, so the index
// holds that many entries (as a repository of 5 TiB in 1 MiB chunks
// would), then runs the real binary on it and reports each process's
// peak RSS (VmHWM) and the largest anonymous part of it (RssAnon: what
// is not badger's mapped table files), sampled while it runs:
//
//   - backup-first-peak-RSS-MiB: a first backup of a 256 MiB tree (half
//     text, half random data), the first process to open the index after
//     the fill;
//   - unchanged-peak-RSS-MiB: its unchanged re-backup;
//   - backup-peak-RSS-MiB: a backup of another such tree (no chunk in
//     common), after the first mounts;
//   - mount-peak-RSS-MiB: a mount (default 64 MiB chunk cache) while
//     ls -lR walks the snapshot and every file is read and compared with
//     its source; mount-64MiB-cache-peak-RSS-MiB the same with
//     --cache-size 64MiB. The -first figures are the first two mounts,
//     which with the first backups are the first processes to open the
//     index after the fill and share badger's one-time work on its new
//     entries (compacting them: whichever process runs it takes up to a
//     few hundred MiB more); the others are the next two;
//   - restore-peak-RSS-MiB: a full restore of the first backup;
//   - snapshots-peak-RSS-MiB, check-peak-RSS-MiB: cairn snapshots and
//     cairn check (structure only), which only read the index.
//
// Filling takes a few minutes; run it alone, with -benchtime 1x:
//
//	go test -run '^$' -bench LargeIndex -benchtime 1x -timeout 60m ./integration/
func BenchmarkLargeIndex(b *testing.B) {
	requireFUSE(b)
	n := 5_000_000
	if v := os.Getenv("CAIRN_BENCH_BLOBS"); v != "" {
		var err error
		if n, err = strconv.Atoi(v); err != nil {
			b.Fatalf("CAIRN_BENCH_BLOBS=%q: %v", v, err)
		}
	}
	for range b.N {
		dir := b.TempDir()
		repoDir := filepath.Join(dir, "repo")
		// Default chunk and pack sizes: the memory of a real backup.
		if _, err := repo.Init(b.Context(), repoDir, repotest.Credentials(), repo.InitOptions{}); err != nil {
			b.Fatal(err)
		}
		start := time.Now()
		fillBlobs(b, repoDir, n)
		fill := time.Since(start)

		pw := filepath.Join(dir, "pw")
		if err := os.WriteFile(pw, []byte(repotest.Password), 0o600); err != nil {
			b.Fatal(err)
		}
		env := append(cleanEnviron(), "CAIRN_REPO="+repoDir, "CAIRN_PASSWORD_FILE="+pw)
		run := func(args ...string) rss {
			cmd := exec.Command(cairnBin, args...)
			cmd.Env = env
			var errb bytes.Buffer
			cmd.Stdout, cmd.Stderr = io.Discard, &errb
			peak, err := runPeakRSS(cmd)
			if err != nil {
				b.Fatalf("cairn %v: %v\n%s", args, err, errb.String())
			}
			return peak
		}

		src := filepath.Join(dir, "src")
		writeRandomFile(b, filepath.Join(src, "random.bin"), 128<<20)
		writeTextFile(b, filepath.Join(src, "dump.sql"), 128<<20, 0)
		backupFirst := run("backup", "--node", "bench", "--plan", "big", src)
		unchanged := run("backup", "--node", "bench", "--plan", "big", src)

		mountPeak := func(args ...string) rss {
			mnt := b.TempDir()
			m := startMount(b, env, mnt, args...)
			sample := sampleRSS(m.cmd.Process.Pid)
			root := filepath.Join(mnt, "nodes", "bench", "big", "latest", src)
			if out, err := exec.Command("ls", "-lR", root).CombinedOutput(); err != nil {
				b.Fatalf("ls -lR: %v\n%s", err, out)
			}
			for _, name := range []string{"random.bin", "dump.sql"} {
				got, err := os.ReadFile(filepath.Join(root, name))
				if err != nil {
					b.Fatal(err)
				}
				want, err := os.ReadFile(filepath.Join(src, name))
				if err != nil {
					b.Fatal(err)
				}
				if !bytes.Equal(got, want) {
					b.Fatalf("%s read through the mount differs from its source", name)
				}
			}
			r := sample()
			m.stop()
			return r
		}
		// The first processes to open the index after the fill do
		// badger's one-time work on five million new entries; the
		// second round shows what a mount takes from then on.
		mountFirst := mountPeak()
		mountSmallFirst := mountPeak("--cache-size", "64MiB")
		// A second backup of 256 MiB of other data, and two more mounts
		// (of the first backup), once that work is done.
		src2 := filepath.Join(dir, "src2")
		writeRandomFileSeed(b, filepath.Join(src2, "random.bin"), 128<<20, 1)
		writeTextFile(b, filepath.Join(src2, "dump.sql"), 128<<20, 1)
		backup := run("backup", "--node", "bench", "--plan", "second", src2)
		mount := mountPeak()
		mountSmall := mountPeak("--cache-size", "64MiB")
		// A full restore of the first backup (every file re-hashed), and
		// the commands that only read the index.
		restore := run("restore", "latest:"+src, "--node", "bench", "--plan", "big", "--target", filepath.Join(dir, "restored"))
		snapshots := run("snapshots")
		check := run("check")

		b.ReportMetric(float64(n), "blobs")
		b.ReportMetric(fill.Seconds(), "fill-s")
		for _, m := range []struct {
			name string
			r    rss
		}{{"backup-first", backupFirst}, {"unchanged", unchanged}, {"backup", backup}, {"mount-first", mountFirst}, {"mount-64MiB-cache-first", mountSmallFirst},
			{"mount", mount}, {"mount-64MiB-cache", mountSmall}, {"restore", restore}, {"snapshots", snapshots}, {"check", check}} {
			b.ReportMetric(m.r.peak, m.name+"-peak-RSS-MiB")
			b.ReportMetric(m.r.anon, m.name+"-peak-anon-MiB")
		}
	}
}

// fillBlobs stores n distinct 16-byte blobs in the repository at dir.
func fillBlobs(b *testing.B, dir string, n int) {
	r, err := repo.Open(b.Context(), dir, repotest.Credentials(), repo.Options{})
	if err != nil {
		b.Fatal(err)
	}
	defer r.Close()
	s := r.NewSession()
	var data [16]byte
	copy(data[8:], "largeidx")
	for i := range n {
		binary.BigEndian.PutUint64(data[:8], uint64(i))
		if _, _, err := s.SaveBlob(b.Context(), blob.Data, data[:]); err != nil {
			b.Fatal(err)
		}
	}
	if err := s.Flush(b.Context()); err != nil {
		b.Fatal(err)
	}
	s.Abort() // the blobs stay: they are indexed; no snapshot refers to them
}

// writeTextFile writes size bytes of SQL-like text to p; files of other
// seeds share no chunk.
func writeTextFile(b *testing.B, p string, size int, seed int) {
	if err := os.MkdirAll(filepath.Dir(p), 0o755); err != nil {
		b.Fatal(err)
	}
	f, err := os.Create(p)
	if err != nil {
		b.Fatal(err)
	}
	var line []byte
	for i, written := 0, 0; written < size; i++ {
		line = strconv.AppendInt(append(line[:0], "INSERT INTO events VALUES ("...), int64(i), 10)
		line = append(line, ", 'node-"...)
		line = strconv.AppendInt(line, int64(i*7919%1000), 10)
		line = append(line, "', 'backup finished without warnings', "...)
		line = strconv.AppendInt(line, int64(seed), 10)
		line = append(line, ");\n"...)
		n, err := f.Write(line)
		if err != nil {
			b.Fatal(err)
		}
		written += n
	}
	if err := f.Close(); err != nil {
		b.Fatal(err)
	}
}
