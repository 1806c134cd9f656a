// Package index is the repository's badger database: a cache that maps
// blob IDs to their place in a pack and lists packs and snapshots, plus
// disposable bookkeeping such as when each pack was last verified.
// Nothing outside repo/ sees badger.
//
// # Schema
//
// Every key starts with a one-byte prefix; values are fixed-width and
// big-endian. The database is opened with an external magic number
// ([SchemaVersion]) so a build with another schema refuses to open it
// rather than misreading it. Every prefix is either derivable (rebuilt
// from packs and snapshot files by the repository's RebuildIndex) or
// disposable (losing it loses nothing that a backup depends on):
//
//	'b' type (1) blob ID (32) → pack ID (32), offset (8), envelope length (4), plaintext length (4), type (1)   derivable: pack headers
//	'p' pack ID (32)          → size (8), blob count (4), unix ns when written (8)                              derivable: packs/ (time: when indexed)
//	's' snapshot ID (32)      → the snapshot record's plaintext encoding                                        derivable: snapshots/
//	'v' pack ID (32)          → unix nanoseconds of the last successful read-and-verify (8)                     disposable
//	'l' pack ID (32)          → unix nanoseconds when the pack was found missing (8)                            disposable
//	'f' snapshot ID (32)      → unix nanoseconds when forgetting the snapshot began (8)                         disposable
//	'j' len, job, start (8)   → one scheduled job run, as the scheduler encodes it                              disposable
//	'h' day (4)               → the repository's size that day (its last sample), as the repository encodes it  disposable
//	'r' replica, tag, object  → unix nanoseconds: an object of a replica found damaged, or first seen missing on this repository  disposable
//	'd', 'g', 'D'             → the newest drill reports of each snapshot and of each group (drills.go)                          derivable: drills/
//
// Blobs are keyed by type and ID: a data chunk and a tree with the same
// bytes are two blobs. A pack's 'p' key is written only after all of its
// 'b' keys, so a pack with a 'p' key is completely indexed; the repository
// reconciles packs/ against 'p' keys at open and indexes what is missing.
// A blob stored in several packs keeps the location it was first indexed
// with.
//
// A pack does not record when it was written: its 'p' time is set by the
// session that wrote it, and for a pack indexed from its header (reconcile
// at open, a rebuild) it is the time of indexing, so a rebuilt index
// counts every pack as new, which only makes prune keep packs longer.
//
// # Memory
//
// Options are tuned for a 2 GiB box (see [Options]): two 8 MiB memtables,
// a 16 MiB block cache and a 16 MiB index cache. A writer's Close waits for the
// compactions its writes made due (closeSettled), so that they are not
// left to the next process that opens the index for writing. The database is
// encrypted by badger with a key derived from the repository key, because
// it holds blob IDs (plaintext hashes).
//
// # Read-only opens
//
// An index opened with [Options.ReadOnly] changes no file of the
// directory: badger maps the tables and replays the memtable logs into
// memory, runs no compaction and flushes nothing, and every write method
// returns an error wrapping [ErrReadOnly]. So a process that only reads
// never pays for badger's compactions, which is what the writer that
// made the tables (the appliance, a backup, a prune) does. A directory
// that cannot be opened without writing (none yet, a memtable log that
// a killed writer left to truncate, a table to set aside) fails such an
// open with an error wrapping [ErrNeedsWriter].
//
// # Concurrency
//
// An Index is safe for concurrent use by many goroutines of one process.
// badger itself refuses a second process, even a read-only one beside a
// writer (its directory lock is shared only between read-only opens).
package index

import (
	"bytes"
	"encoding/binary"
	"errors"
	"fmt"
	"log/slog"
	"os"
	"path/filepath"
	"strings"
	"sync"
	"time"

	"github.com/cairnbackup/cairn/repo/blob"
	"github.com/cairnbackup/cairn/repo/internal/crashpoint"
	"github.com/dgraph-io/badger/v4"
	"github.com/dgraph-io/badger/v4/options"
	"golang.org/x/sys/unix"
)

// SchemaVersion is the badger external magic of this schema.
const SchemaVersion uint16 = 0xCA03

// Key prefixes.
const (
	prefixBlob     = 'b'
	prefixPack     = 'p'
	prefixSnapshot = 's'
	prefixVerified = 'v'
	prefixLost     = 'l'
	prefixForget   = 'f'
)

// ErrNotOpen is returned by every method of a nil *Index: the repository
// was opened without its index (to rebuild it), or reopening it failed.
var ErrNotOpen = errors.New("index: not open (run cairn repair index if it is damaged)")

// ErrReadOnly is wrapped by every write to an index opened read-only.
var ErrReadOnly = errors.New("the index is open read-only")

// ErrNeedsWriter is wrapped by a read-only Open of a directory that
// cannot be read without writing to it first.
var ErrNeedsWriter = errors.New("the index needs a read-write open first")

