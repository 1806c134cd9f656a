package main

import (
	"errors"
	"time"

	"github.com/cairnbackup/cairn/repo"
	"github.com/cairnbackup/cairn/repo/restore"
	"github.com/spf13/cobra"
)

func newRestoreCommand(g *globalOptions) *cobra.Command {
	f := &filterOptions{}
	var target string
	cmd := &cobra.Command{
		Use:   "restore SNAPSHOT[:PATH] --target DIR",
		Short: "restore a snapshot (or a path in it) into a directory",
		Long: `Restore SNAPSHOT (an ID prefix or "latest"), or only PATH inside it,
into DIR. Every file's contents are re-hashed and compared with the
SHA-256 recorded at backup time; a mismatch fails the restore.`,
		Args: cobra.ExactArgs(1),
		RunE: func(cmd *cobra.Command, args []string) error {
			ctx := cmd.Context()
			if target == "" {
				return usageError{errors.New("restore: --target DIR is required")}
			}
			r, err := g.open(ctx, repo.Options{})
			if err != nil {
				return err
			}
			defer r.Close()
			ref, sub := splitRef(args[0])
			sn, err := r.FindSnapshot(ctx, ref, f.filter())
			if err != nil {
				return err
			}
			start := time.Now()
			res, err := restore.Run(ctx, r, sn.Tree, sub, target)
			if err != nil {
				return err
			}
			d := time.Since(start)
			if g.json {
				return g.printJSON(map[string]any{"snapshot": sn.ID, "target": mustAbs(target), "files": res.Files,
					"dirs": res.Dirs, "others": res.Others, "bytes": res.Bytes, "duration_ns": d})
			}
			g.printf("restored snapshot %s to %s: %d files, %d dirs, %d others, %s in %s (all file hashes verified)\n",
				sn.ID.Short(), mustAbs(target), res.Files, res.Dirs, res.Others, humanBytes(res.Bytes), d.Round(time.Millisecond))
			return nil
		},
	}
	cmd.Flags().StringVarP(&target, "target", "t", "", "directory to restore into (created if missing)")
	f.register(cmd)
	return cmd
}
