package drill_test

import (
	"encoding/json"
	"errors"
	"fmt"
	"math/rand/v2"
	"os"
	"os/exec"
	"path/filepath"
	"regexp"
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/cairnbackup/cairn/integration/testenv"
	"github.com/cairnbackup/cairn/repo"
	"github.com/cairnbackup/cairn/repo/backup"
	"github.com/cairnbackup/cairn/repo/blob"
	"github.com/cairnbackup/cairn/repo/drill"
	"github.com/cairnbackup/cairn/repo/repotest"
	"github.com/cairnbackup/cairn/repo/snapfs"
	"github.com/cairnbackup/cairn/repo/snapshot"
	"github.com/cairnbackup/cairn/repo/tree"
)

func runCmd(t *testing.T, dir string, name string, args ...string) {
	t.Helper()
	runInput(t, dir, "", name, args...)
}

func runInput(t *testing.T, dir, stdin string, name string, args ...string) {
	t.Helper()
	cmd := exec.Command(name, args...)
	cmd.Dir = dir
	cmd.Stdin = strings.NewReader(stdin)
	cmd.Env = append(os.Environ(), "GIT_CONFIG_GLOBAL=/dev/null", "GIT_CONFIG_NOSYSTEM=1",
		"GIT_AUTHOR_NAME=drill", "GIT_AUTHOR_EMAIL=drill@example.org",
		"GIT_COMMITTER_NAME=drill", "GIT_COMMITTER_EMAIL=drill@example.org")
	if out, err := cmd.CombinedOutput(); err != nil {
		t.Fatalf("%s %v: %v\n%s", name, args, err, out)
	}
}

// source writes a tree with a git work tree (one commit), a SQLite
// database with rows, a plain SQL dump and a few other files, and
// returns its path.
func source(t *testing.T) string {
	t.Helper()
	testenv.RequireProgram(t, "git", "git")
	testenv.RequireProgram(t, "sqlite3", "sqlite3")
	src := filepath.Join(t.TempDir(), "src")
	repotest.WriteTree(t, src, map[string]string{
		"code/app/README":   "the app\n",
		"dumps/app.sql":     "CREATE TABLE t (id integer);\nINSERT INTO t VALUES (1);\n",
		"etc/app.conf":      "listen = 127.0.0.1:8080\n",
		"db/":               "",
		"empty/":            "",
		"etc/nested/x.conf": "x = 1\n",
	})
	app := filepath.Join(src, "code", "app")
	runCmd(t, app, "git", "init", "-q")
	runCmd(t, app, "git", "add", "README")
	runCmd(t, app, "git", "commit", "-q", "-m", "first")
	var sql strings.Builder
	sql.WriteString("CREATE TABLE items (id INTEGER PRIMARY KEY, name TEXT);\nBEGIN;\n")
	for i := range 2000 {
		fmt.Fprintf(&sql, "INSERT INTO items (name) VALUES ('item number %d with some text');\n", i)
	}
	sql.WriteString("COMMIT;\n")
	runInput(t, src, sql.String(), "sqlite3", filepath.Join(src, "db", "app.sqlite"))
	return src
}

// backupSnap backs up src as a snapshot of node lyra, plan srv, with
// scope class class (none if empty).
func backupSnap(t *testing.T, r *repo.Repository, src, class string) blob.ID {
	t.Helper()
	s := r.NewSession()
	res, err := backup.Run(t.Context(), s, []string{src}, backup.Options{Params: r.ChunkerParams(), Table: r.ChunkerTable()})
	if err != nil {
		t.Fatal(err)
	}
	sn := &snapshot.Snapshot{Version: 1, Time: time.Now(), Node: "lyra", Plan: "srv", Paths: []string{src}, Tree: res.Tree, Summary: res.Summary}
	if class != "" {
		sn.Scope = &snapshot.Scope{Class: class, Why: "tests"}
	}
	id, err := s.Commit(t.Context(), sn)
	if err != nil {
		t.Fatal(err)
	}
	return id
}

// scratch returns a scratch directory and checks, when the test ends,
// that every drill left it empty.
func scratch(t *testing.T) string {
	dir := t.TempDir()
	t.Cleanup(func() {
		if entries, _ := os.ReadDir(dir); len(entries) != 0 {
			t.Errorf("scratch not removed: %v", entries)
		}
	})
	return dir
}