// Location says where a blob is stored.
type Location struct {
	Pack      blob.ID
	Offset    uint64
	Length    uint32
	RawLength uint32
	Type      blob.Type
}

const locationSize = blob.IDSize + 8 + 4 + 4 + 1

func (l Location) encode() []byte {
	b := make([]byte, 0, locationSize)
	b = append(b, l.Pack[:]...)
	b = binary.BigEndian.AppendUint64(b, l.Offset)
	b = binary.BigEndian.AppendUint32(b, l.Length)
	b = binary.BigEndian.AppendUint32(b, l.RawLength)
	return append(b, byte(l.Type))
}

func decodeLocation(b []byte) (Location, error) {
	if len(b) != locationSize {
		return Location{}, fmt.Errorf("index: blob location of %d bytes, want %d: %w", len(b), locationSize, blob.ErrCorrupt)
	}
	return Location{
		Pack:      blob.ID(b[:32]),
		Offset:    binary.BigEndian.Uint64(b[32:]),
		Length:    binary.BigEndian.Uint32(b[40:]),
		RawLength: binary.BigEndian.Uint32(b[44:]),
		Type:      blob.Type(b[48]),
	}, nil
}

// PackInfo is what the index records about a pack.
type PackInfo struct {
	Size    int64
	Blobs   int
	Created time.Time // when the pack was written (for a rebuilt index: when it was indexed)
}

// BlobEntry is one blob of a pack being added.
type BlobEntry struct {
	blob.Handle
	Loc Location
}

// Options configures Open.
type Options struct {
	// EncryptionKey (32 bytes) encrypts the database at rest.
	EncryptionKey []byte
	// Logger receives badger's warnings and errors; nil discards them.
	Logger *slog.Logger
	// MinFree, if not zero, is the free space the index's file system
	// must have for a write to be tried: badger writes through memory
	// maps, and a mapped page the file system has no room for kills the
	// process (SIGBUS) instead of failing the write. Below it, writes
	// fail with an error wrapping ENOSPC.
	MinFree int64
	// ReadOnly opens the database without writing to its directory
	// (see the package documentation).
	ReadOnly bool
}

// Index is the open database.
type Index struct {
	db      *badger.DB
	dir     string
	dirID   dirID // dir as it was opened
	minFree int64
	opts    Options // as opened (closeSettled reopens)
	ro      bool
	closing chan error // receives db.Close's result (an abandoned close's too)
	drills  sync.Mutex // serialises AddDrills: each reads what it replaces
}

// dirID tells a directory from another of the same name.
type dirID struct{ dev, ino uint64 }

func statDir(dir string) (dirID, error) {
	var st unix.Stat_t
	if err := unix.Stat(dir, &st); err != nil {
		return dirID{}, err
	}
	return dirID{uint64(st.Dev), st.Ino}, nil
}

// closeTimeout bounds Close: settling (at most settleTimeout), flushing
// two 8 MiB memtables and stopping the compactors take seconds, but
// badger retries a flush that fails
// (a directory it cannot write) once a second for ever.
var closeTimeout = time.Minute

func badgerOptions(dir string, o Options) badger.Options {
	opts := badger.DefaultOptions(dir).
		WithExternalMagic(SchemaVersion).
		WithMemTableSize(8 << 20).
		WithNumMemtables(2).
		WithNumLevelZeroTables(2).
		WithNumLevelZeroTablesStall(8).
		WithBlockCacheSize(16 << 20).
		WithIndexCacheSize(16 << 20).
		WithValueLogFileSize(64 << 20).
		WithNumCompactors(2).
		WithCompression(options.None).
		WithChecksumVerificationMode(options.OnBlockRead).
		WithDetectConflicts(false).
		WithMetricsEnabled(false).
		WithLogger(logAdapter{o.Logger})
	if o.ReadOnly {
		// No memtable of its own, no compactor, no flush: the caches
		// are all it allocates beyond the logs it replays.
		opts = opts.WithReadOnly(true).WithNumCompactors(0).WithCompactL0OnClose(false)
	}
	if len(o.EncryptionKey) > 0 {
		opts = opts.WithEncryptionKey(o.EncryptionKey).WithEncryptionKeyRotationDuration(100 * 365 * 24 * time.Hour)
	}
	return opts
}

