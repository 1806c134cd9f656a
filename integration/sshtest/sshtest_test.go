package sshtest

import (
	"bytes"
	"crypto/rand"
	"errors"
	"fmt"
	"net"
	"os"
	"os/exec"
	"os/user"
	"strings"
	"testing"
	"time"

	"github.com/cairnbackup/cairn/integration/testenv"
	"golang.org/x/crypto/ssh"
)

// runSSH runs the OpenSSH client with args and stdin, and returns its
// stdout, stderr and exit code.
func runSSH(t *testing.T, stdin []byte, args ...string) (stdout, stderr []byte, code int) {
	t.Helper()
	cmd := exec.CommandContext(t.Context(), SSHBinary(t), args...)
	cmd.Stdin = bytes.NewReader(stdin)
	var out, errOut bytes.Buffer
	cmd.Stdout, cmd.Stderr = &out, &errOut
	err := cmd.Run()
	var exit *exec.ExitError
	switch {
	case err == nil:
	case errors.As(err, &exit):
		code = exit.ExitCode()
	default:
		t.Fatalf("run ssh: %v", err)
	}
	return out.Bytes(), errOut.Bytes(), code
}

func currentUser(t *testing.T) string {
	t.Helper()
	u, err := user.Current()
	if err != nil {
		t.Fatal(err)
	}
	return u.Username
}

func TestNewKey(t *testing.T) {
	t.Parallel()
	dir := t.TempDir()
	k := NewKey(t, dir, "id_test")
	fi, err := os.Stat(k.PrivatePath)
	if err != nil {
		t.Fatal(err)
	}
	if fi.Mode().Perm() != 0o600 {
		t.Errorf("private key mode %v, want 0600", fi.Mode().Perm())
	}
	data, err := os.ReadFile(k.PrivatePath)
	if err != nil {
		t.Fatal(err)
	}
	if !bytes.HasPrefix(data, []byte("-----BEGIN OPENSSH PRIVATE KEY-----\n")) {
		t.Errorf("private key file starts %q, want an OpenSSH private key", data[:min(len(data), 40)])
	}
	parsed, err := ssh.ParsePrivateKey(data)
	if err != nil {
		t.Fatal(err)
	}
	if !bytes.Equal(parsed.PublicKey().Marshal(), k.Signer.PublicKey().Marshal()) {
		t.Error("private key file and Signer differ")
	}
	pub, comment, _, rest, err := ssh.ParseAuthorizedKey([]byte(k.PublicLine))
	if err != nil || len(rest) != 0 {
		t.Fatalf("PublicLine %q: err %v, rest %q", k.PublicLine, err, rest)
	}
	if !strings.HasPrefix(k.PublicLine, "ssh-ed25519 AAAA") || comment != "id_test" {
		t.Errorf("PublicLine %q, want ssh-ed25519 AAAA... id_test", k.PublicLine)
	}
	if !bytes.Equal(pub.Marshal(), k.Signer.PublicKey().Marshal()) {
		t.Error("PublicLine and Signer differ")
	}
	if want := ssh.FingerprintSHA256(pub); k.Fingerprint != want || !strings.HasPrefix(want, "SHA256:") {
		t.Errorf("Fingerprint %q, want %q", k.Fingerprint, want)
	}
	pubFile, err := os.ReadFile(k.PrivatePath + ".pub")
	if err != nil {
		t.Fatal(err)
	}
	if string(pubFile) != k.PublicLine+"\n" {
		t.Errorf(".pub file %q, want %q", pubFile, k.PublicLine+"\n")
	}
}

func TestForcedCommand(t *testing.T) {
	t.Parallel()
	key := NewKey(t, t.TempDir(), "client")
	s := Start(t, Config{AuthorizedKeys: []string{
		`command="echo forced:$SSH_ORIGINAL_COMMAND",restrict ` + key.PublicLine,
	}})
	if want := "[127.0.0.1]:"; !strings.HasPrefix(s.KnownHostsLine(), want) {
		t.Errorf("KnownHostsLine %q, want prefix %q", s.KnownHostsLine(), want)
	}
	args := append(s.SSHArgs(t, currentUser(t), key), "hello")
	stdout, stderr, code := runSSH(t, nil, args...)
	if code != 0 || string(stdout) != "forced:hello\n" || len(stderr) != 0 {
		t.Errorf("ssh %q: exit %d, stdout %q, stderr %q; want 0, %q, none", args, code, stdout, stderr, "forced:hello\n")
	}
	if log := s.Log(); !strings.Contains(log, "Accepted publickey for "+currentUser(t)) {
		t.Errorf("sshd log lacks the accepted login:\n%s", log)
	}
}

