package integration

import (
	"bytes"
	"context"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/minio/minio-go/v7"

	"github.com/cairnbackup/cairn/integration/datagen"
	"github.com/cairnbackup/cairn/integration/s3test"
)

// BenchmarkObjectStore (make bench-s3) runs, with the real binary, a
// first backup, an unchanged re-backup, a restore and check --read-data
// of the generated ~1.1 GiB tree (datagen.Bench) into a local directory
// and into a SeaweedFS on loopback (a server of its own, on the same
// disk and the same cores), then the same phases with restic's s3
// backend against the same server as the peer. It reports MB/s (of the
// tree's apparent size; of the bytes stored for check) and the peak RSS
// of the cairn or restic process, and the object store's throughput as
// a share of the directory's for backup and restore (the target is at
// least 60 %). restic comes from $CAIRN_RESTIC (make bench-s3 installs
// 0.19.1 into ~/.cache/cairn); without it its rows are skipped. The page
// cache is warm: the tree and the repositories were just written.
func BenchmarkObjectStore(b *testing.B) {
	dir := b.TempDir()
	src := filepath.Join(dir, "src")
	st, err := datagen.Generate(src, datagen.Bench, 1)
	if err != nil {
		b.Fatal(err)
	}
	srv := s3test.Start(b)
	bucket := srv.NewBucket(b)
	pw := filepath.Join(dir, "pw")
	os.WriteFile(pw, []byte("bench"), 0o600)
	creds := filepath.Join(dir, "s3.env")
	os.WriteFile(creds, []byte("AWS_ACCESS_KEY_ID="+srv.AccessKey+"\nAWS_SECRET_ACCESS_KEY="+srv.SecretKey+"\n"), 0o600)

	type phase struct {
		name    string
		seconds float64
		mbs     float64
		rss     float64
	}
	results := map[string][]phase{}
	var order []string
	run := func(b *testing.B, who string, bytes int64, env []string, args ...string) {
		cmd := exec.Command(args[0], args[1:]...)
		cmd.Env = env
		var out strings.Builder
		cmd.Stdout, cmd.Stderr = &out, &out
		start := time.Now()
		peak, err := runPeakRSS(cmd)
		el := time.Since(start)
		if err != nil {
			b.Fatalf("%v: %v\n%s", args, err, out.String())
		}
		p := phase{name: b.Name()[strings.LastIndex(b.Name(), "/")+1:], seconds: el.Seconds(), mbs: float64(bytes) / el.Seconds() / 1e6, rss: peak.peak}
		if _, ok := results[who]; !ok {
			order = append(order, who)
		}
		results[who] = append(results[who], p)
		b.ReportMetric(p.mbs, "MB/s")
		b.ReportMetric(p.rss, "peak-RSS-MiB")
		b.ReportMetric(p.seconds, "s")
	}
	bucketBytes := func(prefix string) int64 {
		var n int64
		for o := range srv.Client(b).ListObjects(context.Background(), bucket, minio.ListObjectsOptions{Prefix: prefix + "/", Recursive: true}) {
			if o.Err != nil {
				b.Fatal(o.Err)
			}
			n += o.Size
		}
		return n
	}

	stores := []struct {
		name   string
		env    []string
		stored func() int64
	}{
		{"cairn directory", append(cleanEnviron(), "CAIRN_REPO="+filepath.Join(dir, "repo"), "CAIRN_PASSWORD_FILE="+pw),
			func() int64 {
				var n int64
				filepath.Walk(filepath.Join(dir, "repo", "packs"), func(_ string, fi os.FileInfo, err error) error {
					if err == nil && fi.Mode().IsRegular() {
						n += fi.Size()
					}
					return nil
				})
				return n
			}},
		{"cairn SeaweedFS (s3+http, loopback)", append(cleanEnviron(), "CAIRN_REPO=s3+http://"+srv.Endpoint+"/"+bucket+"/cairn", "CAIRN_PASSWORD_FILE="+pw,
			"CAIRN_STATE_DIR="+filepath.Join(dir, "state"), "CAIRN_CACHE_DIR="+filepath.Join(dir, "cache"), "CAIRN_S3_CREDENTIALS="+creds),
			func() int64 { return bucketBytes("cairn") }},
	}
	for i, s := range stores {
		init := exec.Command(cairnBin, "init")
		init.Env = s.env
		if out, err := init.CombinedOutput(); err != nil {
			b.Fatalf("init %s: %v\n%s", s.name, err, out)
		}
		b.Run(fmt.Sprintf("store=%d", i), func(b *testing.B) {
			b.Run("first-backup", func(b *testing.B) { run(b, s.name, st.Bytes, s.env, cairnBin, "backup", "--node", "bench", src) })
			b.Run("unchanged-backup", func(b *testing.B) { run(b, s.name, st.Bytes, s.env, cairnBin, "backup", "--node", "bench", src) })
			dst := filepath.Join(dir, fmt.Sprintf("dst%d", i))
			b.Run("restore", func(b *testing.B) {
				run(b, s.name, st.Bytes, s.env, cairnBin, "restore", "latest:"+src, "--target", dst)
			})
			os.RemoveAll(dst)
			b.Run("check-read-data", func(b *testing.B) { run(b, s.name, s.stored(), s.env, cairnBin, "check", "--read-data") })
		})
	}

	if restic := os.Getenv("CAIRN_RESTIC"); restic != "" {
		env := append(cleanEnviron(), "RESTIC_PASSWORD=bench", "RESTIC_CACHE_DIR="+filepath.Join(dir, "restic-cache"),
			"AWS_ACCESS_KEY_ID="+srv.AccessKey, "AWS_SECRET_ACCESS_KEY="+srv.SecretKey)
		repo := "s3:http://" + srv.Endpoint + "/" + bucket + "/restic"
		version, _ := exec.Command(restic, "version").Output()
		who := strings.TrimSpace(string(version)) + ", s3 backend, same server"
		init := exec.Command(restic, "-r", repo, "init", "--repository-version", "2")
		init.Env = env
		if out, err := init.CombinedOutput(); err != nil {
			b.Fatalf("restic init: %v\n%s", err, out)
		}
		b.Run("restic", func(b *testing.B) {
			backup := []string{restic, "-r", repo, "--compression", "auto", "backup", src}
			b.Run("first-backup", func(b *testing.B) { run(b, who, st.Bytes, env, backup...) })
			b.Run("unchanged-backup", func(b *testing.B) { run(b, who, st.Bytes, env, backup...) })
			dst := filepath.Join(dir, "dst-restic")
			b.Run("restore", func(b *testing.B) {
				run(b, who, st.Bytes, env, restic, "-r", repo, "restore", "latest", "--target", dst)
			})
			os.RemoveAll(dst)
			b.Run("check-read-data", func(b *testing.B) {
				run(b, who, bucketBytes("restic"), env, restic, "-r", repo, "check", "--read-data")
			})
		})
	} else {
		b.Log("restic's rows skipped: CAIRN_RESTIC names no restic binary (make bench-s3 installs restic 0.19.1)")
	}

	var t bytes.Buffer
	fmt.Fprintf(&t, "datagen.Bench: %.2f GiB apparent, %d files; SeaweedFS weed mini on 127.0.0.1 (same disk, same cores)\n\n", float64(st.Bytes)/(1<<30), st.Files)
	fmt.Fprintf(&t, "| repository | first backup | unchanged backup | restore | check --read-data |\n| --- | --- | --- | --- | --- |\n")
	for _, who := range order {
		fmt.Fprintf(&t, "| %s |", who)
		for _, p := range results[who] {
			fmt.Fprintf(&t, " %.0f MB/s, %.0f MiB |", p.mbs, p.rss)
		}
		fmt.Fprintln(&t)
	}
	if local, s3 := results[stores[0].name], results[stores[1].name]; len(local) == 4 && len(s3) == 4 {
		fmt.Fprintf(&t, "\nobject store / directory: first backup %.0f %%, unchanged backup %.0f %%, restore %.0f %%, check %.0f %% (target for backup and restore: at least 60 %%)\n",
			100*s3[0].mbs/local[0].mbs, 100*s3[1].mbs/local[1].mbs, 100*s3[2].mbs/local[2].mbs, 100*s3[3].mbs/local[3].mbs)
	}
	fmt.Print("\n" + t.String())
}
