package repo

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"io"
	"io/fs"
	"os"
	"path/filepath"
	"time"

	"github.com/cairnbackup/cairn/repo/storage"
)

// What is particular to a repository in an object store: its creation,
// its locks, and the fence that stops its writes once its lock is lost.

// initObjectStore is Init for an object store: it takes the lock object,
// checks that the prefix holds no object of a repository, creates the
// state directory and writes the key (and key file) and the config.
func initObjectStore(ctx context.Context, loc Place, cred Credentials, o InitOptions) (keyFile string, err error) {
	be, err := loc.backend(ctx, o.S3)
	if err != nil {
		return "", fmt.Errorf("init: %w", err)
	}
	s3 := be.(*storage.S3)
	if err := os.MkdirAll(loc.StateDir(), 0o700); err != nil {
		return "", fmt.Errorf("init: state directory: %w", err)
	}
	owner, err := takeOwnerLock(ctx, s3, o.Logger, o.Now, 0)
	if err != nil {
		return "", fmt.Errorf("init: %w", err)
	}
	defer func() {
		if rerr := owner.release(context.WithoutCancel(ctx)); err == nil && rerr != nil {
			err = fmt.Errorf("init: %w", rerr)
		}
	}()
	errFound := errors.New("found")
	for _, k := range storage.Kinds {
		found := ""
		err := be.List(ctx, k, func(name string, _ int64) error {
			found = name
			return errFound
		})
		if err != nil && !errors.Is(err, errFound) {
			return "", fmt.Errorf("init: %w", err)
		}
		switch {
		case found == "":
		case k == storage.Config:
			return "", fmt.Errorf("init: %s holds a repository already", loc)
		default:
			return "", fmt.Errorf("init: %s is not empty: it holds %s; give a bucket or prefix of its own", loc, loc.describe(k, found))
		}
	}
	m, cfg, err := newConfig(o)
	if err != nil {
		return "", err
	}
	wroteKey := ""
	keyFile, err = writeNew(ctx, be, loc, m, cfg, cred, o.Now(), &wroteKey)
	if err != nil {
		// Leave the prefix as it was found (it held nothing), so init
		// can simply be run again.
		if wroteKey != "" {
			os.Remove(wroteKey)
		}
		cctx := context.WithoutCancel(ctx)
		var names []string
		be.List(cctx, storage.Keys, func(name string, _ int64) error {
			names = append(names, name)
			return nil
		})
		for _, n := range names {
			be.Delete(cctx, storage.Handle{Kind: storage.Keys, Name: n})
		}
		return "", err
	}
	return keyFile, nil
}

// lockRepository takes the repository for this process: flock on the
// directory's lock file; for an object store flock on the cache
// directory's (one process per index) and then the lock object in the
// bucket (one owner anywhere).
func (r *Repository) lockRepository(ctx context.Context) error {
	if r.local != nil {
		l, err := acquireLock(r.cache)
		r.lock = l
		return err
	}
	if err := os.MkdirAll(r.cache, 0o700); err != nil {
		return fmt.Errorf("cache directory: %w", err)
	}
	l, err := acquireLock(r.cache)
	if err != nil {
		return err
	}
	if err := claimCache(r.cache, r.loc); err != nil {
		l.release()
		return err
	}
	s3 := r.be.(*storage.S3)
	owner, err := takeOwnerLock(ctx, s3, r.log, r.now, heartbeatInterval)
	if err != nil {
		l.release()
		return err
	}
	r.lock, r.owner = l, owner
	r.be = &fencedBackend{s3: s3, owner: owner}
	return nil
}

// heartbeatInterval is LockHeartbeat; tests shorten it.
var heartbeatInterval = LockHeartbeat

// releaseTimeout bounds marking the lock object released at Close: a
// store that does not answer leaves the lock to the next owner, which
// takes it over as that of an ended process if it runs on this machine.
const releaseTimeout = 10 * time.Second

// unlock releases what lockRepository took.
func (r *Repository) unlock() error {
	var err error
	if r.owner != nil {
		ctx, cancel := context.WithTimeout(context.Background(), releaseTimeout)
		err = r.owner.release(ctx)
		cancel()
	}
	return errors.Join(err, r.lock.release())
}

// confirmOwner checks, for an object store, that this process still owns
// the lock object: before a snapshot is written and before prune deletes.
func (r *Repository) confirmOwner(ctx context.Context) error {
	if r.owner == nil {
		return nil
	}
	return r.owner.confirm(ctx)
}

// CacheDirError is [Open]'s refusal of a cache directory that holds the
// index of another location: a copy of a repository (a replica) has the
// same ID, so the default cache directory, named by the ID, would be
// shared.
type CacheDirError struct {
	Dir   string // the cache directory
	Holds string // the location whose index it holds
	Place string // the repository being opened
}

func (e *CacheDirError) Error() string {
	return fmt.Sprintf("cache directory %s holds the index of %s, not of %s (copies of a repository have the same ID): give this one a cache directory of its own", e.Dir, e.Holds, e.Place)
}

// cacheOwnerFile, in a cache directory, names the location whose index
// the directory holds.
const cacheOwnerFile = "location"

// claimCache records loc as the location the cache directory serves, or
// refuses a cache directory that serves another: a copy of a repository
// (a replica) has the same ID, so the default cache directory, named by
// the ID, would be shared.
func claimCache(dir string, loc Place) error {
	p := filepath.Join(dir, cacheOwnerFile)
	want := loc.String() + "\n"
	b, err := os.ReadFile(p)
	switch {
	case err == nil && string(b) == want:
		return nil
	case err == nil:
		return &CacheDirError{Dir: dir, Holds: string(bytes.TrimSpace(b)), Place: loc.String()}
	case !errors.Is(err, fs.ErrNotExist):
		return fmt.Errorf("cache directory: %w", err)
	}
	if err := os.WriteFile(p, []byte(want), 0o600); err != nil {
		return fmt.Errorf("cache directory: %w", err)
	}
	return nil
}

// fencedBackend is an object store whose writes stop once the lock is
// lost: Put, Replace and Delete fail with [ErrLockLost] before reaching
// the store.
type fencedBackend struct {
	s3    *storage.S3
	owner *ownerLock
}

func (f *fencedBackend) Put(ctx context.Context, h storage.Handle, r io.Reader) error {
	if err := f.owner.check(); err != nil {
		return fmt.Errorf("put %s: %w", h, err)
	}
	return f.s3.Put(ctx, h, r)
}

func (f *fencedBackend) Replace(ctx context.Context, h storage.Handle, r io.Reader) error {
	if err := f.owner.check(); err != nil {
		return fmt.Errorf("replace %s: %w", h, err)
	}
	return f.s3.Replace(ctx, h, r)
}

func (f *fencedBackend) Delete(ctx context.Context, h storage.Handle) error {
	if err := f.owner.check(); err != nil {
		return fmt.Errorf("delete %s: %w", h, err)
	}
	return f.s3.Delete(ctx, h)
}

func (f *fencedBackend) Open(ctx context.Context, h storage.Handle) (storage.File, error) {
	return f.s3.Open(ctx, h)
}

func (f *fencedBackend) List(ctx context.Context, k storage.Kind, fn func(string, int64) error) error {
	return f.s3.List(ctx, k, fn)
}

// replacer is a backend that can put a verified copy in place of a
// damaged object (repair index writes back snapshot files).
type replacer interface {
	Replace(ctx context.Context, h storage.Handle, r io.Reader) error
}
