package index

import (
	"bytes"
	"encoding/binary"
	"fmt"
	"slices"
	"time"

	"github.com/cairnbackup/cairn/repo/blob"
	"github.com/dgraph-io/badger/v4"
)

// Drill reports (derivable: drills/, noted when a report is written and
// filled from drills/ once by an index that has not got them, such as a
// rebuilt one or one of an older version):
//
//	'd' snapshot ID (32), kind (1)     → a note (below): kind 'n' the snapshot's newest report, 'p' its newest report that passed
//	'g' len (2), group, finish (8), ID → a note: the newest DrillsKept reports of each group (the repository's replica/node/plan)
//	'D'                                → 1: every report in drills/ was noted
//
// A note is: unix nanoseconds when the drill finished (8), the report ID
// (32), 1 if it passed (1), the group's length (2) and the group, and
// what the repository keeps of the report. "Newest" is the latest
// finish, and of reports that finished at the same instant the smallest
// ID.
const (
	prefixDrill       = 'd'
	prefixDrillGroup  = 'g'
	prefixDrillsNoted = 'D'
)

// DrillNote is what the index keeps of one drill report.
type DrillNote struct {
	Report   blob.ID
	Snapshot blob.ID
	Group    string // at most 65535 bytes
	Finished time.Time
	OK       bool
	Mark     bool   // the report counts for its snapshot's 'd' notes
	Value    []byte // the repository's summary of the report
}

// newer reports whether a is newer than b.
func (a DrillNote) newer(b DrillNote) bool {
	if c := a.Finished.Compare(b.Finished); c != 0 {
		return c > 0
	}
	return bytes.Compare(a.Report[:], b.Report[:]) < 0
}

func (n DrillNote) encode() []byte {
	b := make([]byte, 0, 8+32+1+2+len(n.Group)+len(n.Value))
	b = binary.BigEndian.AppendUint64(b, uint64(n.Finished.UnixNano()))
	b = append(b, n.Report[:]...)
	ok := byte(0)
	if n.OK {
		ok = 1
	}
	b = append(b, ok)
	b = binary.BigEndian.AppendUint16(b, uint16(len(n.Group)))
	b = append(b, n.Group...)
	return append(b, n.Value...)
}

func decodeDrillNote(snap blob.ID, b []byte) (DrillNote, error) {
	if len(b) < 43 || len(b) < 43+int(binary.BigEndian.Uint16(b[41:])) {
		return DrillNote{}, fmt.Errorf("index: drill note of %d bytes: %w", len(b), blob.ErrCorrupt)
	}
	glen := int(binary.BigEndian.Uint16(b[41:]))
	return DrillNote{
		Finished: time.Unix(0, int64(binary.BigEndian.Uint64(b))),
		Report:   blob.ID(b[8:40]),
		OK:       b[40] == 1,
		Snapshot: snap,
		Group:    string(b[43 : 43+glen]),
		Value:    bytes.Clone(b[43+glen:]),
	}, nil
}

func drillKey(snap blob.ID, kind byte) []byte {
	return append(key(prefixDrill, snap), kind)
}

func drillGroupPrefix(group string) []byte {
	k := binary.BigEndian.AppendUint16([]byte{prefixDrillGroup}, uint16(len(group)))
	return append(k, group...)
}

func drillGroupKey(n DrillNote) []byte {
	k := binary.BigEndian.AppendUint64(drillGroupPrefix(n.Group), uint64(n.Finished.UnixNano()))
	return append(k, n.Report[:]...)
}

// drillBatch bounds the notes written in one transaction.
const drillBatch = 256

