package status

import (
	"fmt"
	"io"
	"path"
	"strings"
	"time"

	"github.com/cairnbackup/cairn/repo/snapshot"
)

// RunbookOptions describe where the commands in a runbook point.
type RunbookOptions struct {
	Repo    string // the repository directory
	KeyFile string // the key file, if the repository uses one
	Node    string // only this node ("" for all)
}

// WriteRunbook writes a Markdown recovery runbook from st: for each group
// (node, plan and paths: one source) what it covers and why, its proven
// restore point (the newest snapshot that passed a drill, which retention
// keeps), the measured recovery time, and the exact commands to restore
// it. It depends on nothing but st, so the same state gives the same
// text.
func WriteRunbook(w io.Writer, st *Status, o RunbookOptions) error {
	b := &strings.Builder{}
	cairn := "cairn --repo " + o.Repo
	fmt.Fprintf(b, "# Recovery runbook\n\n")
	fmt.Fprintf(b, "Generated %s from the appliance's state by `cairn runbook`. Every command below is exact; the\n", st.Time.UTC().Format(time.RFC3339))
	fmt.Fprintf(b, "snapshots named were restored and checked by a drill. Keep a copy of this file, and of the key, off the appliance.\n\n")
	fmt.Fprintf(b, "## Before you start\n\n")
	fmt.Fprintf(b, "- Repository: `%s`\n", o.Repo)
	if o.KeyFile != "" {
		fmt.Fprintf(b, "- Key file: `%s` (without it nothing can be restored; a copy must be kept elsewhere)\n", o.KeyFile)
	} else {
		fmt.Fprintf(b, "- The repository is opened with its passphrase (`--password-file FILE`).\n")
	}
	fmt.Fprintf(b, "- The commands work with the appliance running (they go through its socket) or stopped.\n")
	fmt.Fprintf(b, "- First check what you are about to restore from: `%s check`\n", cairn)
	fmt.Fprintf(b, "- List what there is: `%s snapshots`\n\n", cairn)
	node := ""
	for _, g := range st.Groups {
		if o.Node != "" && g.Node != o.Node {
			continue
		}
		if g.Node != node {
			node = g.Node
			fmt.Fprintf(b, "## Node %s\n\n", node)
		}
		writeGroup(b, g, cairn)
	}
	if len(st.Attention) > 0 {
		fmt.Fprintf(b, "## Needs attention now\n\n")
		for _, a := range st.Attention {
			fmt.Fprintf(b, "- %s\n", a)
		}
		fmt.Fprintln(b)
	}
	_, err := io.WriteString(w, b.String())
	return err
}

func writeGroup(b *strings.Builder, g Group, cairn string) {
	plan := snapshot.PlanName(g.Plan)
	sc := g.Last.Scope
	class := "files"
	if sc != nil {
		class = sc.Class
	}
	fmt.Fprintf(b, "### %s / %s: %s (%s)\n\n", g.Node, plan, strings.Join(quoteAll(g.Paths), ", "), class)
	if sc != nil {
		fmt.Fprintf(b, "Why: %s\n\n", sc.Why)
	}
	if sc != nil && sc.Command != "" {
		fmt.Fprintf(b, "- Made by: `%s`\n", sc.Command)
	}
	fmt.Fprintf(b, "- Newest snapshot: %s (%s, %s)\n", g.Last.ID.Short(), g.Last.Time.UTC().Format(time.RFC3339), HumanBytes(g.Last.Bytes))
	use := g.Last
	if g.DrilledOK == nil {
		fmt.Fprintf(b, "- **No snapshot of this source has passed a drill.** Run `%s drill %s` before relying on it.\n", cairn, g.Last.ID.Short())
	} else {
		use = *g.DrilledOK
		d := g.OKDrill
		fmt.Fprintf(b, "- Proven restore point (retention keeps it): %s (%s), drill %s passed %s: %d files restored and verified in %.1f s (%.0f MB/s)\n",
			use.ID.Short(), use.Time.UTC().Format(time.RFC3339), d.Report.Short(), d.Time.UTC().Format(time.RFC3339), d.Files, d.RestoreSeconds, d.MBPerSecond)
	}
	if g.Drill != nil && g.Drill.Result != "ok" {
		fmt.Fprintf(b, "- The last drill (%s, snapshot %s) FAILED: %s\n", g.Drill.Report.Short(), g.Drill.Snapshot.Short(), strings.Join(g.Drill.Failures, "; "))
	}
	fmt.Fprintf(b, "\nRestore:\n\n```sh\n")
	writeCommands(b, class, sc, use, cairn)
	fmt.Fprintf(b, "```\n\n")
}

func writeCommands(b *strings.Builder, class string, sc *snapshot.Scope, s Snapshot, cairn string) {
	id := s.ID.String()[:12]
	switch {
	case sc != nil && sc.Command != "" && len(s.Paths) == 1:
		file := s.Paths[0]
		fmt.Fprintf(b, "# the dump, exactly as %q wrote it\n", sc.Command)
		switch tool := dumpTool(sc.Command); tool {
		case "":
			fmt.Fprintf(b, "%s dump %s:%s > %s\n# then load it with the tool that reads it\n", cairn, id, file, path.Base(file))
		default:
			fmt.Fprintf(b, "%s dump %s:%s | %s\n", cairn, id, file, tool)
		}
	case class == "volume":
		for _, p := range s.Paths {
			fmt.Fprintf(b, "# 1. stop the containers that use %s\n", p)
			fmt.Fprintf(b, "# 2. restore the volume in place (this replaces what is there)\n")
			fmt.Fprintf(b, "%s restore %s:%s --target %s\n", cairn, id, p, path.Dir(p))
			fmt.Fprintf(b, "%s restore %s:%s --target %s --verify-only\n", cairn, id, p, path.Dir(p))
			fmt.Fprintf(b, "# 3. recreate the containers from their configuration (restore the config plan first)\n")
		}
	default:
		for _, p := range s.Paths {
			fmt.Fprintf(b, "%s restore %s:%s --target /srv/restore\n", cairn, id, p)
			fmt.Fprintf(b, "%s restore %s:%s --target /srv/restore --verify-only\n", cairn, id, p)
			if class == "git" {
				fmt.Fprintf(b, "# check every repository: git --git-dir=/srv/restore/%s/REPO.git fsck --full\n", path.Base(p))
			}
		}
	}
}

// dumpTool names the program that loads the output of a dump command.
func dumpTool(cmd string) string {
	switch f := strings.Fields(cmd); {
	case len(f) == 0:
		return ""
	case path.Base(f[0]) == "pg_dumpall":
		return "psql -U postgres"
	case path.Base(f[0]) == "pg_dump" && strings.Contains(cmd, "-Fc"):
		return "pg_restore --clean --dbname DBNAME"
	case path.Base(f[0]) == "pg_dump":
		return "psql -U postgres --dbname DBNAME"
	case path.Base(f[0]) == "mysqldump" || path.Base(f[0]) == "mariadb-dump":
		return "mysql"
	}
	return ""
}

func quoteAll(ps []string) []string {
	out := make([]string, len(ps))
	for i, p := range ps {
		out[i] = "`" + p + "`"
	}
	return out
}

// HumanBytes formats a byte count with binary units ("1.5 GiB").
func HumanBytes(n uint64) string {
	const unit = 1024
	if n < unit {
		return fmt.Sprintf("%d B", n)
	}
	div, exp := uint64(unit), 0
	for m := n / unit; m >= unit; m /= unit {
		div *= unit
		exp++
	}
	return fmt.Sprintf("%.1f %ciB", float64(n)/float64(div), "KMGTPE"[exp])
}
