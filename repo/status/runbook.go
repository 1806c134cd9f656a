package status

import (
	"errors"
	"fmt"
	"io"
	"path"
	"slices"
	"strconv"
	"strings"
	"time"
	"unicode"
	"unicode/utf8"

	"github.com/cairnbackup/cairn/repo/blob"
	"github.com/cairnbackup/cairn/repo/snapshot"
)

// RunbookOptions describe where the commands in a runbook point.
type RunbookOptions struct {
	Repo    string // the repository: its directory, or its s3:// or s3+http:// URL
	KeyFile string // the key file, if the repository uses one
	// StateDir is the state directory of an object-store repository
	// (where its key file, configuration and host key are); "" for a
	// directory.
	StateDir string
	// Node is the only node to write about ("" for all): a configured
	// node (Nodes) or one with snapshots, else WriteRunbook fails with
	// [ErrUnknownNode].
	Node string
	// SSH is the address at which nodes reach the appliance's SSH
	// server ("rhea:2222"); empty leaves out the restores on the node.
	SSH string
	// HostKey is the fingerprint of the appliance's host key
	// ("SHA256:…"), which the node's commands pin with --host-key.
	HostKey string
	// Nodes are the configured nodes by name.
	Nodes map[string]NodeAccess
	// Contents are what the restore points hold, by snapshot (see
	// [Inspect]); a git source's restore point missing here gets a
	// general hint instead of one command per repository.
	Contents map[blob.ID]Contents
	// Replicas name the S3 credentials file of each object-store
	// replica (st.Replicas lists the replicas).
	Replicas map[string]ReplicaAccess
}

// NodeAccess is what a configured node can do with its key.
type NodeAccess struct {
	Read bool     // it may restore its own snapshots (read or admin)
	Keys []string // the fingerprints of its keys ("SHA256:…")
}

// ErrUnknownNode is the error of a runbook asked for a node that is not
// configured and has no snapshot.
var ErrUnknownNode = errors.New("unknown node")

