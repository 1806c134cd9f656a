package sshtest

import (
	"bufio"
	"errors"
	"fmt"
	"net"
	"os"
	"os/exec"
	"os/user"
	"path/filepath"
	"strconv"
	"strings"
	"sync"
	"syscall"
	"testing"
	"time"

	"github.com/cairnbackup/cairn/integration/testenv"
	"golang.org/x/crypto/ssh"
	"golang.org/x/crypto/ssh/knownhosts"
)

const (
	sshdPath   = "/usr/sbin/sshd"
	sshPath    = "/usr/bin/ssh"
	privsepDir = "/run/sshd" // sshd's privilege-separation directory; nothing creates it on a fresh machine

	readyLine     = "Server listening on"
	startTimeout  = 10 * time.Second // from exec to readyLine
	startAttempts = 5                // ports tried when another process takes the free port first
	// drainTimeout bounds the wait for the rest of the log after sshd's
	// listener has exited: sshd's per-connection processes survive it and
	// keep the log pipe open while their connections last.
	drainTimeout = time.Second
	dialTimeout  = 10 * time.Second
)

// Config configures the server [Start] runs.
type Config struct {
	// AuthorizedKeys are full authorized_keys lines, e.g.
	// `command="/abs/cairn serve --stdio --node lyra",restrict ssh-ed25519 AAAA...`.
	// Start fails the test if a line does not parse.
	AuthorizedKeys []string
	// User is the only user allowed to log in, with AuthorizedKeys;
	// default the current user (root in CI). For another user, Start makes
	// Dir, its parent and authorized_keys readable by everyone, as sshd reads
	// authorized_keys with that user's privileges; the user's login shell
	// runs the commands, so it must be a real shell.
	User string
	// Env is extra environment, "NAME=VALUE", for every session, forced
	// commands included (sshd_config SetEnv).
	Env []string
}

// SSHD is a running OpenSSH sshd on 127.0.0.1.
type SSHD struct {
	// Port is the TCP port sshd listens on, at 127.0.0.1.
	Port int
	// Dir is the server's t.TempDir(): sshd_config, the host key,
	// authorized_keys. The log is in memory: see [SSHD.Log].
	Dir string
	// HostKey is the server's ed25519 host key.
	HostKey *Key
	// User is the one user who may log in (Config.User or its default).
	User string

	p *process // the running sshd
}

// Start starts an sshd for the test, configured by c, and returns once it
// accepts connections. A t.Cleanup stops it and, if the test failed, logs
// its log. Start skips the test if /usr/sbin/sshd is missing, or fails it
// when the environment variable CI is "true".
func Start(t testing.TB, c Config) *SSHD {
	t.Helper()
	requireExecutable(t, sshdPath, "openssh-server")
	if err := os.MkdirAll(privsepDir, 0o755); err != nil {
		t.Fatalf("sshtest: sshd needs its privilege-separation directory: %v", err)
	}

	me, err := user.Current()
	if err != nil {
		t.Fatalf("sshtest: %v", err)
	}
	login := c.User
	if login == "" {
		login = me.Username
	}
	if strings.ContainsAny(login, " \t\r\n\"\\*?,@!") {
		t.Fatalf("sshtest: user name %q is not usable in sshd_config AllowUsers", login)
	}

	var keys strings.Builder
	for i, line := range c.AuthorizedKeys {
		if strings.ContainsAny(line, "\r\n") {
			t.Fatalf("sshtest: authorized key %d spans lines: %q", i, line)
		}
		if _, _, _, rest, err := ssh.ParseAuthorizedKey([]byte(line)); err != nil || len(rest) != 0 {
			t.Fatalf("sshtest: authorized key %d does not parse (err %v): %q", i, err, line)
		}
		keys.WriteString(line + "\n")
	}
	for _, kv := range c.Env {
		name, _, ok := strings.Cut(kv, "=")
		if !ok || name == "" || strings.ContainsAny(kv, "\x00\r\n") {
			t.Fatalf("sshtest: environment entry %q: want NAME=VALUE on one line", kv)
		}
	}

	s := &SSHD{Dir: t.TempDir(), User: login}
	s.HostKey = NewKey(t, s.Dir, "ssh_host_ed25519_key")
	keysPath := filepath.Join(s.Dir, "authorized_keys")
	if login == me.Username {
		writeFile(t, keysPath, []byte(keys.String()), 0o600)
	} else {
		writeFile(t, keysPath, []byte(keys.String()), 0o644)
		for _, d := range []string{s.Dir, filepath.Dir(s.Dir)} { // t.TempDir's parent is 0700
			if err := os.Chmod(d, 0o755); err != nil {
				t.Fatalf("sshtest: %v", err)
			}
		}
	}
	penalties := perSourcePenaltiesOption(t, s.Dir, s.HostKey.PrivatePath)

	cfgPath := filepath.Join(s.Dir, "sshd_config")
	var failed []string
	for attempt := 1; attempt <= startAttempts; attempt++ {
		port, err := pickPort()
		if err != nil {
			t.Fatalf("sshtest: pick a port: %v", err)
		}
		cfg := renderConfig(port, s.HostKey.PrivatePath, keysPath, login, c.Env, penalties)
		writeFile(t, cfgPath, []byte(cfg), 0o600)
		p, err := startProcess(cfgPath)
		if err == nil {
			s.Port, s.p = port, p
			t.Cleanup(func() {
				p.stop()
				if t.Failed() {
					t.Logf("sshtest: sshd log (%s, port %d):\n%s", cfgPath, s.Port, s.Log())
				}
			})
			return s
		}
		failed = append(failed, fmt.Sprintf("attempt %d, port %d: %v\nsshd log:\n%s", attempt, port, err, p.Log()))
		if !strings.Contains(p.Log(), "Address already in use") {
			break
		}
	}
	t.Fatalf("sshtest: start %s -D -e -f %s:\n%s", sshdPath, cfgPath, strings.Join(failed, "\n"))
	return nil
}

