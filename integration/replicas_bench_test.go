package integration

import (
	"bytes"
	"context"
	"encoding/json"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"testing"
	"time"

	"golang.org/x/sync/errgroup"

	"github.com/cairnbackup/cairn/integration/s3test"
	"github.com/cairnbackup/cairn/repo/repotest/datagen"
	"github.com/cairnbackup/cairn/repo/storage"
)

// BenchmarkReplication (make bench-replicas) backs up the peers
// dataset (datagen.Homelab seed 1, the tree make bench-peers backs up:
// ~1.5 GiB of data; CAIRN_BENCH_SPEC=bench for datagen.Bench, small for
// a quick run) into a directory repository, then measures, against a
// SeaweedFS on loopback of its own (same disk, same two cores):
//
//   - store-put: the store's own upload rate for the same bytes: every
//     pack file of the repository put by storage.S3 from memory, four at
//     once (as BenchmarkStoragePut/s3/4), into a prefix of its own;
//   - replicate: cairn replicate of the whole repository to an empty
//     replica in the same bucket (MB/s of the bytes it sent, by its own
//     report, and by the wall clock of the command), and its share of
//     store-put (the target is at least 70 %);
//   - incremental: after datagen.Mutate (a day of use, seed 2 as in
//     bench-peers) and a second backup, cairn replicate again: the
//     bytes it sent beside the bytes the backup added to the repository
//     (new packs and the snapshot).
//
// Each cairn replicate reports its peak RSS too (bounded memory).
//
// Every phase runs once; the page cache is warm (the packs were just
// written).
func BenchmarkReplication(b *testing.B) {
	spec := datagen.Homelab
	switch os.Getenv("CAIRN_BENCH_SPEC") {
	case "bench":
		spec = datagen.Bench
	case "small":
		spec = datagen.Small
	}
	dir := b.TempDir()
	src := filepath.Join(dir, "src")
	gen, err := datagen.Generate(src, spec, 1)
	if err != nil {
		b.Fatal(err)
	}
	srv := s3test.Start(b)
	bucket := srv.NewBucket(b)
	repoDir := filepath.Join(dir, "repo")
	pw := filepath.Join(dir, "pw")
	os.WriteFile(pw, []byte("bench"), 0o600)
	creds := filepath.Join(dir, "s3.env")
	os.WriteFile(creds, []byte("AWS_ACCESS_KEY_ID="+srv.AccessKey+"\nAWS_SECRET_ACCESS_KEY="+srv.SecretKey+"\n"), 0o600)
	env := append(cleanEnviron(), "CAIRN_REPO="+repoDir, "CAIRN_PASSWORD_FILE="+pw)
	var mem rss // of the last command
	cairn := func(args ...string) (string, time.Duration) {
		cmd := exec.Command(cairnBin, args...)
		cmd.Env = env
		var out, errb bytes.Buffer
		cmd.Stdout, cmd.Stderr = &out, &errb
		start := time.Now()
		m, err := runPeakRSS(cmd)
		if err != nil {
			b.Fatalf("cairn %v: %v\n%s\n%s", args, err, out.String(), errb.String())
		}
		mem = m
		return out.String(), time.Since(start)
	}
	packBytes := func() (map[string]int64, int64) {
		sizes := map[string]int64{}
		var total int64
		filepath.Walk(filepath.Join(repoDir, "packs"), func(p string, fi os.FileInfo, err error) error {
			if err == nil && fi.Mode().IsRegular() {
				sizes[p] = fi.Size()
				total += fi.Size()
			}
			return nil
		})
		return sizes, total
	}
	cairn("init")
	os.WriteFile(repoDir+".yaml", []byte(fmt.Sprintf("replicas:\n  offsite:\n    to: s3+http://%s/%s/offsite\n    s3_credentials: %s\n    cache_dir: %s\n",
		srv.Endpoint, bucket, creds, filepath.Join(dir, "replica-cache"))), 0o600)
	cairn("backup", "--node", "bench", src)
	packs, stored := packBytes()

	var storeMBs float64
	b.Run("store-put", func(b *testing.B) {
		be, err := storage.NewS3(context.Background(), storage.S3Location{Endpoint: srv.Endpoint, Bucket: bucket, Prefix: "store-put"},
			storage.S3Credentials{AccessKeyID: srv.AccessKey, SecretAccessKey: srv.SecretKey}, storage.S3Options{})
		if err != nil {
			b.Fatal(err)
		}
		var g errgroup.Group
		g.SetLimit(4)
		start := time.Now()
		for p := range packs {
			g.Go(func() error {
				data, err := os.ReadFile(p)
				if err != nil {
					return err
				}
				return be.Put(context.Background(), storage.Handle{Kind: storage.Packs, Name: filepath.Base(p)}, bytes.NewReader(data))
			})
		}
		if err := g.Wait(); err != nil {
			b.Fatal(err)
		}
		el := time.Since(start)
		storeMBs = float64(stored) / el.Seconds() / 1e6
		b.ReportMetric(storeMBs, "MB/s")
		b.ReportMetric(el.Seconds(), "s")
		b.Logf("tree: %d files, %.1f MiB; repository: %d packs, %.1f MiB; the store took them at %.1f MB/s", gen.Files, float64(gen.Bytes)/(1<<20), len(packs), float64(stored)/(1<<20), storeMBs)
	})

	replicate := func(b *testing.B) (sent int64, mbs, wallMBs float64) {
		out, el := cairn("replicate", "--json")
		var reps []struct {
			Status string `json:"status"`
			Report struct {
				Bytes       int64   `json:"bytes_copied"`
				Objects     int     `json:"objects_copied"`
				MBPerSecond float64 `json:"mb_per_second"`
				Lag         int64   `json:"lag_bytes"`
			} `json:"report"`
		}
		if err := json.Unmarshal([]byte(out), &reps); err != nil || len(reps) != 1 || reps[0].Status != "ok" || reps[0].Report.Lag != 0 {
			b.Fatalf("replicate: %v %s", err, out)
		}
		r := reps[0].Report
		b.ReportMetric(r.MBPerSecond, "MB/s")
		b.ReportMetric(float64(r.Bytes)/el.Seconds()/1e6, "wall-MB/s")
		b.ReportMetric(float64(r.Bytes)/(1<<20), "MiB-sent")
		b.ReportMetric(float64(r.Objects), "objects")
		b.ReportMetric(mem.peak, "peak-RSS-MiB")
		b.ReportMetric(mem.anon, "anon-RSS-MiB")
		return r.Bytes, r.MBPerSecond, float64(r.Bytes) / el.Seconds() / 1e6
	}
	b.Run("replicate", func(b *testing.B) {
		sent, mbs, wall := replicate(b)
		if sent < stored {
			b.Fatalf("sent %d bytes for %d bytes of packs", sent, stored)
		}
		b.ReportMetric(mbs/storeMBs, "of-store-put")
		b.ReportMetric(wall/storeMBs, "wall-of-store-put")
		b.Logf("replicate: %.1f MB/s (%.1f MB/s by the wall clock), %.0f %% (%.0f %% by the wall clock) of the store's own %.1f MB/s (target: at least 70 %%); peak RSS %.0f MiB",
			mbs, wall, 100*mbs/storeMBs, 100*wall/storeMBs, storeMBs, mem.peak)
	})

	if _, err := datagen.Mutate(src, 2); err != nil {
		b.Fatal(err)
	}
	before := packs
	cairn("backup", "--node", "bench", src)
	after, _ := packBytes()
	var added int64
	for p, size := range after {
		if _, ok := before[p]; !ok {
			added += size
		}
	}
	snapFiles, _ := filepath.Glob(filepath.Join(repoDir, "snapshots", "*"))
	b.Run("incremental", func(b *testing.B) {
		sent, _, _ := replicate(b)
		b.ReportMetric(float64(added)/(1<<20), "MiB-added")
		b.ReportMetric(float64(sent)/float64(added), "sent/added")
		b.Logf("incremental: sent %d bytes for %d bytes of new packs (and the new snapshot record; %d snapshots)", sent, added, len(snapFiles))
		if sent < added || sent > added+1<<20 {
			b.Errorf("sent %d bytes for %d bytes added", sent, added)
		}
	})
}