// WriteRunbook writes a Markdown recovery runbook from st: for each group
// (node, plan and paths: one source) what it covers and why, its proven
// restore point (the newest snapshot that passed a drill, which retention
// keeps), the measured recovery time, and the exact commands to restore
// it, on the rebuilt node and on the appliance. It depends on nothing
// but st and o, so the same state gives the same text.
//
// Every command is in a fenced "sh" block, and each block begins with
// the variables (NAME=value lines: ROOT, STAGE, DEST, KEY, DB) that say
// where things go, so the operator edits only those, and a test can run
// the blocks. Nothing a node chose (paths, names in its trees, its
// plan's reasons and commands) reaches a command unquoted, and text
// that cannot be shown on one line is escaped, so a hostile node cannot
// add a command or a block to the runbook.
func WriteRunbook(w io.Writer, st *Status, o RunbookOptions) error {
	known := knownNodes(st, o)
	if o.Node != "" && !slices.Contains(known, o.Node) {
		if len(known) == 0 {
			return fmt.Errorf("%w %s; no node is configured or has snapshots", ErrUnknownNode, o.Node)
		}
		return fmt.Errorf("%w %s; the nodes are %s", ErrUnknownNode, o.Node, strings.Join(known, ", "))
	}
	b := &strings.Builder{}
	cairn := "cairn --repo " + shellWord(o.Repo)
	if o.StateDir != "" {
		cairn += " --state-dir " + shellWord(o.StateDir)
	}
	fmt.Fprintf(b, "# Recovery runbook\n\n")
	fmt.Fprintf(b, "Generated %s from the appliance's state by `cairn runbook`. Every command below is exact; the\n", st.Time.UTC().Format(time.RFC3339))
	fmt.Fprintf(b, "snapshots named were restored and checked by a drill. Keep a copy of this file, and of the key, off the appliance.\n\n")
	fmt.Fprintf(b, "## Before you start\n\n")
	fmt.Fprintf(b, "- Repository: `%s`\n", text(o.Repo))
	if o.KeyFile != "" {
		fmt.Fprintf(b, "- Key file: `%s` (without it nothing can be restored; a copy must be kept elsewhere)\n", text(o.KeyFile))
	} else {
		fmt.Fprintf(b, "- The repository is opened with its passphrase (`--password-file FILE`).\n")
	}
	if o.StateDir != "" {
		fmt.Fprintf(b, "- The repository is in an object store; this appliance keeps its configuration, host key and key file in\n")
		fmt.Fprintf(b, "  `%s`. The commands reach the store with the S3 credentials of the appliance (`s3_credentials:` in its\n", text(o.StateDir))
		fmt.Fprintf(b, "  configuration), `--s3-credentials FILE`, or AWS_ACCESS_KEY_ID and AWS_SECRET_ACCESS_KEY; none is written here.\n")
		fmt.Fprintf(b, "  If the appliance itself is lost, the same commands work from any machine with the key and the credentials:\n")
		fmt.Fprintf(b, "  the index is rebuilt from the bucket at the first open.\n")
	}
	fmt.Fprintf(b, "- The commands on the appliance work with it running (they go through its socket) or stopped; a node restores\n")
	fmt.Fprintf(b, "  from it while it runs.\n")
	fmt.Fprintf(b, "- First check what you are about to restore from: `%s check`\n", cairn)
	fmt.Fprintf(b, "- List what there is: `%s snapshots`\n", cairn)
	if o.SSH != "" {
		pin := "its host key is not known yet (cairn serve creates it and logs its fingerprint: pass that as --host-key)"
		if o.HostKey != "" {
			pin = fmt.Sprintf("its host key is `%s` (the commands pin it with `--host-key`)", text(o.HostKey))
		}
		fmt.Fprintf(b, "- A rebuilt node restores its own snapshots from the appliance at `%s`; %s.\n", text(o.SSH), pin)
	}
	fmt.Fprintf(b, "- Order on a rebuilt node, as below: its configuration, then its databases, then volumes and other files; start its\n")
	fmt.Fprintf(b, "  services only once their data is restored and checked (a service started on an empty database writes into it).\n")
	fmt.Fprintf(b, "- Each block of commands starts with the variables to set (where the files go, which key); the rest runs as it is.\n\n")
	groups := slices.Clone(st.Groups)
	slices.SortStableFunc(groups, func(a, b Group) int {
		if c := strings.Compare(a.Node, b.Node); c != 0 {
			return c
		}
		return classRank(a) - classRank(b)
	})
	shown := false
	for _, node := range nodes(st) {
		if o.Node != "" && node != o.Node {
			continue
		}
		shown = true
		fmt.Fprintf(b, "## Node %s\n\n", node)
		writeAccess(b, node, o)
		for _, g := range groups {
			if g.Node == node {
				writeGroup(b, g, cairn, o)
			}
		}
		writeNever(b, st.Never, node)
	}
	if o.Node != "" && !shown {
		fmt.Fprintf(b, "## Node %s\n\nNo snapshot of %s is stored: there is nothing to restore.\n\n", o.Node, o.Node)
	}
	if o.Node == "" {
		writeReplicas(b, st, o)
	}
	var attention []string
	for _, a := range st.Attention {
		if o.Node == "" || attentionFor(a, o.Node, known) {
			attention = append(attention, a)
		}
	}
	if len(attention) > 0 {
		fmt.Fprintf(b, "## Needs attention now\n\n")
		for _, a := range attention {
			fmt.Fprintf(b, "- %s\n", text(a))
		}
		fmt.Fprintln(b)
	}
	_, err := io.WriteString(w, b.String())
	return err
}

// classRank orders a node's sources in the order of a rebuild:
// configuration, databases, volumes, then the rest.
func classRank(g Group) int {
	if g.Last.Scope == nil {
		return 3
	}
	switch g.Last.Scope.Class {
	case "config":
		return 0
	case "database":
		return 1
	case "volume":
		return 2
	}
	return 3
}

// knownNodes returns the configured nodes and the nodes with snapshots,
// sorted.
func knownNodes(st *Status, o RunbookOptions) []string {
	var names []string
	for n := range o.Nodes {
		names = append(names, n)
	}
	for _, g := range st.Groups {
		names = append(names, g.Node)
	}
	slices.Sort(names)
	return slices.Compact(names)
}