// process is one run of sshd and its collected log.
type process struct {
	cmd     *exec.Cmd
	logR    *os.File      // read end of sshd's stderr
	exited  chan struct{} // closed once cmd.Wait has returned
	logDone chan struct{} // closed once collect has returned

	stopOnce sync.Once

	mu  sync.Mutex
	log strings.Builder // guarded by mu
}

// startProcess runs sshd with the config at cfgPath and waits for it to
// listen. On error sshd has been stopped and p.Log holds what it wrote.
func startProcess(cfgPath string) (*process, error) {
	p := &process{
		cmd:     exec.Command(sshdPath, "-D", "-e", "-f", cfgPath),
		exited:  make(chan struct{}),
		logDone: make(chan struct{}),
	}
	r, w, err := os.Pipe()
	if err != nil {
		return p, err
	}
	p.cmd.Stderr = w
	p.cmd.SysProcAttr = sysProcAttr()
	p.logR = r
	err = p.cmd.Start()
	w.Close() // sshd and its children hold the write end now
	if err != nil {
		r.Close()
		return p, err
	}
	ready := make(chan struct{})
	go p.collect(ready)
	go func() {
		p.cmd.Wait() // the exit status is in the log
		close(p.exited)
	}()

	timer := time.NewTimer(startTimeout)
	defer timer.Stop()
	select {
	case <-ready:
		return p, nil
	case <-p.exited:
		p.stop()
		return p, fmt.Errorf("sshd exited before listening: %v", p.cmd.ProcessState)
	case <-timer.C:
		p.stop()
		return p, fmt.Errorf("sshd did not log %q within %v", readyLine, startTimeout)
	}
}

// collect appends sshd's stderr to p.log line by line until EOF (or until
// stop closes the pipe), and closes ready at the first readyLine.
func (p *process) collect(ready chan<- struct{}) {
	defer close(p.logDone)
	br := bufio.NewReader(p.logR)
	for {
		line, err := br.ReadString('\n')
		if line != "" {
			p.mu.Lock()
			p.log.WriteString(line)
			p.mu.Unlock()
			if ready != nil && strings.Contains(line, readyLine) {
				close(ready)
				ready = nil
			}
		}
		if err != nil {
			return
		}
	}
}

// stop kills sshd's listener and its per-connection processes, and stops
// collecting the log. Connections the clients have closed get drainTimeout
// to end on their own and log it; the rest are killed.
func (p *process) stop() {
	p.stopOnce.Do(func() {
		conns := p.connections()
		defer conns.close()
		p.cmd.Process.Kill() // fails only if sshd has exited already
		<-p.exited
		if !p.drained() {
			conns.kill()
			p.drained()
		}
		p.logR.Close() // ends a collect still blocked in Read
		<-p.logDone
	})
}

