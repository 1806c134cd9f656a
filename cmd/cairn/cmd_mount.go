package main

import (
	"bufio"
	"context"
	"errors"
	"fmt"
	"io"
	"math"
	"os"
	"os/exec"
	"os/signal"
	"runtime/debug"
	"strings"
	"sync/atomic"
	"syscall"
	"time"

	"github.com/cairnbackup/cairn/fuse"
	"github.com/cairnbackup/cairn/repo"
	"github.com/cairnbackup/cairn/repo/appliance"
	"github.com/cairnbackup/cairn/repo/blob"
	"github.com/cairnbackup/cairn/repo/caps"
	"github.com/cairnbackup/cairn/repo/snapshot"
	"github.com/spf13/cobra"
)

type mountOptions struct {
	cacheSize  string
	allowOther bool
	daemon     bool
	logFile    string
	debug      bool
}

// mountMemoryHeadroom is what a standalone mount may use beyond its
// cache before the garbage collector works harder: read-ahead windows,
// decoded trees, the index.
const mountMemoryHeadroom = 256 << 20

// daemonReadyTimeout bounds how long mount --daemon waits for the
// detached mount to be ready.
const daemonReadyTimeout = 30 * time.Second

func newMountCommand(g *globalOptions) *cobra.Command {
	o := &mountOptions{}
	cmd := &cobra.Command{
		Use:   "mount DIR [--cache-size 64MiB] [--allow-other] [--daemon [--log FILE]]",
		Short: "mount every snapshot read-only at DIR (FUSE)",
		Long: `Mount the repository's snapshots read-only at DIR and serve them until
^C, SIGTERM, or cairn umount DIR:

  DIR/nodes/<node>/<plan>/<time>/…      a snapshot (<plan> is @none without a plan)
  DIR/nodes/<node>/<plan>/latest        the newest snapshot of that node and plan
  DIR/snapshots/<id>                    each snapshot by its short ID
  DIR/tags/<tag>/<node>/<plan>/<time>   snapshots by tag

Files keep the owners, modes, times, extended attributes and hardlinks
recorded at backup time; the extended attribute user.cairn.sha256 holds
each file's recorded SHA-256 (getfattr -n user.cairn.sha256 FILE; it
is not listed, so cp -a and rsync -X do not copy it). Every chunk read is authenticated and
re-hashed: damaged data gives EIO (and a log line naming the pack and
blob), never wrong bytes. New snapshots appear within a second.

While the mount runs outside an appliance it holds the repository:
other commands are refused ("repository is in use") until it ends. Run
the appliance (cairn serve) to keep backing up while mounted: cairn
mount then runs inside it.

--daemon detaches: it starts the mount in the background, waits until
it is ready, prints the ready line and the PID, and exits. Its log goes
to --log FILE (default: discarded once the mount is ready).`,
		Args: cobra.ExactArgs(1),
		RunE: func(cmd *cobra.Command, args []string) error {
			if o.daemon {
				return runMountDaemon(cmd.Context(), g, args[0], o)
			}
			return runMount(cmd.Context(), g, args[0], o)
		},
	}
	// The detached child forwards itself to a running appliance; the
	// parent that starts it must not.
	cmd.PersistentPreRunE = func(cmd *cobra.Command, args []string) error {
		if o.daemon || len(args) != 1 {
			return nil
		}
		if done, err := g.forwardMount(cmd, args[0], o); done {
			return err
		}
		return nil
	}
	f := cmd.Flags()
	f.StringVar(&o.cacheSize, "cache-size", "64MiB", "memory for decrypted, verified chunks")
	f.BoolVar(&o.allowOther, "allow-other", false, "let other users in, with the recorded owners and modes enforced by the kernel")
	f.BoolVar(&o.daemon, "daemon", false, "run in the background once mounted; prints the PID")
	f.StringVar(&o.logFile, "log", "", "with --daemon: append the mount's log to FILE")
	f.BoolVar(&o.debug, "debug", false, "log every FUSE request (implies --log-level debug)")
	return cmd
}

