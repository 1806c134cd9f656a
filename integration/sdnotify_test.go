package integration

import (
	"bufio"
	"fmt"
	"net"
	"os/exec"
	"path/filepath"
	"strconv"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/cairnbackup/cairn/integration/apptest"
	"golang.org/x/sys/unix"
)

// notifySocket is the service manager's side of the sd_notify protocol:
// a unixgram socket cairn sends its state datagrams to.
type notifySocket struct {
	t    *testing.T
	path string
	conn *net.UnixConn
}

func newNotifySocket(t *testing.T) *notifySocket {
	path := filepath.Join(t.TempDir(), "notify")
	conn, err := net.ListenUnixgram("unixgram", &net.UnixAddr{Name: path, Net: "unixgram"})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { conn.Close() })
	return &notifySocket{t: t, path: path, conn: conn}
}

// next returns the next datagram, failing the test after a minute.
func (n *notifySocket) next() string {
	n.t.Helper()
	n.conn.SetReadDeadline(time.Now().Add(time.Minute))
	buf := make([]byte, 4096)
	k, err := n.conn.Read(buf)
	if err != nil {
		n.t.Fatalf("no notification: %v", err)
	}
	return string(buf[:k])
}

// cairn serve under a service manager (Type=notify): READY=1 arrives
// once the SSH port and the operator socket accept, RELOADING=1 and
// READY=1 frame a SIGHUP's reload, STOPPING=1 follows SIGTERM, and
// nothing is sent before READY.
func TestServeNotifiesServiceManager(t *testing.T) {
	e := newEnv(t)
	e.ok("init")
	lyra := newNode(t, "lyra", "push")
	port := apptest.FreePort(t)
	e.writeConfig(port, lyra)
	ns := newNotifySocket(t)
	cmd := exec.Command(cairnBin, "serve")
	cmd.Env = append(append(cleanEnviron(), e.vars...), "NOTIFY_SOCKET="+ns.path)
	var log strings.Builder
	cmd.Stderr = &log
	if err := cmd.Start(); err != nil {
		t.Fatal(err)
	}
	exited := make(chan struct{})
	var waitErr error
	go func() { waitErr = cmd.Wait(); close(exited) }()
	defer func() {
		cmd.Process.Kill()
		<-exited
		if t.Failed() {
			t.Logf("appliance log:\n%s", log.String())
		}
	}()

	want := fmt.Sprintf("READY=1\nSTATUS=serving 1 nodes on 127.0.0.1:%d", port)
	if got := ns.next(); got != want {
		t.Fatalf("first notification %q, want %q", got, want)
	}
	// READY means serving: the SSH port answers with its banner and the
	// operator socket runs commands.
	c, err := net.DialTimeout("tcp", fmt.Sprintf("127.0.0.1:%d", port), 10*time.Second)
	if err != nil {
		t.Fatalf("READY=1 sent but the SSH port does not accept: %v", err)
	}
	c.SetReadDeadline(time.Now().Add(time.Minute))
	banner, err := bufio.NewReader(c).ReadString('\n')
	c.Close()
	if err != nil || !strings.HasPrefix(banner, "SSH-2.0-") {
		t.Fatalf("READY=1 sent but the SSH port says %q (%v)", banner, err)
	}
	e.ok("snapshots")

	// SIGHUP: RELOADING=1 with the monotonic time of the request, then
	// READY=1 once the new configuration is in force.
	before := monotonicUsec(t)
	cmd.Process.Signal(syscall.SIGHUP)
	got := ns.next()
	rest, ok := strings.CutPrefix(got, "RELOADING=1\nMONOTONIC_USEC=")
	usec, err := strconv.ParseUint(rest, 10, 64)
	if !ok || err != nil || usec < before || usec > monotonicUsec(t) {
		t.Fatalf("after SIGHUP %q, want RELOADING=1 and MONOTONIC_USEC between %d and now", got, before)
	}
	if got := ns.next(); got != want {
		t.Fatalf("after reloading %q, want %q", got, want)
	}
	// A reload that fails keeps the old configuration: READY again,
	// with the reason in STATUS.
	e.writeConfigExtra(port, "jobs:\n  drill: {schedule: \"0 4 * *\"}\n", lyra)
	cmd.Process.Signal(syscall.SIGHUP)
	if got := ns.next(); !strings.HasPrefix(got, "RELOADING=1\nMONOTONIC_USEC=") {
		t.Fatalf("after the second SIGHUP %q", got)
	}
	wantFailed := fmt.Sprintf("READY=1\nSTATUS=serving 1 nodes on 127.0.0.1:%d; reloading the configuration failed, the old one stays: %s.yaml:9: jobs.drill.schedule: \"0 4 * *\": expected exactly 5 fields, found 4: [0 4 * *]", port, e.repo)
	if got := ns.next(); got != wantFailed {
		t.Fatalf("after a failed reload %q, want %q", got, wantFailed)
	}

	cmd.Process.Signal(syscall.SIGTERM)
	if got := ns.next(); got != "STOPPING=1\nSTATUS=stopping: 0 sessions in flight" {
		t.Fatalf("after SIGTERM %q, want STOPPING=1", got)
	}
	select {
	case <-exited:
		if waitErr != nil {
			t.Fatalf("cairn serve after SIGTERM: %v", waitErr)
		}
	case <-time.After(time.Minute):
		t.Fatal("cairn serve did not stop")
	}
	// Nothing more was sent.
	ns.conn.SetReadDeadline(time.Now())
	if k, err := ns.conn.Read(make([]byte, 64)); err == nil {
		t.Fatalf("a notification after the exit: %d bytes", k)
	}
}

// monotonicUsec is CLOCK_MONOTONIC in microseconds, as systemd counts.
func monotonicUsec(t *testing.T) uint64 {
	var ts unix.Timespec
	if err := unix.ClockGettime(unix.CLOCK_MONOTONIC, &ts); err != nil {
		t.Fatal(err)
	}
	return uint64(ts.Sec)*1e6 + uint64(ts.Nsec)/1e3
}