// attentionFor reports whether attention line a concerns node or no
// node at all (jobs, verification). A line concerns a node when it
// begins with the node's name followed by "/", ":" or " [": the names of
// groups and node/plans (prune.Group.String) that every line about a
// node begins with.
func attentionFor(a, node string, known []string) bool {
	about := func(n string) bool {
		rest, ok := strings.CutPrefix(a, n)
		return ok && (strings.HasPrefix(rest, "/") || strings.HasPrefix(rest, ":") || strings.HasPrefix(rest, " ["))
	}
	if about(node) {
		return true
	}
	return !slices.ContainsFunc(known, about)
}

// writeAccess says how node restores on itself.
func writeAccess(b *strings.Builder, node string, o RunbookOptions) {
	if o.SSH == "" {
		return
	}
	acc, ok := o.Nodes[node]
	switch {
	case !ok:
		fmt.Fprintf(b, "%s is not in the appliance's configuration, so it cannot restore on its own: add it with a key and the read\n", node)
		fmt.Fprintf(b, "permission (and reload the appliance: `kill -HUP` its process), or restore on the appliance and copy.\n\n")
		return
	case !acc.Read:
		fmt.Fprintf(b, "%s has no read permission, so it cannot restore on its own: add `read` to its permissions in the appliance's\n", node)
		fmt.Fprintf(b, "configuration (and reload the appliance: `kill -HUP` its process), or restore on the appliance and copy.\n\n")
	default:
		fmt.Fprintf(b, "%s restores on its own with its key (it has the read permission), or the appliance restores and copies to it.\n\n", node)
	}
	fmt.Fprintf(b, "If %s's private key was lost with the machine, make a new one on it (`cairn keygen ~/.ssh/id_ed25519`), put the\n", node)
	fmt.Fprintf(b, "public line it prints under `nodes: %s: keys:` in the appliance's configuration, and reload the appliance.\n\n", node)
}

func writeGroup(b *strings.Builder, g Group, cairn string, o RunbookOptions) {
	plan := snapshot.PlanName(g.Plan)
	sc := g.Last.Scope
	class := "files"
	if sc != nil {
		class = sc.Class
	}
	fmt.Fprintf(b, "### %s / %s: %s (%s)\n\n", g.Node, plan, strings.Join(quoteAll(g.Paths), ", "), text(class))
	if sc != nil {
		fmt.Fprintf(b, "Why: %s\n\n", text(sc.Why))
	}
	if sc != nil && sc.Command != "" {
		fmt.Fprintf(b, "- Made by: `%s`\n", text(sc.Command))
	}
	fmt.Fprintf(b, "- Newest snapshot: %s (%s, %s)\n", g.Last.ID.Short(), g.Last.Time.UTC().Format(time.RFC3339), HumanBytes(g.Last.Bytes))
	use := RestorePoint(g)
	switch {
	case g.DrilledOK == nil && g.Drill != nil:
		fmt.Fprintf(b, "- **No snapshot of this source passed its newest drill.** Run `%s drill %s` before relying on it.\n", cairn, g.Last.ID.Short())
	case g.DrilledOK == nil:
		fmt.Fprintf(b, "- **No snapshot of this source has passed a drill.** Run `%s drill %s` before relying on it.\n", cairn, g.Last.ID.Short())
	default:
		d := g.OKDrill
		fmt.Fprintf(b, "- Proven restore point (retention keeps it): %s (%s), drill %s passed %s: %d files restored and verified in %.1f s (%.0f MB/s)\n",
			use.ID.Short(), use.Time.UTC().Format(time.RFC3339), d.Report.Short(), d.Time.UTC().Format(time.RFC3339), d.Files, d.RestoreSeconds, d.MBPerSecond)
	}
	if len(use.Excludes) > 0 {
		fmt.Fprintf(b, "- Left out of snapshot %s by exclude rules (not restored below): %s\n", use.ID.Short(), ExcludedText(use.Excludes, "`"))
	}
	if g.Drill != nil && g.Drill.Result != "ok" {
		fmt.Fprintf(b, "- The last drill (%s, snapshot %s) FAILED: %s\n", g.Drill.Report.Short(), g.Drill.Snapshot.Short(), text(strings.Join(g.Drill.Failures, "; ")))
	}
	fmt.Fprintln(b)
	writeRestore(b, g.Node, class, sc, use, cairn, o)
}

