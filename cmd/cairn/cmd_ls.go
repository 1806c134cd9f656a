package main

import (
	"encoding/json"
	"fmt"
	"path"
	"time"

	"github.com/cairnbackup/cairn/repo"
	"github.com/cairnbackup/cairn/repo/blob"
	"github.com/cairnbackup/cairn/repo/restore"
	"github.com/cairnbackup/cairn/repo/snapfs"
	"github.com/cairnbackup/cairn/repo/tree"
	"github.com/spf13/cobra"
)

func newLsCommand(g *globalOptions) *cobra.Command {
	f := &filterOptions{}
	cmd := &cobra.Command{
		Use:   "ls SNAPSHOT[:PATH]",
		Short: "list the files in a snapshot (recursively)",
		Long: `List every file below PATH in SNAPSHOT (an ID prefix or "latest").

With --json, prints one JSON object per line (path, type, mode, size,
mtime, uid, gid, sha256 for files), so huge trees stream.`,
		Args: cobra.ExactArgs(1),
		RunE: func(cmd *cobra.Command, args []string) error {
			ctx := cmd.Context()
			r, release, err := g.open(ctx, repo.Options{ReadOnly: true})
			if err != nil {
				return err
			}
			defer release()
			_, start, base, err := g.lookupRef(ctx, r, args[0], f.filter())
			if err != nil {
				return err
			}
			if start.Type != tree.Dir {
				return g.lsEntry(base, &start)
			}
			for e, err := range snapfs.Walk(ctx, r, start.Subtree, snapfs.WalkOptions{}) {
				if err != nil {
					return err
				}
				if err := g.lsEntry(path.Join(base, e.Path), e.Node); err != nil {
					return err
				}
			}
			return nil
		},
	}
	f.register(cmd)
	return cmd
}

type lsJSON struct {
	Path   string    `json:"path"`
	Type   string    `json:"type"`
	Mode   uint32    `json:"mode"`
	Size   uint64    `json:"size"`
	MTime  time.Time `json:"mtime"`
	UID    uint32    `json:"uid"`
	GID    uint32    `json:"gid"`
	User   string    `json:"user,omitempty"`
	Group  string    `json:"group,omitempty"`
	Target string    `json:"target,omitempty"`
	SHA256 *blob.ID  `json:"sha256,omitempty"`
}

func (g *globalOptions) lsEntry(p string, n *tree.Node) error {
	if g.json {
		v := lsJSON{Path: p, Type: n.Type.String(), Mode: n.Mode, Size: n.Size, MTime: time.Unix(0, n.MTime).UTC(),
			UID: n.UID, GID: n.GID, User: n.User, Group: n.Group, Target: n.LinkTarget}
		if n.Type == tree.File {
			h := n.FileHash
			v.SHA256 = &h
		}
		b, err := json.Marshal(v)
		if err != nil {
			return err
		}
		_, err = fmt.Fprintf(g.stdout, "%s\n", b)
		return err
	}
	mode := restore.FileMode(n.Mode).String()
	typ := map[tree.NodeType]byte{tree.File: '-', tree.Dir: 'd', tree.Symlink: 'l', tree.BlockDevice: 'b', tree.CharDevice: 'c', tree.FIFO: 'p', tree.Socket: 's'}[n.Type]
	mode = string(typ) + mode[len(mode)-9:]
	line := fmt.Sprintf("%s %8d %s %s", mode, n.Size, g.when(time.Unix(0, n.MTime)), p)
	if n.Type == tree.Symlink {
		line += " -> " + n.LinkTarget
	}
	_, err := fmt.Fprintln(g.stdout, line)
	return err
}
