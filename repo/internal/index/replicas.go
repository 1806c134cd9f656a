package index

import (
	"encoding/binary"
	"fmt"
	"time"

	"github.com/cairnbackup/cairn/repo/blob"
	"github.com/dgraph-io/badger/v4"
)

// Replica marks ('r' prefix, disposable): what replication remembers
// about the objects of one replica between runs. Key: 'r', replica name
// length (1), replica name, tag (1), kind length (1), kind, object name;
// value: unix nanoseconds (8). The tags are the repository's (an object
// found damaged on the replica, an object of the replica first seen
// missing on the primary). Losing them costs a damaged object's repair
// until the next verification finds it again, and restarts the delay of
// a deletion: nothing is deleted early.
const prefixReplica = 'r'

func replicaPrefix(replica string, tag byte) []byte {
	k := make([]byte, 0, 3+len(replica))
	k = append(k, prefixReplica, byte(len(replica)))
	k = append(k, replica...)
	return append(k, tag)
}

func replicaKey(replica string, tag byte, kind, name string) []byte {
	k := replicaPrefix(replica, tag)
	k = append(k, byte(len(kind)))
	k = append(k, kind...)
	return append(k, name...)
}

func checkReplicaKey(replica, kind, name string) error {
	if replica == "" || len(replica) > 255 || kind == "" || len(kind) > 255 || len(name) > 1024 {
		return fmt.Errorf("index: replica mark %q %q %q out of bounds", replica, kind, name)
	}
	return nil
}

// ReplicaMark is one object of a replica marked with a time.
type ReplicaMark struct {
	Kind, Name string
	Time       time.Time
}

// SetReplicaMarks records marks of replica under tag in one batch; a mark
// that exists is overwritten only when overwrite is set (a "first seen"
// time keeps its first value).
func (x *Index) SetReplicaMarks(replica string, tag byte, marks []ReplicaMark, overwrite bool) error {
	if x == nil {
		return ErrNotOpen
	}
	if err := x.room(); err != nil {
		return err
	}
	for _, m := range marks {
		if err := checkReplicaKey(replica, m.Kind, m.Name); err != nil {
			return err
		}
	}
	err := x.db.Update(func(txn *badger.Txn) error {
		for _, m := range marks {
			k := replicaKey(replica, tag, m.Kind, m.Name)
			if !overwrite {
				if _, err := txn.Get(k); err == nil {
					continue
				}
			}
			if err := txn.Set(k, binary.BigEndian.AppendUint64(nil, uint64(m.Time.UnixNano()))); err != nil {
				return err
			}
		}
		return nil
	})
	if err != nil {
		return fmt.Errorf("index: replica %s: record marks: %w", replica, err)
	}
	return nil
}

// DeleteReplicaMarks removes marks of replica under tag.
func (x *Index) DeleteReplicaMarks(replica string, tag byte, marks []ReplicaMark) error {
	if x == nil {
		return ErrNotOpen
	}
	if err := x.writable(); err != nil {
		return err
	}
	if len(marks) == 0 {
		return nil
	}
	wb := x.db.NewWriteBatch()
	defer wb.Cancel()
	for _, m := range marks {
		if err := checkReplicaKey(replica, m.Kind, m.Name); err != nil {
			return err
		}
		if err := wb.Delete(replicaKey(replica, tag, m.Kind, m.Name)); err != nil {
			return fmt.Errorf("index: replica %s: remove marks: %w", replica, err)
		}
	}
	if err := wb.Flush(); err != nil {
		return fmt.Errorf("index: replica %s: remove marks: %w", replica, err)
	}
	return nil
}

// ReplicaMarks calls fn with every mark of replica under tag.
func (x *Index) ReplicaMarks(replica string, tag byte, fn func(ReplicaMark) error) error {
	if x == nil {
		return ErrNotOpen
	}
	prefix := replicaPrefix(replica, tag)
	return x.scanPrefix(prefix, func(k, v []byte) error {
		k = k[len(prefix):]
		if len(k) < 1 || len(k) < 1+int(k[0]) {
			return fmt.Errorf("index: replica mark key: %w", blob.ErrCorrupt)
		}
		t, err := decodeTime("replica mark", v)
		if err != nil {
			return err
		}
		return fn(ReplicaMark{Kind: string(k[1 : 1+int(k[0])]), Name: string(k[1+int(k[0]):]), Time: t})
	})
}
