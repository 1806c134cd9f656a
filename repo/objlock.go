package repo

import (
	"bytes"
	"context"
	"crypto/rand"
	"encoding/hex"
	"encoding/json"
	"errors"
	"fmt"
	"log/slog"
	"os"
	"strings"
	"sync"
	"syscall"
	"time"

	"github.com/cairnbackup/cairn/repo/storage"
)

// The lock of an object-store repository.
//
// A directory repository is locked with flock(2) on DIR/lock, which the
// kernel drops when the process ends, however it ends. Processes on
// other machines share an object store and no kernel, so an object-store
// repository has a lock object in the bucket instead (PREFIX/lock,
// [storage.LockObject]): plain JSON naming the owner's host, PID, start
// time and a heartbeat the owner rewrites every [LockHeartbeat]. It
// holds nothing secret and is not sealed, so cairn unlock reads it
// without the repository key.
//
// Taking it is one conditional PUT (If-None-Match: *): of two processes
// that try at once, the store lets one succeed. A lock whose owner
// released it (the object stays, marked released) is taken with If-Match
// on its ETag, as is one whose owner is known to be dead: it ran on this
// machine (same machine ID and host name) and either the machine has
// booted since (another boot ID) or its PID no longer runs (same PID
// namespace). Every other lock is refused with [*LockedError], however old
// its heartbeat: a host whose clock is off, or that is cut off from the
// store for a while, may still be alive. An operator who knows the owner
// is dead runs cairn unlock --force ([BreakLock]).
//
// Refreshing the heartbeat is a PUT with If-Match on the ETag of the
// owner's last write, so it can never overwrite a lock that cairn unlock
// --force released and another process then took: that PUT fails, and
// the owner knows it lost the lock ([ErrLockLost]). From then on every
// write of the repository fails, before it reaches the store; and before
// each snapshot is written and before prune deletes anything, the owner
// reads the lock object back to confirm it still holds it. What remains
// is the window between cairn unlock --force and the old owner's next
// confirmation or heartbeat (at most one LockHeartbeat): packs it stores
// then are harmless (unreferenced, a later prune removes them), and it
// writes no snapshot and deletes nothing without confirming first. That
// is the risk docs/operating.md describes for --force on an owner that is alive.

// LockHeartbeat is how often the owner of an object-store repository
// rewrites the lock object's heartbeat.
const LockHeartbeat = time.Minute

// LockStaleAfter is the age of a heartbeat that the refusal calls stale:
// the owner has missed ten heartbeats and is probably dead (cairn
// unlock --force, if it is).
const LockStaleAfter = 10 * LockHeartbeat

// ErrLockLost is wrapped by the error of every write after another
// process took the lock of an object-store repository from this one
// (after cairn unlock --force).
var ErrLockLost = errors.New("this process no longer holds the repository's lock")

// Owner is what the lock object of an object-store repository says about
// the process that owns the repository.
type Owner struct {
	Version int    `json:"version"`
	Host    string `json:"host"`
	PID     int    `json:"pid"`
	// Machine, Boot and PIDNamespace tell whether the owner ran on this
	// machine, in this boot and PID namespace (/etc/machine-id,
	// /proc/sys/kernel/random/boot_id, /proc/self/ns/pid).
	Machine      string    `json:"machine,omitempty"`
	Boot         string    `json:"boot,omitempty"`
	PIDNamespace string    `json:"pid_namespace,omitempty"`
	Started      time.Time `json:"started"`
	Heartbeat    time.Time `json:"heartbeat"`
	// Token tells owners apart (random).
	Token string `json:"token"`
	// Released is set when the owner let go (or cairn unlock --force
	// took the lock from it: then ReleasedBy says who).
	Released   bool   `json:"released,omitempty"`
	ReleasedBy string `json:"released_by,omitempty"`
}

func (o Owner) describe() string {
	return fmt.Sprintf("%s pid %d since %s", o.Host, o.PID, o.Started.UTC().Format(time.RFC3339))
}

// LockedError is Open's error when another process owns the object-store
// repository. It matches [ErrLocked].
type LockedError struct {
	Location string // the lock object
	Holder   Owner
	Now      time.Time
}

func (e *LockedError) Error() string {
	age := e.Now.Sub(e.Holder.Heartbeat).Round(time.Second)
	beat := e.Holder.Heartbeat.UTC().Format(time.RFC3339)
	hint := "if that process is dead, cairn unlock --force frees the repository"
	if age > LockStaleAfter {
		beat += fmt.Sprintf(", %s ago: stale", age)
		hint = "the owner has stopped refreshing its lock and is probably dead; if it is, cairn unlock --force frees the repository"
	}
	return fmt.Sprintf("%s by %s (heartbeat %s); %s (lock %s)", ErrLocked, e.Holder.describe(), beat, hint, e.Location)
}

