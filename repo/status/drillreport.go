package status

import (
	"context"
	"fmt"
	"io"
	"strings"
	"time"

	"github.com/cairnbackup/cairn/repo"
	"github.com/cairnbackup/cairn/repo/drill"
	"github.com/cairnbackup/cairn/repo/snapshot"
)

// DrillReport is one drill report with what its snapshot is and the
// snapshot's verdict: what cairn drills ID prints (its JSON shape, too)
// and what the status page shows on a report's page.
type DrillReport struct {
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

// FindDrillReport finds the report ref names (drill.Find: an ID prefix
// or "latest") and what it needs to be shown. The snapshot's verdict
// comes from all reports: partial names those that could not be read
// (the report itself is complete).
func FindDrillReport(ctx context.Context, r *repo.Repository, ref string) (d DrillReport, partial, err error) {
	s, err := drill.Find(ctx, r, ref)
	if err != nil {
		return DrillReport{}, nil, err
	}
	d = DrillReport{Saved: s, Paths: []string{}, Forgotten: true}
	list, err := r.Snapshots(ctx, snapshot.Filter{Node: s.Node})
	if err != nil {
		return DrillReport{}, nil, err
	}
	for _, e := range list {
		if e.ID == s.Snapshot {
			d.Paths, d.SnapshotTime, d.Forgotten = e.Paths, e.Time, false
		}
	}
	marks, partial := drill.Marks(ctx, r)
	if marks == nil && partial != nil {
		return DrillReport{}, nil, partial
	}
	if m, ok := marks[s.Snapshot]; ok {
		d.SnapshotDrill = &m
	}
	return d, partial, nil
}

// WriteDrillReport writes a report for people: what was drilled, when,
// the recovery time, the comparison of the files, each probe with its
// command, exit code and the lines of its output that matter, the
// failures and warnings, and the verdict. when formats a time. cairn
// drills ID and the status page both print reports with it.
func WriteDrillReport(w io.Writer, d DrillReport, when func(time.Time) string) {
	printf := func(format string, args ...any) { fmt.Fprintf(w, format, args...) }
	rep := d.Report
	printf("drill report %s\n", d.ID)
	name := rep.Node
	if rep.Plan != "" {
		name += "/" + rep.Plan
	}
	if rep.Class != "" {
		name += ", class " + rep.Class
	}
	printf("snapshot:  %s (%s)", rep.Snapshot, name)
	if d.Forgotten {
		printf(", since forgotten\n")
	} else {
		printf(" of %s\n", when(d.SnapshotTime))
		printf("paths:     %s\n", strings.Join(d.Paths, " "))
	}
	printf("started:   %s\nfinished:  %s\n", when(rep.Started), when(rep.Finished))
	printf("recovery:  %.3f s to restore and verify %d files, %s (%.1f MB/s)\n", rep.RestoreSeconds, rep.Files, HumanBytes(rep.Bytes), rep.MBPerSecond)
	files := rep.FileFailures()
	printf("files:     %d compared with the SHA-256 and metadata recorded at backup: ", rep.Files)
	if len(files) == 0 {
		printf("all identical\n")
	} else {
		printf("%d failed\n", len(files))
	}
	if rep.Sampled {
		printf("           a sample of the snapshot's %d files\n", rep.SnapshotFiles)
	}
	if len(rep.Probes) == 0 {
		printf("probes:    none\n")
	} else {
		printf("probes:\n")
	}
	for _, p := range rep.Probes {
		verdict := "OK  "
		if !p.OK {
			verdict = "FAIL"
		}
		printf("  %s %s %s (%.2f s)\n", verdict, p.Name, p.Target, p.Seconds)
		if p.Command != "" {
			printf("       command: %s\n", p.Command)
		}
		switch {
		case p.Exit != nil:
			printf("       exit:    %d\n", *p.Exit)
		case p.Error != "":
			printf("       exit:    none (%s)\n", p.Error)
		}
		if !p.OK && p.Exit != nil && p.Error != fmt.Sprintf("exit status %d", *p.Exit) {
			printf("       error:   %s\n", p.Error)
		}
		for _, l := range drill.Excerpt(p.Output) {
			printf("       | %s\n", l)
		}
	}
	if len(rep.Failures) > 0 {
		printf("failures:\n")
		for _, f := range rep.Failures {
			printf("  %s\n", f)
		}
	}
	for _, w := range rep.Warnings {
		printf("warning:   %s\n", w)
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
	printf("verdict:   %s\n", verdict)
}
