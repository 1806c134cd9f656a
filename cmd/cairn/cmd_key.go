package main

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"os"
	"strings"
	"text/tabwriter"

	"github.com/cairnbackup/cairn/repo"
	"github.com/cairnbackup/cairn/repo/seal"
	"github.com/spf13/cobra"
	"golang.org/x/term"
)

// newKeyCommand is the group of commands about the repository's keys
// (keys/<name>, each the master key wrapped by a passphrase or a key
// file's secret): test, list, add, remove, passwd. They run here, never
// in the appliance: the caller's credentials are proven here
// (repo.ProveKey), and the changes write only keys/ and key files, which
// the running appliance never reads again.
func newKeyCommand(g *globalOptions) *cobra.Command {
	cmd := groupCommand("key", "work with the repository's keys: test, list, add, remove, passwd")
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
	cmd.AddCommand(newKeyListCommand(g), newKeyAddCommand(g), newKeyRemoveCommand(g), newKeyPasswdCommand(g))
	return cmd
}

// keyChangesLong is what every key change says about itself.
const keyChangesLong = `
The caller's credentials (--key-file, --password-file, their variables,
or the default key file DIR.key) are proven first. Only keys/ and key
files are written, never the index: it works while the appliance runs
(as a user who can write DIR/keys). Each change adds before it removes,
so that whenever it is killed the old credential or the new one opens
the repository; the next key change removes what a killed one left.`

// keyring proves the caller's credentials (all named, or the default
// key file) and opens the keyring they may change.
func (g *globalOptions) keyring(ctx context.Context) (*repo.Keyring, []keyProof, error) {
	proofs, err := g.proveKeys(ctx, true)
	if err != nil {
		return nil, nil, err
	}
	creds := make([]repo.Credentials, len(proofs))
	for i, p := range proofs {
		creds[i] = p.cred
	}
	o, err := g.repoOptions(repo.Options{})
	if err != nil {
		return nil, nil, err
	}
	k, err := repo.OpenKeyring(ctx, g.repoDir, creds, o)
	return k, proofs, err
}

// keyListJSON is one key of key list --json.
type keyListJSON struct {
	repo.KeyInfo
	OpenedBy []string `json:"opened_by"` // the caller's credentials that open it
}

func newKeyListCommand(g *globalOptions) *cobra.Command {
	return &cobra.Command{
		Use:   "list",
		Short: "list the wrapped keys: kind, creation time, argon2id costs, and which the caller's credentials open",
		Long: `List every wrapped key in keys/: its name (KEY, the first 16 of its 64
hex digits; key remove takes any unique prefix), its kind (passphrase,
key file, or damaged), when it was made, a passphrase key's argon2id
costs (t= passes, m= memory, p= threads), and which of the caller's
credentials open it (OPENED BY). The credentials are proven first, as
key test does; nothing is written.

A damaged key file in keys/ is listed as damaged, and its reason is
printed as a warning.`,
		Args: cobra.NoArgs,
		RunE: func(cmd *cobra.Command, _ []string) error {
			k, proofs, err := g.keyring(cmd.Context())
			if err != nil {
				return err
			}
			list, err := k.List(cmd.Context())
			if err != nil {
				return err
			}
			out := make([]keyListJSON, len(list))
			for i, ki := range list {
				out[i] = keyListJSON{KeyInfo: ki, OpenedBy: []string{}}
				for _, p := range proofs {
					if p.key == ki.Name {
						out[i].OpenedBy = append(out[i].OpenedBy, p.what)
					}
				}
			}
			if g.json {
				return g.printJSON(out)
			}
			tw := tabwriter.NewWriter(g.stdout, 0, 4, 2, ' ', 0)
			tw.Write([]byte("KEY\tKIND\tCREATED\tARGON2ID\tOPENED BY\n"))
			for _, ki := range out {
				created, cost := "", ""
				if !ki.Created.IsZero() {
					created = g.when(ki.Created)
				}
				if p := ki.Argon2; p != nil {
					cost = argon2Costs(*p)
				}
				fmt.Fprintf(tw, "%s\t%s\t%s\t%s\t%s\n", shortKey(ki.Name), ki.Kind, created, cost, strings.Join(ki.OpenedBy, ", "))
			}
			if err := tw.Flush(); err != nil {
				return err
			}
			for _, ki := range out {
				if ki.Damaged != "" {
					fmt.Fprintln(g.stderr, "warning:", ki.Damaged)
				}
			}
			return nil
		},
	}
}

// shortKey is a key's name as tables show it.
func shortKey(name string) string {
	if len(name) > 16 {
		return name[:16]
	}
	return name
}

