package wire_test

import (
	"fmt"
	"math/rand/v2"
	"path/filepath"
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
