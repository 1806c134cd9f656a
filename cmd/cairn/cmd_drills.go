package main

import (
	"context"

	"github.com/cairnbackup/cairn/repo"
	"github.com/cairnbackup/cairn/repo/status"
)

// showDrillReport prints the report ref names, whole
// (status.WriteDrillReport, which the status page shares), or as JSON.
func (g *globalOptions) showDrillReport(ctx context.Context, r *repo.Repository, ref string) error {
	d, partial, err := status.FindDrillReport(ctx, r, ref)
	if err != nil {
		return err
	}
	if err := g.output(d, func() { status.WriteDrillReport(g.stdout, d, g.when) }); err != nil {
		return err
	}
	if partial != nil {
		return eachLine(partial)
	}
	return nil
}