// countFiles returns the regular files below dir and their total size.
func countFiles(t *testing.T, dir string) (files, bytes uint64) {
	t.Helper()
	filepath.Walk(dir, func(p string, fi os.FileInfo, err error) error {
		if err == nil && fi.Mode().IsRegular() {
			files++
			bytes += uint64(fi.Size())
		}
		return nil
	})
	return files, bytes
}

func probeSummary(ps []drill.Probe) []string {
	var out []string
	for _, p := range ps {
		out = append(out, fmt.Sprintf("%s %s %v", p.Name, p.Target, p.OK))
	}
	return out
}

func TestDrillOK(t *testing.T) {
	src := source(t)
	r := repotest.New(t)
	snap := backupSnap(t, r, src, "git")
	sc := scratch(t)
	started := time.Date(2026, 12, 1, 3, 0, 0, 0, time.UTC)
	clock := started
	now := func() time.Time { clock = clock.Add(time.Second); return clock }

	rep, err := drill.Run(t.Context(), r, snap, drill.Options{Scratch: sc, Now: now})
	if err != nil {
		t.Fatal(err)
	}
	if rep.Result != drill.ResultOK || len(rep.Failures) != 0 || len(rep.Warnings) != 0 {
		t.Fatalf("result %s, failures %v, warnings %v", rep.Result, rep.Failures, rep.Warnings)
	}
	want := []string{
		"git fsck " + src + "/code/app true",
		"sqlite integrity_check " + src + "/db/app.sqlite true",
	}
	if got := probeSummary(rep.Probes); !slices.Equal(got, want) {
		t.Fatalf("probes %q, want %q", got, want)
	}
	if out := rep.Probes[1].Output; out != "ok" {
		t.Errorf("sqlite output %q", out)
	}
	files, bytes := countFiles(t, src)
	if rep.Files != files || rep.Bytes != bytes || rep.Files == 0 {
		t.Errorf("files %d bytes %d, want %d %d", rep.Files, rep.Bytes, files, bytes)
	}
	if rep.RestoreSeconds <= 0 || rep.MBPerSecond <= 0 || rep.Probes[0].Seconds <= 0 {
		t.Errorf("timing: restore %v s, %v MB/s, probe %v s", rep.RestoreSeconds, rep.MBPerSecond, rep.Probes[0].Seconds)
	}
	if rep.Version != 1 || rep.Snapshot != snap || rep.Node != "lyra" || rep.Plan != "srv" || rep.Class != "git" || rep.Sampled {
		t.Errorf("report %+v", rep)
	}
	if !rep.Started.Equal(started.Add(time.Second)) || !rep.Finished.Equal(started.Add(2*time.Second)) {
		t.Errorf("started %v finished %v", rep.Started, rep.Finished)
	}

	id, err := drill.Save(t.Context(), r, rep)
	if err != nil {
		t.Fatal(err)
	}
	// A second drill of the same snapshot, and one of another snapshot.
	rep2, err := drill.Run(t.Context(), r, snap, drill.Options{Scratch: sc, Now: now})
	if err != nil {
		t.Fatal(err)
	}
	id2, err := drill.Save(t.Context(), r, rep2)
	if err != nil {
		t.Fatal(err)
	}
	other := backupSnap(t, r, filepath.Join(src, "etc"), "")
	rep3, err := drill.Run(t.Context(), r, other, drill.Options{Scratch: sc, Now: now})
	if err != nil {
		t.Fatal(err)
	}
	if rep3.Result != drill.ResultOK || len(rep3.Probes) != 0 || rep3.Files != 2 {
		t.Fatalf("drill of etc: %+v", rep3)
	}
	id3, err := drill.Save(t.Context(), r, rep3)
	if err != nil {
		t.Fatal(err)
	}

	list, err := drill.List(t.Context(), r)
	if err != nil {
		t.Fatal(err)
	}
	var ids []blob.ID
	for _, s := range list {
		ids = append(ids, s.ID)
	}
	if !slices.Equal(ids, []blob.ID{id3, id2, id}) {
		t.Fatalf("listed %v, want %v", ids, []blob.ID{id3, id2, id})
	}
	a, _ := json.Marshal(list[2].Report)
	b, _ := json.Marshal(rep)
	if string(a) != string(b) {
		t.Errorf("stored report\n%s\nwant\n%s", a, b)
	}
	marks, err := drill.Marks(t.Context(), r)
	if err != nil {
		t.Fatal(err)
	}
	if len(marks) != 2 || marks[snap].Report != id2 || marks[other].Report != id3 {
		t.Errorf("marks %v", marks)
	}
}

