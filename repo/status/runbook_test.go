package status_test

import (
	"bytes"
	"errors"
	"os"
	"os/exec"
	"path/filepath"
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/cairnbackup/cairn/integration/testenv"
	"github.com/cairnbackup/cairn/repo/backup"
	"github.com/cairnbackup/cairn/repo/blob"
	"github.com/cairnbackup/cairn/repo/repotest"
	"github.com/cairnbackup/cairn/repo/snapshot"
	"github.com/cairnbackup/cairn/repo/status"
)

// shBlocks returns the lines of each fenced "sh" block of a runbook.
func shBlocks(book string) [][]string {
	var blocks [][]string
	var cur []string
	in := false
	for line := range strings.SplitSeq(book, "\n") {
		switch {
		case !in && line == "```sh":
			in, cur = true, nil
		case in && line == "```":
			in = false
			blocks = append(blocks, cur)
		case in:
			cur = append(cur, line)
		}
	}
	return blocks
}

// runbookFor writes the runbook of st for node.
func runbookFor(t *testing.T, st *status.Status, o status.RunbookOptions) string {
	t.Helper()
	var b bytes.Buffer
	if err := status.WriteRunbook(&b, st, o); err != nil {
		t.Fatal(err)
	}
	return b.String()
}

// twoNodes is lyra's golden state plus a node vega, with attention
// lines about each, about a node/plan and about no node.
func twoNodes() (*status.Status, status.RunbookOptions) {
	st := goldenStatus()
	www := status.Snapshot{ID: id("www1"), Time: st.Time.Add(-time.Hour), Bytes: 1 << 20, Files: 10, Paths: []string{"/srv/www"}}
	st.Groups = append(st.Groups, status.Group{Node: "vega", Plan: "www", Paths: www.Paths, Snapshots: 1, Last: www})
	st.Attention = append(st.Attention,
		"vega/www [/srv/www]: the last drill (report 0badc0de, snapshot 0badc0de) failed",
		"vega: last backup 3d ago, expected every 1d",
		"lyra-old/db: last backup 9d ago, expected every 1d",
		"job verify failed at 2026-11-26T04:00:00Z: disk on fire",
		"3 packs were not verified within the 30d cycle")
	o := goldenOptions()
	o.Nodes["vega"] = status.NodeAccess{Keys: []string{"SHA256:vega0key"}}
	o.Nodes["orion"] = status.NodeAccess{Read: true}
	o.Nodes["lyra-old"] = status.NodeAccess{Read: true}
	return st, o
}

// runbook --node N shows N's sources and only the attention lines about
// N or about no node; a node that is neither configured nor has
// snapshots is an error naming the nodes there are (issue 13 item 9).
func TestRunbookNode(t *testing.T) {
	st, o := twoNodes()
	o.Node = "lyra"
	book := runbookFor(t, st, o)
	if strings.Contains(book, "vega") || strings.Contains(book, "lyra-old") || !strings.Contains(book, "## Node lyra\n") {
		t.Fatalf("runbook --node lyra:\n%s", book)
	}
	att := book[strings.Index(book, "## Needs attention now"):]
	want := "## Needs attention now\n\n" +
		"- lyra/db: the last drill (report " + id("r3").Short() + ", snapshot " + id("db2").Short() + ") failed\n" +
		"- job verify failed at 2026-11-26T04:00:00Z: disk on fire\n" +
		"- 3 packs were not verified within the 30d cycle\n\n"
	if att != want {
		t.Fatalf("attention of lyra:\n%s\nwant:\n%s", att, want)
	}

	o.Node = "vega"
	book = runbookFor(t, st, o)
	if strings.Contains(book, "lyra") || !strings.Contains(book, "vega has no read permission, so it cannot restore on its own") ||
		!strings.Contains(book, "- vega/www [/srv/www]: the last drill") || !strings.Contains(book, "- vega: last backup 3d ago") {
		t.Fatalf("runbook --node vega:\n%s", book)
	}

	// A configured node without snapshots is known.
	o.Node = "orion"
	book = runbookFor(t, st, o)
	if !strings.Contains(book, "## Node orion\n\nNo snapshot of orion is stored: there is nothing to restore.\n") || strings.Contains(book, "lyra/db") {
		t.Fatalf("runbook --node orion:\n%s", book)
	}

	o.Node = "nosuch"
	err := status.WriteRunbook(&bytes.Buffer{}, st, o)
	if !errors.Is(err, status.ErrUnknownNode) || err.Error() != "unknown node nosuch; the nodes are lyra, lyra-old, orion, vega" {
		t.Fatalf("runbook --node nosuch: %v", err)
	}
	err = status.WriteRunbook(&bytes.Buffer{}, &status.Status{}, status.RunbookOptions{Node: "lyra"})
	if !errors.Is(err, status.ErrUnknownNode) || err.Error() != "unknown node lyra; no node is configured or has snapshots" {
		t.Fatalf("runbook --node lyra of an empty appliance: %v", err)
	}
	// Without --node everything is there.
	o.Node = ""
	if book := runbookFor(t, st, o); !strings.Contains(book, "## Node vega") || !strings.Contains(book, "- lyra-old/db: last backup") {
		t.Fatalf("runbook of all nodes:\n%s", book)
	}
}

