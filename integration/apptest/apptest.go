// Package apptest runs a real appliance (`cairn serve`, the binary under
// test) for the end-to-end tests: the integration package's and the
// torture suite's. It writes the appliance's configuration for nodes
// that each have their own SSH key, starts the binary listening on a
// free port of 127.0.0.1, keeps its log, waits for log lines instead of
// sleeping, and stops it at the test's cleanup, where an appliance that
// does not exit 0 on SIGTERM within a minute fails the test.
//
// The appliance needs nothing of the machine beyond the binary (its SSH
// server is cairn's own); a test that also needs OpenSSH gets it from
// integration/sshtest, which skips or fails through integration/testenv.
//
// # Processes
//
// Every appliance gets Pdeathsig SIGKILL: a test binary killed at its
// timeout leaves no appliance running. Its standard error is read to the
// end before Wait, so [Appliance.Exited] means the whole log is in
// [Appliance.Log]. [Appliance.Lines] holds the next log lines, at most
// 4096 of them (lines beyond that are kept in the log only).
package apptest

import (
	"bufio"
	"fmt"
	"net"
	"os"
	"os/exec"
	"strings"
	"sync"
	"syscall"
	"testing"
	"time"

	"golang.org/x/crypto/ssh"

	"github.com/cairnbackup/cairn/integration/sshtest"
)

// Node is a machine with its own key, as the appliance's configuration
// names it.
type Node struct {
	Name  string
	Key   *sshtest.Key
	Perms string // its permissions as YAML list items: "push, read"
	Extra string // more YAML for the node (indented by 4)
}

// NewNode returns node name with a new key and perms.
func NewNode(t testing.TB, name, perms string) *Node {
	return &Node{Name: name, Key: sshtest.NewKey(t, "", name), Perms: perms}
}

// FreePort returns a TCP port of 127.0.0.1 that was free a moment ago.
func FreePort(t testing.TB) int {
	l, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	defer l.Close()
	return l.Addr().(*net.TCPAddr).Port
}

// Config is the configuration of an appliance listening on
// 127.0.0.1:port for nodes, with extra YAML appended. Its limits are the
// tests' idle timeout of a minute, unless extra gives limits of its own.
func Config(port int, extra string, nodes ...*Node) string {
	var b strings.Builder
	fmt.Fprintf(&b, "listen: 127.0.0.1:%d\nnodes:\n", port)
	if len(nodes) == 0 {
		b.WriteString("  {}\n")
	}
	for _, n := range nodes {
		fmt.Fprintf(&b, "  %s:\n    keys: [%q]\n    permissions: [%s]\n%s", n.Name, n.Key.PublicLine, n.Perms, n.Extra)
	}
	if !strings.Contains(extra, "limits:") {
		b.WriteString("limits:\n  idle_timeout: 1m\n")
	}
	b.WriteString(extra)
	return b.String()
}

// WriteConfig writes [Config] to path (mode 0600).
func WriteConfig(t testing.TB, path string, port int, extra string, nodes ...*Node) {
	t.Helper()
	if err := os.WriteFile(path, []byte(Config(port, extra, nodes...)), 0o600); err != nil {
		t.Fatal(err)
	}
}

// Options say how to start an appliance.
type Options struct {
	Bin  string   // the cairn binary
	Args []string // its arguments, which must start the appliance; nil: serve
	Env  []string // its whole environment
	// Beside is where the files beside the repository are: Beside+".yaml"
	// (the configuration, which Start writes), ".host_key" and ".sock".
	Beside string
	Extra  string  // more configuration YAML (see [Config])
	Nodes  []*Node // the nodes of the configuration
	// Files, if not zero, is the open file limit (soft and hard) of the
	// appliance: a shell sets it and becomes the appliance.
	Files int
	// MayDie says the test kills the appliance or makes it crash: an
	// appliance that ended before the cleanup is not a failure then.
	// Without it, one that ended with an exit code other than 0 fails
	// the test.
	MayDie bool
	// CheckSocket has the cleanup fail the test when the appliance left
	// its socket (Beside+".sock") behind.
	CheckSocket bool
	// LogLines is how many of the log's last lines the cleanup shows
	// when the test failed; 0 shows the whole log.
	LogLines int
	// DebugLog, if not "", is a file every log line is appended to as
	// it comes (for watching a long run).
	DebugLog string
}

