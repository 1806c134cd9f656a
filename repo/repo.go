package repo

import (
	"bytes"
	"context"
	"crypto/rand"
	"errors"
	"fmt"
	"io"
	"io/fs"
	"log/slog"
	"os"
	"path/filepath"
	"strings"
	"sync"
	"time"

	"github.com/cairnbackup/cairn/chunker"
	"github.com/cairnbackup/cairn/repo/blob"
	"github.com/cairnbackup/cairn/repo/internal/durable"
	"github.com/cairnbackup/cairn/repo/internal/index"
	"github.com/cairnbackup/cairn/repo/pack"
	"github.com/cairnbackup/cairn/repo/seal"
	"github.com/cairnbackup/cairn/repo/storage"
)

// InitOptions configure a new repository. Zero values take the defaults.
type InitOptions struct {
	Chunker     ChunkerParams
	PackSize    int
	Compression string
	Now         func() time.Time
	// StateDir is the state directory of an object-store repository
	// ("" for [DefaultStateDir]); Init creates it, and the key file
	// goes there by default.
	StateDir string
	// S3 reaches an object store.
	S3 S3Access
	// Logger receives what Init notices on its own; nil discards it.
	Logger *slog.Logger
}

// Options configure Open.
type Options struct {
	// Logger receives what the repository notices on its own (temporary
	// files removed, packs indexed at open); nil discards it.
	Logger *slog.Logger
	// SkipIndex opens the repository without its index (for
	// RebuildIndex, when the index itself is damaged).
	SkipIndex bool
	// Now is the clock; nil means time.Now.
	Now func() time.Time
	// StateDir is the state directory of an object-store repository
	// ("" for [DefaultStateDir]): the default key file is there.
	StateDir string
	// CacheDir is where an object-store repository keeps its index and
	// local lock ("" for [DefaultCacheDir] of the repository's ID).
	CacheDir string
	// S3 reaches an object store.
	S3 S3Access
	// ReadOnly opens the index read-only, for a process that only reads
	// (ls, restore, mount...): it runs none of badger's compactions and
	// changes no file of the index. An index that cannot be read without
	// writing (none yet, a writer killed mid-write, packs or snapshots
	// to reconcile) is opened read-write once to bring it up to date and
	// closed, then opened read-only. Writes that need the index fail
	// with an error wrapping [ErrIndexReadOnly]; drill reports the index
	// has not noted are noted in memory only ([Repository.NoteDrills]).
	// The repository lock is taken as for any open.
	ReadOnly bool
}

// ErrIndexReadOnly is wrapped by writes to a repository opened with
// [Options.ReadOnly].
var ErrIndexReadOnly = index.ErrReadOnly

// Repository is an open repository. It owns the repository while open:
// a second process gets [ErrLocked]. It is safe for concurrent use.
type Repository struct {
	loc    Place
	be     storage.Backend
	local  *storage.Local // nil for an object store
	cache  string         // holds index/ and the local lock: the directory, or the cache directory
	cfg    *Config
	master seal.MasterKey
	key    *seal.Key
	table  *chunker.Table
	level  pack.Level
	idx    *index.Index
	// readOnly: opened with Options.ReadOnly (see openIndexReadOnly).
	readOnly bool
	// notes holds the drill notes of a read-only open whose index has
	// not noted every report (see NoteDrills); nil until then.
	notesMu sync.Mutex
	notes   *index.Index
	lock    *lockFile
	owner   *ownerLock // object store: the lock object
	// segments holds ranges of packs read from an object store for
	// small blobs (see segments.go).
	segments segmentCache
	// batch is what LoadBlobs calls share (see batch.go).
	batch batchState
	log   *slog.Logger
	now   func() time.Time

	// gate orders index lookups that tell a session a blob exists
	// (read-locked) against prune dropping packs from the index
	// (write-locked, briefly).
	gate     sync.RWMutex
	smu      sync.Mutex
	sessions map[*Session]time.Time // active sessions and when they started
	pruning  *pruneState            // set while a prune runs
	holds    map[*PackHold]struct{} // packs replication holds (see PackHold)
}

