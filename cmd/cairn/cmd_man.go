package main

import (
	"fmt"
	"os"

	"github.com/spf13/cobra"
	"github.com/spf13/cobra/doc"
)

// man writes files here; it never runs in the appliance.
func init() { local["man"] = true }

// newManCommand is the hidden command `make package` runs to write the
// man pages: cairn.1 and one page per command (cairn-backup.1, …,
// cairn-key-test.1), generated from the command tree with cobra/doc, so
// they always say what the binary does. The date is SOURCE_DATE_EPOCH's
// (the packaging sets it to the commit's time) or today's.
func newManCommand() *cobra.Command {
	return &cobra.Command{
		Use:    "man DIR",
		Short:  "write the man pages into DIR",
		Hidden: true,
		Args:   cobra.ExactArgs(1),
		RunE: func(cmd *cobra.Command, args []string) error {
			if err := os.MkdirAll(args[0], 0o755); err != nil {
				return err
			}
			root := cmd.Root()
			root.DisableAutoGenTag = true
			b := currentBuild()
			header := &doc.GenManHeader{Title: "CAIRN", Section: "1", Source: "cairn " + b.Version, Manual: "cairn manual"}
			if err := doc.GenManTree(root, header, args[0]); err != nil {
				return fmt.Errorf("man pages: %w", err)
			}
			return nil
		},
	}
}