// Is makes a LockedError match ErrLocked.
func (e *LockedError) Is(target error) bool { return target == ErrLocked }

// lockStore keeps the lock object (*storage.S3).
type lockStore interface {
	ReadLock(ctx context.Context) ([]byte, string, error)
	WriteLock(ctx context.Context, data []byte, ifMatch string) (string, error)
	LockURL() string
}

// ownerLock is this process's hold on an object-store repository.
type ownerLock struct {
	store lockStore
	log   *slog.Logger
	now   func() time.Time

	mu   sync.Mutex
	rec  Owner
	etag string
	lost error

	stop chan struct{}
	done chan struct{}
}

// identity describes this process for a lock object.
func identity(now time.Time) Owner {
	host, _ := os.Hostname()
	var tok [16]byte
	rand.Read(tok[:])
	return Owner{
		Version: 1, Host: host, PID: os.Getpid(),
		Machine:      readID("/etc/machine-id"),
		Boot:         readID("/proc/sys/kernel/random/boot_id"),
		PIDNamespace: pidNamespace(),
		Started:      now.UTC(), Heartbeat: now.UTC(),
		Token: hex.EncodeToString(tok[:]),
	}
}

func readID(path string) string {
	b, err := os.ReadFile(path)
	if err != nil || len(b) > 256 {
		return ""
	}
	return strings.TrimSpace(string(b))
}

func pidNamespace() string {
	s, err := os.Readlink("/proc/self/ns/pid")
	if err != nil {
		return ""
	}
	return s
}

// gone reports whether the owner o is known to have ended: it ran on this
// machine, and the machine has booted since or its PID does not run.
func (o Owner) gone(self Owner) (bool, string) {
	if o.Machine == "" || o.Machine != self.Machine || o.Host != self.Host {
		return false, ""
	}
	if o.Boot != "" && self.Boot != "" && o.Boot != self.Boot {
		return true, "this machine has booted since"
	}
	if o.PIDNamespace == "" || o.PIDNamespace != self.PIDNamespace || o.PID <= 0 {
		return false, ""
	}
	if err := syscall.Kill(o.PID, 0); errors.Is(err, syscall.ESRCH) {
		return true, fmt.Sprintf("process %d is not running", o.PID)
	}
	return false, ""
}

func decodeOwner(b []byte) (Owner, error) {
	var o Owner
	d := json.NewDecoder(bytes.NewReader(b))
	if err := d.Decode(&o); err != nil {
		return o, err
	}
	if o.Version != 1 || o.Token == "" {
		return o, errors.New("not a cairn lock")
	}
	return o, nil
}

func encodeOwner(o Owner) []byte {
	b, _ := json.Marshal(o)
	return append(b, '\n')
}

// takeOwnerLock takes the lock object for this process and starts its
// heartbeat (every interval; 0 means none, for Init).
func takeOwnerLock(ctx context.Context, store lockStore, log *slog.Logger, now func() time.Time, interval time.Duration) (*ownerLock, error) {
	self := identity(now())
	ifMatch := ""
	for range 5 {
		etag, err := store.WriteLock(ctx, encodeOwner(self), ifMatch)
		if err != nil && !errors.Is(err, storage.ErrLockChanged) {
			return nil, fmt.Errorf("lock: %w", err)
		}
		// Read back what is there: it tells a store that ignored the
		// condition, and a write whose answer was lost, from a loss.
		data, cur, rerr := store.ReadLock(ctx)
		if errors.Is(rerr, storage.ErrNotExist) {
			ifMatch = ""
			continue
		}
		if rerr != nil {
			return nil, fmt.Errorf("lock: %w", rerr)
		}
		holder, derr := decodeOwner(data)
		if derr != nil {
			return nil, fmt.Errorf("%w: the lock object %s is not a cairn lock (%v); if no cairn uses this repository, cairn unlock --force replaces it", ErrLocked, store.LockURL(), derr)
		}
		if holder.Token == self.Token && !holder.Released {
			if err == nil && etag != cur {
				log.Debug("lock object ETag differs from the one its write returned", "write", etag, "read", cur)
			}
			l := &ownerLock{store: store, log: log, now: now, rec: self, etag: cur}
			l.start(interval)
			return l, nil
		}
		if holder.Released {
			ifMatch = cur
			continue
		}
		if dead, why := holder.gone(self); dead {
			log.Warn("taking over the repository's lock from a process that has ended", "holder", holder.describe(), "why", why, "lock", store.LockURL())
			ifMatch = cur
			continue
		}
		return nil, &LockedError{Location: store.LockURL(), Holder: holder, Now: now()}
	}
	return nil, fmt.Errorf("lock: the lock object %s kept changing while this process tried to take it", store.LockURL())
}

