package appliance

import (
	"bytes"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"golang.org/x/crypto/ssh"
)

// A host key is written once, mode 0600, and read back as the same key;
// an existing file is never replaced; a missing or unreadable file says
// which, and that cairn init creates it.
func TestHostKeyFile(t *testing.T) {
	dir := t.TempDir()
	path := filepath.Join(dir, "host_key")
	fp, err := GenerateHostKey(path)
	if err != nil {
		t.Fatal(err)
	}
	fi, err := os.Stat(path)
	if err != nil || fi.Mode().Perm() != 0o600 {
		t.Fatalf("host key file: %v, %v", fi, err)
	}
	k, err := LoadHostKey(path)
	if err != nil {
		t.Fatal(err)
	}
	if got := ssh.FingerprintSHA256(k.PublicKey()); got != fp || !strings.HasPrefix(fp, "SHA256:") || k.PublicKey().Type() != ssh.KeyAlgoED25519 {
		t.Fatalf("loaded %s (%s), generated %s", got, k.PublicKey().Type(), fp)
	}
	before, _ := os.ReadFile(path)
	if _, err := GenerateHostKey(path); err == nil || err.Error() != "host key "+path+": file already exists" {
		t.Fatalf("second GenerateHostKey: %v", err)
	}
	if names, _ := os.ReadDir(dir); len(names) != 1 {
		t.Fatalf("left beside the key: %v", names)
	}
	if after, _ := os.ReadFile(path); !bytes.Equal(before, after) {
		t.Fatal("the host key was replaced")
	}
	missing := filepath.Join(dir, "none")
	if _, err := LoadHostKey(missing); err == nil || err.Error() != "host key: open "+missing+": no such file or directory (cairn init creates it)" {
		t.Errorf("missing: %v", err)
	}
	garbage := filepath.Join(dir, "garbage")
	os.WriteFile(garbage, []byte("not a key\n"), 0o600)
	if _, err := LoadHostKey(garbage); err == nil || err.Error() != "host key "+garbage+": ssh: no key found" {
		t.Errorf("garbage: %v", err)
	}
}

// The embedded SSH server presents the appliance's host key and lets a
// node in only with one of its keys and its own name as the user; what
// it refuses is logged with the reason. Ciphers other than AES-GCM are
// not offered. Everything runs in-process on 127.0.0.1: no sshd.
func TestSSHLogin(t *testing.T) {
	lyra, vega, stranger := newTestNode(t, "lyra", "push"), newTestNode(t, "vega", "push"), newTestNode(t, "stranger", "push")
	rn := serveTest(t, configText("", lyra, vega))
	hostKey, err := LoadHostKey(filepath.Join(rn.dir, "host_key"))
	if err != nil {
		t.Fatal(err)
	}
	fp := ssh.FingerprintSHA256(hostKey.PublicKey())
	if got := ssh.FingerprintSHA256(rn.a.HostKey().PublicKey()); got != fp {
		t.Fatalf("HostKey %s, the file's %s", got, fp)
	}
	login := func(user string, key *testNode, ciphers ...string) (*ssh.Client, error) {
		cc := &ssh.ClientConfig{User: user, Auth: []ssh.AuthMethod{ssh.PublicKeys(key.signer)}, Timeout: time.Minute,
			HostKeyCallback: ssh.FixedHostKey(hostKey.PublicKey())}
		cc.Ciphers = ciphers
		return ssh.Dial("tcp", rn.addr, cc)
	}

	c, err := login("lyra", lyra)
	if err != nil {
		t.Fatalf("lyra, checking the host key is %s: %v", fp, err)
	}
	s, err := c.NewSession()
	if err != nil {
		t.Fatal(err)
	}
	if out, err := s.Output("snapshots"); err != nil || string(out) != "[]\n" {
		t.Errorf("lyra's snapshots: %q, %v", out, err)
	}
	c.Close()

	for _, bad := range []struct {
		user   string
		key    *testNode
		logged string
	}{
		{"vega", lyra, `key of node lyra used as user \"vega\"`},
		{"stranger", stranger, "unknown key " + ssh.FingerprintSHA256(stranger.signer.PublicKey())},
		{"lyra", stranger, "unknown key " + ssh.FingerprintSHA256(stranger.signer.PublicKey())},
	} {
		if c, err := login(bad.user, bad.key); err == nil {
			c.Close()
			t.Errorf("%s's key as %s: logged in", bad.key.name, bad.user)
		} else if !strings.Contains(err.Error(), "unable to authenticate") {
			t.Errorf("%s's key as %s: %v", bad.key.name, bad.user, err)
		}
		rn.waitFor(`msg="ssh connection refused"`, bad.logged)
	}
	if c, err := login("lyra", lyra, "chacha20-poly1305@openssh.com"); err == nil || !strings.Contains(err.Error(), "no common algorithm for client to server cipher") {
		if c != nil {
			c.Close()
		}
		t.Errorf("chacha20-poly1305 only: %v", err)
	}
}