// Appliance is a running appliance.
type Appliance struct {
	t       testing.TB
	o       Options
	Cmd     *exec.Cmd
	Port    int
	HostKey string // the host key's SHA256 fingerprint
	KeyLine string // the host key as "ssh-ed25519 AAAA…", for known_hosts
	// Stopped says the test stopped the appliance and checked how it
	// exited: the cleanup leaves it alone.
	Stopped bool

	mu     sync.Mutex
	log    strings.Builder
	lines  chan string
	exited chan struct{}
}

// Start writes the configuration, starts the appliance and waits for
// its "serving" log line. At cleanup, unless the test stopped it, it
// gets SIGTERM and must exit 0 within a minute.
func Start(t testing.TB, o Options) *Appliance {
	t.Helper()
	port := FreePort(t)
	WriteConfig(t, o.Beside+".yaml", port, o.Extra, o.Nodes...)
	a := &Appliance{t: t, o: o, Port: port, lines: make(chan string, 4096), exited: make(chan struct{})}
	args := o.Args
	if args == nil {
		args = []string{"serve"}
	}
	a.Cmd = exec.Command(o.Bin, args...)
	if o.Files > 0 {
		a.Cmd.Path = "/bin/sh"
		a.Cmd.Args = append([]string{"sh", "-c", fmt.Sprintf(`ulimit -n %d && exec "$0" "$@"`, o.Files), o.Bin}, args...)
	}
	a.Cmd.SysProcAttr = &syscall.SysProcAttr{Pdeathsig: syscall.SIGKILL}
	a.Cmd.Env = o.Env
	stderr, err := a.Cmd.StderrPipe()
	if err != nil {
		t.Fatal(err)
	}
	if err := a.Cmd.Start(); err != nil {
		t.Fatal(err)
	}
	// The log is read to its end before Wait, which closes the pipe
	// (reading after it could lose the last lines).
	readAll := make(chan struct{})
	go func() {
		defer close(readAll)
		var dbg *os.File
		if o.DebugLog != "" {
			dbg, _ = os.OpenFile(o.DebugLog, os.O_WRONLY|os.O_CREATE|os.O_APPEND, 0o644)
		}
		sc := bufio.NewScanner(stderr)
		sc.Buffer(nil, 1<<20)
		for sc.Scan() {
			if dbg != nil {
				dbg.WriteString(sc.Text() + "\n")
			}
			a.mu.Lock()
			a.log.WriteString(sc.Text() + "\n")
			a.mu.Unlock()
			select {
			case a.lines <- sc.Text():
			default:
			}
		}
		if dbg != nil {
			dbg.Close()
		}
		close(a.lines)
	}()
	go func() { <-readAll; a.Cmd.Wait(); close(a.exited) }()
	t.Cleanup(a.cleanup)
	line := a.WaitFor("msg=serving")
	for _, f := range strings.Fields(line) {
		if v, ok := strings.CutPrefix(f, "host_key="); ok {
			a.HostKey = v
		}
	}
	b, err := os.ReadFile(o.Beside + ".host_key")
	if err != nil {
		t.Fatal(err)
	}
	signer, err := ssh.ParsePrivateKey(b)
	if err != nil {
		t.Fatalf("the appliance's host key %s: %v", o.Beside+".host_key", err)
	}
	a.KeyLine = strings.TrimSpace(string(ssh.MarshalAuthorizedKey(signer.PublicKey())))
	return a
}

func (a *Appliance) cleanup() {
	t := a.t
	switch {
	case a.Stopped:
	case a.Dead():
		if code := a.Cmd.ProcessState.ExitCode(); code != 0 && !a.o.MayDie {
			t.Errorf("the appliance exited %d:\n%s", code, Tail(a.Log(), 30))
		}
	default:
		a.Stop()
	}
	if a.o.CheckSocket {
		if _, err := os.Stat(a.o.Beside + ".sock"); !os.IsNotExist(err) {
			t.Errorf("socket left behind: %v", err)
		}
	}
	if t.Failed() {
		log := a.Log()
		if a.o.LogLines > 0 {
			log = Tail(log, a.o.LogLines)
		}
		t.Logf("appliance log:\n%s", log)
	}
}