func bytesReader(b []byte) io.Reader { return bytes.NewReader(b) }

// Init creates a repository at location (see [ParsePlace]): a
// directory, which must not exist or be empty, or a bucket and prefix of
// an object store, which must hold no object of a repository. It makes a
// new random master key wrapped by cred. In key file mode it returns the
// path of the key file it wrote.
func Init(ctx context.Context, location string, cred Credentials, o InitOptions) (keyFile string, err error) {
	if o.Now == nil {
		o.Now = time.Now
	}
	if o.Logger == nil {
		o.Logger = slog.New(slog.DiscardHandler)
	}
	if o.Chunker == (ChunkerParams{}) {
		p := chunker.DefaultParams
		o.Chunker = ChunkerParams{Min: p.Min, Avg: p.Avg, Max: p.Max}
	}
	if o.PackSize == 0 {
		o.PackSize = DefaultPackSize
	}
	if o.Compression == "" {
		o.Compression = "default"
	}
	loc, err := ParsePlace(location, o.StateDir)
	if err != nil {
		return "", fmt.Errorf("init: %w", err)
	}
	if loc.ObjectStore() {
		return initObjectStore(ctx, loc, cred, o)
	}
	dir := loc.Dir()
	if len(cred.Password) == 0 {
		kf := cred.KeyFile
		if kf == "" {
			kf = DefaultKeyFile(loc)
		}
		if inside(dir, kf) {
			return "", fmt.Errorf("init: key file %s is inside the repository; keep it outside, or a copy of the repository carries its own key", kf)
		}
	}
	entries, err := os.ReadDir(dir)
	created := false
	switch {
	case errors.Is(err, fs.ErrNotExist):
		if err := os.MkdirAll(dir, 0o700); err != nil {
			return "", fmt.Errorf("init: %w", err)
		}
		created = true
	case err != nil:
		return "", fmt.Errorf("init: %w", err)
	case len(entries) > 0:
		return "", fmt.Errorf("init: %s is not empty", dir)
	}
	wroteKey := ""
	defer func() {
		if err == nil {
			return
		}
		if wroteKey != "" {
			os.Remove(wroteKey)
		}
		// Leave dir as it was found, so init can simply be run again.
		if created {
			os.RemoveAll(dir)
		} else if entries, _ := os.ReadDir(dir); entries != nil {
			for _, e := range entries {
				os.RemoveAll(filepath.Join(dir, e.Name()))
			}
		}
	}()
	if err := durable.SyncDir(filepath.Dir(filepath.Clean(dir))); err != nil {
		return "", fmt.Errorf("init: %w", err)
	}
	be := storage.NewLocal(dir)
	if err := be.Init(); err != nil {
		return "", fmt.Errorf("init: %w", err)
	}
	lock, err := acquireLock(dir)
	if err != nil {
		return "", fmt.Errorf("init: %w", err)
	}
	defer lock.release()
	m, cfg, err := newConfig(o)
	if err != nil {
		return "", err
	}
	return writeNew(ctx, be, loc, m, cfg, cred, o.Now(), &wroteKey)
}

// newConfig makes a master key and the config of a new repository.
func newConfig(o InitOptions) (seal.MasterKey, *Config, error) {
	m, err := seal.NewMasterKey()
	if err != nil {
		return m, nil, err
	}
	var id blob.ID
	rand.Read(id[:]) // never fails (crypto/rand)
	cfg := &Config{Version: FormatVersion, ID: id, Created: o.Now().UTC(), Chunker: o.Chunker, PackSize: o.PackSize, Compression: o.Compression}
	if err := cfg.validate(); err != nil {
		return m, nil, fmt.Errorf("init: %w", err)
	}
	return m, cfg, nil
}

