package fuse

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"strings"
	"sync"
	"syscall"
	"time"

	"github.com/cairnbackup/cairn/repo/caps"
	"github.com/cairnbackup/cairn/repo/snapfs"
	"github.com/cairnbackup/cairn/repo/snapshot"
	"github.com/hanwen/go-fuse/v2/fs"
	gofuse "github.com/hanwen/go-fuse/v2/fuse"
)

// Source is what the file system reads: blobs (verified by the loader)
// and the snapshot list. *repo.Repository satisfies BlobLoader; the
// caller adapts its Snapshots.
type Source interface {
	snapfs.BlobLoader
	// Snapshots returns all snapshots, in any order.
	Snapshots(ctx context.Context) ([]snapshot.Entry, error)
}

// Options configure [Mount]. The zero value is usable.
type Options struct {
	// CacheSize is the blob cache budget in bytes of plaintext; zero
	// means 64 MiB ([DefaultCacheSize]).
	CacheSize int
	// ReadAhead is how many chunks a sequential reader has fetched
	// ahead of it, in parallel; zero means 4, negative disables
	// read-ahead.
	ReadAhead int
	// Refresh is how old the snapshot list may be before a lookup or
	// listing of a synthetic directory re-reads it; zero means 1 s.
	Refresh time.Duration
	// AllowOther lets users other than the one who mounts see the
	// file system. The kernel then checks every access against the
	// recorded owners and modes (default_permissions), so nobody reads
	// through the mount what they could not read on the original
	// machine.
	AllowOther bool
	// Logger receives damaged and missing blobs (with the error,
	// which names the pack and the blob) and failures to re-read the
	// snapshot list. Nil discards.
	Logger *slog.Logger
	// Debug logs every FUSE request and reply to Logger, at level
	// Debug.
	Debug bool
	// FD, when set, is a /dev/fuse connection already mounted at dir by
	// another process ([MountFD]): Mount serves it instead of mounting,
	// and cannot unmount it ([Mounted.Unmount] then does nothing; the
	// process that mounted it unmounts, which ends the server).
	FD *os.File
}

// Default option values.
const (
	DefaultCacheSize = 64 << 20
	DefaultReadAhead = 4
	DefaultRefresh   = time.Second
)

// Kernel cache lifetimes. Snapshot contents never change: the kernel may
// keep their attributes, names and pages for an hour. The synthetic
// directories change as snapshots come and go.
const (
	immutableTimeout = time.Hour
	metaTimeout      = time.Second
)

// kernelReadAhead is the kernel's read-ahead for the mount in KiB, so
// that sequential reads arrive in requests of 1 MiB (MaxWrite) rather
// than the default 128 KiB: eight times fewer round trips.
const kernelReadAhead = 1024

// raiseReadAhead sets the read-ahead of the mount's backing device
// (every FUSE mount has its own, named by its device number) through
// sysfs, which only root may write.
func raiseReadAhead(dir string, kb int) error {
	dev := mountDevice(dir)
	if dev == "" {
		return fmt.Errorf("%s is not in /proc/self/mountinfo", dir)
	}
	return os.WriteFile("/sys/class/bdi/"+dev+"/read_ahead_kb", []byte(strconv.Itoa(kb)), 0)
}

// MountedAt reports whether dir is a mount point in this process's mount
// namespace, with the device number ("0:42") and file system type of
// the file system mounted there last. It reads /proc/self/mountinfo and
// never touches the mount itself.
func MountedAt(dir string) (dev, fstype string, ok bool) {
	b, err := os.ReadFile("/proc/self/mountinfo")
	if err != nil {
		return "", "", false
	}
	for _, line := range strings.Split(string(b), "\n") {
		// ID PARENT MAJ:MIN ROOT MOUNTPOINT OPTIONS [OPTIONAL...] - FSTYPE SOURCE SUPEROPTIONS
		f := strings.Fields(line)
		if len(f) < 5 || unescapeOctal(f[4]) != dir {
			continue
		}
		dev, fstype, ok = f[2], "", true
		for i := 5; i+1 < len(f); i++ {
			if f[i] == "-" {
				fstype = f[i+1]
				break
			}
		}
	}
	return dev, fstype, ok
}

// mountDevice returns the device number of the file system mounted last
// at dir, or "" when dir is no mount point.
func mountDevice(dir string) string {
	dev, _, _ := MountedAt(dir)
	return dev
}

func isMountPoint(dir string) bool { return mountDevice(dir) != "" }