func TestBinaryStream(t *testing.T) {
	t.Parallel()
	key := NewKey(t, t.TempDir(), "client")
	s := Start(t, Config{AuthorizedKeys: []string{`command="cat",restrict ` + key.PublicLine}})
	in := make([]byte, 1<<20)
	rand.Read(in)
	stdout, stderr, code := runSSH(t, in, s.SSHArgs(t, currentUser(t), key)...)
	if code != 0 || len(stderr) != 0 {
		t.Errorf("ssh: exit %d, stderr %q", code, stderr)
	}
	if !bytes.Equal(stdout, in) {
		t.Errorf("cat returned %d bytes that differ from the %d sent", len(stdout), len(in))
	}
}

func TestUnknownKeyRefused(t *testing.T) {
	t.Parallel()
	known := NewKey(t, t.TempDir(), "known")
	unknown := NewKey(t, t.TempDir(), "unknown")
	s := Start(t, Config{AuthorizedKeys: []string{`command="echo forced",restrict ` + known.PublicLine}})
	stdout, stderr, code := runSSH(t, nil, append(s.SSHArgs(t, currentUser(t), unknown), "hello")...)
	if code != 255 || len(stdout) != 0 || !strings.Contains(string(stderr), "Permission denied") {
		t.Errorf("ssh with an unknown key: exit %d, stdout %q, stderr %q; want 255, none, Permission denied", code, stdout, stderr)
	}
}

func TestWrongHostKeyRefused(t *testing.T) {
	t.Parallel()
	key := NewKey(t, t.TempDir(), "client")
	s := Start(t, Config{AuthorizedKeys: []string{`command="echo forced",restrict ` + key.PublicLine}})
	impostor := NewKey(t, t.TempDir(), "impostor")
	args := SSHArgsFor(t, "127.0.0.1", s.Port, impostor.PublicLine, currentUser(t), key)
	stdout, stderr, code := runSSH(t, nil, append(args, "hello")...)
	if code != 255 || len(stdout) != 0 || !strings.Contains(string(stderr), "Host key verification failed") {
		t.Errorf("ssh expecting another host key: exit %d, stdout %q, stderr %q; want 255, none, Host key verification failed", code, stdout, stderr)
	}
}

func TestEnv(t *testing.T) {
	t.Parallel()
	key := NewKey(t, t.TempDir(), "client")
	value := `two words, a "quote" and a \backslash`
	s := Start(t, Config{
		AuthorizedKeys: []string{`command="printenv CAIRN_TEST_VALUE",restrict ` + key.PublicLine},
		Env:            []string{"CAIRN_TEST_VALUE=" + value},
	})
	stdout, stderr, code := runSSH(t, nil, s.SSHArgs(t, currentUser(t), key)...)
	if code != 0 || string(stdout) != value+"\n" {
		t.Errorf("ssh: exit %d, stdout %q, stderr %q; want 0, %q", code, stdout, stderr, value+"\n")
	}
}

func TestGoClient(t *testing.T) {
	t.Parallel()
	key := NewKey(t, t.TempDir(), "client")
	s := Start(t, Config{AuthorizedKeys: []string{
		`command="echo forced:$SSH_ORIGINAL_COMMAND",restrict ` + key.PublicLine,
	}})
	client, err := ssh.Dial("tcp", s.Addr(), s.ClientConfig(currentUser(t), key))
	if err != nil {
		t.Fatal(err)
	}
	defer client.Close()
	session, err := client.NewSession()
	if err != nil {
		t.Fatal(err)
	}
	defer session.Close()
	out, err := session.Output("hello")
	if err != nil || string(out) != "forced:hello\n" {
		t.Errorf("Output(hello) = %q, %v; want %q", out, err, "forced:hello\n")
	}
}

func TestGoClientChecksHostKey(t *testing.T) {
	t.Parallel()
	key := NewKey(t, t.TempDir(), "client")
	s := Start(t, Config{AuthorizedKeys: []string{`command="echo forced",restrict ` + key.PublicLine}})
	other := Start(t, Config{AuthorizedKeys: []string{`command="echo forced",restrict ` + key.PublicLine}})
	client, err := ssh.Dial("tcp", s.Addr(), other.ClientConfig(currentUser(t), key))
	if err == nil {
		client.Close()
		t.Fatal("dial with another server's host key succeeded")
	}
	if !strings.Contains(err.Error(), "host key mismatch") {
		t.Errorf("dial with another server's host key: %v, want a host key mismatch", err)
	}
}