// flip damages the blob holding the first chunk of the file at p (a path
// in the snapshot), or the tree of the directory at p, by flipping one
// byte of it in its pack.
func flip(t *testing.T, r *repo.Repository, snap blob.ID, p string) (pack blob.ID) {
	t.Helper()
	sn, err := r.LoadSnapshot(t.Context(), snap)
	if err != nil {
		t.Fatal(err)
	}
	n, err := snapfs.Lookup(t.Context(), r, sn.Tree, p)
	if err != nil {
		t.Fatal(err)
	}
	h := blob.Handle{ID: n.Subtree, Type: blob.Tree}
	if n.Type == tree.File {
		h = blob.Handle{ID: n.Content[0].ID, Type: blob.Data}
	}
	loc, ok, err := r.Lookup(h)
	if err != nil || !ok {
		t.Fatalf("lookup: %v %v", ok, err)
	}
	file := filepath.Join(r.Dir(), "packs", loc.Pack.String()[:2], loc.Pack.String())
	os.Chmod(file, 0o600)
	data, err := os.ReadFile(file)
	if err != nil {
		t.Fatal(err)
	}
	data[loc.Offset+uint64(loc.Length)/2] ^= 0x01
	if err := os.WriteFile(file, data, 0o600); err != nil {
		t.Fatal(err)
	}
	return loc.Pack
}

func TestDrillDamagedPack(t *testing.T) {
	src := source(t)
	r := repotest.New(t)
	snap := backupSnap(t, r, src, "")
	pack := flip(t, r, snap, src+"/db/app.sqlite")
	rep, err := drill.Run(t.Context(), r, snap, drill.Options{Scratch: scratch(t)})
	if err != nil {
		t.Fatal(err)
	}
	if rep.Result != drill.ResultFailed || len(rep.Failures) != 1 {
		t.Fatalf("result %s, failures %v", rep.Result, rep.Failures)
	}
	f := rep.Failures[0]
	if f.Path != src+"/db/app.sqlite" || !strings.HasPrefix(f.Reason, "pack "+pack.Short()+" offset ") ||
		!strings.HasSuffix(f.Reason, ": message authentication failed") {
		t.Errorf("failure %q", f)
	}
	// The damaged first chunk leaves no SQLite header: only git is probed.
	if got := probeSummary(rep.Probes); !slices.Equal(got, []string{"git fsck " + src + "/code/app true"}) {
		t.Errorf("probes %q", got)
	}
	files, _ := countFiles(t, src)
	if rep.Files != files-1 {
		t.Errorf("restored %d files, want %d", rep.Files, files-1)
	}
}

// A damaged directory listing fails the drill once, naming the
// directory; everything else is still restored and verified, in a full
// drill and in a sampled one.
func TestDrillDamagedTree(t *testing.T) {
	src := source(t)
	r := repotest.New(t)
	snap := backupSnap(t, r, src, "")
	pack := flip(t, r, snap, src+"/etc/nested")
	for _, sample := range []int{0, 2} {
		rep, err := drill.Run(t.Context(), r, snap, drill.Options{Scratch: scratch(t), SampleFiles: sample})
		if err != nil {
			t.Fatal(err)
		}
		if rep.Result != drill.ResultFailed || len(rep.Failures) != 1 {
			t.Fatalf("sample %d: result %s, failures %q", sample, rep.Result, rep.Failures)
		}
		f := rep.Failures[0]
		if f.Path != src+"/etc/nested" || !strings.HasPrefix(f.Reason, "pack "+pack.Short()+" offset ") || !strings.HasSuffix(f.Reason, ": message authentication failed") {
			t.Errorf("sample %d: failure %q", sample, f)
		}
		if got := probeSummary(rep.Probes); !slices.Equal(got, []string{"git fsck " + src + "/code/app true", "sqlite integrity_check " + src + "/db/app.sqlite true"}) {
			t.Errorf("sample %d: probes %q", sample, got)
		}
		files, _ := countFiles(t, src)
		if sample == 0 && rep.Files != files-1 {
			t.Errorf("restored %d files, want %d", rep.Files, files-1)
		}
	}
}