func (l *ownerLock) start(interval time.Duration) {
	if interval <= 0 {
		return
	}
	l.stop, l.done = make(chan struct{}), make(chan struct{})
	go func() {
		defer close(l.done)
		t := time.NewTicker(interval)
		defer t.Stop()
		for {
			select {
			case <-l.stop:
				return
			case <-t.C:
				ctx, cancel := context.WithTimeout(context.Background(), interval)
				err := l.refresh(ctx)
				cancel()
				if err != nil && !errors.Is(err, ErrLockLost) {
					l.log.Warn("could not refresh the repository's lock; trying again", "lock", l.store.LockURL(), "err", err)
				}
			}
		}
	}()
}

// refresh rewrites the heartbeat, on condition that the lock object is
// still the one this process last wrote.
func (l *ownerLock) refresh(ctx context.Context) error {
	l.mu.Lock()
	defer l.mu.Unlock()
	if l.lost != nil {
		return l.lost
	}
	next := l.rec
	next.Heartbeat = l.now().UTC()
	etag, err := l.writeLocked(ctx, next)
	if err != nil {
		return err
	}
	l.rec, l.etag = next, etag
	return nil
}

// writeLocked writes rec over the lock object on condition that it is
// still this process's; l.mu is held. A write of ours whose answer was
// lost (this one sent again, or an earlier heartbeat whose client gave
// up) leaves the object ours under an ETag we have not seen: the object
// still names this process's token, unreleased, and nobody else writes
// that (another owner writes its own token; unlock --force marks it
// released). Then the write goes again against the ETag read.
func (l *ownerLock) writeLocked(ctx context.Context, rec Owner) (string, error) {
	etag := l.etag
	for range 3 {
		next, err := l.store.WriteLock(ctx, encodeOwner(rec), etag)
		if !errors.Is(err, storage.ErrLockChanged) {
			return next, err
		}
		data, cur, rerr := l.store.ReadLock(ctx)
		if errors.Is(rerr, storage.ErrNotExist) {
			return "", l.loseLocked(nil, rerr)
		}
		if rerr != nil {
			return "", rerr
		}
		o, derr := decodeOwner(data)
		if derr == nil && o.Token == rec.Token && o.Released == rec.Released && o.ReleasedBy == rec.ReleasedBy && o.Heartbeat.Equal(rec.Heartbeat) {
			return cur, nil // this very write, its answer lost
		}
		if derr != nil || o.Token != rec.Token || o.Released {
			return "", l.loseLocked(data, nil)
		}
		etag = cur
	}
	return "", fmt.Errorf("lock: the lock object %s kept changing under this process's heartbeat", l.store.LockURL())
}

// confirm reads the lock object and checks that this process still owns
// it. The repository calls it before writing a snapshot and before prune
// deletes.
func (l *ownerLock) confirm(ctx context.Context) error {
	l.mu.Lock()
	defer l.mu.Unlock()
	if l.lost != nil {
		return l.lost
	}
	data, _, err := l.store.ReadLock(ctx)
	if err != nil && !errors.Is(err, storage.ErrNotExist) {
		return fmt.Errorf("confirm the repository's lock: %w", err)
	}
	if err == nil {
		if o, derr := decodeOwner(data); derr == nil && o.Token == l.rec.Token && !o.Released {
			return nil
		}
	}
	return l.loseLocked(data, err)
}

// loseLocked records that the lock is no longer this process's; l.mu is
// held. data is what the lock object holds now (nil: nothing).
func (l *ownerLock) loseLocked(data []byte, readErr error) error {
	now := "no lock object"
	if readErr == nil {
		now = "a lock object that is not a cairn lock"
		if o, err := decodeOwner(data); err == nil {
			switch {
			case o.Released && o.ReleasedBy != "":
				now = "a lock released by " + o.ReleasedBy
			case o.Released:
				now = "a released lock"
			default:
				now = "the lock of " + o.describe()
			}
		}
	}
	l.lost = fmt.Errorf("%w: %s holds %s (cairn unlock --force was run while this process was alive); it writes nothing more", ErrLockLost, l.store.LockURL(), now)
	l.log.Error("lost the repository's lock: stopping every write", "lock", l.store.LockURL(), "now", now)
	return l.lost
}