// Open opens or creates the index in dir. With o.ReadOnly it opens an
// existing index without writing to it, or fails with an error wrapping
// [ErrNeedsWriter] when it cannot.
func Open(dir string, o Options) (*Index, error) {
	if o.ReadOnly {
		return openReadOnly(dir, o)
	}
	damaged, checkErr := checkTables(dir)
	// A table that fails the check is set aside while badger opens. A
	// process killed while badger wrote a table (a flush or a
	// compaction) leaves it short or empty and not yet in the MANIFEST;
	// badger opens without it and it is removed. A table the MANIFEST
	// names is missing to badger, which refuses to open: then it goes
	// back and the damage is reported.
	for _, p := range damaged {
		if err := os.Rename(p, p+quarantine); err != nil {
			return nil, fmt.Errorf("index: open %s: %w", dir, checkErr)
		}
	}
	db, err := badger.Open(badgerOptions(dir, o))
	if len(damaged) > 0 {
		if err != nil {
			for _, p := range damaged {
				os.Rename(p+quarantine, p)
			}
			return nil, fmt.Errorf("index: open %s: %w", dir, checkErr)
		}
		for _, p := range damaged {
			os.Remove(p + quarantine)
		}
		if o.Logger != nil {
			o.Logger.Warn("index: removed table files an interrupted write left behind", "dir", dir, "tables", len(damaged), "why", checkErr)
		}
	}
	if err != nil {
		return nil, fmt.Errorf("index: open %s: %w", dir, err)
	}
	id, err := statDir(dir)
	if err != nil {
		db.Close()
		return nil, fmt.Errorf("index: open %s: %w", dir, err)
	}
	return &Index{db: db, dir: dir, dirID: id, minFree: o.MinFree, opts: o}, nil
}

func openReadOnly(dir string, o Options) (*Index, error) {
	if _, err := os.Stat(filepath.Join(dir, badger.ManifestFilename)); err != nil {
		return nil, fmt.Errorf("index: open %s read-only: %w: %w", dir, err, ErrNeedsWriter)
	}
	if _, err := checkTables(dir); err != nil {
		return nil, fmt.Errorf("index: open %s read-only: %w: %w", dir, err, ErrNeedsWriter)
	}
	id, err := statDir(dir)
	if err != nil {
		return nil, fmt.Errorf("index: open %s read-only: %w", dir, err)
	}
	db, err := badger.Open(badgerOptions(dir, o))
	if err != nil {
		// Mostly a memory table log a killed writer left to truncate
		// (badger.ErrTruncateNeeded, which badger wraps as text). A
		// read-write open repairs what can be repaired, and reports
		// what cannot as every open did before.
		return nil, fmt.Errorf("index: open %s read-only: %w: %w", dir, err, ErrNeedsWriter)
	}
	return &Index{db: db, dir: dir, dirID: id, ro: true}, nil
}

// OpenMemory opens an empty index that lives in memory only (a
// read-only process keeps there what it would have noted in the index
// on disk). Close discards it.
func OpenMemory() (*Index, error) {
	opts := badger.DefaultOptions("").
		WithInMemory(true).
		WithMemTableSize(8 << 20). // as on disk: the same batches fit
		WithNumMemtables(2).
		WithCompression(options.None).
		WithBlockCacheSize(0).
		WithIndexCacheSize(0).
		WithNumCompactors(2).
		WithDetectConflicts(false).
		WithMetricsEnabled(false).
		WithLogger(logAdapter{})
	db, err := badger.Open(opts)
	if err != nil {
		return nil, fmt.Errorf("index: open in memory: %w", err)
	}
	return &Index{db: db}, nil
}

// ReadOnly reports whether x was opened read-only.
func (x *Index) ReadOnly() bool { return x != nil && x.ro }

// quarantine is appended to the name of a table that fails checkTable
// while badger opens without it.
const quarantine = ".damaged"

// checkTables refuses table files whose trailer badger would read out
// of bounds or that have no index: it reads the trailer (from the end: checksum length, the
// checksum, index length, the index) in a goroutine of its own and
// panics on such a file, which ends the process and makes even cairn
// repair index unusable. A trailer that is in bounds but damaged fails
// badger's checksum of the index, which it reports as an error.
// It returns the tables that fail and an error naming them.
func checkTables(dir string) ([]string, error) {
	paths, err := filepath.Glob(filepath.Join(dir, "*.sst"))
	if err != nil {
		return nil, err
	}
	var damaged []string
	var first error
	for _, p := range paths {
		if err := checkTable(p); err != nil {
			if first == nil {
				first = fmt.Errorf("table %s is damaged: %w", filepath.Base(p), err)
			}
			damaged = append(damaged, p)
		}
	}
	if first == nil {
		return nil, nil
	}
	if len(damaged) > 1 {
		first = fmt.Errorf("%w (and %d more tables)", first, len(damaged)-1)
	}
	return damaged, fmt.Errorf("%w: %w", first, blob.ErrCorrupt)
}

func checkTable(path string) error {
	f, err := os.Open(path)
	if err != nil {
		return err
	}
	defer f.Close()
	st, err := f.Stat()
	if err != nil {
		return err
	}
	size := st.Size()
	var b [4]byte
	if size < 8 {
		return fmt.Errorf("%d bytes, too short for a table", size)
	}
	if _, err := f.ReadAt(b[:], size-4); err != nil {
		return err
	}
	// Every table has a checksum and an index; a zeroed trailer, whose
	// empty index "matches" its empty checksum, would panic too.
	checksumLen := int64(binary.BigEndian.Uint32(b[:]))
	if checksumLen == 0 || checksumLen > size-8 {
		return fmt.Errorf("checksum of %d bytes in a file of %d", checksumLen, size)
	}
	if _, err := f.ReadAt(b[:], size-8-checksumLen); err != nil {
		return err
	}
	if indexLen := int64(binary.BigEndian.Uint32(b[:])); indexLen == 0 || indexLen > size-8-checksumLen {
		return fmt.Errorf("index of %d bytes in a file of %d", indexLen, size)
	}
	return nil
}