// writeRestore writes the commands that restore snapshot s of node: on
// the rebuilt node (restore --from, as the node), then on the appliance.
func writeRestore(b *strings.Builder, node, class string, sc *snapshot.Scope, s Snapshot, cairn string, o RunbookOptions) {
	id := s.ID.String()[:12]
	var file string // the dump file of a dump source
	var load *loader
	if sc != nil && sc.Command != "" && len(s.Paths) == 1 {
		file = path.Clean("/" + s.Paths[0])
		load = dumpLoader(sc.Command)
	}
	if o.SSH != "" {
		fmt.Fprintf(b, "On the rebuilt node, as root on %s:\n\n```sh\n", node)
		keys := ""
		if acc, ok := o.Nodes[node]; ok && len(acc.Keys) > 0 {
			keys = ": the key whose public half is " + strings.Join(acc.Keys, " or ") + " in the appliance's configuration"
		}
		fmt.Fprintf(b, "KEY=~/.ssh/id_ed25519  # %s's private key%s\n", node, keys)
		from := fmt.Sprintf("cairn restore --from ssh://%s@%s %s", node, o.SSH, id)
		pin := ` -i "$KEY"`
		if o.HostKey != "" {
			pin += " --host-key " + shellWord(o.HostKey)
		}
		if file != "" {
			fmt.Fprintf(b, "STAGE=/var/tmp/cairn-restore  # a directory for the dump file\n")
			fmt.Fprintf(b, "%s --target \"$STAGE\"%s\n", from, pin)
			fmt.Fprintf(b, "%s --target \"$STAGE\"%s --verify-only\n", from, pin)
			writeLoad(b, load, sc.Command, `"$STAGE"`, file, "")
		} else {
			fmt.Fprintf(b, "ROOT=/  # where the snapshot's paths go: / puts them back in place\n")
			writeVolumeStop(b, class, s.Paths)
			fmt.Fprintf(b, "%s --target \"$ROOT\"%s\n", from, pin)
			fmt.Fprintf(b, "%s --target \"$ROOT\"%s --verify-only\n", from, pin)
			writeGitChecks(b, class, s.ID, `"$ROOT"`, o)
			writeVolumeStart(b, class)
		}
		fmt.Fprintf(b, "```\n\n")
	}
	if file != "" {
		fmt.Fprintf(b, "On the appliance, loading the dump over the network:\n\n```sh\n")
		writeLoad(b, load, sc.Command, "", file, fmt.Sprintf("%s dump %s:%s", cairn, id, shellWord(file)))
		fmt.Fprintf(b, "```\n\n")
		return
	}
	fmt.Fprintf(b, "On the appliance, then copy to %s:\n\n```sh\n", node)
	fmt.Fprintf(b, "STAGE=/srv/restore/%s-%s  # an empty directory on the appliance\n", node, id[:8])
	fmt.Fprintf(b, "DEST=root@%s:  # where rsync copies to: the rebuilt node (or a directory)\n", node)
	fmt.Fprintf(b, "%s restore %s --target \"$STAGE\"\n", cairn, id)
	fmt.Fprintf(b, "%s restore %s --target \"$STAGE\" --verify-only\n", cairn, id)
	writeGitChecks(b, class, s.ID, `"$STAGE"`, o)
	writeVolumeStop(b, class, s.Paths)
	for _, p := range s.Paths {
		rel := strings.TrimPrefix(path.Clean("/"+p), "/")
		if !printable(rel) {
			fmt.Fprintf(b, "# %s: its name has characters a command line cannot show: copy it by hand\n", text(p))
			continue
		}
		fmt.Fprintf(b, "rsync -aHAX --numeric-ids --relative \"$STAGE\"/./%s \"$DEST\"/\n", shellWord(rel))
	}
	writeVolumeStart(b, class)
	fmt.Fprintf(b, "```\n\n")
}