// argon2Costs shows argon2id costs: "t=3 m=64MiB p=2".
func argon2Costs(p seal.KDFParams) string {
	mem := fmt.Sprintf("%dKiB", p.MemoryKiB)
	if p.MemoryKiB%1024 == 0 {
		mem = fmt.Sprintf("%dMiB", p.MemoryKiB/1024)
	}
	return fmt.Sprintf("t=%d m=%s p=%d", p.Time, mem, p.Threads)
}

type keyAddOptions struct {
	passphrase bool
	newPWFile  string
	newKeyFile string
}

func newKeyAddCommand(g *globalOptions) *cobra.Command {
	o := &keyAddOptions{}
	cmd := &cobra.Command{
		Use:   "add --passphrase [--new-password-file FILE] | --new-key-file PATH",
		Short: "add a passphrase or a key file that opens the repository beside the existing ones",
		Long: `Add a way to open the repository beside the existing ones, wrapping the
master key the caller's credential unwrapped:

--passphrase adds a passphrase key (argon2id): a recovery passphrase
beside the key file of an unattended appliance. The new passphrase is
read from --new-password-file FILE (as --password-file reads one: the
file's contents without a trailing newline), or asked for twice on the
terminal.

--new-key-file PATH writes a new key file at PATH (which must not exist
and must lie outside the repository) and adds its key: a key file beside
a passphrase, or a second key file for another machine.

The new key is read back from keys/ and opened with the new credential
before the command succeeds.` + keyChangesLong,
		Args: cobra.NoArgs,
		RunE: func(cmd *cobra.Command, _ []string) error {
			ctx := cmd.Context()
			if o.newPWFile != "" {
				o.passphrase = true
			}
			if o.passphrase == (o.newKeyFile != "") {
				return usageError{errors.New("key add: give --passphrase (with --new-password-file FILE, or asked on the terminal) or --new-key-file PATH")}
			}
			k, _, err := g.keyring(ctx)
			if err != nil {
				return err
			}
			var pass []byte
			if o.passphrase {
				if pass, err = g.newPassphrase(o.newPWFile); err != nil {
					return err
				}
			}
			if o.passphrase {
				name, err := k.AddPassphrase(ctx, pass)
				if err != nil {
					return err
				}
				if g.json {
					return g.printJSON(map[string]string{"key": name, "kind": repo.KindPassphrase})
				}
				g.printf("added key %s (passphrase) to repository %s\n", name, g.abs(g.repoDir))
				return nil
			}
			path := g.abs(o.newKeyFile)
			name, err := k.AddKeyFile(ctx, path)
			if err != nil {
				return err
			}
			if g.json {
				return g.printJSON(map[string]string{"key": name, "kind": repo.KindKeyFile, "key_file": path})
			}
			g.printf("added key %s (key file %s) to repository %s\nkeep a copy of the key file off this machine: it opens every backup\n", name, path, g.abs(g.repoDir))
			return nil
		},
	}
	f := cmd.Flags()
	f.BoolVar(&o.passphrase, "passphrase", false, "add a passphrase key")
	f.StringVar(&o.newPWFile, "new-password-file", "", "file holding the new passphrase (default: ask twice on the terminal)")
	f.StringVar(&o.newKeyFile, "new-key-file", "", "write a new key file at PATH and add its key")
	return cmd
}

func newKeyRemoveCommand(g *globalOptions) *cobra.Command {
	return &cobra.Command{
		Use:   "remove KEY",
		Short: "remove a wrapped key (a lost passphrase or key file); never the last one",
		Long: `Remove the wrapped key KEY (its name, or a unique prefix of at least 4
characters, as key list shows them) from keys/: the passphrase or key
file that opened it no longer opens the repository. Use it when a
passphrase or a copy of a key file is lost or exposed.

It is refused when KEY is the repository's only key, and when no key
that one of the caller's credentials opens would stay: to remove the
key your own credential opens, prove a second credential too (give
--password-file and --key-file both).` + keyChangesLong,
		Args: cobra.ExactArgs(1),
		RunE: func(cmd *cobra.Command, args []string) error {
			ctx := cmd.Context()
			k, proofs, err := g.keyring(ctx)
			if err != nil {
				return err
			}
			name, err := k.Resolve(ctx, args[0])
			if err != nil {
				return err
			}
			err = k.Remove(ctx, name)
			if iu, ok := errors.AsType[*repo.KeyInUseError](err); ok && !iu.Only {
				var whats []string
				for _, p := range proofs {
					whats = append(whats, "the "+p.what)
				}
				return fmt.Errorf("keys/%s is the only key %s opens: to remove it, also name a credential that opens a key that stays (--password-file and --key-file both)", name, strings.Join(whats, " and "))
			}
			if err != nil {
				return err
			}
			if g.json {
				return g.printJSON(map[string]string{"removed": name})
			}
			g.printf("removed key %s from repository %s\n", name, g.abs(g.repoDir))
			return nil
		},
	}
}