// Close waits for the compactions that are due (settle), then flushes
// and closes the database. It returns an error, without
// waiting for badger, when the directory was removed or replaced while
// open (badger would retry flushing into it for ever), and when closing
// takes longer than closeTimeout; the database is then left as it is
// (the process is expected to end) and what it had not flushed is lost.
// The index is a cache: the next open reconciles it with packs/.
func (x *Index) Close() error {
	if x.dir == "" { // in memory
		return x.db.Close()
	}
	switch id, err := statDir(x.dir); {
	case errors.Is(err, unix.ENOENT):
		return fmt.Errorf("index: close %s: the directory was removed while the index was open; its unflushed updates are lost", x.dir)
	case err == nil && id != x.dirID:
		return fmt.Errorf("index: close %s: the directory was replaced by another while the index was open; its unflushed updates are lost", x.dir)
	}
	x.closing = make(chan error, 1)
	go func() { x.closing <- x.closeSettled() }()
	t := time.NewTimer(closeTimeout)
	defer t.Stop()
	select {
	case err := <-x.closing:
		if err != nil {
			return fmt.Errorf("index: close %s: %w", x.dir, err)
		}
		return nil
	case <-t.C:
		return fmt.Errorf("index: close %s: the database did not finish closing within %s (badger's errors are in the log); its unflushed updates are lost", x.dir, closeTimeout)
	}
}

// settleTimeout bounds each of the two waits of closeSettled for the
// compactions this process's writes made due (see settle); both are
// part of closeTimeout.
var settleTimeout = 20 * time.Second

// closeSettled settles and closes the database. badger's close flushes
// the memtable into one more level-0 table, which with one left by the
// compactions makes a compaction due again: then the database is
// opened once more and closed with CompactL0OnClose, which compacts
// level 0 in the close itself (that close has nothing to flush). Before,
// the reopened database was settled by its compactors, which wait a
// random 0-1 s after an open before their first look: every other
// backup (each leaves one table) waited that long at its end, 0.3 s on
// average, for a compaction of milliseconds. What that compaction makes
// due below level 0 (a level outgrowing its target) is settled after a
// third open, by the compactors. A failed reopen only leaves the
// compaction to the next writer.
func (x *Index) closeSettled() error {
	l0 := x.settle(settleTimeout)
	if err := x.db.Close(); err != nil {
		return err
	}
	if x.ro || x.dir == "" || l0 == 0 {
		return nil
	}
	opts := badgerOptions(x.dir, x.opts)
	db, err := badger.Open(opts.WithCompactL0OnClose(true))
	if err != nil {
		return nil
	}
	x.db = db
	if err := db.Close(); err != nil {
		return err
	}
	db, err = badger.Open(opts)
	if err != nil {
		return nil
	}
	x.db = db
	if compactionDue(db.Levels()) {
		x.settle(settleTimeout)
	}
	return db.Close()
}

// settle waits, at most d, until badger's compactors have nothing left
// to do: no level whose score says it must be compacted. A writer thus
// pays for the compactions its own writes made due before it closes,
// instead of leaving them to whichever writer opens the index next (a
// small backup after a large one would pay for the large one, with
// hundreds of MiB of memory at millions of entries). The memtable
// badger flushes on Close is left to closeSettled. Read-only and
// in-memory indexes have no compactor.
// It returns how many tables level 0 holds then.
func (x *Index) settle(d time.Duration) (level0 int) {
	if x.ro || x.dir == "" {
		return 0
	}
	deadline := time.Now().Add(d)
	tick := time.NewTicker(50 * time.Millisecond)
	defer tick.Stop()
	for {
		levels := x.db.Levels()
		if !compactionDue(levels) || !time.Now().Before(deadline) {
			if len(levels) > 0 {
				return levels[0].NumTables
			}
			return 0
		}
		<-tick.C
	}
}

// compactionDue reports whether a level's score makes badger compact
// it (badger picks every level whose score is at least 1).
func compactionDue(levels []badger.LevelInfo) bool {
	for _, l := range levels {
		if l.Score >= 1 {
			return true
		}
	}
	return false
}

// view runs fn in a read transaction. badger panics on some damaged
// table blocks (it decodes a block's offsets before it checks the
// block), in the reading goroutine; view turns that into an error.
func (x *Index) view(fn func(txn *badger.Txn) error) (err error) {
	defer func() {
		if p := recover(); p != nil {
			err = fmt.Errorf("index: a damaged table (%v); cairn repair index rebuilds the index from the packs: %w", p, blob.ErrCorrupt)
		}
	}()
	return x.db.View(fn)
}