// nodes returns the nodes of st's groups and of what never backed up,
// sorted.
func nodes(st *Status) []string {
	var out []string
	for _, g := range st.Groups {
		out = append(out, g.Node)
	}
	for _, n := range st.Never {
		out = append(out, n.Node)
	}
	slices.Sort(out)
	return slices.Compact(out)
}

// writeNever lists node's node/plans that never backed up: there is
// nothing to restore.
func writeNever(b *strings.Builder, never []Never, node string) {
	some := false
	for _, n := range never {
		if n.Node == node {
			fmt.Fprintf(b, "- **%s has never backed up**: there is no snapshot to restore.\n", n.Name())
			some = true
		}
	}
	if some {
		fmt.Fprintln(b)
	}
}

func writeVolumeStop(b *strings.Builder, class string, paths []string) {
	if class != "volume" {
		return
	}
	for _, p := range paths {
		fmt.Fprintf(b, "# first stop the containers that use %s (what is there is replaced)\n", text(p))
	}
}

func writeVolumeStart(b *strings.Builder, class string) {
	if class == "volume" {
		fmt.Fprintf(b, "# then recreate the containers from their configuration (restore the config plan first)\n")
	}
}

// writeGitChecks writes a git fsck for every git directory the snapshot
// holds, below dir (a shell word).
func writeGitChecks(b *strings.Builder, class string, id blob.ID, dir string, o RunbookOptions) {
	if class != "git" {
		return
	}
	c, ok := o.Contents[id]
	switch {
	case !ok:
		fmt.Fprintf(b, "# check every repository: git -c core.fsmonitor=false --git-dir=GITDIR fsck --full (a bare repository, or a work tree's .git)\n")
		return
	case c.Err != "":
		fmt.Fprintf(b, "# the snapshot's trees could not all be read (%s): the repositories below may be incomplete\n", text(c.Err))
	case len(c.GitDirs) == 0:
		fmt.Fprintf(b, "# the snapshot holds no git repository\n")
	}
	for _, g := range c.GitDirs {
		if !printable(g) {
			fmt.Fprintf(b, "# %s: its name has characters a command line cannot show: check it by hand\n", text(g))
			continue
		}
		fmt.Fprintf(b, "git -c core.fsmonitor=false --git-dir=%s/%s fsck --full\n", dir, shellWord(g))
	}
	if c.More > 0 {
		fmt.Fprintf(b, "# and %d more repositories: git -c core.fsmonitor=false --git-dir=GITDIR fsck --full for each\n", c.More)
	}
}

// loader says how a dump is loaded back into its database.
type loader struct {
	setup []string                 // lines before loading (variables, createdb)
	load  func(file string) string // the command that loads file ("" for standard input)
}

// dumpLoader returns how to load the output of the dump command cmd,
// or nil when cmd is not a dump tool cairn knows. cmd is the node's
// word: it is only compared with fixed strings, never run or parsed
// further.
func dumpLoader(cmd string) *loader {
	if strings.ContainsAny(cmd, "|>") {
		return nil // the dump goes through something else (gzip, a file)
	}
	f := strings.Fields(cmd)
	i := slices.IndexFunc(f, func(w string) bool {
		switch path.Base(w) {
		case "pg_dump", "pg_dumpall", "mysqldump", "mariadb-dump":
			return true
		}
		return false
	})
	if i < 0 {
		return nil
	}
	from := func(prefix, flag string) func(string) string {
		return func(file string) string {
			if file == "" {
				return prefix
			}
			return prefix + " " + flag + file
		}
	}
	switch path.Base(f[i]) {
	case "pg_dumpall":
		// Roles, then every database: into a fresh cluster. The role
		// the cluster was created with exists already; that one error
		// is expected.
		return &loader{load: from("psql --dbname postgres", "-f ")}
	case "pg_dump":
		if pgArchive(f[i+1:]) {
			// The archive creates its database (--create, through the
			// maintenance database postgres), dropping one of the same
			// name first if it exists (--clean --if-exists): the same
			// command on a fresh server and on a second attempt.
			return &loader{load: from("pg_restore --clean --if-exists --create --exit-on-error --dbname postgres", "")}
		}
		return &loader{
			setup: []string{"DB=DBNAME  # the database the dump was made of", `createdb "$DB"`},
			load:  from(`psql -v ON_ERROR_STOP=1 --dbname "$DB"`, "-f "),
		}
	}
	return &loader{load: from("mysql", "< ")}
}

