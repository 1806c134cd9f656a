package main

import (
	"bufio"
	"bytes"
	"errors"
	"fmt"
	"io"
	"net"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"syscall"
	"time"

	"github.com/cairnbackup/cairn/repo/repotest/datagen"
)

// daemon is a long-running child (cairn serve, cairn mount): its CPU
// time and peak RSS over its whole life come from wait4's rusage.
type daemon struct {
	cmd  *exec.Cmd
	log  *os.File
	done chan struct{}
}

// startDaemon starts c with output to logName and returns once it has
// printed a line containing ready (when ready is not empty).
func startDaemon(c command, logName, ready string, timeout time.Duration) (*daemon, error) {
	log, err := os.Create(logName)
	if err != nil {
		return nil, err
	}
	fmt.Fprintf(log, "$ %s\n", strings.Join(c.args, " "))
	cmd := exec.Command(c.args[0], c.args[1:]...)
	cmd.Env = append(baseEnv(), c.env...)
	cmd.Dir = c.dir
	cmd.Stdout = log
	pr, pw := io.Pipe()
	cmd.Stderr = pw
	if err := cmd.Start(); err != nil {
		log.Close()
		return nil, err
	}
	d := &daemon{cmd: cmd, log: log, done: make(chan struct{})}
	found := make(chan struct{})
	go func() {
		sc := bufio.NewScanner(pr)
		signalled := false
		for sc.Scan() {
			fmt.Fprintln(log, sc.Text())
			if !signalled && ready != "" && strings.Contains(sc.Text(), ready) {
				close(found)
				signalled = true
			}
		}
		io.Copy(log, pr)
	}()
	go func() {
		cmd.Wait()
		pw.Close()
		close(d.done)
	}()
	if ready == "" {
		return d, nil
	}
	select {
	case <-found:
		return d, nil
	case <-d.done:
		return nil, fmt.Errorf("%s exited before it was ready (%s):\n%s", c.args[0], cmd.ProcessState, tail(logName, 10))
	case <-time.After(timeout):
		d.stop(5 * time.Second)
		return nil, fmt.Errorf("%s not ready after %s:\n%s", c.args[0], timeout, tail(logName, 10))
	}
}

// exited reports whether the daemon has ended.
func (d *daemon) exited() bool {
	select {
	case <-d.done:
		return true
	default:
		return false
	}
}

// stop sends SIGTERM, waits up to grace, then kills. It returns the
// daemon's CPU seconds and peak RSS in KiB.
func (d *daemon) stop(grace time.Duration) (cpu float64, maxRSSKiB int64, graceful bool) {
	d.cmd.Process.Signal(syscall.SIGTERM)
	graceful = true
	select {
	case <-d.done:
	case <-time.After(grace):
		graceful = false
		d.cmd.Process.Kill()
		<-d.done
	}
	d.log.Close()
	if ru, ok := d.cmd.ProcessState.SysUsage().(*syscall.Rusage); ok {
		cpu = time.Duration(ru.Utime.Nano() + ru.Stime.Nano()).Seconds()
		maxRSSKiB = ru.Maxrss
	}
	return cpu, maxRSSKiB, graceful
}

// freePort returns a TCP port on 127.0.0.1 that was free a moment ago.
func freePort() (int, error) {
	l, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		return 0, err
	}
	defer l.Close()
	return l.Addr().(*net.TCPAddr).Port, nil
}