// connections returns sshd's per-connection processes, which outlive the
// listener; call it before killing the listener, while they are its
// children.
func (p *process) connections() connections {
	c := openConnections(p.cmd.Process.Pid)
	// A pid names our sshd only until it is reaped. If the signal 0
	// reaches it after the children were read, the list was its own.
	if p.cmd.Process.Signal(syscall.Signal(0)) != nil {
		c.close()
		return nil
	}
	return c
}

// drained reports whether every holder of the log pipe, sshd and its
// per-connection processes, closed it within drainTimeout.
func (p *process) drained() bool {
	timer := time.NewTimer(drainTimeout)
	defer timer.Stop()
	select {
	case <-p.logDone:
		return true
	case <-timer.C:
		return false
	}
}

// Log returns what sshd has logged so far.
func (p *process) Log() string {
	p.mu.Lock()
	defer p.mu.Unlock()
	return p.log.String()
}

// Log returns what sshd has logged so far (LogLevel VERBOSE).
func (s *SSHD) Log() string {
	return s.p.Log()
}

// Addr returns the server's address, "127.0.0.1:PORT".
func (s *SSHD) Addr() string {
	return net.JoinHostPort("127.0.0.1", strconv.Itoa(s.Port))
}

// KnownHostsLine returns the line of a known_hosts file that names this
// server's host key: "[127.0.0.1]:PORT ssh-ed25519 AAAA...".
func (s *SSHD) KnownHostsLine() string {
	return knownhosts.Line([]string{s.Addr()}, s.HostKey.Signer.PublicKey())
}

// WriteKnownHosts writes a known_hosts file at path holding only
// [SSHD.KnownHostsLine].
func (s *SSHD) WriteKnownHosts(t testing.TB, path string) {
	t.Helper()
	writeFile(t, path, []byte(s.KnownHostsLine()+"\n"), 0o644)
}

// SSHArgs returns the arguments for the OpenSSH client to reach this server
// as user with key, as [SSHArgsFor] does; append the remote command.
func (s *SSHD) SSHArgs(t testing.TB, user string, key *Key) []string {
	t.Helper()
	return SSHArgsFor(t, "127.0.0.1", s.Port, s.HostKey.PublicLine, user, key)
}

// ClientConfig returns a golang.org/x/crypto/ssh client configuration that
// logs in as user with key and accepts only this server's host key. Dial
// [SSHD.Addr].
func (s *SSHD) ClientConfig(user string, key *Key) *ssh.ClientConfig {
	hostKey := s.HostKey.Signer.PublicKey()
	return &ssh.ClientConfig{
		User:              user,
		Auth:              []ssh.AuthMethod{ssh.PublicKeys(key.Signer)},
		HostKeyCallback:   ssh.FixedHostKey(hostKey),
		HostKeyAlgorithms: []string{hostKey.Type()},
		Timeout:           dialTimeout,
	}
}

// SSHArgsFor returns the arguments for the OpenSSH client (see [SSHBinary])
// to reach the server at host:port, whose host key is hostKeyLine
// ("ssh-ed25519 AAAA..."), as user with key; append the remote command.
// It suits any server, such as cairn's embedded one:
//
//	-F none -p PORT -i KEY -o IdentitiesOnly=yes -o UserKnownHostsFile=FILE
//	-o StrictHostKeyChecking=yes -o BatchMode=yes -o LogLevel=ERROR user@host
//
// FILE is a new known_hosts file holding only hostKeyLine for host:port.
// "-F none" keeps ~/.ssh/config and /etc/ssh/ssh_config out of the test.
func SSHArgsFor(t testing.TB, host string, port int, hostKeyLine string, user string, key *Key) []string {
	t.Helper()
	hostKey, _, _, _, err := ssh.ParseAuthorizedKey([]byte(hostKeyLine))
	if err != nil {
		t.Fatalf("sshtest: host key line %q: %v", hostKeyLine, err)
	}
	// ssh expands %-tokens in the identity file name after using it
	// verbatim to check that it exists: no escaping satisfies both.
	if strings.Contains(key.PrivatePath, "%") {
		t.Fatalf("sshtest: key path %q: ssh reads %% as a token; use a path without %%", key.PrivatePath)
	}
	dir, err := os.MkdirTemp("", "sshtest-known-hosts-") // not t.TempDir: its name comes from the test's, which may hold %
	if err != nil {
		t.Fatalf("sshtest: %v", err)
	}
	t.Cleanup(func() { os.RemoveAll(dir) })
	knownHosts := filepath.Join(dir, "known_hosts")
	line := knownhosts.Line([]string{net.JoinHostPort(host, strconv.Itoa(port))}, hostKey)
	writeFile(t, knownHosts, []byte(line+"\n"), 0o644)
	return []string{
		"-F", "none",
		"-p", strconv.Itoa(port),
		"-i", key.PrivatePath,
		"-o", "IdentitiesOnly=yes",
		"-o", "UserKnownHostsFile=" + configQuote(strings.ReplaceAll(knownHosts, "%", "%%")),
		"-o", "StrictHostKeyChecking=yes",
		"-o", "BatchMode=yes",
		"-o", "LogLevel=ERROR",
		user + "@" + host,
	}
}