func newUmountCommand(g *globalOptions) *cobra.Command {
	return &cobra.Command{
		Use:   "umount DIR",
		Short: "unmount a cairn mount (also one whose server died)",
		Long: `Unmount the cairn mount at DIR; the cairn mount process serving it then
exits. A mount whose server died ("transport endpoint is not connected")
is detached. A busy mount (a process has a file open or its working
directory inside) is refused: close what uses it, or see fuser -vm DIR.`,
		Args: cobra.ExactArgs(1),
		RunE: func(cmd *cobra.Command, args []string) error {
			return runUmount(g, args[0])
		},
	}
}

// mountSource adapts the repository to what the file system reads.
type mountSource struct{ r *repo.Repository }

func (s mountSource) LoadBlob(ctx context.Context, h blob.Handle, buf []byte) ([]byte, error) {
	return s.r.LoadBlob(ctx, h, buf)
}

func (s mountSource) Snapshots(ctx context.Context) ([]snapshot.Entry, error) {
	return s.r.Snapshots(ctx, snapshot.Filter{})
}

func runMount(ctx context.Context, g *globalOptions, dir string, o *mountOptions) error {
	if g.shared == nil {
		// A closed terminal (SIGHUP) unmounts cleanly too, instead of
		// killing the server under a mount that would stay behind.
		// (Inside the appliance SIGHUP rereads its configuration.)
		var stop context.CancelFunc
		ctx, stop = signal.NotifyContext(ctx, syscall.SIGHUP)
		defer stop()
	}
	dir = g.abs(dir)
	size, err := parseSize(o.cacheSize)
	if err != nil || size < 1<<20 || size > math.MaxInt {
		return usageError{fmt.Errorf("--cache-size: %q: give at least 1MiB", o.cacheSize)}
	}
	// A mount the caller made and passed with the request (forwardMount)
	// is served here; its mount point is in the caller's file system view.
	passed := appliance.PassedFile(ctx)
	if passed == nil {
		if err := checkMountPoint(dir); err != nil {
			return err
		}
	}
	r, release, err := g.open(ctx, repo.Options{ReadOnly: true})
	if err != nil {
		return err
	}
	defer release()
	src := mountSource{r}
	list, err := src.Snapshots(ctx)
	if err != nil {
		return err
	}
	if o.debug {
		g.logLevel = "debug"
	}
	log := g.logger()
	if g.shared == nil && os.Getenv("GOMEMLIMIT") == "" {
		// This process only serves the mount: keep the garbage of
		// chunks passing through the cache from doubling the heap.
		debug.SetMemoryLimit(size + mountMemoryHeadroom)
	}
	// The mount's loads outlive ctx: after ^C, files still open on a
	// busy mount keep reading while it is detached.
	m, err := fuse.Mount(context.WithoutCancel(ctx), dir, src, fuse.Options{CacheSize: int(size), AllowOther: o.allowOther, Logger: log, Debug: o.debug, FD: passed})
	if err != nil {
		return err
	}
	g.printf("mounted %d snapshots at %s (read-only); unmount with cairn umount %s or ^C\n", len(list), dir, dir)
	select {
	case <-m.Done():
		log.Info("unmounted", "dir", dir)
		return nil
	case <-ctx.Done():
	}
	// With a passed descriptor the caller unmounts (it is stopping
	// too): that ends the server; a busy mount it detached serves its
	// open files on. Otherwise this process unmounts: a clean unmount
	// stops the server; a lazily detached one serves the files still
	// open until they are closed or this process ends.
	busy := "the caller's mount is still served: files are open on it"
	if passed == nil {
		if err := m.Unmount(); err != nil {
			return err
		}
		busy = "detached the busy mount; files still open on it fail once this command ends"
	}
	select {
	case <-m.Done():
	case <-time.After(5 * time.Second):
		log.Warn(busy, "dir", dir)
	}
	log.Info("unmounted", "dir", dir)
	return nil
}

