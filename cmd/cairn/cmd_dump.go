package main

import (
	"bufio"
	"context"
	"fmt"
	"os"

	"github.com/cairnbackup/cairn/repo"
	"github.com/cairnbackup/cairn/repo/restore"
	"github.com/cairnbackup/cairn/repo/snapfs"
	"github.com/cairnbackup/cairn/repo/tree"
	"github.com/spf13/cobra"
	"golang.org/x/term"
)

// dumpBuffer is the size of the buffer in front of standard output.
const dumpBuffer = 1 << 20

func newDumpCommand(g *globalOptions) *cobra.Command {
	f := &filterOptions{}
	cmd := &cobra.Command{
		Use:   "dump SNAPSHOT[:PATH]",
		Short: "write a file's contents, or a directory as a tar stream, to standard output",
		Long: `Write PATH of SNAPSHOT (an ID prefix or "latest") to standard output:

  a file       its contents, holes as zeros;
  a directory  (or the whole snapshot when PATH is left out) a tar stream
               in the PAX format of everything below it, with names
               relative to PATH: files, directories, symlinks, hard
               links, devices and FIFOs (sockets are left out), with
               modes, owners (IDs and names), modification and access
               times in nanoseconds and extended attributes (as
               SCHILY.xattr records; extract them with tar --xattrs);
  other types  a tar stream of that one entry.

  cairn dump latest:/etc/fstab > fstab
  cairn dump latest:/srv/www | tar -x -C /tmp/www
  cairn dump latest:/home > home.tar

Every chunk is authenticated and re-hashed as it is read, and every
file's SHA-256 is compared with the one recorded at backup time after its
last byte. A mismatch or an unreadable chunk is an error naming the
file (exit code 1) after the bytes before it were written; a tar stream
is then left without its end marker, so that tar reports it truncated.
A tar stream is not written to a terminal. --node, --plan, --tag and
--path choose which snapshot "latest" names.`,
		Args: cobra.ExactArgs(1),
		RunE: func(cmd *cobra.Command, args []string) error {
			return runDump(cmd.Context(), g, f, args[0])
		},
	}
	f.register(cmd)
	return cmd
}

func runDump(ctx context.Context, g *globalOptions, f *filterOptions, arg string) error {
	r, release, err := g.open(ctx, repo.Options{ReadOnly: true})
	if err != nil {
		return err
	}
	defer release()
	sn, n, full, err := g.lookupRef(ctx, r, arg, f.filter())
	if err != nil {
		return err
	}
	if n.Type != tree.File {
		if out, ok := g.stdout.(*os.File); ok && term.IsTerminal(int(out.Fd())) {
			return usageError{fmt.Errorf("dump: %s is a %s: not writing a tar stream to a terminal; redirect standard output", full, n.Type)}
		}
	}
	w := bufio.NewWriterSize(g.stdout, dumpBuffer)
	if n.Type == tree.File {
		// Errors, a hash mismatch among them, name the file by n.Name.
		n.Name = full
		err = restore.WriteFile(ctx, r, &n, w)
	} else {
		err = restore.WriteTar(ctx, snapfs.NewCache(r, restore.CacheSize), n, w)
	}
	// What was written before an error goes out too: the error says
	// where it stops.
	if ferr := w.Flush(); err == nil {
		return ferr
	}
	if n.Type == tree.File {
		return fmt.Errorf("dump: snapshot %s: %w", sn.ID.Short(), err)
	}
	return fmt.Errorf("dump: snapshot %s, below %s: %w", sn.ID.Short(), full, err)
}
