package main

import (
	"context"
	"fmt"
	"strings"
	"time"

	"github.com/cairnbackup/cairn/repo"
	"github.com/cairnbackup/cairn/repo/drill"
	"github.com/cairnbackup/cairn/repo/snapshot"
)

// drillReportJSON is one report as cairn drills ID --json prints it: the
// stored report, what its snapshot is, and the snapshot's verdict.
type drillReportJSON struct {
	drill.Saved
	// Paths and SnapshotTime are the snapshot's, empty once it is
	// forgotten.
	Paths        []string  `json:"paths"`
	SnapshotTime time.Time `json:"snapshot_time,omitzero"`
	Forgotten    bool      `json:"snapshot_forgotten,omitempty"`
	// SnapshotDrill is the snapshot's verdict: its newest drill, which
	// may be a later report than this one.
	SnapshotDrill *drill.Mark `json:"snapshot_drill,omitempty"`
}

// showDrillReport prints the report ref names, whole.
func (g *globalOptions) showDrillReport(ctx context.Context, r *repo.Repository, ref string) error {
	s, err := drill.Find(ctx, r, ref)
	if err != nil {
		return err
	}
	out := drillReportJSON{Saved: s, Paths: []string{}, Forgotten: true}
	list, err := r.Snapshots(ctx, snapshot.Filter{Node: s.Node})
	if err != nil {
		return err
	}
	for _, e := range list {
		if e.ID == s.Snapshot {
			out.Paths, out.SnapshotTime, out.Forgotten = e.Paths, e.Time, false
		}
	}
	// The snapshot's verdict comes from all its reports; one that cannot
	// be read is named, as cairn drills does.
	all, listErr := drill.List(ctx, r)
	if m, ok := drill.Marks(all)[s.Snapshot]; ok {
		out.SnapshotDrill = &m
	}
	if g.json {
		if err := g.printJSON(out); err != nil {
			return err
		}
	} else {
		g.printDrillReport(out)
	}
	if listErr != nil {
		return eachLine(listErr)
	}
	return nil
}

// printDrillReport prints a report for people: what was drilled, when,
// the recovery time, the comparison of the files, each probe with its
// command, exit code and the lines of its output that matter, the
// failures and warnings, and the verdict.
func (g *globalOptions) printDrillReport(d drillReportJSON) {
	rep := d.Report
	when := func(t time.Time) string { return t.Local().Format("2006-01-02 15:04:05 MST") }
	g.printf("drill report %s\n", d.ID)
	name := rep.Node
	if rep.Plan != "" {
		name += "/" + rep.Plan
	}
	if rep.Class != "" {
		name += ", class " + rep.Class
	}
	g.printf("snapshot:  %s (%s)", rep.Snapshot, name)
	if d.Forgotten {
		g.printf(", since forgotten\n")
	} else {
		g.printf(" of %s\n", when(d.SnapshotTime))
		g.printf("paths:     %s\n", strings.Join(d.Paths, " "))
	}
	g.printf("started:   %s\nfinished:  %s\n", when(rep.Started), when(rep.Finished))
	g.printf("recovery:  %.3f s to restore and verify %d files, %s (%.1f MB/s)\n", rep.RestoreSeconds, rep.Files, humanBytes(rep.Bytes), rep.MBPerSecond)
	files := rep.FileFailures()
	g.printf("files:     %d compared with the SHA-256 and metadata recorded at backup: ", rep.Files)
	if len(files) == 0 {
		g.printf("all identical\n")
	} else {
		g.printf("%d failed\n", len(files))
	}
	if rep.Sampled {
		g.printf("           a sample of the snapshot's %d files\n", rep.SnapshotFiles)
	}
	if len(rep.Probes) == 0 {
		g.printf("probes:    none\n")
	} else {
		g.printf("probes:\n")
	}
	for _, p := range rep.Probes {
		verdict := "OK  "
		if !p.OK {
			verdict = "FAIL"
		}
		g.printf("  %s %s %s (%.2f s)\n", verdict, p.Name, p.Target, p.Seconds)
		if p.Command != "" {
			g.printf("       command: %s\n", p.Command)
		}
		switch {
		case p.Exit != nil:
			g.printf("       exit:    %d\n", *p.Exit)
		case p.Error != "":
			g.printf("       exit:    none (%s)\n", p.Error)
		}
		if !p.OK && p.Exit != nil && p.Error != fmt.Sprintf("exit status %d", *p.Exit) {
			g.printf("       error:   %s\n", p.Error)
		}
		for _, l := range drill.Excerpt(p.Output) {
			g.printf("       | %s\n", l)
		}
	}
	if len(rep.Failures) > 0 {
		g.printf("failures:\n")
		for _, f := range rep.Failures {
			g.printf("  %s\n", f)
		}
	}
	for _, w := range rep.Warnings {
		g.printf("warning:   %s\n", w)
	}
	verdict := rep.Result
	switch n := len(rep.Failures); {
	case n == 1:
		verdict += " (1 failure)"
	case n > 1:
		verdict += fmt.Sprintf(" (%d failures)", n)
	}
	switch m := d.SnapshotDrill; {
	case m != nil && m.Report == d.ID:
		verdict += "; the snapshot's newest drill, so it is " + m.Result
	case m != nil:
		verdict += fmt.Sprintf("; the snapshot's newest drill is report %s, so it is %s", m.Report.Short(), m.Result)
	}
	g.printf("verdict:   %s\n", verdict)
}