// A tree that records a wrong whole-file hash: the restore fails for
// that file only, naming it and the hashes.
func TestDrillWrongFileHash(t *testing.T) {
	r := repotest.New(t)
	ctx := t.Context()
	s := r.NewSession()
	good, bad := []byte("good contents\n"), []byte("contents the hash does not match\n")
	gid, _, _ := s.SaveBlob(ctx, blob.Data, good)
	bid, _, _ := s.SaveBlob(ctx, blob.Data, bad)
	mt := time.Date(2024, 5, 6, 7, 8, 9, 0, time.UTC).UnixNano()
	wrong := blob.Hash([]byte("something else"))
	enc, err := tree.Encode(nil, &tree.Tree{Nodes: []tree.Node{
		{Name: "bad.txt", Type: tree.File, Mode: 0o644, MTime: mt, ATime: mt, Size: uint64(len(bad)), FileHash: wrong,
			Content: []tree.Chunk{{ID: bid, Size: uint64(len(bad))}}},
		{Name: "good.txt", Type: tree.File, Mode: 0o644, MTime: mt, ATime: mt, Size: uint64(len(good)), FileHash: blob.Hash(good),
			Content: []tree.Chunk{{ID: gid, Size: uint64(len(good))}}},
	}})
	if err != nil {
		t.Fatal(err)
	}
	root, _, err := s.SaveBlob(ctx, blob.Tree, enc)
	if err != nil {
		t.Fatal(err)
	}
	snap, err := s.Commit(ctx, &snapshot.Snapshot{Version: 1, Time: time.Now(), Node: "lyra", Paths: []string{"/"}, Tree: root})
	if err != nil {
		t.Fatal(err)
	}
	rep, err := drill.Run(ctx, r, snap, drill.Options{Scratch: scratch(t)})
	if err != nil {
		t.Fatal(err)
	}
	want := []drill.Failure{{Path: "/bad.txt", Reason: fmt.Sprintf("hash mismatch: the contents restored hash to %s, but the backup recorded %s", blob.Hash(bad), wrong)}}
	if rep.Result != drill.ResultFailed || !slices.Equal(rep.Failures, want) {
		t.Fatalf("result %s, failures %q, want %q", rep.Result, rep.Failures, want)
	}
	if rep.Files != 1 || rep.Bytes != uint64(len(good)) {
		t.Errorf("files %d bytes %d", rep.Files, rep.Bytes)
	}
}

// A SQLite file damaged before the backup (garbage after the header) is
// restored faithfully; its probe fails and keeps sqlite3's output.
func TestDrillBrokenSQLite(t *testing.T) {
	src := source(t)
	garbage := make([]byte, 8192)
	rng := rand.New(rand.NewPCG(3, 4))
	for i := range garbage {
		garbage[i] = byte(rng.Uint32())
	}
	if err := os.WriteFile(filepath.Join(src, "db", "broken.db"), append([]byte("SQLite format 3\x00"), garbage...), 0o644); err != nil {
		t.Fatal(err)
	}
	r := repotest.New(t)
	snap := backupSnap(t, r, src, "database")
	rep, err := drill.Run(t.Context(), r, snap, drill.Options{Scratch: scratch(t)})
	if err != nil {
		t.Fatal(err)
	}
	want := []string{
		"git fsck " + src + "/code/app true",
		"sqlite integrity_check " + src + "/db/app.sqlite true",
		"sqlite integrity_check " + src + "/db/broken.db false",
	}
	if got := probeSummary(rep.Probes); !slices.Equal(got, want) {
		t.Fatalf("probes %q, want %q", got, want)
	}
	p := rep.Probes[2]
	if p.Error != "exit status 26" || p.Output != "Error: in prepare, file is not a database (26)" {
		t.Errorf("probe error %q, output %q", p.Error, p.Output)
	}
	wantF := []drill.Failure{{Path: src + "/db/broken.db", Reason: "sqlite integrity_check: exit status 26: Error: in prepare, file is not a database (26)"}}
	if rep.Result != drill.ResultFailed || !slices.Equal(rep.Failures, wantF) {
		t.Errorf("result %s, failures %q", rep.Result, rep.Failures)
	}
}

