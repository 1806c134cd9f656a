package storage

import (
	"bytes"
	"context"
	"fmt"
	"math/rand/v2"
	"testing"

	"golang.org/x/sync/errgroup"

	"github.com/cairnbackup/cairn/integration/s3test"
)

// The storage benchmarks compare the S3 backend, against SeaweedFS on
// loopback, with Local on the same disk, for pack-sized objects (16 MiB,
// the default pack size):
//
//	go test -run '^$' -bench 'Storage' -benchtime 20x ./repo/storage/
//	(one of the benchmarks make bench runs)
//
// Put stores one pack at a time, Put4 four at once; ReadPack reads a
// whole pack with one ReadAt; ReadBlob opens a pack, reads 1 MiB (the
// mean chunk) at a random offset and closes it, as LoadBlob does;
// ReadBlob4 does that from 4 goroutines.

const benchPackSize = 16 << 20

func benchBackends(b *testing.B) map[string]Backend {
	srv := s3test.Shared(b)
	s, err := NewS3(b.Context(), S3Location{Endpoint: srv.Endpoint, Bucket: srv.NewBucket(b), Prefix: "bench"},
		S3Credentials{AccessKeyID: srv.AccessKey, SecretAccessKey: srv.SecretKey}, S3Options{})
	if err != nil {
		b.Fatal(err)
	}
	l := NewLocal(b.TempDir())
	if err := l.Init(); err != nil {
		b.Fatal(err)
	}
	return map[string]Backend{"local": l, "s3": s}
}

func benchName(i int) string {
	return fmt.Sprintf("%064x", uint64(i)*0x9e3779b97f4a7c15)
}

func BenchmarkStoragePut(b *testing.B) {
	data := testData(1, benchPackSize)
	for _, name := range []string{"local", "s3"} {
		for _, parallel := range []int{1, 4} {
			b.Run(fmt.Sprintf("%s/%d", name, parallel), func(b *testing.B) {
				be := benchBackends(b)[name]
				b.SetBytes(int64(parallel * benchPackSize))
				i := 0
				for b.Loop() {
					var g errgroup.Group
					for range parallel {
						i++
						h := Handle{Kind: Packs, Name: benchName(i)}
						g.Go(func() error { return be.Put(context.Background(), h, bytes.NewReader(data)) })
					}
					if err := g.Wait(); err != nil {
						b.Fatal(err)
					}
				}
			})
		}
	}
}

func BenchmarkStorageRead(b *testing.B) {
	const packs = 8
	data := testData(1, benchPackSize)
	for _, name := range []string{"local", "s3"} {
		b.Run(name, func(b *testing.B) {
			be := benchBackends(b)[name]
			for i := range packs {
				if err := be.Put(b.Context(), Handle{Kind: Packs, Name: benchName(i)}, bytes.NewReader(data)); err != nil {
					b.Fatal(err)
				}
			}
			b.Run("ReadPack", func(b *testing.B) {
				buf := make([]byte, benchPackSize)
				b.SetBytes(benchPackSize)
				i := 0
				for b.Loop() {
					f, err := be.Open(b.Context(), Handle{Kind: Packs, Name: benchName(i % packs)})
					if err != nil {
						b.Fatal(err)
					}
					if _, err := f.ReadAt(buf, 0); err != nil {
						b.Fatal(err)
					}
					f.Close()
					i++
				}
			})
			b.Run("ReadBlob", func(b *testing.B) {
				buf := make([]byte, 1<<20)
				b.SetBytes(1 << 20)
				r := rand.New(rand.NewPCG(1, 2))
				for b.Loop() {
					f, err := be.Open(b.Context(), Handle{Kind: Packs, Name: benchName(r.IntN(packs))})
					if err != nil {
						b.Fatal(err)
					}
					if _, err := f.ReadAt(buf, r.Int64N(benchPackSize-1<<20)); err != nil {
						b.Fatal(err)
					}
					f.Close()
				}
			})
			b.Run("ReadBlob4", func(b *testing.B) {
				b.SetBytes(1 << 20)
				b.SetParallelism(2) // 4 readers on 2 cores
				b.RunParallel(func(pb *testing.PB) {
					buf := make([]byte, 1<<20)
					r := rand.New(rand.NewPCG(rand.Uint64(), 2))
					for pb.Next() {
						f, err := be.Open(context.Background(), Handle{Kind: Packs, Name: benchName(r.IntN(packs))})
						if err != nil {
							b.Error(err)
							return
						}
						if _, err := f.ReadAt(buf, r.Int64N(benchPackSize-1<<20)); err != nil {
							b.Error(err)
						}
						f.Close()
					}
				})
			})
		})
	}
}
