package wire_test

import (
	"fmt"
	"math/rand/v2"
	"net"
	"path/filepath"
	"strings"
	"sync/atomic"
	"testing"

	"github.com/cairnbackup/cairn/repo/repotest"
	"github.com/cairnbackup/cairn/repo/restore"
	"github.com/cairnbackup/cairn/repo/wire"
)

// BenchmarkClientRestore measures restore --from without SSH: a restore
// through the client from a session served over a net.Pipe, of 2000
// small files and a 32 MiB incompressible one (pipelined LoadBlob
// requests, the appliance loading and sending blobs, the client hashing
// and writing them). MB/s is of the files' bytes.
func BenchmarkClientRestore(b *testing.B) {
	r := repotest.New(b)
	files := map[string]string{}
	size := int64(0)
	for i := range 2000 {
		data := fmt.Sprintf("small file %d\n", i)
		files[fmt.Sprintf("d%d/f%04d", i%10, i)] = data
		size += int64(len(data))
	}
	big := make([]byte, 32<<20)
	rand.NewChaCha8([32]byte{2}).Read(big)
	files["big"] = string(big)
	size += int64(len(big))
	sn := pushDirect(b, r, "lyra", files)
	src := sn.Paths[0]
	b.SetBytes(size)
	n := 0
	for b.Loop() {
		b.StopTimer()
		s := serve(b, r, config(wire.PermRead))
		c, err := wire.Dial(b.Context(), s.conn, "cairn bench", "lyra")
		if err != nil {
			b.Fatal(err)
		}
		if _, err := c.ListSnapshots(b.Context(), ""); err != nil {
			b.Fatal(err)
		}
		n++
		target := filepath.Join(b.TempDir(), fmt.Sprintf("target%d", n))
		b.StartTimer()
		if _, err := restore.Run(b.Context(), c, sn.Tree, src, target, restore.Options{}); err != nil {
			b.Fatal(err)
		}
		b.StopTimer()
		c.Close()
		b.StartTimer()
	}
}

// BenchmarkClientRestoreMixed is BenchmarkClientRestore with data that
// compresses, as a node's usually does: 2000 small text files, a 24 MiB
// SQL-like dump (zstd shrinks it several times) and an 8 MiB
// incompressible file. It reports, beside MB/s of the files' bytes, the
// bytes the server wrote to the stream per byte restored (wire/byte):
// what SSH would encrypt, and the client decrypt.
func BenchmarkClientRestoreMixed(b *testing.B) {
	r := repotest.New(b)
	files := map[string]string{}
	size := int64(0)
	rng := rand.New(rand.NewPCG(1, 2))
	for i := range 2000 {
		var sb strings.Builder
		for j := range 20 + rng.IntN(200) {
			fmt.Fprintf(&sb, "func f%d_%d(x int) int { return x * %d }\n", i, j, rng.IntN(1000))
		}
		files[fmt.Sprintf("d%d/f%04d.go", i%10, i)] = sb.String()
		size += int64(sb.Len())
	}
	var dump strings.Builder
	for i := 0; dump.Len() < 24<<20; i++ {
		fmt.Fprintf(&dump, "INSERT INTO users VALUES (%d, 'user%d', 'user%d@example.org', %d);\n", i, rng.IntN(100000), rng.IntN(100000), rng.IntN(1<<30))
	}
	files["db/dump.sql"] = dump.String()
	size += int64(dump.Len())
	big := make([]byte, 8<<20)
	rand.NewChaCha8([32]byte{3}).Read(big)
	files["media/big"] = string(big)
	size += int64(len(big))
	sn := pushDirect(b, r, "lyra", files)
	src := sn.Paths[0]
	b.SetBytes(size)
	var wrote atomic.Int64
	n := 0
	for b.Loop() {
		b.StopTimer()
		s := serve(b, r, config(wire.PermRead))
		c, err := wire.Dial(b.Context(), writeCounter{s.conn, &wrote}, "cairn bench", "lyra")
		if err != nil {
			b.Fatal(err)
		}
		if _, err := c.ListSnapshots(b.Context(), ""); err != nil {
			b.Fatal(err)
		}
		n++
		target := filepath.Join(b.TempDir(), fmt.Sprintf("target%d", n))
		wrote.Store(0)
		b.StartTimer()
		if _, err := restore.Run(b.Context(), c, sn.Tree, src, target, restore.Options{}); err != nil {
			b.Fatal(err)
		}
		b.StopTimer()
		b.ReportMetric(float64(wrote.Load())/float64(size), "wire/byte")
		c.Close()
		b.StartTimer()
	}
}

// writeCounter counts the bytes the client reads from the stream: what
// the server wrote.
type writeCounter struct {
	net.Conn
	n *atomic.Int64
}

func (w writeCounter) Read(p []byte) (int, error) {
	n, err := w.Conn.Read(p)
	w.n.Add(int64(n))
	return n, err
}
