package sshtest

import (
	"crypto/ed25519"
	"crypto/rand"
	"encoding/pem"
	"os"
	"path/filepath"
	"strings"
	"testing"

	"golang.org/x/crypto/ssh"
)

// Key is an ed25519 key pair written to disk.
type Key struct {
	// PrivatePath is the OpenSSH-format private key file, mode 0600, usable
	// with ssh -i and with golang.org/x/crypto/ssh. The public key is
	// beside it in PrivatePath+".pub".
	PrivatePath string
	// PublicLine is the public key in authorized_keys format,
	// "ssh-ed25519 AAAA... comment", without a trailing newline.
	PublicLine string
	// Signer signs with the private key.
	Signer ssh.Signer
	// Fingerprint is ssh.FingerprintSHA256 of the public key ("SHA256:...").
	Fingerprint string
}

// NewKey generates a fresh ed25519 key pair and writes it to dir/name
// (private, 0600) and dir/name.pub (public, 0644). The comment in
// [Key.PublicLine] is name. If dir is "", NewKey uses a new t.TempDir().
func NewKey(t testing.TB, dir, name string) *Key {
	t.Helper()
	if name == "" || name != filepath.Base(name) || strings.ContainsAny(name, " \t\r\n") {
		t.Fatalf("sshtest: key name %q: want a plain file name", name)
	}
	if dir == "" {
		dir = t.TempDir()
	}
	pub, priv, err := ed25519.GenerateKey(rand.Reader)
	if err != nil {
		t.Fatalf("sshtest: generate key %s: %v", name, err)
	}
	block, err := ssh.MarshalPrivateKey(priv, name)
	if err != nil {
		t.Fatalf("sshtest: marshal key %s: %v", name, err)
	}
	signer, err := ssh.NewSignerFromKey(priv)
	if err != nil {
		t.Fatalf("sshtest: signer for key %s: %v", name, err)
	}
	sshPub, err := ssh.NewPublicKey(pub)
	if err != nil {
		t.Fatalf("sshtest: public key %s: %v", name, err)
	}
	k := &Key{
		PrivatePath: filepath.Join(dir, name),
		PublicLine:  authorizedKey(sshPub) + " " + name,
		Signer:      signer,
		Fingerprint: ssh.FingerprintSHA256(sshPub),
	}
	writeFile(t, k.PrivatePath, pem.EncodeToMemory(block), 0o600)
	writeFile(t, k.PrivatePath+".pub", []byte(k.PublicLine+"\n"), 0o644)
	return k
}

// authorizedKey formats key as "type base64" without comment or newline.
func authorizedKey(key ssh.PublicKey) string {
	return strings.TrimSuffix(string(ssh.MarshalAuthorizedKey(key)), "\n")
}

// writeFile creates path with exactly mode perm (umask does not apply) or
// fails the test.
func writeFile(t testing.TB, path string, data []byte, perm os.FileMode) {
	t.Helper()
	if err := os.WriteFile(path, data, perm); err != nil {
		t.Fatalf("sshtest: %v", err)
	}
	if err := os.Chmod(path, perm); err != nil {
		t.Fatalf("sshtest: %v", err)
	}
}
