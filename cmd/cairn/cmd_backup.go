package main

import (
	"errors"
	"fmt"
	"os"
	"time"

	"github.com/cairnbackup/cairn/repo"
	"github.com/cairnbackup/cairn/repo/backup"
	"github.com/cairnbackup/cairn/repo/blob"
	"github.com/cairnbackup/cairn/repo/snapshot"
	"github.com/spf13/cobra"
)

type backupOptions struct {
	node string
	plan string
	host string
	tags []string
}

func newBackupCommand(g *globalOptions) *cobra.Command {
	o := &backupOptions{}
	cmd := &cobra.Command{
		Use:   "backup PATH...",
		Short: "back up files and directories into a new snapshot",
		Long: `Back up PATHs into a new snapshot.

Exit code 0: saved, complete. 3: saved, but some files could not be read
(listed in the summary's warnings). 1: failed, nothing saved.`,
		Args: cobra.MinimumNArgs(1),
		RunE: func(cmd *cobra.Command, args []string) error { return runBackup(cmd, g, o, args) },
	}
	host, _ := os.Hostname()
	f := cmd.Flags()
	f.StringVar(&o.node, "node", host, "node (machine) the snapshot belongs to")
	f.StringVar(&o.plan, "plan", "", "plan or source name recorded in the snapshot")
	f.StringVar(&o.host, "host", host, "host name recorded in the snapshot")
	f.StringArrayVar(&o.tags, "tag", nil, "tag the snapshot (repeatable)")
	return cmd
}

// backupOutput is the JSON form of a finished backup.
type backupOutput struct {
	Snapshot blob.ID          `json:"snapshot"`
	Tree     blob.ID          `json:"tree"`
	Summary  snapshot.Summary `json:"summary"`
}

func runBackup(cmd *cobra.Command, g *globalOptions, o *backupOptions, paths []string) error {
	ctx := cmd.Context()
	if err := snapshot.CheckName("node", o.node); err != nil {
		return usageError{err}
	}
	r, err := g.open(ctx, repo.Options{})
	if err != nil {
		return err
	}
	defer r.Close()
	start := time.Now()
	s := r.NewSession()
	res, err := backup.Run(ctx, s, paths, backup.Options{Params: r.ChunkerParams(), Table: r.ChunkerTable()})
	if err != nil {
		s.Abort()
		return err
	}
	st := s.Stats()
	sum := res.Summary
	sum.BlobsAdded, sum.BytesAdded, sum.StoredAdded = st.BlobsAdded, st.BytesAdded, st.StoredAdded
	sum.Duration = time.Since(start)
	sn := &snapshot.Snapshot{
		Version: snapshot.Version, Time: start, Node: o.node, Plan: o.plan, Host: o.host,
		Paths: absPaths(paths), Tags: o.tags, Tree: res.Tree, Summary: sum,
	}
	id, err := s.Commit(ctx, sn)
	if err != nil {
		return err
	}
	if g.json {
		if err := g.printJSON(backupOutput{Snapshot: id, Tree: res.Tree, Summary: sum}); err != nil {
			return err
		}
	} else {
		for _, w := range sum.Warnings {
			fmt.Fprintln(g.stderr, "warning:", w)
		}
		g.printf("snapshot %s saved\n", id.Short())
		g.printf("files: %d, dirs: %d, others: %d, %s read\n", sum.Files, sum.Dirs, sum.Others, humanBytes(sum.BytesRead))
		g.printf("added: %d blobs, %s (%s stored) in %s\n", sum.BlobsAdded, humanBytes(sum.BytesAdded), humanBytes(sum.StoredAdded), sum.Duration.Round(time.Millisecond))
	}
	if len(sum.Warnings) > 0 {
		return &exitError{code: exitWarnings, err: errors.New("some files could not be read")}
	}
	return nil
}

func absPaths(paths []string) []string {
	out := make([]string, len(paths))
	for i, p := range paths {
		out[i] = mustAbs(p)
	}
	return out
}