// unescapeOctal undoes the \ooo escapes of /proc/self/mountinfo (a
// space is \040).
func unescapeOctal(s string) string {
	if !strings.Contains(s, `\`) {
		return s
	}
	var b strings.Builder
	for i := 0; i < len(s); i++ {
		if s[i] == '\\' && i+4 <= len(s) {
			if n, err := strconv.ParseUint(s[i+1:i+4], 8, 8); err == nil {
				b.WriteByte(byte(n))
				i += 3
				continue
			}
		}
		b.WriteByte(s[i])
	}
	return b.String()
}

// Mounted is a mounted snapshot file system.
type Mounted struct {
	dir    string
	server *gofuse.Server
	fsys   *filesys
	done   chan struct{}
	passed bool // served from Options.FD: mounted, and unmounted, elsewhere

	unmountMu sync.Mutex
}

// filesys is the state shared by every node of one mount.
type filesys struct {
	ctx    context.Context // the mount's lifetime: cancelled once the server stopped
	cancel context.CancelFunc
	src    Source
	cache  *snapfs.Cache
	log    *slog.Logger
	ahead  int       // Options.ReadAhead
	mtime  time.Time // when the mount started: the time of empty synthetic directories
	uid    uint32    // the owner of synthetic entries
	gid    uint32
	fresh  time.Duration
	nowFor func() time.Time

	layMu sync.Mutex
	lay   *layout
	layAt time.Time

	bgMu    sync.Mutex
	stopped bool
	wg      sync.WaitGroup // read-ahead loads of every handle
}

// Mount mounts the snapshots of src read-only at dir and serves them
// until the file system is unmounted ([Mounted.Unmount], cairn umount,
// umount or fusermount3 -u). ctx bounds every load from src; cancel it
// only after the mount is gone.
//
// The mount shows up in /proc/mounts as "cairn DIR fuse.cairn ro,…".
// As root it is made with mount(2) directly; otherwise through
// fusermount3 (package fuse3).
func Mount(ctx context.Context, dir string, src Source, o Options) (*Mounted, error) {
	dir, err := filepath.Abs(dir)
	if err != nil {
		return nil, err
	}
	if o.CacheSize <= 0 {
		o.CacheSize = DefaultCacheSize
	}
	switch {
	case o.ReadAhead == 0:
		o.ReadAhead = DefaultReadAhead
	case o.ReadAhead < 0:
		o.ReadAhead = 0
	}
	if o.Refresh <= 0 {
		o.Refresh = DefaultRefresh
	}
	if o.Logger == nil {
		o.Logger = slog.New(slog.DiscardHandler)
	}
	ctx, cancel := context.WithCancel(ctx)
	fsys := &filesys{
		ctx: ctx, cancel: cancel, src: src, cache: snapfs.NewCache(src, o.CacheSize), log: o.Logger,
		ahead: o.ReadAhead, fresh: o.Refresh, mtime: time.Now(), nowFor: time.Now,
		uid: uint32(os.Geteuid()), gid: uint32(os.Getegid()),
	}
	if _, err := fsys.layout(); err != nil {
		cancel()
		return nil, fmt.Errorf("mount: %w", err)
	}
	root := &metaNode{fsys: fsys, path: ""}
	// go-fuse's own diagnostics and, with Debug, its request trace go
	// to the logger at debug level.
	goFuseLog := slog.NewLogLogger(o.Logger.Handler(), slog.LevelDebug)
	entry, attr := metaTimeout, metaTimeout
	negative := metaTimeout
	mo := gofuse.MountOptions{
		FsName:       "cairn",
		Name:         "cairn",
		Options:      []string{"ro", "nosuid", "nodev"},
		AllowOther:   o.AllowOther,
		MaxReadAhead: 1 << 20,
		// MaxWrite also sets max_read and the kernel's max_pages:
		// reads arrive in requests of up to 1 MiB instead of 128 KiB.
		MaxWrite:    mountMaxRead,
		EnableLocks: false,
		// The kernel keeps symlink targets: a path through latest or
		// any link in a snapshot costs no READLINK per lookup. A link
		// whose target moves (latest) gets a new time with it, and
		// the kernel drops the cached target when it sees the time
		// change (at most a second later, like everything synthetic).
		EnableSymlinkCaching: true,
		Debug:                o.Debug,
		Logger:               goFuseLog,
	}
	if o.AllowOther {
		mo.Options = append(mo.Options, "default_permissions")
	}
	mountPoint := dir
	switch {
	case o.FD != nil:
		// go-fuse serves a descriptor passed as /dev/fd/N, and closes
		// it when it stops: give it a copy, o.FD stays the caller's.
		fd, err := syscall.Dup(int(o.FD.Fd()))
		if err != nil {
			cancel()
			return nil, fmt.Errorf("mount %s: %w", dir, err)
		}
		syscall.CloseOnExec(fd)
		mountPoint = fmt.Sprintf("/dev/fd/%d", fd)
	case caps.Have(caps.SysAdmin):
		// mount(2) itself: root, or the service's user with
		// CAP_SYS_ADMIN (NoNewPrivileges rules out setuid fusermount3).
		mo.DirectMountStrict = true
		mo.DirectMountFlags = syscall.MS_RDONLY | syscall.MS_NOSUID | syscall.MS_NODEV
	}
	server, err := fs.Mount(mountPoint, root, &fs.Options{
		MountOptions:    mo,
		EntryTimeout:    &entry,
		AttrTimeout:     &attr,
		NegativeTimeout: &negative,
		// Mode 0000 (as /etc/shadow has on some systems) stays 0000;
		// go-fuse would show 0644. Owners are shown as recorded, uid 0
		// included (no Options.UID/GID).
		NullPermissions: true,
		Logger:          goFuseLog,
	})
	if err != nil {
		cancel()
		return nil, fmt.Errorf("mount %s: %w", dir, err)
	}
	if os.Geteuid() == 0 && o.FD == nil {
		if err := raiseReadAhead(dir, kernelReadAhead); err != nil {
			o.Logger.Debug("kernel read-ahead stays at its default", "err", err)
		}
	}
	m := &Mounted{dir: dir, server: server, fsys: fsys, done: make(chan struct{}), passed: o.FD != nil}
	go func() {
		server.Wait()
		// No request can come any more: stop and wait for the
		// read-ahead of handles the kernel never released.
		fsys.stop()
		close(m.done)
	}()
	return m, nil
}

// Dir returns the absolute mount point.
func (m *Mounted) Dir() string { return m.dir }

// Wait blocks until the file system is unmounted and the server has
// stopped: after [Mounted.Unmount], or after someone else unmounted it.
// A lazily detached mount (see Unmount) stops only once the last file
// open on it is closed.
func (m *Mounted) Wait() { <-m.done }

// Done is closed when [Mounted.Wait] would return.
func (m *Mounted) Done() <-chan struct{} { return m.done }

// Unmount unmounts the file system. When it is busy (a process has a
// file open or its working directory inside), it is detached lazily:
// it disappears from the file system tree at once, and the server
// keeps answering for the files still open until they are closed.
// Unmounting a file system that is no longer mounted does nothing.
func (m *Mounted) Unmount() error {
	m.unmountMu.Lock()
	defer m.unmountMu.Unlock()
	select {
	case <-m.done:
		return nil
	default:
	}
	if m.passed {
		return nil
	}
	err := m.server.Unmount()
	if err == nil {
		return nil
	}
	select {
	case <-m.done: // unmounted by someone else meanwhile
		return nil
	default:
	}
	if !isMountPoint(m.dir) {
		return nil // unmounted by someone else; the server is stopping
	}
	if derr := Detach(m.dir); derr != nil {
		return errors.Join(fmt.Errorf("unmount %s: %w", m.dir, err), derr)
	}
	return nil
}

// Detach lazily unmounts the FUSE file system at dir (MNT_DETACH as
// root, fusermount3 -u -z otherwise). It is how a mount whose server
// died ("transport endpoint is not connected") or that is busy is
// removed.
func Detach(dir string) error {
	if caps.Have(caps.SysAdmin) {
		if err := syscall.Unmount(dir, syscall.MNT_DETACH); err != nil {
			return fmt.Errorf("unmount %s: %w", dir, err)
		}
		return nil
	}
	if out, err := exec.Command("fusermount3", "-u", "-z", dir).CombinedOutput(); err != nil {
		return fmt.Errorf("fusermount3 -u -z %s: %v: %s", dir, err, out)
	}
	return nil
}

// layout returns the synthetic tree, re-reading the snapshot list when
// it is older than the refresh interval. When re-reading fails, the
// error is logged and the previous layout kept; only the first read at
// mount time fails.
func (f *filesys) layout() (*layout, error) {
	f.layMu.Lock()
	defer f.layMu.Unlock()
	now := f.nowFor()
	if f.lay != nil && now.Sub(f.layAt) < f.fresh {
		return f.lay, nil
	}
	list, err := f.src.Snapshots(f.ctx)
	if err != nil {
		if f.lay == nil {
			return nil, fmt.Errorf("list snapshots: %w", err)
		}
		f.log.Error("re-reading the snapshot list failed; showing the previous one", "err", err)
		f.layAt = now
		return f.lay, nil
	}
	f.lay, f.layAt = buildLayout(list, f.mtime, now), now
	return f.lay, nil
}
