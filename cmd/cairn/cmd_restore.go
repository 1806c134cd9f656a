package main

import (
	"context"
	"errors"
	"fmt"
	"time"

	"github.com/cairnbackup/cairn/repo"
	"github.com/cairnbackup/cairn/repo/blob"
	"github.com/cairnbackup/cairn/repo/filter"
	"github.com/cairnbackup/cairn/repo/restore"
	"github.com/cairnbackup/cairn/repo/snapfs"
	"github.com/cairnbackup/cairn/repo/snapshot"
	"github.com/cairnbackup/cairn/repo/wire"
	"github.com/spf13/cobra"
)

type restoreOptions struct {
	target     string
	includes   []string
	excludes   []string
	verifyOnly bool
	from       string // ssh://NODE@HOST[:PORT]: restore from an appliance, as that node
	sshOptions
}

func (o *restoreOptions) options() (restore.Options, error) {
	var ro restore.Options
	var err error
	if ro.Include, err = filter.New(filter.FromFlags(o.includes, "--include")); err != nil {
		return ro, err
	}
	if ro.Exclude, err = filter.New(filter.FromFlags(o.excludes, "--exclude")); err != nil {
		return ro, err
	}
	return ro, nil
}

func newRestoreCommand(g *globalOptions) *cobra.Command {
	f := &filterOptions{}
	o := &restoreOptions{}
	cmd := &cobra.Command{
		Use:   "restore SNAPSHOT[:PATH] --target DIR [--from ssh://NODE@HOST[:PORT]]",
		Short: "restore a snapshot (or a path in it) into a directory",
		Long: `Restore SNAPSHOT (an ID prefix or "latest"), or only PATH inside it,
into DIR: files, directories, symlinks, hardlinks, FIFOs, and as root
device nodes and owners; modes, times and extended attributes. Holes of
sparse files stay holes. Every file's contents are re-hashed and compared
with the SHA-256 recorded at backup time; a mismatch fails the restore
and names the file. Nothing is written outside DIR.

--include and --exclude take the patterns of backup --exclude, matched
against paths inside the snapshot (with a leading /).

"latest:PATH" is the newest snapshot that holds PATH (a note on standard
error names it when newer snapshots hold other paths).

--verify-only compares DIR with the snapshot without writing anything and
lists every difference, then their count (exit code 4 when there are
any). Only the snapshot's own paths are compared: DIR may hold other
things (--target / on a node), and the directories leading to the paths
need only exist.

--from ssh://NODE@HOST[:PORT] restores from an appliance over SSH, on the
node, as NODE: only that node's snapshots, and only with the read
permission (the same -i, --known-hosts, --host-key, --ssh-command and
--timeout as push). Every blob is re-hashed on arrival and every file against its
recorded SHA-256, as in a local restore.`,
		Args: cobra.ExactArgs(1),
		RunE: func(cmd *cobra.Command, args []string) (err error) {
			ctx := cmd.Context()
			var l *link // restoring from an appliance
			defer func() {
				if l != nil {
					// Explained before the session is closed.
					if e := l.explain(ctx, err); e != nil {
						err = e
					}
					l.client.Close()
				}
			}()
			if o.target == "" {
				return usageError{errors.New("restore: --target DIR is required")}
			}
			o.target = g.abs(o.target)
			ro, err := o.options()
			if err != nil {
				return usageError{err}
			}
			ref, sub := splitRef(args[0])
			var r snapfs.BlobLoader
			var sn snapshot.Entry
			if o.from != "" {
				var c *wire.Client
				if l, c, err = o.dial(ctx, g); err != nil {
					return err
				}
				l.phase = phaseList
				var note string
				if sn, note, err = findRemote(ctx, c, ref, sub, f.filter()); err != nil {
					return fmt.Errorf("restore: %s: %w", o.from, err)
				}
				g.note(note)
				r = c
			} else {
				local, release, err := g.open(ctx, repo.Options{ReadOnly: true})
				if err != nil {
					return err
				}
				defer release()
				if sn, sub, err = g.findSnapshot(ctx, local, args[0], f.filter()); err != nil {
					return err
				}
				r = local
			}
			start := time.Now()
			if o.verifyOnly {
				if l != nil {
					l.phase = phaseVerify
				}
				ro.Paths = sn.Paths // compare only what the snapshot holds, not all of the target
				diffs, err := restore.Verify(ctx, r, sn.Tree, sub, o.target, ro)
				if err != nil {
					if l != nil {
						return err // explained by the link
					}
					return stoppedBy(ctx, inSnapshot(sn, err), "restore", func() string { return "the comparison with " + o.target + " is incomplete" })
				}
				if diffs == nil {
					diffs = []restore.Difference{}
				}
				err = g.output(map[string]any{"snapshot": sn.ID, "target": g.abs(o.target), "differences": diffs}, func() {
					for _, d := range diffs {
						g.printf("%s\n", d)
					}
					switch len(diffs) {
					case 0:
						g.printf("%s matches snapshot %s\n", o.target, sn.ID.Short())
					case 1:
						g.printf("1 difference between %s and snapshot %s\n", o.target, sn.ID.Short())
					default:
						g.printf("%d differences between %s and snapshot %s\n", len(diffs), o.target, sn.ID.Short())
					}
				})
				if err != nil {
					return err
				}
				if len(diffs) > 0 {
					return &exitError{code: exitDamage, err: fmt.Errorf("%d differences", len(diffs))}
				}
				return nil
			}
			prog := &restore.Progress{}
			ro.Progress = prog
			stop := g.startProgress(func(final bool) {
				if g.json {
					g.printJSONLine(map[string]any{"type": "progress", "files": prog.Files.Load(), "bytes": prog.Bytes.Load()})
					return
				}
				g.progressLine(fmt.Sprintf("%d files, %s", prog.Files.Load(), humanBytes(prog.Bytes.Load())), prog.Bytes.Load(), sn.Summary.Bytes, start, final)
			})
			if l != nil {
				l.phase = phaseRestore
			}
			res, err := restore.Run(ctx, r, sn.Tree, sub, o.target, ro)
			stop()
			if res != nil {
				for _, w := range res.Warnings {
					fmt.Fprintln(g.stderr, "warning:", w)
				}
			}
			if err != nil {
				if l != nil {
					return err // explained by the link
				}
				return stoppedBy(ctx, inSnapshot(sn, err), "restore", func() string {
					return fmt.Sprintf("the files in %s are incomplete (%d files restored and verified, %s written in %s)",
						o.target, prog.Files.Load(), humanBytes(prog.Bytes.Load()), time.Since(start).Round(time.Millisecond))
				})
			}
			d := time.Since(start)
			if g.json {
				g.printJSONLine(map[string]any{"type": "summary", "snapshot": sn.ID, "target": g.abs(o.target), "files": res.Files,
					"dirs": res.Dirs, "symlinks": res.Symlinks, "hardlinks": res.Hardlinks, "others": res.Others, "bytes": res.Bytes, "duration_ns": d})
				return nil
			}
			g.printf("restored snapshot %s to %s: %d files, %d dirs, %d symlinks, %d hardlinks, %d others, %s in %s (all file hashes verified)\n",
				sn.ID.Short(), g.abs(o.target), res.Files, res.Dirs, res.Symlinks, res.Hardlinks, res.Others, humanBytes(res.Bytes), d.Round(time.Millisecond))
			return nil
		},
	}
	cmd.Flags().StringVarP(&o.target, "target", "t", "", "directory to restore into (created if missing)")
	cmd.Flags().StringArrayVar(&o.includes, "include", nil, "restore only paths matching PATTERN (repeatable)")
	cmd.Flags().StringArrayVar(&o.excludes, "exclude", nil, "leave out paths matching PATTERN (repeatable)")
	cmd.Flags().BoolVar(&o.verifyOnly, "verify-only", false, "compare DIR with the snapshot without writing")
	cmd.Flags().StringVar(&o.from, "from", "", "restore from the appliance at ssh://NODE@HOST[:PORT], as NODE (needs the read permission)")
	o.sshOptions.register(cmd.Flags())
	f.register(cmd)
	return cmd
}

// inSnapshot names the snapshot in an error that says something is not
// in it (a PATH it lacks, a tree it cannot find); a restore's list of
// files it could not restore names them already.
func inSnapshot(sn snapshot.Entry, err error) error {
	var re *restore.Error
	if errors.Is(err, blob.ErrNotFound) && !errors.As(err, &re) {
		return fmt.Errorf("snapshot %s: %w", sn.ID.Short(), err)
	}
	return err
}

// dial connects to the appliance named by --from and starts a wire
// session as its node.
func (o *restoreOptions) dial(ctx context.Context, g *globalOptions) (*link, *wire.Client, error) {
	return o.dialFrom(ctx, g, "restore", o.from, func(phase string) string {
		switch phase {
		case phaseRestore:
			return "the files in " + o.target + " are incomplete"
		case phaseVerify:
			return "the comparison with " + o.target + " is incomplete"
		}
		return "nothing was restored"
	})
}