// writable refuses a write to an index opened read-only.
func (x *Index) writable() error {
	if x.ro {
		return fmt.Errorf("index: %s: %w", x.dir, ErrReadOnly)
	}
	return nil
}

// room refuses a write to an index opened read-only, and one when the
// file system has less than MinFree free.
func (x *Index) room() error {
	if err := x.writable(); err != nil {
		return err
	}
	if x.minFree == 0 {
		return nil
	}
	var st unix.Statfs_t
	if err := unix.Statfs(x.dir, &st); err != nil {
		return nil // cannot tell: try
	}
	if free := int64(st.Bavail) * int64(st.Bsize); free < x.minFree {
		return fmt.Errorf("index: %d MiB free, less than the %d MiB it keeps for its own writes: %w", free>>20, x.minFree>>20, unix.ENOSPC)
	}
	return nil
}

// Sync makes every write so far durable.
func (x *Index) Sync() error {
	if x == nil {
		return ErrNotOpen
	}
	if err := x.db.Sync(); err != nil {
		return fmt.Errorf("index: sync: %w", err)
	}
	return nil
}

func blobKey(h blob.Handle) []byte {
	k := make([]byte, 2+blob.IDSize)
	k[0] = prefixBlob
	k[1] = byte(h.Type)
	copy(k[2:], h.ID[:])
	return k
}

func key(prefix byte, id blob.ID) []byte {
	k := make([]byte, 1+blob.IDSize)
	k[0] = prefix
	copy(k[1:], id[:])
	return k
}

// Lookup returns the location of blob h. ok is false when the index does
// not know the blob.
func (x *Index) Lookup(h blob.Handle) (loc Location, ok bool, err error) {
	if x == nil {
		return Location{}, false, ErrNotOpen
	}
	loc, ok, err = get(x, blobKey(h), decodeLocation)
	if err != nil {
		return Location{}, false, fmt.Errorf("index: lookup %s: %w", h, err)
	}
	return loc, ok, nil
}

// Has reports for each of hs whether the index knows it, in one read
// transaction.
func (x *Index) Has(hs []blob.Handle) ([]bool, error) {
	if x == nil {
		return nil, ErrNotOpen
	}
	out := make([]bool, len(hs))
	err := x.view(func(txn *badger.Txn) error {
		for i, h := range hs {
			_, err := txn.Get(blobKey(h))
			if errors.Is(err, badger.ErrKeyNotFound) {
				continue
			}
			if err != nil {
				return err
			}
			out[i] = true
		}
		return nil
	})
	if err != nil {
		return nil, fmt.Errorf("index: has: %w", err)
	}
	return out, nil
}

// AddPack records a pack and its blobs: first every blob, then the pack
// key, so a pack key always means a completely indexed pack. A blob that
// is indexed already (a duplicate stored by concurrent sessions) keeps its
// first location; both copies are valid.
func (x *Index) AddPack(id blob.ID, info PackInfo, blobs []BlobEntry) error {
	return x.addPack(id, info, blobs, false)
}

// MovePack is AddPack for a pack written by a repack: its blobs' entries
// move to it, so the packs they came from can be deleted.
func (x *Index) MovePack(id blob.ID, info PackInfo, blobs []BlobEntry) error {
	if x == nil {
		return ErrNotOpen
	}
	return x.addPack(id, info, blobs, true)
}

func (x *Index) addPack(id blob.ID, info PackInfo, blobs []BlobEntry, move bool) error {
	if x == nil {
		return ErrNotOpen
	}
	if err := x.room(); err != nil {
		return err
	}
	hs := make([]blob.Handle, len(blobs))
	for i, b := range blobs {
		hs[i] = b.Handle
	}
	known, err := x.Has(hs)
	if err != nil {
		return err
	}
	if move {
		clear(known)
	}
	wb := x.db.NewWriteBatch()
	defer wb.Cancel()
	for i, b := range blobs {
		if known[i] {
			continue
		}
		if err := wb.Set(blobKey(b.Handle), b.Loc.encode()); err != nil {
			return fmt.Errorf("index: add pack %s: %w", id.Short(), err)
		}
	}
	if err := wb.Flush(); err != nil {
		return fmt.Errorf("index: add pack %s: %w", id.Short(), err)
	}
	crashpoint.Hit("index-before-pack-key")
	v := binary.BigEndian.AppendUint64(nil, uint64(info.Size))
	v = binary.BigEndian.AppendUint32(v, uint32(info.Blobs))
	var created uint64 // zero time stays zero
	if !info.Created.IsZero() {
		created = uint64(info.Created.UnixNano())
	}
	v = binary.BigEndian.AppendUint64(v, created)
	err = x.db.Update(func(txn *badger.Txn) error {
		if err := txn.Delete(key(prefixLost, id)); err != nil {
			return err
		}
		return txn.Set(key(prefixPack, id), v)
	})
	if err != nil {
		return fmt.Errorf("index: add pack %s: %w", id.Short(), err)
	}
	return nil
}