// The database step loads a dump into a fresh server as it is: a
// pg_dump archive creates its database (and replaces one left by a
// first attempt), a plain dump goes into a database made for it; an
// unknown command is left to the operator (issue 13 item 7).
func TestRunbookDumpCommands(t *testing.T) {
	restore := "pg_restore --clean --if-exists --create --exit-on-error --dbname postgres"
	cases := []struct{ command, onNode, onAppliance string }{
		{"pg_dump -Fc shop", restore + ` "$STAGE"/shop.dump`, "dump 5e0bdeadbeef:/shop.dump | " + restore},
		{"sudo -u postgres pg_dump --format=custom --dbname shop", restore + ` "$STAGE"/shop.dump`, "| " + restore},
		{"/usr/bin/pg_dump -F t shop", restore + ` "$STAGE"/shop.dump`, "| " + restore},
		{"pg_dump shop", "DB=DBNAME  # the database the dump was made of\ncreatedb \"$DB\"\n" + `psql -v ON_ERROR_STOP=1 --dbname "$DB" -f "$STAGE"/shop.dump`,
			"createdb \"$DB\"\ncairn --repo /srv/cairn/repo dump 5e0bdeadbeef:/shop.dump | psql -v ON_ERROR_STOP=1 --dbname \"$DB\""},
		{"pg_dumpall", `psql --dbname postgres -f "$STAGE"/shop.dump`, "| psql --dbname postgres"},
		{"mysqldump --all-databases", `mysql < "$STAGE"/shop.dump`, "| mysql"},
		{"pg_dump -Fc shop | gzip", "# the dump, exactly as \"pg_dump -Fc shop | gzip\" wrote it: load it with the tool that reads it\n```",
			"dump 5e0bdeadbeef:/shop.dump > shop.dump\n```"},
	}
	for _, c := range cases {
		s := status.Snapshot{ID: blob.ID{0x5e, 0x0b, 0xde, 0xad, 0xbe, 0xef}, Time: time.Date(2026, 11, 26, 3, 0, 0, 0, time.UTC), Paths: []string{"/shop.dump"},
			Scope: &snapshot.Scope{Class: "database", Why: "orders", Command: c.command}}
		st := &status.Status{Time: s.Time, Groups: []status.Group{{Node: "lyra", Plan: "shop", Paths: s.Paths, Snapshots: 1, Last: s}}}
		book := runbookFor(t, st, goldenOptions())
		node, appliance, ok := strings.Cut(book[strings.Index(book, "On the rebuilt node"):], "On the appliance")
		if !ok || !strings.Contains(node, c.onNode) || !strings.Contains(appliance, c.onAppliance) {
			t.Errorf("%s: the runbook has\n%s\nwant on the node %q and on the appliance %q", c.command, book[strings.Index(book, "On the rebuilt node"):], c.onNode, c.onAppliance)
		}
	}
}