// Terminate sends SIGTERM and waits a minute at most for the appliance
// to end (then it is killed, and the error says so). It returns the exit
// code (-1: a signal ended it), and the cleanup leaves the appliance
// alone.
func (a *Appliance) Terminate() (int, error) {
	a.Stopped = true
	a.Cmd.Process.Signal(syscall.SIGTERM)
	select {
	case <-a.exited:
	case <-time.After(time.Minute):
		a.Cmd.Process.Kill()
		<-a.exited
		return -1, fmt.Errorf("the appliance did not stop within a minute of SIGTERM")
	}
	return a.Cmd.ProcessState.ExitCode(), nil
}

// Stop is [Appliance.Terminate] that fails the test (and goes on) unless
// the appliance exits 0.
func (a *Appliance) Stop() {
	a.t.Helper()
	code, err := a.Terminate()
	switch {
	case err != nil:
		a.t.Errorf("%v:\n%s", err, Tail(a.Log(), 30))
	case code != 0:
		a.t.Errorf("the appliance exited %d:\n%s", code, Tail(a.Log(), 30))
	}
}

// Dead reports whether the appliance process has ended.
func (a *Appliance) Dead() bool {
	select {
	case <-a.exited:
		return true
	default:
		return false
	}
}

// Exited is closed when the appliance has ended and its whole log is
// read.
func (a *Appliance) Exited() <-chan struct{} { return a.exited }

// Lines are the log lines from now on, closed at the end of the log.
func (a *Appliance) Lines() <-chan string { return a.lines }

// KilledBySIGKILL waits for the appliance to end (timeout at most) and
// reports whether SIGKILL ended it.
func (a *Appliance) KilledBySIGKILL(timeout time.Duration) bool {
	select {
	case <-a.exited:
	case <-time.After(timeout):
		return false
	}
	ws, ok := a.Cmd.ProcessState.Sys().(syscall.WaitStatus)
	return ok && ws.Signaled() && ws.Signal() == syscall.SIGKILL
}

// WaitFor returns the first log line from now on that contains s. It
// fails the test when the appliance ends first or after a minute.
func (a *Appliance) WaitFor(s string) string {
	a.t.Helper()
	timeout := time.After(60 * time.Second)
	for {
		select {
		case line, ok := <-a.lines:
			if !ok {
				a.t.Fatalf("the appliance exited before logging %q:\n%s", s, Tail(a.Log(), 40))
			}
			if strings.Contains(line, s) {
				return line
			}
		case <-timeout:
			a.t.Fatalf("no log line %q:\n%s", s, Tail(a.Log(), 40))
		}
	}
}

// Log returns everything the appliance logged so far.
func (a *Appliance) Log() string {
	a.mu.Lock()
	defer a.mu.Unlock()
	return a.log.String()
}

// Pid is the appliance's process ID.
func (a *Appliance) Pid() int { return a.Cmd.Process.Pid }

// PushArgs are the arguments of `cairn push` as node n to the appliance
// (the destination, n's key and the appliance's host key), before the
// caller's own.
func (a *Appliance) PushArgs(n *Node, args ...string) []string {
	return append([]string{"push", fmt.Sprintf("ssh://%s@127.0.0.1:%d", n.Name, a.Port), "-i", n.Key.PrivatePath, "--host-key", a.HostKey}, args...)
}

// SSHArgs are OpenSSH client arguments to reach the appliance as node n.
func (a *Appliance) SSHArgs(n *Node) []string {
	return sshtest.SSHArgsFor(a.t, "127.0.0.1", a.Port, a.KeyLine, n.Name, n.Key)
}

// Dial opens an SSH connection to the appliance as node n (its name as
// the user, its key).
func (a *Appliance) Dial(n *Node) (*ssh.Client, error) {
	return ssh.Dial("tcp", fmt.Sprintf("127.0.0.1:%d", a.Port), &ssh.ClientConfig{
		User:            n.Name,
		Auth:            []ssh.AuthMethod{ssh.PublicKeys(n.Key.Signer)},
		HostKeyCallback: ssh.InsecureIgnoreHostKey(),
		Timeout:         30 * time.Second,
	})
}

// Tail returns the last n lines of s.
func Tail(s string, n int) string {
	lines := strings.Split(strings.TrimRight(s, "\n"), "\n")
	if len(lines) > n {
		lines = lines[len(lines)-n:]
	}
	return strings.Join(lines, "\n")
}
