package index

import (
	"encoding/binary"
	"fmt"

	"github.com/cairnbackup/cairn/repo/blob"
	"github.com/dgraph-io/badger/v4"
)

// Size history ('h' prefix, disposable): key 'h', day (4, big-endian:
// days since 1970-01-01 UTC, so samples sort by day); value: one sample
// of the repository's size as the repository encodes it (fixed width).
// One key per day: a later sample of the same day replaces the earlier.
const prefixSample = 'h'

func sampleKey(day uint32) []byte {
	return binary.BigEndian.AppendUint32([]byte{prefixSample}, day)
}

// PutSample stores the sample of day, replacing one stored for that day,
// and removes samples of days before day-keep+1, so at most keep days
// are kept (keep <= 0: all).
func (x *Index) PutSample(day uint32, value []byte, keep int) error {
	return x.update("size sample", func(txn *badger.Txn) error {
		if err := txn.Set(sampleKey(day), value); err != nil {
			return err
		}
		if keep <= 0 || int64(day) < int64(keep) {
			return nil
		}
		first := day - uint32(keep) + 1
		opts := badger.DefaultIteratorOptions
		opts.PrefetchValues = false
		opts.Prefix = []byte{prefixSample}
		it := txn.NewIterator(opts)
		var old [][]byte
		for it.Rewind(); it.Valid(); it.Next() {
			k := it.Item().KeyCopy(nil)
			if len(k) != 5 || binary.BigEndian.Uint32(k[1:]) >= first {
				break
			}
			old = append(old, k)
		}
		it.Close()
		for _, k := range old {
			if err := txn.Delete(k); err != nil {
				return err
			}
		}
		return nil
	})
}

// Samples calls fn with every stored sample, oldest day first.
func (x *Index) Samples(fn func(day uint32, value []byte) error) error {
	if x == nil {
		return ErrNotOpen
	}
	return x.scanKeys(prefixSample, 5, func(k, v []byte) error {
		if len(k) != 5 {
			return fmt.Errorf("index: sample key of %d bytes: %w", len(k), blob.ErrCorrupt)
		}
		return fn(binary.BigEndian.Uint32(k[1:]), v)
	})
}