// writeNew stores the wrapped key (and writes the key file) and then the
// config, whose presence marks a complete repository. wroteKey is set to
// the key file once written.
func writeNew(ctx context.Context, be storage.Backend, loc Place, m seal.MasterKey, cfg *Config, cred Credentials, now time.Time, wroteKey *string) (string, error) {
	keyFile, err := addKey(ctx, be, cfg.ID, loc, m, cred, now)
	if err != nil {
		return "", fmt.Errorf("init: %w", err)
	}
	*wroteKey = keyFile
	plain, err := jsonMarshal(cfg)
	if err != nil {
		return "", err
	}
	sealed := m.DataKey().Seal(nil, plain, []byte(configAAD))
	if err := be.Put(ctx, storage.Handle{Kind: storage.Config}, bytesReader(sealed)); err != nil {
		return "", fmt.Errorf("init: %w", err)
	}
	return keyFile, nil
}

func inside(dir, path string) bool {
	d, err1 := filepath.Abs(dir)
	p, err2 := filepath.Abs(path)
	if err1 != nil || err2 != nil {
		return false
	}
	return p == d || strings.HasPrefix(p, d+string(filepath.Separator))
}

// Open opens the repository at location (see [ParsePlace]) with cred.
// A wrong credential gives a [*WrongKeyError] (matching [ErrWrongKey])
// and writes nothing; a repository open in another process gives
// [ErrLocked] (for an object store a [*LockedError] naming the owner).
func Open(ctx context.Context, location string, cred Credentials, o Options) (*Repository, error) {
	if o.Now == nil {
		o.Now = time.Now
	}
	if o.Logger == nil {
		o.Logger = slog.New(slog.DiscardHandler)
	}
	loc, err := ParsePlace(location, o.StateDir)
	if err != nil {
		return nil, err
	}
	if o.CacheDir != "" && !loc.ObjectStore() {
		return nil, fmt.Errorf("a cache directory is only for an object-store repository; directory repository %s keeps its index inside it", location)
	}
	be, err := loc.backend(ctx, o.S3)
	if err != nil {
		return nil, err
	}
	p, cfg, err := unlockConfig(ctx, be, loc, cred)
	if err != nil {
		return nil, err
	}
	m := p.master
	key := m.DataKey()
	r := &Repository{
		loc: loc, be: be, cfg: cfg, master: m, key: key,
		table: chunker.NewTable(m.Derive(seal.PurposeChunker)),
		level: compressionLevels[cfg.Compression],
		log:   o.Logger, now: o.Now, readOnly: o.ReadOnly,
	}
	if l, ok := be.(*storage.Local); ok {
		r.local, r.cache = l, loc.Dir()
	} else {
		r.cache = o.CacheDir
		if r.cache == "" {
			r.cache = DefaultCacheDir(cfg.ID)
		}
	}
	if err := r.lockRepository(ctx); err != nil {
		return nil, err
	}
	if err := r.cleanInterrupted(ctx); err != nil {
		r.unlock()
		return nil, err
	}
	if o.SkipIndex {
		return r, nil
	}
	if r.readOnly {
		if err := r.openIndexReadOnly(ctx); err != nil {
			r.Close()
			return nil, err
		}
		return r, nil
	}
	if err := r.openIndex(); err != nil {
		r.unlock()
		return nil, err
	}
	if err := r.reconcile(ctx); err != nil {
		r.Close()
		return nil, err
	}
	return r, nil
}

// openIndexReadOnly opens the index read-only and checks that it is
// reconciled with packs/ and snapshots/. When the index cannot be read
// without writing first (index.ErrNeedsWriter) or reconciling would
// write (errReconcileWrites), it is opened read-write once, reconciled
// and closed, and then opened read-only: this process holds the
// repository lock, so no other writes meanwhile.
func (r *Repository) openIndexReadOnly(ctx context.Context) error {
	o := r.indexOptions()
	o.ReadOnly = true
	idx, err := index.Open(r.indexDir(), o)
	if err == nil {
		r.idx = idx
		if err = r.reconcile(ctx); err == nil {
			return nil
		}
		cerr := idx.Close()
		r.idx = nil
		if !errors.Is(err, errReconcileWrites) {
			return err
		}
		if cerr != nil {
			return cerr
		}
	} else if !errors.Is(err, index.ErrNeedsWriter) {
		return fmt.Errorf("%w (if the index is damaged, cairn repair index rebuilds it from the packs)", err)
	}
	r.log.Info("opening the index read-write once to bring it up to date", "why", err)
	if err := r.openIndex(); err != nil {
		return err
	}
	err = r.reconcile(ctx)
	if cerr := r.idx.Close(); err == nil {
		err = cerr
	}
	r.idx = nil
	if err != nil {
		return err
	}
	if r.idx, err = index.Open(r.indexDir(), o); err != nil {
		return fmt.Errorf("%w (if the index is damaged, cairn repair index rebuilds it from the packs)", err)
	}
	return nil
}