// pgArchive reports whether pg_dump arguments ask for an archive
// pg_restore reads from a stream (custom or tar format).
func pgArchive(args []string) bool {
	for i, a := range args {
		v, ok := "", false
		switch {
		case a == "-F" || a == "--format":
			if i+1 < len(args) {
				v, ok = args[i+1], true
			}
		case strings.HasPrefix(a, "--format="):
			v, ok = strings.TrimPrefix(a, "--format="), true
		case strings.HasPrefix(a, "-F"):
			v, ok = strings.TrimPrefix(a, "-F"), true
		}
		if ok {
			switch v {
			case "c", "custom", "t", "tar":
				return true
			}
			return false
		}
	}
	return false
}

// writeLoad writes the lines that load the dump: from the restored file
// (stage, a shell word, holds file) or, with pipe, from cairn dump.
func writeLoad(b *strings.Builder, l *loader, command, stage, file, pipe string) {
	rel := strings.TrimPrefix(file, "/")
	if pipe == "" && !printable(rel) {
		fmt.Fprintf(b, "# %s: its name has characters a command line cannot show: load it by hand\n", text(file))
		return
	}
	if l == nil {
		fmt.Fprintf(b, "# the dump, exactly as %q wrote it: load it with the tool that reads it\n", command)
		if pipe != "" {
			fmt.Fprintf(b, "%s > %s\n", pipe, shellWord(path.Base(file)))
		}
		return
	}
	fmt.Fprintf(b, "# the dump, exactly as %q wrote it; load it before starting the services that use the database\n", command)
	fmt.Fprintf(b, "# (as a database superuser: PGUSER, PGHOST and PGPORT, or sudo -u postgres, choose who and where)\n")
	for _, s := range l.setup {
		fmt.Fprintln(b, s)
	}
	if pipe != "" {
		fmt.Fprintf(b, "%s | %s\n", pipe, l.load(""))
		return
	}
	fmt.Fprintln(b, l.load(stage+"/"+shellWord(rel)))
}

// ExcludedText says how many entries each rule left out: "2 entries by
// R1, 1 entry by R2", each rule between quote and quote.
func ExcludedText(ex []snapshot.Exclude, quote string) string {
	parts := make([]string, len(ex))
	for i, e := range ex {
		noun := "entries"
		if e.Count == 1 {
			noun = "entry"
		}
		parts[i] = fmt.Sprintf("%d %s by %s%s%s", e.Count, noun, quote, e.Rule, quote)
	}
	return strings.Join(parts, ", ")
}

func quoteAll(ps []string) []string {
	out := make([]string, len(ps))
	for i, p := range ps {
		out[i] = "`" + text(p) + "`"
	}
	return out
}

// printable reports whether s can stand on one line: valid UTF-8 with
// no control characters.
func printable(s string) bool {
	return utf8.ValidString(s) && !strings.ContainsFunc(s, unicode.IsControl)
}

// text makes s safe on one line of Markdown: a string that is not
// printable is shown Go-quoted, so it can neither end the line nor start
// a block of its own.
func text(s string) string {
	if printable(s) {
		return s
	}
	return strconv.Quote(s)
}

// shellWord quotes a printable s as one word for a POSIX shell: as it
// is when no shell treats any of its characters specially, else in
// single quotes (a single quote inside becomes '\”).
func shellWord(s string) string {
	if s != "" && !strings.ContainsFunc(s, func(r rune) bool {
		return !(r >= 'a' && r <= 'z' || r >= 'A' && r <= 'Z' || r >= '0' && r <= '9' || strings.ContainsRune("@%+=:,./_-", r))
	}) {
		return s
	}
	return "'" + strings.ReplaceAll(s, "'", `'\''`) + "'"
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
