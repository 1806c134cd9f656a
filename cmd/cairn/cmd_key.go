package main

import (
	"github.com/spf13/cobra"
)

// newKeyCommand is the group of commands about the repository's keys
// (keys/<name>, each the master key wrapped by a passphrase or a key
// file's secret). Only test exists; add, list and remove belong here.
func newKeyCommand(g *globalOptions) *cobra.Command {
	cmd := &cobra.Command{
		Use:   "key",
		Short: "work with the repository's keys: test",
		Args:  cobra.ArbitraryArgs,
		RunE:  unknownSubcommand,
	}
	cmd.AddCommand(&cobra.Command{
		Use:   "test",
		Short: "prove that a key file or passphrase opens the repository, and do nothing else",
		Long: `Prove that the key file (--key-file, CAIRN_KEY_FILE) or the passphrase
(--password-file, CAIRN_PASSWORD_FILE) opens the repository: unwrap the
master key with it against keys/ and authenticate the repository's
config. With neither named, test the default key file DIR.key; with
both, test both. Nothing is written and the index is not opened, so it
works while the appliance runs (run it as a user who can read DIR/keys
and DIR/config).

Use it on the off-site copy of the key file or passphrase. Every other
command that names a key or password file runs the same test first.

Exit code 0: a line per credential naming the key in keys/ it opened.
1: the credential does not open the repository, or could not be
checked; the message says which and why.`,
		Args: cobra.NoArgs,
		RunE: func(cmd *cobra.Command, _ []string) error {
			proofs, err := g.proveKeys(cmd.Context(), true)
			if err != nil {
				return err
			}
			for _, p := range proofs {
				g.printf("the %s opens repository %s (key %s)\n", p.what, g.location(), p.key)
			}
			return nil
		},
	})
	return cmd
}