// IndexReadOnly reports whether the index is open read-only.
func (r *Repository) IndexReadOnly() bool { return r.idx.ReadOnly() }

// cleanInterrupted removes what writes that never finished left: a
// directory's temporary files, an object store's incomplete multipart
// uploads, and a rebuild's leftover index directories.
func (r *Repository) cleanInterrupted(ctx context.Context) error {
	var removed []string
	var err error
	if r.local != nil {
		removed, err = r.local.CleanTemp()
		for _, p := range removed {
			r.log.Info("removed a temporary file left by an interrupted write", "path", p)
		}
	} else if s3, ok := r.be.(*fencedBackend); ok {
		removed, err = s3.s3.CleanUploads(ctx, 0)
		for _, k := range removed {
			r.log.Info("aborted an incomplete upload left by an interrupted write", "key", k)
		}
	}
	if err != nil {
		return err
	}
	for _, leftover := range []string{r.indexDir() + ".new", r.indexDir() + ".old"} {
		if err := os.RemoveAll(leftover); err != nil {
			return fmt.Errorf("remove %s: %w", leftover, err)
		}
	}
	return nil
}

func (r *Repository) indexDir() string { return filepath.Join(r.cache, "index") }

func (r *Repository) indexOptions() index.Options {
	k := r.master.Derive(PurposeIndex)
	return index.Options{EncryptionKey: k[:], Logger: r.log, MinFree: IndexReserve / 2}
}

// PurposeIndex derives the key that encrypts the index at rest.
const PurposeIndex = "cairn v1 index key"

func (r *Repository) openIndex() error {
	idx, err := index.Open(r.indexDir(), r.indexOptions())
	if err != nil {
		return fmt.Errorf("%w (if the index is damaged, cairn repair index rebuilds it from the packs)", err)
	}
	r.idx = idx
	return nil
}

// Close closes the index and releases the lock.
func (r *Repository) Close() error {
	var err error
	if r.idx != nil {
		err = r.idx.Close()
		r.idx = nil
	}
	r.notesMu.Lock()
	if r.notes != nil {
		err = errors.Join(err, r.notes.Close())
		r.notes = nil
	}
	r.notesMu.Unlock()
	return errors.Join(err, r.unlock())
}

// Dir is the directory of a directory repository; "" for an object
// store (see [Repository.Place]).
func (r *Repository) Dir() string { return r.loc.Dir() }

// Place is where the repository is.
func (r *Repository) Place() Place { return r.loc }

// CacheDir is the directory that holds the index and the local lock: the
// repository's own directory, or an object store's cache directory.
func (r *Repository) CacheDir() string { return r.cache }

// Config returns the repository configuration.
func (r *Repository) Config() Config { return *r.cfg }

// ChunkerParams returns the repository's chunk sizes.
func (r *Repository) ChunkerParams() chunker.Params { return r.cfg.Chunker.Params() }

// ChunkerTable returns the gear table derived from the repository key.
func (r *Repository) ChunkerTable() *chunker.Table { return r.table }

// ChunkerSeed returns the secret the gear table is derived from. Nodes
// that chunk for this repository need it; it reveals nothing about the
// data key.
func (r *Repository) ChunkerSeed() [32]byte { return r.master.Derive(seal.PurposeChunker) }

// Backend returns the storage the repository keeps its files in.
func (r *Repository) Backend() storage.Backend { return r.be }

func (r *Repository) packHandle(id blob.ID) storage.Handle {
	return storage.Handle{Kind: storage.Packs, Name: id.String()}
}