// check returns the error that ends every write once the lock is lost.
func (l *ownerLock) check() error {
	if l == nil {
		return nil
	}
	l.mu.Lock()
	defer l.mu.Unlock()
	return l.lost
}

// release stops the heartbeat and marks the lock object released, if it
// is still this process's.
func (l *ownerLock) release(ctx context.Context) error {
	if l == nil {
		return nil
	}
	if l.stop != nil {
		close(l.stop)
		<-l.done
		l.stop = nil
	}
	l.mu.Lock()
	defer l.mu.Unlock()
	if l.lost != nil {
		return nil
	}
	rec := l.rec
	rec.Released, rec.Heartbeat = true, l.now().UTC()
	if _, err := l.writeLocked(ctx, rec); errors.Is(err, ErrLockLost) {
		l.log.Warn("the repository's lock was no longer this process's when it let go", "lock", l.store.LockURL())
		return nil
	} else if err != nil {
		return fmt.Errorf("release the repository's lock: %w", err)
	}
	l.lost = errors.New("the repository is closed")
	return nil
}

// UnlockResult is what [Unlock] found and did.
type UnlockResult struct {
	// Lock names the lock: the lock object, or DIR/lock.
	Lock string
	// Holder is the owner the lock named, nil when it was free.
	Holder *Owner
	// Gone says why the holder is known to have ended ("" if not known).
	Gone string
	// Released is set when Unlock released the lock (with force).
	Released bool
}

// Unlock reports who holds the lock of the repository at location and,
// with force, releases an object-store repository's lock whoever holds
// it. It needs no repository key (the lock object is not sealed). A
// directory repository's lock is the kernel's (flock) and ends with its
// process: Unlock only reports its holder. A lock held by another
// process gives an error matching [ErrLocked] unless force released it.
//
// Releasing is a conditional write on the lock object Unlock read: if its
// owner refreshes its heartbeat in between, the owner is alive and
// nothing changes. An owner that is alive when its lock is taken stops
// writing at its next heartbeat or confirmation (see the lock's package
// notes); docs/operating.md says what is at risk meanwhile.
func Unlock(ctx context.Context, location string, force bool, o Options) (*UnlockResult, error) {
	loc, err := ParsePlace(location, o.StateDir)
	if err != nil {
		return nil, err
	}
	if !loc.ObjectStore() {
		res := &UnlockResult{Lock: loc.Within("lock")}
		if _, err := os.Stat(loc.Dir()); err != nil {
			return nil, fmt.Errorf("unlock: %w", err)
		}
		l, err := acquireLock(loc.Dir())
		if err != nil {
			return res, fmt.Errorf("%w; a directory repository's lock ends with its process, so stop that process instead", err)
		}
		return res, l.release()
	}
	be, err := loc.backend(ctx, o.S3)
	if err != nil {
		return nil, err
	}
	store := be.(lockStore)
	res := &UnlockResult{Lock: store.LockURL()}
	data, etag, err := store.ReadLock(ctx)
	if errors.Is(err, storage.ErrNotExist) {
		return res, nil
	}
	if err != nil {
		return nil, err
	}
	now := time.Now
	if o.Now != nil {
		now = o.Now
	}
	self := identity(now())
	holder, derr := decodeOwner(data)
	if derr == nil {
		if holder.Released {
			return res, nil
		}
		res.Holder = &holder
		_, res.Gone = holder.gone(self)
	}
	if !force {
		if derr != nil {
			return res, fmt.Errorf("%w: the lock object %s is not a cairn lock (%v); cairn unlock --force replaces it", ErrLocked, store.LockURL(), derr)
		}
		return res, &LockedError{Location: store.LockURL(), Holder: holder, Now: now()}
	}
	rel := self
	if derr == nil {
		rel = holder
	}
	rel.Released = true
	rel.ReleasedBy = fmt.Sprintf("cairn unlock --force on %s pid %d at %s", self.Host, self.PID, now().UTC().Format(time.RFC3339))
	if _, err := store.WriteLock(ctx, encodeOwner(rel), etag); err != nil {
		if errors.Is(err, storage.ErrLockChanged) {
			return res, fmt.Errorf("unlock: the lock object %s changed while it was being released (its owner refreshed its heartbeat, so it is running); nothing was changed", store.LockURL())
		}
		return res, err
	}
	res.Released = true
	return res, nil
}