// AddDrills notes reports: each becomes its snapshot's newest (and, if
// it passed, newest passed) note unless a newer one is there, and joins
// its group, of which the newest keep (> 0) are kept. With complete, the
// index records that every report is noted. Noting a report twice
// changes nothing.
func (x *Index) AddDrills(notes []DrillNote, keep int, complete bool) error {
	if x == nil {
		return ErrNotOpen
	}
	if err := x.room(); err != nil {
		return err
	}
	for _, n := range notes {
		if len(n.Group) > 0xffff {
			return fmt.Errorf("index: drill report %s: group of %d bytes", n.Report.Short(), len(n.Group))
		}
	}
	// Of the notes given, only each snapshot's newest (and newest that
	// passed) and each group's newest keep can stay: only those are
	// written, so noting every report of drills/ at once leaves no
	// versions behind that badger must skip until it compacts them.
	sorted := slices.Clone(notes)
	slices.SortFunc(sorted, func(a, b DrillNote) int {
		if a.newer(b) {
			return -1
		}
		if b.newer(a) {
			return 1
		}
		return 0
	})
	type write struct {
		key   []byte
		n     DrillNote
		group bool // a group's note; else a snapshot's, set unless a newer one is there
	}
	var writes []write
	mine, inGroup := map[string]bool{}, map[string]int{}
	for _, n := range sorted {
		if n.Mark {
			for _, kind := range []byte{'n', 'p'} {
				k := drillKey(n.Snapshot, kind)
				if (kind == 'n' || n.OK) && !mine[string(k)] {
					mine[string(k)] = true
					writes = append(writes, write{key: k, n: n})
				}
			}
		}
		if inGroup[n.Group] < keep {
			inGroup[n.Group]++
			writes = append(writes, write{key: drillGroupKey(n), n: n, group: true})
		}
	}
	x.drills.Lock()
	defer x.drills.Unlock()
	for len(writes) > 0 || complete {
		batch := writes[:min(len(writes), drillBatch)]
		writes = writes[len(batch):]
		last := len(writes) == 0
		err := x.db.Update(func(txn *badger.Txn) error {
			groups := map[string]bool{}
			for _, w := range batch {
				if !w.group {
					if err := setNewer(txn, w.key, w.n); err != nil {
						return err
					}
					continue
				}
				if err := txn.Set(w.key, w.n.encode()); err != nil {
					return err
				}
				groups[w.n.Group] = true
			}
			for g := range groups {
				if err := keepNewest(txn, drillGroupPrefix(g), keep); err != nil {
					return err
				}
			}
			if last && complete {
				return txn.Set([]byte{prefixDrillsNoted}, []byte{1})
			}
			return nil
		})
		if err != nil {
			return fmt.Errorf("index: drill reports: %w", err)
		}
		if last {
			break
		}
	}
	return nil
}

// setNewer sets k to n unless k holds a newer note.
func setNewer(txn *badger.Txn, k []byte, n DrillNote) error {
	item, err := txn.Get(k)
	switch {
	case err == badger.ErrKeyNotFound:
	case err != nil:
		return err
	default:
		v, err := item.ValueCopy(nil)
		if err != nil {
			return err
		}
		cur, err := decodeDrillNote(n.Snapshot, v)
		if err != nil {
			return err
		}
		if !n.newer(cur) {
			return nil
		}
	}
	return txn.Set(k, n.encode())
}

// keepNewest deletes all but the last keep keys under prefix (in key
// order: the newest, for keys that end in a big-endian time), within txn.
func keepNewest(txn *badger.Txn, prefix []byte, keep int) error {
	opts := badger.DefaultIteratorOptions
	opts.PrefetchValues = false
	opts.Reverse = true
	opts.Prefix = prefix
	it := txn.NewIterator(opts)
	var old [][]byte
	i := 0
	for it.Seek(append(bytes.Clone(opts.Prefix), 0xff)); it.Valid(); it.Next() {
		if i++; i > keep {
			old = append(old, it.Item().KeyCopy(nil))
		}
	}
	it.Close()
	for _, k := range old {
		if err := txn.Delete(k); err != nil {
			return err
		}
	}
	return nil
}

// DrillsNoted reports whether every report in drills/ was noted.
func (x *Index) DrillsNoted() (bool, error) {
	if x == nil {
		return false, ErrNotOpen
	}
	noted := false
	err := x.view(func(txn *badger.Txn) error {
		_, err := txn.Get([]byte{prefixDrillsNoted})
		if err == badger.ErrKeyNotFound {
			return nil
		}
		noted = err == nil
		return err
	})
	return noted, err
}

// SnapshotDrills calls fn with each drilled snapshot's newest note and,
// if one passed, its newest note that passed.
func (x *Index) SnapshotDrills(fn func(newest DrillNote, passed *DrillNote) error) error {
	if x == nil {
		return ErrNotOpen
	}
	var cur *DrillNote // the newest note of the snapshot under the iterator
	err := x.scanKeys(prefixDrill, 1+blob.IDSize+1, func(k, v []byte) error {
		n, err := decodeDrillNote(blob.ID(k[1:33]), v)
		if err != nil {
			return err
		}
		switch k[33] {
		case 'n':
			if cur != nil {
				if err := fn(*cur, nil); err != nil {
					return err
				}
			}
			cur = &n
		case 'p':
			if cur == nil || cur.Snapshot != n.Snapshot {
				return fmt.Errorf("index: drill note of snapshot %s passed without a newest: %w", n.Snapshot.Short(), blob.ErrCorrupt)
			}
			err := fn(*cur, &n)
			cur = nil
			return err
		default:
			return fmt.Errorf("index: drill note kind %q: %w", k[33], blob.ErrCorrupt)
		}
		return nil
	})
	if err == nil && cur != nil {
		err = fn(*cur, nil)
	}
	return err
}

// RecentDrills calls fn with the notes of every group (its newest
// ones, as AddDrills keeps them), a group at a time, oldest first
// within a group.
func (x *Index) RecentDrills(fn func(DrillNote) error) error {
	if x == nil {
		return ErrNotOpen
	}
	return x.scanPrefix([]byte{prefixDrillGroup}, func(_, v []byte) error {
		n, err := decodeDrillNote(blob.ID{}, v)
		if err != nil {
			return err
		}
		return fn(n)
	})
}