// TestOtherUser logs in as nobody, whose shell, nologin, refuses to run
// the command: reaching it shows sshd read authorized_keys as nobody.
func TestOtherUser(t *testing.T) {
	t.Parallel()
	testenv.RequireRoot(t, "sshd can log in another user only as root")
	u, err := user.Lookup("nobody")
	if err != nil {
		testenv.Missing(t, "no user nobody: %v", err)
	}
	key := NewKey(t, t.TempDir(), "client")
	s := Start(t, Config{User: u.Username, AuthorizedKeys: []string{`command="echo forced",restrict ` + key.PublicLine}})
	_, stderr, code := runSSH(t, nil, append(s.SSHArgs(t, currentUser(t), key), "hello")...)
	if code != 255 || !strings.Contains(string(stderr), "Permission denied") {
		t.Errorf("ssh as %s, not allowed: exit %d, stderr %q; want 255, Permission denied", currentUser(t), code, stderr)
	}
	stdout, stderr, code := runSSH(t, nil, append(s.SSHArgs(t, u.Username, key), "hello")...)
	if !strings.Contains(s.Log(), "Accepted publickey for nobody") {
		t.Errorf("ssh as nobody: exit %d, stdout %q, stderr %q; sshd did not accept the key", code, stdout, stderr)
	}
}

// TestStartRetriesTakenPort gives Start a port another socket holds, as
// happens when a process takes the free port before sshd binds it.
// Not parallel: it replaces pickPort while no other test runs.
func TestStartRetriesTakenPort(t *testing.T) {
	l, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	defer l.Close()
	taken := l.Addr().(*net.TCPAddr).Port
	var picked []int
	pickPort = func() (int, error) {
		if len(picked) == 0 {
			picked = append(picked, taken)
			return taken, nil
		}
		p, err := freePort()
		picked = append(picked, p)
		return p, err
	}
	t.Cleanup(func() { pickPort = freePort })

	key := NewKey(t, t.TempDir(), "client")
	s := Start(t, Config{AuthorizedKeys: []string{`command="echo forced",restrict ` + key.PublicLine}})
	if len(picked) != 2 || s.Port != picked[1] {
		t.Fatalf("ports tried %v, server on %d; want %d then another", picked, s.Port, taken)
	}
	stdout, stderr, code := runSSH(t, nil, s.SSHArgs(t, currentUser(t), key)...)
	if code != 0 || string(stdout) != "forced\n" {
		t.Errorf("ssh: exit %d, stdout %q, stderr %q; want 0, %q", code, stdout, stderr, "forced\n")
	}
}

// recorder is a testing.TB that records Skip and Fatal instead of ending
// the test.
type recorder struct {
	testing.TB
	skipped, fatal string
}

func (r *recorder) Skip(args ...any)  { r.skipped = fmt.Sprint(args...) }
func (r *recorder) Fatal(args ...any) { r.fatal = fmt.Sprint(args...) }

func TestRequireExecutable(t *testing.T) {
	for _, ci := range []string{"", "true"} {
		for path, want := range map[string]string{
			"/nonexistent/sshd": "sshtest: /nonexistent/sshd is required (Debian package pkg): stat /nonexistent/sshd: no such file or directory",
			"/etc/passwd":       "sshtest: /etc/passwd is required (Debian package pkg): not an executable file",
			"/bin/sh":           "",
		} {
			t.Run("CI="+ci+path, func(t *testing.T) {
				t.Setenv("CI", ci)
				r := &recorder{TB: t}
				requireExecutable(r, path, "pkg")
				wantSkip, wantFatal := want, ""
				if ci == "true" && want != "" {
					wantSkip, wantFatal = "", "CI=true but "+want
				}
				if r.skipped != wantSkip || r.fatal != wantFatal {
					t.Errorf("skipped %q, fatal %q; want %q, %q", r.skipped, r.fatal, wantSkip, wantFatal)
				}
			})
		}
	}
}

// TestCleanupEndsOpenConnections leaves a session open when its test ends:
// the cleanup must end it, not leave sshd's connection process behind.
func TestCleanupEndsOpenConnections(t *testing.T) {
	t.Parallel()
	var client *ssh.Client
	var s *SSHD
	t.Run("leak", func(t *testing.T) {
		key := NewKey(t, t.TempDir(), "client")
		s = Start(t, Config{AuthorizedKeys: []string{`command="cat",restrict ` + key.PublicLine}})
		var err error
		client, err = ssh.Dial("tcp", s.Addr(), s.ClientConfig(currentUser(t), key))
		if err != nil {
			t.Fatal(err)
		}
		session, err := client.NewSession()
		if err != nil {
			t.Fatal(err)
		}
		if _, err := session.StdinPipe(); err != nil { // never closed: cat runs on
			t.Fatal(err)
		}
		if err := session.Start(""); err != nil {
			t.Fatal(err)
		}
	})
	if client == nil {
		return
	}
	defer client.Close()
	closed := make(chan error, 1)
	go func() { closed <- client.Wait() }()
	timer := time.NewTimer(10 * time.Second)
	defer timer.Stop()
	select {
	case <-closed:
	case <-timer.C:
		t.Fatalf("the connection outlived its test's cleanup; sshd log:\n%s", s.Log())
	}
	if log := s.Log(); !strings.Contains(log, "Starting session: forced-command (key-option) 'cat'") {
		t.Errorf("sshd log lacks the session:\n%s", log)
	}
}
