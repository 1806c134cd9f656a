package index

import (
	"encoding/binary"
	"os"
	"path/filepath"
	"strconv"
	"strings"
	"testing"

	"github.com/cairnbackup/cairn/repo/blob"
)

func blobID(i int) blob.ID {
	var b [8]byte
	binary.BigEndian.PutUint64(b[:], uint64(i))
	return blob.Hash(b[:])
}

// procStatus returns a field of /proc/self/status in MiB (for example
// VmHWM, the peak RSS, or RssAnon, the anonymous part of the RSS now;
// the rest is file pages mapped by badger, which the kernel can reclaim).
func procStatus(field string) float64 {
	b, _ := os.ReadFile("/proc/self/status")
	for _, l := range strings.Split(string(b), "\n") {
		if rest, ok := strings.CutPrefix(l, field+":"); ok {
			kb, _ := strconv.ParseFloat(strings.TrimSuffix(strings.TrimSpace(rest), " kB"), 64)
			return kb / 1024
		}
	}
	return -1
}

// fill indexes n blobs in packs of 1000, the way backups add them.
func fill(tb testing.TB, x *Index, n int) {
	const perPack = 1000
	entries := make([]BlobEntry, 0, perPack)
	for p := 0; p*perPack < n; p++ {
		pack := blobID(-p - 1)
		entries = entries[:0]
		for i := p * perPack; i < min(n, (p+1)*perPack); i++ {
			entries = append(entries, BlobEntry{Handle: blob.Handle{ID: blobID(i), Type: blob.Data}, Loc: Location{Pack: pack, Offset: uint64(i), Length: 1000, RawLength: 1000, Type: blob.Data}})
		}
		if err := x.AddPack(pack, PackInfo{Size: 1 << 20, Blobs: len(entries)}, entries); err != nil {
			tb.Fatal(err)
		}
	}
}

// BenchmarkIndexAdd2M indexes two million blobs (about 2 TiB of data in
// 1 MiB chunks) and reports the process's peak RSS. Run it alone
// (-bench IndexAdd2M) for a meaningful RSS figure.
func BenchmarkIndexAdd2M(b *testing.B) {
	const n = 2_000_000
	for b.Loop() {
		x, err := Open(b.TempDir(), Options{EncryptionKey: testKey})
		if err != nil {
			b.Fatal(err)
		}
		fill(b, x, n)
		b.ReportMetric(procStatus("RssAnon"), "anon-RSS-MiB")
		if err := x.Close(); err != nil {
			b.Fatal(err)
		}
	}
	b.ReportMetric(float64(n)*float64(b.N)/b.Elapsed().Seconds(), "blobs/s")
	b.ReportMetric(procStatus("VmHWM"), "peak-RSS-MiB")
}

// BenchmarkIndexLookup measures random point lookups in an index of
// 200 000 blobs.
func BenchmarkIndexLookup(b *testing.B) {
	x, err := Open(b.TempDir(), Options{EncryptionKey: testKey})
	if err != nil {
		b.Fatal(err)
	}
	defer x.Close()
	const n = 200_000
	fill(b, x, n)
	i := 0
	for b.Loop() {
		if _, ok, err := x.Lookup(blob.Handle{ID: blobID(i * 7919 % n), Type: blob.Data}); err != nil || !ok {
			b.Fatal(ok, err)
		}
		i++
	}
}

// BenchmarkCloseAfterSmallWrite opens an index of 100 000 entries, adds
// one pack's 1000 and closes it, as a small or unchanged backup does.
// Each close flushes one level-0 table, and every other one makes a
// compaction of level 0 due, which the close does itself; before, it
// waited for badger's compactors, which start 0-1 s after an open.
func BenchmarkCloseAfterSmallWrite(b *testing.B) {
	dir := filepath.Join(b.TempDir(), "index")
	fillClosed(b, dir, 0, 100)
	n := 100
	for b.Loop() {
		fillClosed(b, dir, n, n+1)
		n++
	}
}
