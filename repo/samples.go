package repo

import (
	"encoding/binary"
	"fmt"
	"time"

	"github.com/cairnbackup/cairn/repo/blob"
)

// SizeSample is the repository's size at one moment, for the history
// the status page plots. The index keeps the last sample of each UTC day
// for [SizeSampleDays] days (the 'h' prefix: disposable, so a rebuilt
// index starts the history afresh).
type SizeSample struct {
	Time        time.Time
	StoredBytes uint64 // bytes of all packs
	Packs       uint64
	Bytes       uint64 // the files of all snapshots kept, before dedup and compression
	Snapshots   uint64
}

// SizeSampleDays is how many days of samples the index keeps.
const SizeSampleDays = 400

const sampleSize = 5 * 8

// PutSizeSample records s as its day's sample (replacing an earlier
// sample of that UTC day) and drops samples older than SizeSampleDays.
func (r *Repository) PutSizeSample(s SizeSample) error {
	day := s.Time.Unix() / 86400
	if day < 0 || day > 1<<32-1 {
		return fmt.Errorf("size sample: time %s out of range", s.Time.UTC().Format(time.RFC3339))
	}
	v := make([]byte, 0, sampleSize)
	for _, n := range []uint64{uint64(s.Time.UnixNano()), s.StoredBytes, s.Packs, s.Bytes, s.Snapshots} {
		v = binary.BigEndian.AppendUint64(v, n)
	}
	return r.idx.PutSample(uint32(day), v, SizeSampleDays)
}

// SizeSamples calls fn with every recorded sample, oldest first.
func (r *Repository) SizeSamples(fn func(SizeSample) error) error {
	return r.idx.Samples(func(_ uint32, v []byte) error {
		if len(v) != sampleSize {
			return fmt.Errorf("index: size sample of %d bytes: %w", len(v), blob.ErrCorrupt)
		}
		n := func(i int) uint64 { return binary.BigEndian.Uint64(v[8*i:]) }
		return fn(SizeSample{Time: time.Unix(0, int64(n(0))), StoredBytes: n(1), Packs: n(2), Bytes: n(3), Snapshots: n(4)})
	})
}