// push starts an appliance (cairn serve) on a second repository and
// pushes the source tree to it over loopback SSH twice: first into the
// empty repository, then unchanged.
func (b *bench) push() error {
	c := b.cairn
	dir := filepath.Join(b.o.work, "repos", "cairn-appliance")
	key := filepath.Join(b.o.work, "repos", "node_key")
	if err := removeAll(dir, dir+".key", dir+".host_key", dir+".yaml", dir+".sock", key, key+".pub"); err != nil {
		return err
	}
	if _, err := output(c.env(), "", c.bin, "--repo", dir, "init"); err != nil {
		return err
	}
	if _, err := output(nil, "", c.bin, "keygen", key); err != nil {
		return err
	}
	pub, err := os.ReadFile(key + ".pub")
	if err != nil {
		return err
	}
	port, err := freePort()
	if err != nil {
		return err
	}
	conf := fmt.Sprintf("listen: 127.0.0.1:%d\nnodes:\n  peers:\n    keys: [%q]\n    permissions: [push, read]\n", port, strings.TrimSpace(string(pub)))
	if err := os.WriteFile(dir+".yaml", []byte(conf), 0o600); err != nil {
		return err
	}
	hostKey, err := output(nil, "", c.bin, "keygen", "--show", dir+".host_key")
	if err != nil {
		return err
	}
	serve, err := startDaemon(c.cmdRepo(dir, "serve"), filepath.Join(b.o.work, "logs", "cairn-serve.log"), "msg=serving", time.Minute)
	if err != nil {
		return err
	}
	stopped := false
	defer func() {
		if !stopped {
			serve.stop(40 * time.Second)
		}
	}()
	url := fmt.Sprintf("ssh://peers@127.0.0.1:%d", port)
	for _, phase := range []string{"push", "push-unchanged"} {
		cmd := command{args: []string{c.bin, "push", url, "-i", key, "--host-key", hostKey, b.src}, warnCodes: []int{3}}
		b.measure("cairn", phase, cmd, b.data.bytes())
		if serve.exited() {
			return fmt.Errorf("cairn serve ended during %s:\n%s", phase, tail(serve.log.Name(), 10))
		}
	}
	cpu, rss, graceful := serve.stop(40 * time.Second)
	stopped = true
	size, err := du(dir, true)
	if err != nil {
		return err
	}
	b.report.Appliance = &applianceResult{CPUSeconds: cpu, MaxRSSKiB: rss, GracefulStop: graceful, RepoBytes: size}
	fmt.Printf("cairn  serve (both pushes): CPU %.2f s, RSS %.0f MiB, repository %s\n", cpu, float64(rss)/1024, mib(size))
	return nil
}

// applianceResult is what the appliance (cairn serve) used over both
// pushes: its whole life, start-up included.
type applianceResult struct {
	CPUSeconds   float64 `json:"cpu_seconds"`
	MaxRSSKiB    int64   `json:"max_rss_kib"`
	GracefulStop bool    `json:"graceful_stop"`
	RepoBytes    int64   `json:"repository_apparent_bytes"`
}

// fuseResult is what the cairn mount process used while the largest
// file was read through it, start-up included.
type fuseResult struct {
	File       string  `json:"file"`
	Path       string  `json:"path_in_mount"`
	CPUSeconds float64 `json:"mount_cpu_seconds"`
	MaxRSSKiB  int64   `json:"mount_max_rss_kib"`
}

