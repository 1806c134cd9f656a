package prune_test

import (
	"encoding/binary"
	"os"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/cairnbackup/cairn/repo/blob"
	"github.com/cairnbackup/cairn/repo/prune"
	"github.com/cairnbackup/cairn/repo/repotest"
	"github.com/cairnbackup/cairn/repo/snapshot"
	"github.com/cairnbackup/cairn/repo/tree"
)

func procStatusMiB(field string) float64 {
	b, _ := os.ReadFile("/proc/self/status")
	for _, l := range strings.Split(string(b), "\n") {
		if rest, ok := strings.CutPrefix(l, field+":"); ok {
			kb, _ := strconv.ParseFloat(strings.TrimSuffix(strings.TrimSpace(rest), " kB"), 64)
			return kb / 1024
		}
	}
	return -1
}

// BenchmarkPrune200k prunes a repository of 200 000 blobs of which a
// snapshot uses half (in 200 directories of 500 files), so half the data
// must be dropped or repacked. It reports the peak RSS of the process.
func BenchmarkPrune200k(b *testing.B) {
	const n, perDir = 200_000, 500
	for b.Loop() {
		b.StopTimer()
		r := repotest.New(b)
		s := r.NewSession()
		var root tree.Tree
		var dir tree.Tree
		buf := make([]byte, 1024)
		for i := range n {
			binary.LittleEndian.PutUint64(buf, uint64(i))
			id, _, err := s.SaveBlob(b.Context(), blob.Data, buf)
			if err != nil {
				b.Fatal(err)
			}
			if i%2 == 0 { // every other blob is used
				dir.Nodes = append(dir.Nodes, tree.Node{Name: "f" + strconv.Itoa(100000000+i), Type: tree.File, Mode: 0o644,
					Size: 1024, FileHash: id, Content: []tree.Chunk{{ID: id, Size: 1024}}})
			}
			if len(dir.Nodes) == perDir || i == n-1 {
				enc, err := tree.Encode(nil, &dir)
				if err != nil {
					b.Fatal(err)
				}
				sub, _, err := s.SaveBlob(b.Context(), blob.Tree, enc)
				if err != nil {
					b.Fatal(err)
				}
				root.Nodes = append(root.Nodes, tree.Node{Name: "d" + strconv.Itoa(10000+len(root.Nodes)), Type: tree.Dir, Mode: 0o755, Subtree: sub})
				dir = tree.Tree{}
			}
		}
		enc, _ := tree.Encode(nil, &root)
		rootID, _, _ := s.SaveBlob(b.Context(), blob.Tree, enc)
		if _, err := s.Commit(b.Context(), &snapshot.Snapshot{Version: 1, Time: time.Now(), Node: "bench", Paths: []string{"/"}, Tree: rootID}); err != nil {
			b.Fatal(err)
		}
		b.StartTimer()
		rep, err := prune.Run(b.Context(), r, prune.Options{})
		if err != nil {
			b.Fatal(err)
		}
		b.ReportMetric(float64(rep.BlobsRepacked), "blobs-repacked")
	}
	b.ReportMetric(procStatusMiB("VmHWM"), "peak-RSS-MiB")
}