// Pack returns what the index records about pack id.
func (x *Index) Pack(id blob.ID) (info PackInfo, ok bool, err error) {
	return get(x, key(prefixPack, id), decodePackInfo)
}

func decodePackInfo(v []byte) (PackInfo, error) {
	if len(v) != 20 {
		return PackInfo{}, fmt.Errorf("index: pack record of %d bytes, want 20: %w", len(v), blob.ErrCorrupt)
	}
	info := PackInfo{Size: int64(binary.BigEndian.Uint64(v)), Blobs: int(binary.BigEndian.Uint32(v[8:]))}
	if c := binary.BigEndian.Uint64(v[12:]); c != 0 {
		info.Created = time.Unix(0, int64(c))
	}
	return info, nil
}

// Packs calls fn for every indexed pack in ID order.
func (x *Index) Packs(fn func(id blob.ID, info PackInfo) error) error {
	if x == nil {
		return ErrNotOpen
	}
	return x.scan(prefixPack, func(id blob.ID, v []byte) error {
		info, err := decodePackInfo(v)
		if err != nil {
			return err
		}
		return fn(id, info)
	})
}

// Blobs calls fn for every indexed blob, by type then ID.
func (x *Index) Blobs(fn func(h blob.Handle, loc Location) error) error {
	if x == nil {
		return ErrNotOpen
	}
	return x.scanKeys(prefixBlob, 2+blob.IDSize, func(k, v []byte) error {
		loc, err := decodeLocation(v)
		if err != nil {
			return err
		}
		return fn(blob.Handle{Type: blob.Type(k[1]), ID: blob.ID(k[2:])}, loc)
	})
}

func (x *Index) scan(prefix byte, fn func(id blob.ID, v []byte) error) error {
	return x.scanKeys(prefix, 1+blob.IDSize, func(k, v []byte) error { return fn(blob.ID(k[1:]), v) })
}

func (x *Index) scanKeys(prefix byte, keyLen int, fn func(k, v []byte) error) error {
	return x.scanPrefix([]byte{prefix}, func(k, v []byte) error {
		if len(k) != keyLen {
			return fmt.Errorf("index: key of %d bytes under prefix %q: %w", len(k), prefix, blob.ErrCorrupt)
		}
		return fn(k, v)
	})
}

// scanPrefix calls fn with the key and value of every entry whose key
// begins with prefix, in key order, until fn fails; k and v are valid
// only during the call.
func (x *Index) scanPrefix(prefix []byte, fn func(k, v []byte) error) error {
	return x.view(func(txn *badger.Txn) error {
		opts := badger.DefaultIteratorOptions
		opts.Prefix = prefix
		opts.PrefetchValues = false
		it := txn.NewIterator(opts)
		defer it.Close()
		for it.Rewind(); it.Valid(); it.Next() {
			item := it.Item()
			k := item.Key()
			if err := item.Value(func(v []byte) error { return fn(k, v) }); err != nil {
				return err
			}
		}
		return nil
	})
}

// get decodes the value under key k; ok is false when there is none.
func get[T any](x *Index, k []byte, decode func(v []byte) (T, error)) (val T, ok bool, err error) {
	if x == nil {
		return val, false, ErrNotOpen
	}
	err = x.view(func(txn *badger.Txn) error {
		item, err := txn.Get(k)
		if errors.Is(err, badger.ErrKeyNotFound) {
			return nil
		}
		if err != nil {
			return err
		}
		return item.Value(func(v []byte) error {
			val, err = decode(v)
			ok = err == nil
			return err
		})
	})
	return val, ok, err
}

// update runs fn in a read-write transaction, when the file system has
// room for the index's own writes (room); an error of the transaction
// is wrapped with what it did.
func (x *Index) update(what string, fn func(txn *badger.Txn) error) error {
	if x == nil {
		return ErrNotOpen
	}
	if err := x.room(); err != nil {
		return err
	}
	if err := x.db.Update(fn); err != nil {
		return fmt.Errorf("index: %s: %w", what, err)
	}
	return nil
}

// decodeTime decodes a time stored as big-endian nanoseconds since 1970;
// what names the value in the error of a value of another size.
func decodeTime(what string, v []byte) (time.Time, error) {
	if len(v) != 8 {
		return time.Time{}, fmt.Errorf("index: %s of %d bytes: %w", what, len(v), blob.ErrCorrupt)
	}
	return time.Unix(0, int64(binary.BigEndian.Uint64(v))), nil
}

// scanTimes calls fn with the ID and time of every entry under prefix
// (what names the time in errors).
func (x *Index) scanTimes(prefix byte, what string, fn func(id blob.ID, t time.Time) error) error {
	if x == nil {
		return ErrNotOpen
	}
	return x.scan(prefix, func(id blob.ID, v []byte) error {
		t, err := decodeTime(what, v)
		if err != nil {
			return err
		}
		return fn(id, t)
	})
}

