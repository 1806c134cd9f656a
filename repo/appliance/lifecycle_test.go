package appliance

import (
	"bytes"
	"context"
	"crypto/ed25519"
	"crypto/rand"
	"fmt"
	"log/slog"
	"net"
	"os"
	"path/filepath"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/cairnbackup/cairn/repo/repotest"
	"golang.org/x/crypto/ssh"
)

// testNode is a node of a lifecycle test: a name and a key.
type testNode struct {
	name   string
	signer ssh.Signer
	perms  string
}

func newTestNode(t *testing.T, name, perms string) *testNode {
	t.Helper()
	_, priv, _ := ed25519.GenerateKey(rand.Reader)
	s, err := ssh.NewSignerFromKey(priv)
	if err != nil {
		t.Fatal(err)
	}
	return &testNode{name: name, signer: s, perms: perms}
}

func (n *testNode) keyLine() string {
	return strings.TrimSpace(string(ssh.MarshalAuthorizedKey(n.signer.PublicKey())))
}

// syncBuffer is a log destination the test reads while the appliance
// writes; every line also goes to lines (dropped when it is full).
type syncBuffer struct {
	mu    sync.Mutex
	b     bytes.Buffer
	lines chan string
}

func (s *syncBuffer) Write(p []byte) (int, error) {
	s.mu.Lock()
	defer s.mu.Unlock()
	for _, l := range strings.SplitAfter(string(p), "\n") {
		if l != "" {
			select {
			case s.lines <- strings.TrimSuffix(l, "\n"):
			default:
			}
		}
	}
	return s.b.Write(p)
}

func (s *syncBuffer) String() string {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.b.String()
}

// running is an appliance serving in the test process.
type running struct {
	t    *testing.T
	a    *Appliance
	dir  string
	addr string
	log  *syncBuffer
}

// configText renders a configuration for nodes with extra YAML appended.
func configText(extra string, nodes ...*testNode) string {
	var b strings.Builder
	b.WriteString("nodes:\n")
	if len(nodes) == 0 {
		b.WriteString("  {}\n")
	}
	for _, n := range nodes {
		fmt.Fprintf(&b, "  %s:\n    keys: [%q]\n    permissions: [%s]\n", n.name, n.keyLine(), n.perms)
	}
	b.WriteString(extra)
	return b.String()
}

// serveTest runs an appliance with the configuration text on a loopback
// port until the test ends, and returns once it serves.
func serveTest(t *testing.T, config string) *running {
	t.Helper()
	r := repotest.New(t)
	dir := t.TempDir()
	rn := &running{t: t, dir: dir, log: &syncBuffer{lines: make(chan string, 4096)}}
	rn.write(config)
	if _, err := GenerateHostKey(filepath.Join(dir, "host_key")); err != nil {
		t.Fatal(err)
	}
	a, err := New(Options{Repo: r, ConfigPath: filepath.Join(dir, "a.yaml"), HostKeyPath: filepath.Join(dir, "host_key"),
		SocketPath: filepath.Join(dir, "s.sock"), Logger: slog.New(slog.NewTextHandler(rn.log, nil))})
	if err != nil {
		t.Fatal(err)
	}
	rn.a = a
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	rn.addr = ln.Addr().String()
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan error, 1)
	go func() { done <- a.Run(ctx, ln) }()
	t.Cleanup(func() {
		cancel()
		if err := <-done; err != nil {
			t.Errorf("Run: %v", err)
		}
		if t.Failed() {
			t.Logf("appliance log:\n%s", rn.log)
		}
	})
	select {
	case <-a.Ready():
	case err := <-done:
		t.Fatalf("Run: %v", err)
	}
	return rn
}

// write replaces the configuration file.
func (rn *running) write(config string) {
	rn.t.Helper()
	if err := os.WriteFile(filepath.Join(rn.dir, "a.yaml"), []byte(config), 0o600); err != nil {
		rn.t.Fatal(err)
	}
}

// dial connects as node n.
func (rn *running) dial(n *testNode) (*ssh.Client, error) {
	return ssh.Dial("tcp", rn.addr, &ssh.ClientConfig{User: n.name, Auth: []ssh.AuthMethod{ssh.PublicKeys(n.signer)},
		HostKeyCallback: ssh.InsecureIgnoreHostKey(), Timeout: 30 * time.Second})
}

// run runs command as n on a new connection and returns its exit status
// and standard output.
func (rn *running) run(n *testNode, command string) (int, string, error) {
	c, err := rn.dial(n)
	if err != nil {
		return -1, "", err
	}
	defer c.Close()
	s, err := c.NewSession()
	if err != nil {
		return -1, "", err
	}
	var out bytes.Buffer
	s.Stdout = &out
	err = s.Run(command)
	if ee, ok := err.(*ssh.ExitError); ok {
		return ee.ExitStatus(), out.String(), nil
	}
	return 0, out.String(), err
}

// waitFor returns the first log line from now on that contains every
// one of subs; it fails the test after a minute.
func (rn *running) waitFor(subs ...string) string {
	rn.t.Helper()
	return rn.waitLines(subs)[0]
}

// waitLines consumes log lines until, for every group of subs, a line
// containing all of them has gone by, in any order, and returns those
// lines in the order of the groups. It fails the test after a minute.
func (rn *running) waitLines(groups ...[]string) []string {
	rn.t.Helper()
	found := make([]string, len(groups))
	left := len(groups)
	timeout := time.After(time.Minute)
	for left > 0 {
		select {
		case l := <-rn.log.lines:
			for i, g := range groups {
				all := found[i] == ""
				for _, s := range g {
					all = all && strings.Contains(l, s)
				}
				if all {
					found[i] = l
					left--
					break
				}
			}
		case <-timeout:
			rn.t.Fatalf("no log lines with %q (found %q)", groups, found)
		}
	}
	return found
}

// reload rewrites the configuration and reloads it.
func (rn *running) reload(config string) {
	rn.t.Helper()
	rn.write(config)
	if err := rn.a.Reload(); err != nil {
		rn.t.Fatal(err)
	}
}