// fuseRead mounts the repository with cairn mount, if cairn has it, and
// reads the largest file that is not a sparse image of the latest
// snapshot with a 1 MiB buffer, with the page cache dropped first.
func (b *bench) fuseRead() error {
	c := b.cairn
	help, err := exec.Command(c.bin, "mount", "--help").CombinedOutput()
	if err != nil || !bytes.Contains(help, []byte("cairn mount")) {
		return skipError{"this cairn has no mount command (`cairn mount --help` failed)"}
	}
	if _, err := os.Stat("/dev/fuse"); err != nil {
		return skipError{"no /dev/fuse"}
	}
	file, size := largestFile(b.data.walk)
	if file == "" {
		return skipError{"the tree has no regular file"}
	}
	mnt := filepath.Join(b.o.work, "mnt")
	unmountStale(mnt)
	if err := os.MkdirAll(mnt, 0o755); err != nil {
		return err
	}
	logName := filepath.Join(b.o.work, "logs", "cairn-mount.log")
	d, err := startDaemon(c.cmd("mount", mnt), logName, "", 0)
	if err != nil {
		return err
	}
	defer unmountStale(mnt)
	stopped := false
	defer func() {
		if !stopped {
			d.stop(10 * time.Second)
		}
	}()
	// A snapshot mirrors the absolute paths backed up; the mount shows
	// it as nodes/NODE/PLAN/latest (@none: no plan).
	rel := filepath.Join(strings.TrimPrefix(b.src, "/"), filepath.FromSlash(file))
	candidates := []string{
		filepath.Join(mnt, "nodes", "peers", "@none", "latest", rel),
		filepath.Join(mnt, "latest", rel),
	}
	path, err := waitForAny(candidates, d, time.Minute)
	if err != nil {
		return fmt.Errorf("%w\n%s", err, tail(logName, 10))
	}
	dropCaches()
	m := &measurement{Tool: "cairn", Phase: "fuse", Command: []string{"read " + path + " (1 MiB buffer)"}, Log: logName, Bytes: size}
	m.CacheDrop = true
	busy := machineCPU()
	start := time.Now()
	n, err := readAll(path)
	m.WallSeconds = time.Since(start).Seconds()
	m.Status = "ok"
	if err == nil && n != size {
		err = fmt.Errorf("read %d bytes of %d", n, size)
	}
	if err != nil {
		m.Status, m.Note = "failed", err.Error()
	}
	cpu, rss, graceful := d.stop(10 * time.Second)
	stopped = true
	m.setOther(busy)                      // before the mount's CPU is known: it counts as "other" here
	m.UserSeconds, m.MaxRSSKiB = cpu, rss // the mount process's, user and system together
	if !graceful {
		m.Note = strings.TrimPrefix(m.Note+"; cairn mount did not stop on SIGTERM", "; ")
	}
	m.setRate()
	b.record(m)
	b.report.Fuse = &fuseResult{File: file, Path: path, CPUSeconds: cpu, MaxRSSKiB: rss}
	return nil
}

// largestFile returns the largest regular file that is not sparse-image
// like (under vm/), and its size.
func largestFile(walk []datagen.Entry) (string, int64) {
	var best string
	var size int64 = -1
	for _, e := range walk {
		if e.Type == "file" && !strings.HasPrefix(e.Path, "vm/") && e.Size > size {
			best, size = e.Path, e.Size
		}
	}
	return best, size
}

// waitForAny waits until one of the paths exists, or the daemon ends.
func waitForAny(paths []string, d *daemon, timeout time.Duration) (string, error) {
	deadline := time.Now().Add(timeout)
	for time.Now().Before(deadline) {
		for _, p := range paths {
			if _, err := os.Stat(p); err == nil {
				return p, nil
			}
		}
		if d.exited() && !d.cmd.ProcessState.Success() {
			return "", fmt.Errorf("cairn mount ended before the file appeared (%s)", d.cmd.ProcessState)
		}
		time.Sleep(100 * time.Millisecond)
	}
	return "", fmt.Errorf("none of %s appeared within %s", strings.Join(paths, ", "), timeout)
}

// readAll reads a file sequentially with a 1 MiB buffer.
func readAll(name string) (int64, error) {
	f, err := os.Open(name)
	if err != nil {
		return 0, err
	}
	defer f.Close()
	buf := make([]byte, 1<<20)
	var n int64
	for {
		k, err := f.Read(buf)
		n += int64(k)
		if errors.Is(err, io.EOF) {
			return n, nil
		}
		if err != nil {
			return n, err
		}
	}
}

// unmountStale lazily unmounts dir if something is mounted there (a
// killed FUSE server leaves a stale mount).
func unmountStale(dir string) {
	data, err := os.ReadFile("/proc/mounts")
	if err != nil {
		return
	}
	for _, line := range strings.Split(string(data), "\n") {
		if f := strings.Fields(line); len(f) > 1 && f[1] == dir {
			exec.Command("umount", "-l", dir).Run()
			return
		}
	}
}