// RemovePacks forgets the given packs and every blob whose location is in
// one of them, and returns those blobs. It scans all blob keys once. With
// lost set, each pack is remembered as lost (for check to report).
func (x *Index) RemovePacks(packs map[blob.ID]bool, lost bool, now time.Time) ([]blob.Handle, error) {
	if x == nil {
		return nil, ErrNotOpen
	}
	if err := x.room(); err != nil {
		return nil, err
	}
	if len(packs) == 0 {
		return nil, nil
	}
	var stale []blob.Handle
	err := x.Blobs(func(h blob.Handle, loc Location) error {
		if packs[loc.Pack] {
			stale = append(stale, h)
		}
		return nil
	})
	if err != nil {
		return nil, err
	}
	wb := x.db.NewWriteBatch()
	defer wb.Cancel()
	ts := binary.BigEndian.AppendUint64(nil, uint64(now.UnixNano()))
	for id := range packs {
		if err := wb.Delete(key(prefixPack, id)); err != nil {
			return nil, fmt.Errorf("index: remove pack: %w", err)
		}
		if err := wb.Delete(key(prefixVerified, id)); err != nil {
			return nil, fmt.Errorf("index: remove pack: %w", err)
		}
		if lost {
			if err := wb.Set(key(prefixLost, id), ts); err != nil {
				return nil, fmt.Errorf("index: remove pack: %w", err)
			}
		}
	}
	for _, h := range stale {
		if err := wb.Delete(blobKey(h)); err != nil {
			return nil, fmt.Errorf("index: remove pack: %w", err)
		}
	}
	if err := wb.Flush(); err != nil {
		return nil, fmt.Errorf("index: remove packs: %w", err)
	}
	return stale, nil
}

// LostPacks calls fn for every pack recorded as found missing.
func (x *Index) LostPacks(fn func(id blob.ID, when time.Time) error) error {
	return x.scanTimes(prefixLost, "lost-pack time", fn)
}

// AddSnapshot caches the plaintext record of snapshot id.
func (x *Index) AddSnapshot(id blob.ID, record []byte) error {
	return x.update("add snapshot "+id.Short(), func(txn *badger.Txn) error { return txn.Set(key(prefixSnapshot, id), record) })
}

// RemoveSnapshot forgets snapshot id.
func (x *Index) RemoveSnapshot(id blob.ID) error {
	return x.update("remove snapshot "+id.Short(), func(txn *badger.Txn) error {
		if err := txn.Delete(key(prefixSnapshot, id)); err != nil {
			return err
		}
		return txn.Delete(key(prefixForget, id))
	})
}

// MarkForgetting records that forgetting snapshot id began at t: its file
// is about to be deleted, so an entry without a file is not a lost
// snapshot. RemoveSnapshot clears the mark; so does ClearForgetting.
func (x *Index) MarkForgetting(id blob.ID, t time.Time) error {
	v := binary.BigEndian.AppendUint64(nil, uint64(t.UnixNano()))
	return x.update("mark snapshot "+id.Short()+" as being forgotten", func(txn *badger.Txn) error { return txn.Set(key(prefixForget, id), v) })
}

// ClearForgetting removes the mark MarkForgetting set.
func (x *Index) ClearForgetting(id blob.ID) error {
	return x.update("clear the forget mark of snapshot "+id.Short(), func(txn *badger.Txn) error { return txn.Delete(key(prefixForget, id)) })
}

// Forgetting calls fn for every snapshot marked as being forgotten.
func (x *Index) Forgetting(fn func(id blob.ID, since time.Time) error) error {
	return x.scanTimes(prefixForget, "forget mark", fn)
}

// Snapshot returns the cached record of snapshot id; ok is false when
// the index has none.
func (x *Index) Snapshot(id blob.ID) (record []byte, ok bool, err error) {
	if x == nil {
		return nil, false, ErrNotOpen
	}
	record, ok, err = get(x, key(prefixSnapshot, id), func(v []byte) ([]byte, error) { return append([]byte(nil), v...), nil })
	if err != nil {
		return nil, false, fmt.Errorf("index: snapshot %s: %w", id.Short(), err)
	}
	return record, ok, nil
}

// Snapshots calls fn with every cached snapshot record in ID order. The
// record slice is valid only during the call.
func (x *Index) Snapshots(fn func(id blob.ID, record []byte) error) error {
	if x == nil {
		return ErrNotOpen
	}
	return x.scan(prefixSnapshot, fn)
}

// SetVerified records that pack id was read and verified at t.
func (x *Index) SetVerified(id blob.ID, t time.Time) error {
	v := binary.BigEndian.AppendUint64(nil, uint64(t.UnixNano()))
	return x.update("set verified "+id.Short(), func(txn *badger.Txn) error { return txn.Set(key(prefixVerified, id), v) })
}

