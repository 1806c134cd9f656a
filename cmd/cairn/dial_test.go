package main

import (
	"bytes"
	"crypto/ed25519"
	"crypto/rand"
	"encoding/pem"
	"os"
	"path/filepath"
	"testing"

	"golang.org/x/crypto/ssh"
)

// A failure to read the node's key or known_hosts, or to start the ssh
// command, names the command once, and the command it is: push said
// "push: push: identity" and "push: push: fork/exec", restore --from
// "restore: restore: identity" and "restore: push: known hosts".
func TestDialErrorsNameTheCommandOnce(t *testing.T) {
	dir := t.TempDir()
	missing := filepath.Join(dir, "missing")
	_, priv, _ := ed25519.GenerateKey(rand.Reader)
	block, err := ssh.MarshalPrivateKey(priv, "lyra")
	if err != nil {
		t.Fatal(err)
	}
	key := filepath.Join(dir, "id_ed25519")
	if err := os.WriteFile(key, pem.EncodeToMemory(block), 0o600); err != nil {
		t.Fatal(err)
	}
	for _, c := range []struct {
		args []string
		want string
	}{
		{[]string{"push", "ssh://lyra@127.0.0.1:9", "-i", missing, "--host-key", "SHA256:x", dir},
			"cairn: push: identity: open " + missing + ": no such file or directory\n"},
		{[]string{"restore", "latest", "--target", dir, "--from", "ssh://lyra@127.0.0.1:9", "-i", missing, "--host-key", "SHA256:x"},
			"cairn: restore: identity: open " + missing + ": no such file or directory\n"},
		{[]string{"restore", "latest", "--target", dir, "--from", "ssh://lyra@127.0.0.1:9", "-i", key, "--known-hosts", missing},
			"cairn: restore: known hosts: open " + missing + ": no such file or directory (or pin the appliance's key with --host-key SHA256:...)\n"},
		{[]string{"push", "ssh://lyra@127.0.0.1:9", "--ssh-command", filepath.Join(dir, "no-ssh"), dir},
			"cairn: push: ssh command: fork/exec " + filepath.Join(dir, "no-ssh") + ": no such file or directory\n"},
	} {
		var stdout, stderr bytes.Buffer
		code := run(t.Context(), &globalOptions{args: c.args, stdout: &stdout, stderr: &stderr, stdin: bytes.NewReader(nil)})
		if code != 1 || stderr.String() != c.want {
			t.Errorf("%q: exit %d, %q; want 1, %q", c.args, code, stderr.String(), c.want)
		}
	}
}