func TestDrillCommandProbe(t *testing.T) {
	t.Parallel() // its last probe waits out the 300ms timeout on the real clock
	src := source(t)
	r := repotest.New(t)
	snap := backupSnap(t, r, src, "")
	sc := scratch(t)
	// Passing: run in the restored root, which CAIRN_DRILL_ROOT names.
	pass := `test "$PWD" = "$CAIRN_DRILL_ROOT" && test -f ".` + src + `/etc/app.conf" && echo fine`
	rep, err := drill.Run(t.Context(), r, snap, drill.Options{Scratch: sc, Probes: map[string]string{"lyra/srv": pass, "srv": "exit 1"}})
	if err != nil {
		t.Fatal(err)
	}
	zero := 0
	if rep.Result != drill.ResultOK || len(rep.Probes) != 3 || rep.Probes[2].Exit == nil || *rep.Probes[2].Exit != 0 ||
		rep.Probes[2] != (drill.Probe{Name: "command", Target: pass, Command: "sh -c '" + pass + "'", OK: true, Exit: rep.Probes[2].Exit, Output: "fine", Seconds: rep.Probes[2].Seconds}) {
		t.Fatalf("result %s, failures %v, probes %+v", rep.Result, rep.Failures, rep.Probes)
	}
	// The built-in probes record the command they ran and its exit code.
	if p := rep.Probes[0]; p.Name != "git fsck" || p.Exit == nil || *p.Exit != zero ||
		!regexp.MustCompile(`^git -c core.fsmonitor=false --git-dir=`+regexp.QuoteMeta(sc)+`/cairn-drill-[0-9a-f]{8}-[0-9]+`+regexp.QuoteMeta(src)+`/code/app/.git fsck --full$`).MatchString(p.Command) {
		t.Errorf("git probe %+v", p)
	}
	if !slices.Equal(rep.Configured, []string{pass}) {
		t.Errorf("configured %q, want the node/plan's probe", rep.Configured)
	}
	// Failing, chosen by plan name.
	fail := "echo checking; echo 'table items: 3 rows missing' >&2; exit 1"
	rep, err = drill.Run(t.Context(), r, snap, drill.Options{Scratch: sc, Probes: map[string]string{"srv": fail, "other/srv": "true"}})
	if err != nil {
		t.Fatal(err)
	}
	p := rep.Probes[len(rep.Probes)-1]
	if p.Name != "command" || p.OK || p.Error != "exit status 1" || p.Output != "checking\ntable items: 3 rows missing" || p.Exit == nil || *p.Exit != 1 {
		t.Errorf("probe %+v", p)
	}
	want := []drill.Failure{{Path: "/", Reason: `command "` + fail + `": exit status 1: checking | table items: 3 rows missing`}}
	if rep.Result != drill.ResultFailed || !slices.Equal(rep.Failures, want) {
		t.Errorf("result %s, failures %q", rep.Result, rep.Failures)
	}
	// A probe that takes too long is killed with its children.
	start := time.Now()
	rep, err = drill.Run(t.Context(), r, snap, drill.Options{Scratch: sc, Timeout: 300 * time.Millisecond, Probes: map[string]string{"srv": "sleep 30; echo done"}})
	if err != nil {
		t.Fatal(err)
	}
	if p := rep.Probes[len(rep.Probes)-1]; p.OK || p.Error != "timed out after 300ms" || p.Exit != nil || time.Since(start) > 20*time.Second {
		t.Errorf("probe %+v after %v", p, time.Since(start))
	}
}

