package main

import (
	"crypto/ed25519"
	"crypto/rand"
	"encoding/pem"
	"errors"
	"fmt"
	"os"

	"github.com/spf13/cobra"
	"golang.org/x/crypto/ssh"
)

func newKeygenCommand(g *globalOptions) *cobra.Command {
	var show bool
	cmd := &cobra.Command{
		Use:   "keygen PATH",
		Short: "create an SSH key for a node (PATH and PATH.pub), or show a key's fingerprint",
		Long: `Create an ed25519 SSH key for a node: the private key in PATH (mode
0600, OpenSSH format, usable by ssh -i and cairn push -i) and the public
key line in PATH.pub, to put into the appliance's configuration. An
existing PATH is never overwritten. With --show, print the fingerprint
of an existing key (private or public), such as the appliance's host key
DIR.host_key, to pass to cairn push --host-key.`,
		Args: cobra.ExactArgs(1),
		RunE: func(cmd *cobra.Command, args []string) error {
			path := g.abs(args[0])
			if show {
				b, err := os.ReadFile(path)
				if err != nil {
					return err
				}
				var pub ssh.PublicKey
				if k, err := ssh.ParsePrivateKey(b); err == nil {
					pub = k.PublicKey()
				} else if k, _, _, _, err := ssh.ParseAuthorizedKey(b); err == nil {
					pub = k
				} else {
					return fmt.Errorf("%s: not an SSH key", path)
				}
				g.printf("%s\n", ssh.FingerprintSHA256(pub))
				return nil
			}
			if _, err := os.Lstat(path); err == nil {
				return fmt.Errorf("%s exists already", path)
			} else if !errors.Is(err, os.ErrNotExist) {
				return err
			}
			pub, priv, err := ed25519.GenerateKey(rand.Reader)
			if err != nil {
				return err
			}
			block, err := ssh.MarshalPrivateKey(priv, "cairn node key")
			if err != nil {
				return err
			}
			if err := os.WriteFile(path, pem.EncodeToMemory(block), 0o600); err != nil {
				return err
			}
			sp, err := ssh.NewPublicKey(pub)
			if err != nil {
				return err
			}
			line := ssh.MarshalAuthorizedKey(sp)
			if err := os.WriteFile(path+".pub", line, 0o644); err != nil {
				return err
			}
			g.printf("%s%s\n", line, ssh.FingerprintSHA256(sp))
			return nil
		},
	}
	cmd.Flags().BoolVar(&show, "show", false, "print the fingerprint of an existing key")
	return cmd
}