// checkMountPoint refuses a missing directory, a stale mount and a
// directory that is already a cairn mount.
func checkMountPoint(dir string) error {
	var st syscall.Stat_t
	if err := syscall.Stat(dir, &st); err != nil {
		if errors.Is(err, syscall.ENOTCONN) {
			return fmt.Errorf("%s is a cairn mount whose server died; clean it with cairn umount %s", dir, dir)
		}
		return fmt.Errorf("mount point: %w", &os.PathError{Op: "stat", Path: dir, Err: err})
	}
	if st.Mode&syscall.S_IFMT != syscall.S_IFDIR {
		return fmt.Errorf("mount point %s is not a directory", dir)
	}
	if _, fstype, ok := fuse.MountedAt(dir); ok && fstype == "fuse.cairn" {
		return fmt.Errorf("%s is a cairn mount already", dir)
	}
	return nil
}

// runMountDaemon starts `cairn mount` without --daemon as a detached
// process (its own session, standard input from /dev/null, its log to
// --log or discarded), waits for its ready line on a pipe, prints it
// with the PID and returns.
func runMountDaemon(ctx context.Context, g *globalOptions, dir string, o *mountOptions) error {
	if g.shared != nil {
		return usageError{errors.New("mount --daemon detaches the client: run it where you run cairn, not inside the appliance")}
	}
	exe, err := os.Executable()
	if err != nil {
		return err
	}
	var args []string
	for _, a := range g.args {
		if a == "--daemon" || strings.HasPrefix(a, "--daemon=") {
			continue
		}
		args = append(args, a)
	}
	devnull, err := os.Open(os.DevNull)
	if err != nil {
		return err
	}
	defer devnull.Close()
	var logf *os.File
	if o.logFile != "" {
		logf, err = os.OpenFile(g.abs(o.logFile), os.O_WRONLY|os.O_CREATE|os.O_APPEND, 0o600)
	} else {
		// Keep what the mount says before it is ready, to report a
		// failure; the file is gone once this command exits.
		logf, err = os.CreateTemp("", "cairn-mount-*.log")
		if err == nil {
			os.Remove(logf.Name())
		}
	}
	if err != nil {
		return err
	}
	defer logf.Close()
	pr, pw, err := os.Pipe()
	if err != nil {
		return err
	}
	defer pr.Close()
	child := exec.Command(exe, args...)
	child.Dir = g.abs(".")
	child.Stdin, child.Stdout, child.Stderr = devnull, pw, logf
	child.SysProcAttr = &syscall.SysProcAttr{Setsid: true}
	err = child.Start()
	pw.Close()
	if err != nil {
		return err
	}
	ready := make(chan string, 1)
	go func() {
		line, _ := bufio.NewReader(pr).ReadString('\n')
		ready <- line
	}()
	exited := make(chan error, 1)
	go func() { exited <- child.Wait() }()
	fail := func(why string) error {
		if o.logFile == "" {
			logf.Seek(0, io.SeekStart)
			io.Copy(g.stderr, logf)
			return errors.New(why)
		}
		return fmt.Errorf("%s; see %s", why, g.abs(o.logFile))
	}
	select {
	case line := <-ready:
		if strings.HasPrefix(line, "mounted ") {
			g.printf("%spid %d\n", line, child.Process.Pid)
			return nil
		}
		err := <-exited
		return fail(fmt.Sprintf("the mount stopped before it was ready (%v)", err))
	case <-time.After(daemonReadyTimeout):
		child.Process.Signal(syscall.SIGTERM)
		return fail(fmt.Sprintf("the mount was not ready after %s; stopped it", daemonReadyTimeout))
	case <-ctx.Done():
		child.Process.Signal(syscall.SIGTERM)
		return ctx.Err()
	}
}