type keyPasswdOptions struct {
	newPWFile string
}

func newKeyPasswdCommand(g *globalOptions) *cobra.Command {
	o := &keyPasswdOptions{}
	cmd := &cobra.Command{
		Use:   "passwd [--new-password-file FILE]",
		Short: "change the passphrase, or give the key file a new secret",
		Long: `Change the one credential the caller names:

With --password-file (or CAIRN_PASSWORD_FILE): change the passphrase.
The new one is read from --new-password-file FILE or asked for twice on
the terminal; a key wrapped with it is stored and opened, then the old
passphrase's key is removed.

With a key file (--key-file, CAIRN_KEY_FILE, or the default DIR.key):
give it a new secret. A new key file is written beside it (synced), its
key stored and opened, the file renamed over the old one (keeping its
owner, group and mode), then the old key is removed: copies of the old
key file (off-site ones too) stop opening the repository; copy the new
one off the machine again.` + keyChangesLong,
		Args: cobra.NoArgs,
		RunE: func(cmd *cobra.Command, _ []string) error {
			ctx := cmd.Context()
			if g.passwordFile != "" && g.keyFile != "" {
				return usageError{errors.New("key passwd changes one credential: name --password-file or --key-file, not both")}
			}
			if g.passwordFile == "" && o.newPWFile != "" {
				return usageError{errors.New("key passwd: --new-password-file changes a passphrase: name the old one with --password-file (a key file gets a new secret, not a passphrase)")}
			}
			k, proofs, err := g.keyring(ctx)
			if err != nil {
				return err
			}
			var pass []byte
			if g.passwordFile != "" {
				if pass, err = g.newPassphrase(o.newPWFile); err != nil {
					return err
				}
			}
			old := proofs[0].key
			if pass != nil {
				name, err := k.ChangePassphrase(ctx, old, pass)
				if err != nil {
					return err
				}
				if g.json {
					return g.printJSON(map[string]string{"key": name, "replaces": old})
				}
				g.printf("changed the passphrase of repository %s: key %s replaces key %s\n", g.abs(g.repoDir), name, old)
				return nil
			}
			path := g.abs(keyFileOf(g))
			name, err := k.RotateKeyFile(ctx, path, old)
			if err != nil {
				return err
			}
			if g.json {
				return g.printJSON(map[string]string{"key": name, "replaces": old, "key_file": path})
			}
			g.printf("gave key file %s a new secret: key %s replaces key %s in repository %s\ncopies of the old key file no longer open it: copy the new one off this machine\n", path, name, old, g.abs(g.repoDir))
			return nil
		},
	}
	cmd.Flags().StringVar(&o.newPWFile, "new-password-file", "", "file holding the new passphrase (default: ask twice on the terminal)")
	return cmd
}

// keyFileOf is the key file the caller's credential is: --key-file, or
// the default DIR.key.
func keyFileOf(g *globalOptions) string {
	if g.keyFile != "" {
		return g.keyFile
	}
	if p, err := g.place(); err == nil {
		return repo.DefaultKeyFile(p)
	}
	return ""
}

// newPassphrase reads a new passphrase from file, or asks for it twice
// on the terminal (standard input, prompts on standard error).
func (g *globalOptions) newPassphrase(file string) ([]byte, error) {
	if file != "" {
		return readPasswordFile(g.abs(file))
	}
	f, ok := g.stdin.(*os.File)
	if !ok || !term.IsTerminal(int(f.Fd())) {
		return nil, usageError{errors.New("no new passphrase: give --new-password-file FILE (standard input is not a terminal to ask on)")}
	}
	ask := func(prompt string) ([]byte, error) {
		fmt.Fprint(g.stderr, prompt)
		b, err := term.ReadPassword(int(f.Fd()))
		fmt.Fprintln(g.stderr)
		if err != nil {
			return nil, fmt.Errorf("read the new passphrase: %w", err)
		}
		return b, nil
	}
	p1, err := ask("new passphrase: ")
	if err != nil {
		return nil, err
	}
	if len(p1) == 0 {
		return nil, errors.New("the new passphrase is empty; nothing was changed")
	}
	p2, err := ask("the new passphrase again: ")
	if err != nil {
		return nil, err
	}
	if !bytes.Equal(p1, p2) {
		return nil, errors.New("the two new passphrases differ; nothing was changed")
	}
	return p1, nil
}