// SSHBinary returns the path of the OpenSSH client, /usr/bin/ssh. It skips
// the test if the client is missing, or fails it when the environment
// variable CI is "true".
func SSHBinary(t testing.TB) string {
	t.Helper()
	requireExecutable(t, sshPath, "openssh-client")
	return sshPath
}

// requireExecutable skips the test, or fails it in CI, unless path is an
// executable file.
func requireExecutable(t testing.TB, path, pkg string) {
	t.Helper()
	fi, err := os.Stat(path)
	if err == nil && fi.Mode().IsRegular() && fi.Mode().Perm()&0o111 != 0 {
		return
	}
	if err == nil {
		err = errors.New("not an executable file")
	}
	testenv.Missing(t, "sshtest: %s is required (Debian package %s): %v", path, pkg, err)
}

// pickPort is freePort; tests replace it.
var pickPort = freePort

// freePort returns a TCP port on 127.0.0.1 that was free a moment ago.
// sshd rejects Port 0, so the port has to be chosen before sshd binds it.
func freePort() (int, error) {
	l, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		return 0, err
	}
	defer l.Close()
	return l.Addr().(*net.TCPAddr).Port, nil
}

// renderConfig returns the sshd_config text.
func renderConfig(port int, hostKeyPath, keysPath, login string, env []string, extra string) string {
	var b strings.Builder
	line := func(format string, args ...any) { fmt.Fprintf(&b, format+"\n", args...) }
	line("# sshd_config written by package sshtest for one test.")
	line("ListenAddress 127.0.0.1")
	line("Port %d", port)
	line("HostKey %s", configQuote(hostKeyPath))
	line("AuthorizedKeysFile %s", configQuote(strings.ReplaceAll(keysPath, "%", "%%"))) // %-tokens expand here
	line("AllowUsers %s", login)
	line("PidFile none")
	line("StrictModes no") // the key files live under /tmp
	line("UsePAM no")
	line("PubkeyAuthentication yes")
	line("PasswordAuthentication no")
	line("KbdInteractiveAuthentication no")
	line("PermitRootLogin prohibit-password")
	line("PrintMotd no")
	line("PrintLastLog no")
	line("MaxStartups 100") // the default, 10:30:100, drops parallel test connections at random
	line("LogLevel VERBOSE")
	// No AcceptEnv: sshd accepts no client environment by default, and
	// "AcceptEnv none" would accept a variable named none.
	for _, kv := range env {
		line("SetEnv %s", configQuote(kv))
	}
	if extra != "" {
		line("%s", extra)
	}
	return b.String()
}

// configQuote quotes s as one argument of an OpenSSH configuration line.
func configQuote(s string) string {
	return `"` + strings.NewReplacer(`\`, `\\`, `"`, `\"`).Replace(s) + `"`
}

var penalties struct {
	once   sync.Once
	option string
}

// perSourcePenaltiesOption returns "PerSourcePenalties no" if this sshd
// knows the option (OpenSSH 9.8 and later), else "". With penalties on,
// sshd refuses every connection from 127.0.0.1 for a while after a few
// failed logins, which tests cause on purpose. sshd has no way to ignore
// an unknown option, so the first call asks sshd -t once for the process.
func perSourcePenaltiesOption(t testing.TB, dir, hostKeyPath string) string {
	t.Helper()
	penalties.once.Do(func() {
		const option = "PerSourcePenalties no"
		probe := filepath.Join(dir, "probe_config")
		writeFile(t, probe, []byte("HostKey "+configQuote(hostKeyPath)+"\n"+option+"\n"), 0o600)
		defer os.Remove(probe)
		if exec.Command(sshdPath, "-t", "-f", probe).Run() == nil {
			penalties.option = option
		}
	})
	return penalties.option
}
