package appliance

import (
	"crypto/ed25519"
	"crypto/rand"
	"encoding/pem"
	"errors"
	"fmt"
	"io/fs"
	"os"
	"path/filepath"

	"github.com/cairnbackup/cairn/repo/internal/durable"

	"golang.org/x/crypto/ssh"
)

// GenerateHostKey writes a new ed25519 host key (OpenSSH format, mode
// 0600) to path, which must not exist, and returns its fingerprint.
func GenerateHostKey(path string) (string, error) {
	pub, priv, err := ed25519.GenerateKey(rand.Reader)
	if err != nil {
		return "", err
	}
	block, err := ssh.MarshalPrivateKey(priv, "cairn appliance host key")
	if err != nil {
		return "", err
	}
	// One durable write: a temporary file beside it, synced, then
	// linked to its name (never replacing a key there), so a crash
	// leaves no host key or a whole one, never an empty file that
	// stops the appliance from starting.
	tmp, err := durable.WriteTemp(filepath.Dir(path), ".host_key-", func(f *os.File) error {
		_, err := f.Write(pem.EncodeToMemory(block))
		return err
	})
	if err != nil {
		return "", fmt.Errorf("host key: %w", err)
	}
	if err := durable.Link(tmp, path); err != nil {
		if durable.IsLinkError(err) {
			os.Remove(tmp)
		}
		if errors.Is(err, fs.ErrExist) {
			return "", fmt.Errorf("host key %s: %w", path, fs.ErrExist)
		}
		return "", fmt.Errorf("host key: %w", err)
	}
	sp, err := ssh.NewPublicKey(pub)
	if err != nil {
		return "", err
	}
	return ssh.FingerprintSHA256(sp), nil
}

// LoadHostKey reads a host key written by GenerateHostKey.
func LoadHostKey(path string) (ssh.Signer, error) {
	b, err := os.ReadFile(path)
	if err != nil {
		return nil, fmt.Errorf("host key: %w (cairn init creates it)", err)
	}
	k, err := ssh.ParsePrivateKey(b)
	if err != nil {
		return nil, fmt.Errorf("host key %s: %w", path, err)
	}
	return k, nil
}

// HostKey returns the SSH host key.
func (a *Appliance) HostKey() ssh.Signer { return a.hostKey }