// Names a hostile node chose (paths, plan reasons, dump commands, names
// in its trees) neither add commands or blocks to the runbook nor run as
// commands: each reaches a command as one quoted argument, or is left
// out with a comment when it cannot stand on a command line.
func TestRunbookHostileNames(t *testing.T) {
	sh := testenv.RequireProgram(t, "sh", "dash")
	t0 := time.Date(2026, 11, 26, 3, 0, 0, 0, time.UTC)
	gitSnap := status.Snapshot{ID: id("evil-git"), Time: t0, Paths: []string{"/srv/$(touch pwned)", "/srv/a'b;touch pwned", "/srv/x\n```\n```sh\ntouch pwned"},
		Scope: &snapshot.Scope{Class: "git", Why: "ok\n```sh\ntouch pwned\n```"}}
	dumpSnap := status.Snapshot{ID: id("evil-dump"), Time: t0, Paths: []string{"/db`touch pwned`.dump"},
		Scope: &snapshot.Scope{Class: "database", Why: "w", Command: "pg_dump -Fc x\n```sh\ntouch pwned\n```"}}
	otherDump := status.Snapshot{ID: id("evil-dump2"), Time: t0, Paths: []string{"/$(touch pwned).sql"},
		Scope: &snapshot.Scope{Class: "database\n```sh\ntouch pwned\n```", Why: "w", Command: "weird-dump\ntouch pwned"}}
	st := &status.Status{Time: t0, Groups: []status.Group{
		{Node: "evil", Plan: "git", Paths: gitSnap.Paths, Last: gitSnap},
		{Node: "evil", Plan: "db", Paths: dumpSnap.Paths, Last: dumpSnap},
		{Node: "evil", Plan: "db2", Paths: otherDump.Paths, Last: otherDump},
	}, Attention: []string{"evil/git [/srv/x\n```sh\ntouch pwned\n```]: failed"}}
	o := status.RunbookOptions{Repo: "/srv/cairn/repo", SSH: "rhea:2222", HostKey: "SHA256:k",
		Nodes:    map[string]status.NodeAccess{"evil": {Read: true}},
		Contents: map[blob.ID]status.Contents{gitSnap.ID: {GitDirs: []string{"srv/$(touch pwned)/.git", "srv/a'b;touch pwned/r.git", "srv/nl\ntouch pwned/.git"}}}}
	book := runbookFor(t, st, o)
	blocks := shBlocks(book)
	if len(blocks) != 6 {
		t.Fatalf("%d sh blocks, want 6 (two per source):\n%s", len(blocks), book)
	}
	for _, line := range strings.Split(book, "\n") {
		if strings.HasPrefix(line, "touch pwned") || strings.HasPrefix(line, "## ") && strings.Contains(line, "pwned") {
			t.Fatalf("a hostile name made a line of its own: %q\n%s", line, book)
		}
	}
	// Run every block with the programs replaced by functions that
	// print their arguments, one per line.
	dir := t.TempDir()
	var out bytes.Buffer
	for _, b := range blocks {
		script := "set -e\nfor f in cairn git rsync pg_restore psql createdb mysql; do eval \"$f() { printf '<%s>\\n' \\\"\\$@\\\"; }\"; done\n" +
			strings.Join(b, "\n") + "\n"
		cmd := exec.Command(sh, "-c", script)
		cmd.Dir, cmd.Stdout, cmd.Stderr = dir, &out, &out
		if err := cmd.Run(); err != nil {
			t.Fatalf("block failed: %v\n%s\n%s", err, strings.Join(b, "\n"), out.String())
		}
	}
	if _, err := os.Stat(filepath.Join(dir, "pwned")); err == nil {
		t.Fatalf("a hostile name ran a command:\n%s\n%s", book, out.String())
	}
	for _, want := range []string{
		"<--git-dir=//srv/$(touch pwned)/.git>", "<--git-dir=//srv/a'b;touch pwned/r.git>",
		"<--git-dir=/srv/restore/evil-" + gitSnap.ID.String()[:8] + "/srv/$(touch pwned)/.git>",
		"</srv/restore/evil-" + gitSnap.ID.String()[:8] + "/./srv/a'b;touch pwned>",
		"</var/tmp/cairn-restore/db`touch pwned`.dump>",
	} {
		if !strings.Contains(out.String(), want) {
			t.Errorf("no argument %s in\n%s", want, out.String())
		}
	}
	for _, want := range []string{
		`# "srv/nl\ntouch pwned/.git": its name has characters a command line cannot show: check it by hand`,
		`# "/srv/x\n` + "```" + `\n` + "```" + `sh\ntouch pwned": its name has characters a command line cannot show: copy it by hand`,
		`- "evil/git [/srv/x\n` + "```" + `sh\ntouch pwned\n` + "```" + `]: failed"`,
		"dump " + dumpSnap.ID.String()[:12] + ":'/db`touch pwned`.dump' | pg_restore",
	} {
		if !strings.Contains(book, want) {
			t.Errorf("the runbook lacks %s:\n%s", want, book)
		}
	}
}