// Verified returns when pack id was last verified; ok is false if never.
func (x *Index) Verified(id blob.ID) (t time.Time, ok bool, err error) {
	return get(x, key(prefixVerified, id), func(v []byte) (time.Time, error) { return decodeTime("verification time", v) })
}

type logAdapter struct{ l *slog.Logger }

func (a logAdapter) Errorf(f string, args ...any) {
	if a.l != nil {
		a.l.Error("badger: " + trim(fmt.Sprintf(f, args...)))
	}
}

func (a logAdapter) Warningf(f string, args ...any) {
	if a.l == nil {
		return
	}
	msg := "badger: " + trim(fmt.Sprintf(f, args...))
	if cacheStats(f) {
		a.l.Debug(msg)
		return
	}
	a.l.Warn(msg)
}

// cacheStats reports whether a badger warning format is one of its cache
// monitor's: every minute under load it says a cache "might be too
// small" and prints histograms. Our caches are small on purpose (see
// badgerOptions), so these are statistics, not warnings.
func cacheStats(format string) bool {
	return strings.Contains(format, " might be too small. Metrics: ") || strings.HasPrefix(format, "Cache life expectancy")
}

func (logAdapter) Infof(string, ...any)  {}
func (logAdapter) Debugf(string, ...any) {}

func trim(s string) string {
	for len(s) > 0 && s[len(s)-1] == '\n' {
		s = s[:len(s)-1]
	}
	return s
}

// Job history ('j' prefix, disposable): key 'j', job name length (1),
// job name, unix nanoseconds of the run's start (8, big-endian, so runs of
// a job sort by time); value: the run as the scheduler encodes it.
// PutJobRun keeps a job's newest runs only.
const (
	prefixJob     = 'j'
	prefixJobGood = 'k' // a job's newest run that got through, kept past the cap
)

func jobKey(job string, start time.Time) []byte {
	k := make([]byte, 0, 2+len(job)+8)
	k = append(k, prefixJob, byte(len(job)))
	k = append(k, job...)
	return binary.BigEndian.AppendUint64(k, uint64(start.UnixNano()))
}

// PutJobRun records one run of a job and removes all but the newest
// keep runs of the job (keep <= 0: none are removed). A good run (one
// that got through) is also kept as the job's last good run, which the
// cap does not remove: [Index.LastGoodJobRun].
func (x *Index) PutJobRun(job string, start time.Time, value []byte, keep int, good bool) error {
	if job == "" || len(job) > 255 {
		return fmt.Errorf("index: job name %q", job)
	}
	return x.update("job run", func(txn *badger.Txn) error {
		if err := txn.Set(jobKey(job, start), value); err != nil {
			return err
		}
		if good {
			if err := txn.Set(append([]byte{prefixJobGood}, job...), value); err != nil {
				return err
			}
		}
		if keep <= 0 {
			return nil
		}
		return keepNewest(txn, append([]byte{prefixJob, byte(len(job))}, job...), keep)
	})
}

// LastGoodJobRun returns the newest good run recorded for job, however
// many runs came after it.
func (x *Index) LastGoodJobRun(job string) (value []byte, ok bool, err error) {
	return get(x, append([]byte{prefixJobGood}, job...), func(v []byte) ([]byte, error) {
		return bytes.Clone(v), nil
	})
}

// JobRuns calls fn with the runs of job (all jobs if ""), newest first
// within each job, until fn returns false or limit runs per job were
// given (limit <= 0: all).
func (x *Index) JobRuns(job string, limit int, fn func(job string, value []byte) bool) error {
	if x == nil {
		return ErrNotOpen
	}
	return x.view(func(txn *badger.Txn) error {
		prefix := []byte{prefixJob}
		if job != "" {
			prefix = append(prefix, byte(len(job)))
			prefix = append(prefix, job...)
		}
		opts := badger.DefaultIteratorOptions
		opts.Reverse = true
		opts.Prefix = prefix
		it := txn.NewIterator(opts)
		defer it.Close()
		count := map[string]int{}
		seek := append(append([]byte{}, prefix...), 0xff)
		for it.Seek(seek); it.Valid(); it.Next() {
			k := it.Item().Key()
			if len(k) < 2 || len(k) != 2+int(k[1])+8 {
				return fmt.Errorf("index: job key of %d bytes: %w", len(k), blob.ErrCorrupt)
			}
			name := string(k[2 : 2+int(k[1])])
			if limit > 0 && count[name] >= limit {
				continue
			}
			count[name]++
			var stop bool
			err := it.Item().Value(func(v []byte) error {
				stop = !fn(name, v)
				return nil
			})
			if err != nil || stop {
				return err
			}
		}
		return nil
	})
}

// VerifiedTimes calls fn with every pack's last verification time.
func (x *Index) VerifiedTimes(fn func(id blob.ID, t time.Time) error) error {
	return x.scanTimes(prefixVerified, "verification time", fn)
}