// Sampling restores N files drawn by the snapshot ID, always the same,
// plus whole git repositories and database files.
func TestDrillSample(t *testing.T) {
	src := source(t)
	files := map[string]string{}
	for i := range 40 {
		files[fmt.Sprintf("data/d%d/f%02d.txt", i%4, i)] = strings.Repeat(fmt.Sprint(i), 100+i)
	}
	files["data/odd [name]*?.txt"] = "escaped"
	repotest.WriteTree(t, src, files)
	r := repotest.New(t)
	snap := backupSnap(t, r, src, "")
	list := filepath.Join(t.TempDir(), "restored")
	probe := "find . -type f | sort > " + list
	run := func() ([]string, *drill.Report) {
		rep, err := drill.Run(t.Context(), r, snap, drill.Options{Scratch: scratch(t), SampleFiles: 5, Probes: map[string]string{"srv": probe}})
		if err != nil {
			t.Fatal(err)
		}
		b, err := os.ReadFile(list)
		if err != nil {
			t.Fatal(err)
		}
		return strings.Split(strings.TrimSpace(string(b)), "\n"), rep
	}
	got, rep := run()
	total, _ := countFiles(t, src)
	if rep.Result != drill.ResultOK || !rep.Sampled || rep.SnapshotFiles != total {
		t.Fatalf("result %s sampled %v of %d, failures %v", rep.Result, rep.Sampled, rep.SnapshotFiles, rep.Failures)
	}
	var gitFiles, sampled []string
	hasDB := false
	prefix := "." + src + "/"
	for _, p := range got {
		rel := strings.TrimPrefix(p, prefix)
		switch {
		case strings.HasPrefix(rel, "code/app/.git/"):
			gitFiles = append(gitFiles, rel)
		case rel == "db/app.sqlite":
			hasDB = true
		default:
			sampled = append(sampled, rel)
		}
	}
	wantGit, _ := countFiles(t, filepath.Join(src, "code", "app", ".git"))
	if uint64(len(gitFiles)) != wantGit || !hasDB || len(sampled) != 5 {
		t.Fatalf("restored %d of %d git files, database %v, sampled %q", len(gitFiles), wantGit, hasDB, sampled)
	}
	if rep.Files != uint64(len(got)) {
		t.Errorf("report says %d files, %d restored", rep.Files, len(got))
	}
	if p := probeSummary(rep.Probes); !slices.Equal(p[:2], []string{"git fsck " + src + "/code/app true", "sqlite integrity_check " + src + "/db/app.sqlite true"}) {
		t.Errorf("probes %q", p)
	}
	again, _ := run()
	if !slices.Equal(got, again) {
		t.Errorf("second sample %q, first %q", again, got)
	}
	// A sample as large as the snapshot restores everything.
	rep, err := drill.Run(t.Context(), r, snap, drill.Options{Scratch: scratch(t), SampleFiles: 1000})
	if err != nil || rep.Sampled || rep.Files != total || rep.Result != drill.ResultOK {
		t.Errorf("sample of 1000: %v %+v", err, rep)
	}
}

// A drill environment without git says so: the probe fails naming the
// program.
func TestDrillMissingProgram(t *testing.T) {
	src := source(t)
	r := repotest.New(t)
	snap := backupSnap(t, r, src, "")
	bin := t.TempDir()
	for _, prog := range []string{"sh", "sqlite3"} {
		p, _ := exec.LookPath(prog)
		if err := os.Symlink(p, filepath.Join(bin, prog)); err != nil {
			t.Fatal(err)
		}
	}
	t.Setenv("PATH", bin)
	rep, err := drill.Run(t.Context(), r, snap, drill.Options{Scratch: scratch(t)})
	if err != nil {
		t.Fatal(err)
	}
	p := rep.Probes[0]
	if p.Name != "git fsck" || p.OK || p.Error != "the program git is not installed (not found in $PATH)" {
		t.Errorf("probe %+v", p)
	}
	want := []drill.Failure{{Path: src + "/code/app", Reason: "git fsck: the program git is not installed (not found in $PATH)"}}
	if rep.Result != drill.ResultFailed || !slices.Equal(rep.Failures, want) {
		t.Errorf("result %s, failures %q", rep.Result, rep.Failures)
	}
}