// Inspect finds the git repositories a snapshot holds from its trees: a
// work tree's .git and a bare repository, not a submodule's git
// directory inside another, nor directories that only look a bit like
// one (issue 13 item 8).
func TestInspectGitDirs(t *testing.T) {
	r := repotest.New(t)
	src := filepath.Join(t.TempDir(), "git")
	repotest.WriteTree(t, src, map[string]string{
		"app/.git/HEAD": "ref: refs/heads/main\n", "app/README": "hi\n",
		"site.git/HEAD": "ref: refs/heads/main\n", "site.git/modules/sub/HEAD": "ref: refs/heads/main\n",
		"half/HEAD": "x", "half/objects/x": "y",
	})
	for _, d := range []string{"app/.git/objects", "app/.git/refs", "site.git/objects", "site.git/refs", "site.git/modules/sub/objects", "site.git/modules/sub/refs", "half/refs.file"} {
		os.MkdirAll(filepath.Join(src, d), 0o755)
	}
	os.Remove(filepath.Join(src, "half/refs.file"))
	os.WriteFile(filepath.Join(src, "half/refs"), []byte("a file"), 0o644)
	s := r.NewSession()
	res, err := backup.Run(t.Context(), s, []string{src}, backup.Options{Params: r.ChunkerParams(), Table: r.ChunkerTable()})
	if err != nil {
		t.Fatal(err)
	}
	sid, err := s.Commit(t.Context(), &snapshot.Snapshot{Version: 1, Time: time.Now().Add(-time.Minute), Node: "lyra", Plan: "git", Paths: []string{src}, Tree: res.Tree,
		Scope: &snapshot.Scope{Class: "git", Why: "code"}})
	if err != nil {
		t.Fatal(err)
	}
	st, err := status.Gather(t.Context(), r, status.Options{})
	if err != nil {
		t.Fatal(err)
	}
	got, err := status.Inspect(t.Context(), treesOnly{r}, st, "") // it reads through status.Trees alone
	if err != nil {
		t.Fatal(err)
	}
	rel := strings.TrimPrefix(src, "/")
	if c := got[sid]; len(got) != 1 || !slices.Equal(c.GitDirs, []string{rel + "/app/.git", rel + "/site.git"}) || c.More != 0 || c.Err != "" {
		t.Fatalf("Inspect = %+v", got)
	}
	if got, err := status.Inspect(t.Context(), r, st, "vega"); err != nil || len(got) != 0 {
		t.Fatalf("Inspect for another node = %+v %v", got, err)
	}
}