func runUmount(g *globalOptions, dir string) error {
	dir = g.abs(dir)
	_, fstype, ok := fuse.MountedAt(dir)
	if !ok {
		return fmt.Errorf("%s is not mounted", dir)
	}
	if fstype != "fuse.cairn" {
		return fmt.Errorf("%s is not a cairn mount (it is %s)", dir, fstype)
	}
	var st syscall.Stat_t
	if err := syscall.Stat(dir, &st); errors.Is(err, syscall.ENOTCONN) {
		if err := fuse.Detach(dir); err != nil {
			return err
		}
		g.printf("cleaned up %s (its server had died)\n", dir)
		return nil
	}
	if caps.Have(caps.SysAdmin) {
		if err := syscall.Unmount(dir, 0); err != nil {
			if errors.Is(err, syscall.EBUSY) {
				return fmt.Errorf("%s is busy: a process has a file open or its working directory inside (fuser -vm %s)", dir, dir)
			}
			return fmt.Errorf("unmount %s: %w", dir, err)
		}
	} else if out, err := exec.Command("fusermount3", "-u", dir).CombinedOutput(); err != nil {
		return fmt.Errorf("fusermount3 -u %s: %v: %s", dir, err, strings.TrimSpace(string(out)))
	}
	g.printf("unmounted %s\n", dir)
	return nil
}

// forwardMount runs `cairn mount DIR` in the running appliance. With
// CAP_SYS_ADMIN (root, cairn-mount.service) it makes the mount here,
// in this process's mount namespace, and passes the /dev/fuse
// connection with the request for the appliance to serve: under systemd
// the appliance has a mount namespace of its own (ProtectSystem=,
// PrivateTmp=), where a mount it made would be seen by nobody else.
// SIGINT or SIGTERM unmount here, which ends the appliance's server and
// so the command; whatever ends the command, DIR is not left mounted
// without a server. Without the capability the appliance mounts itself
// (g.forward), as it always did.
func (g *globalOptions) forwardMount(cmd *cobra.Command, dir string, o *mountOptions) (bool, error) {
	if g.shared != nil || g.repoDir == "" || remote(cmd) || !caps.Have(caps.SysAdmin) {
		return g.forward(cmd)
	}
	dir = g.abs(dir)
	ctx := cmd.Context()
	var mounted atomic.Bool
	open := func() (*os.File, error) {
		if err := checkMountPoint(dir); err != nil {
			return nil, err
		}
		f, err := fuse.MountFD(dir, o.allowOther)
		mounted.Store(err == nil)
		return f, err
	}
	unmounted := make(chan struct{})
	stop := context.AfterFunc(ctx, func() {
		defer close(unmounted)
		if mounted.Load() {
			if _, err := fuse.UnmountDir(dir); err != nil {
				fmt.Fprintln(g.stderr, "cairn:", err)
			}
		}
	})
	req := &appliance.Request{Kind: "operator", Args: g.args, Cwd: g.abs("."), StderrTerminal: g.stderrTTY, Repo: g.abs(g.repoDir), TZ: callerTZ()}
	code, err := appliance.CallWithFile(ctx, g.socketPath(), req, open, nil, g.stdout, g.stderr)
	if !stop() {
		<-unmounted // the unmount above has started: let it finish first
	}
	if errors.Is(err, appliance.ErrNotRunning) {
		return false, nil // no appliance: this process mounts and serves
	}
	if mounted.Load() {
		// The command is over, so nothing serves DIR any more: an
		// appliance that refused it or went away left it mounted.
		if _, fstype, ok := fuse.MountedAt(dir); ok && fstype == "fuse.cairn" {
			if derr := fuse.Detach(dir); derr != nil {
				err = errors.Join(err, derr)
			}
		}
	}
	if err != nil {
		return true, fmt.Errorf("mount: %w", err)
	}
	return true, &forwarded{code: code}
}