// A custom-format PostgreSQL dump is listed with pg_restore; a damaged
// one fails the drill.
func TestDrillPgDump(t *testing.T) {
	testenv.RequireProgram(t, "pg_restore", "postgresql")
	src := filepath.Join(t.TempDir(), "src")
	repotest.WriteTree(t, src, map[string]string{"backups/app.pgdump": "PGDMP\x01\x0e\x00garbage that is not a dump"})
	r := repotest.New(t)
	snap := backupSnap(t, r, src, "database")
	rep, err := drill.Run(t.Context(), r, snap, drill.Options{Scratch: scratch(t)})
	if err != nil {
		t.Fatal(err)
	}
	if len(rep.Probes) != 1 || rep.Probes[0].Name != "pg_restore --list" || rep.Probes[0].Target != src+"/backups/app.pgdump" ||
		rep.Probes[0].OK || rep.Probes[0].Error != "exit status 1" || !strings.HasPrefix(rep.Probes[0].Output, "pg_restore: error: ") {
		t.Errorf("probes %+v", rep.Probes)
	}
	if rep.Result != drill.ResultFailed || len(rep.Failures) != 1 || rep.Failures[0].Path != src+"/backups/app.pgdump" {
		t.Errorf("failures %q", rep.Failures)
	}
}

// A snapshot of class git without a repository fails; read-only
// directories are restored and the scratch is still removed.
func TestDrillGitClassWithoutRepository(t *testing.T) {
	src := filepath.Join(t.TempDir(), "src")
	repotest.WriteTree(t, src, map[string]string{"notes/readme.txt": "no repository here"})
	os.Chmod(filepath.Join(src, "notes"), 0o500)
	t.Cleanup(func() { os.Chmod(filepath.Join(src, "notes"), 0o700) })
	r := repotest.New(t)
	snap := backupSnap(t, r, src, "git")
	rep, err := drill.Run(t.Context(), r, snap, drill.Options{Scratch: scratch(t)})
	if err != nil {
		t.Fatal(err)
	}
	want := []drill.Failure{{Path: "/", Reason: "the snapshot's class is git, but no git repository was found in it"}}
	if rep.Result != drill.ResultFailed || !slices.Equal(rep.Failures, want) || rep.Files != 1 {
		t.Errorf("result %s, failures %q, files %d", rep.Result, rep.Failures, rep.Files)
	}
}

// A drill that cannot run at all is an error, not a report.
func TestDrillCannotRun(t *testing.T) {
	r := repotest.New(t)
	src := filepath.Join(t.TempDir(), "src")
	repotest.WriteTree(t, src, map[string]string{"a": "a"})
	snap := backupSnap(t, r, src, "")
	if _, err := drill.Run(t.Context(), r, snap, drill.Options{Scratch: filepath.Join(t.TempDir(), "missing")}); err == nil || !strings.Contains(err.Error(), "scratch directory") {
		t.Errorf("missing scratch: %v", err)
	}
	if _, err := drill.Run(t.Context(), r, blob.Hash([]byte("no such snapshot")), drill.Options{Scratch: scratch(t)}); !errors.Is(err, blob.ErrNotFound) {
		t.Errorf("missing snapshot: %v", err)
	}
}

// What the drill environment cannot reproduce (a device node, when not
// root) is a warning, not a failure.
func TestDrillDeviceNode(t *testing.T) {
	r := repotest.New(t)
	ctx := t.Context()
	s := r.NewSession()
	mt := time.Date(2024, 5, 6, 7, 8, 9, 0, time.UTC).UnixNano()
	enc, err := tree.Encode(nil, &tree.Tree{Nodes: []tree.Node{
		{Name: "null", Type: tree.CharDevice, Mode: 0o666, MTime: mt, ATime: mt, Rdev: 1<<8 | 3},
	}})
	if err != nil {
		t.Fatal(err)
	}
	root, _, err := s.SaveBlob(ctx, blob.Tree, enc)
	if err != nil {
		t.Fatal(err)
	}
	snap, err := s.Commit(ctx, &snapshot.Snapshot{Version: 1, Time: time.Now(), Node: "lyra", Paths: []string{"/dev/null"}, Tree: root})
	if err != nil {
		t.Fatal(err)
	}
	rep, err := drill.Run(ctx, r, snap, drill.Options{Scratch: scratch(t)})
	if err != nil {
		t.Fatal(err)
	}
	if rep.Result != drill.ResultOK || len(rep.Failures) != 0 {
		t.Fatalf("result %s, failures %q", rep.Result, rep.Failures)
	}
	var want []string
	if os.Geteuid() != 0 {
		want = []string{"null: device node not restored: only root can create it (CAP_MKNOD)", "/null: missing"}
	}
	if !slices.Equal(rep.Warnings, want) {
		t.Errorf("warnings %q, want %q", rep.Warnings, want)
	}
}
