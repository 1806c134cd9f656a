package torture

import (
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"regexp"
	"strings"
	"testing"

	"github.com/cairnbackup/cairn/integration/testenv"
)

// Shell syntax in names reaching the runbook: a hostile node names its
// directories, repositories and reasons so that the runbook the
// operator runs as root would run its commands ($(…), quotes and ;,
// a newline followed by a command, a Markdown fence starting a block of
// its own). The drill job writes runbook.md; every block of it then
// runs (variables set to scratch directories). No command of the node
// may run (no PWNED file), every name must come back byte-exact where a
// command could name it, and the runbook must say which names it left
// to the operator.
func TestHostileNamesInRunbook(t *testing.T) {
	git := testenv.RequireProgram(t, "git", "git")
	testenv.RequireProgram(t, "rsync", "rsync")
	bash := testenv.RequireProgram(t, "bash", "bash")
	e := newEnv(t)
	e.initRepo()
	evil := newNode(t, "evil", "push, read")
	a := e.serve(nil, "jobs:\n  drill: {schedule: \"0 4 * * *\"}\n", evil)

	src := filepath.Join(e.dir, "evil")
	names := []string{"$(touch PWNED)", "a'b;touch PWNED;'", "`touch PWNED`", "x\ntouch PWNED", "y\n```sh\ntouch PWNED\n```"}
	var paths []string
	for i, n := range names {
		p := filepath.Join(src, "files", n)
		if err := os.MkdirAll(p, 0o755); err != nil {
			t.Fatal(err)
		}
		os.WriteFile(filepath.Join(p, "data"), []byte(fmt.Sprintf("file %d\n", i)), 0o644)
		paths = append(paths, fmt.Sprintf("%q", p))
	}
	repos := filepath.Join(src, "git")
	for _, n := range []string{"$(touch PWNED).git", "w';touch PWNED;'", "n\ntouch PWNED.git"} {
		args := []string{"init", "-q"}
		if strings.HasSuffix(n, ".git") {
			args = append(args, "--bare")
		}
		cmd := exec.Command(git, append(args, filepath.Join(repos, n))...)
		cmd.Env = append(os.Environ(), "GIT_CONFIG_NOSYSTEM=1")
		if out, err := cmd.CombinedOutput(); err != nil {
			t.Fatalf("git init %q: %v\n%s", n, err, out)
		}
	}
	plan := filepath.Join(e.dir, "plan.yaml")
	os.WriteFile(plan, []byte(fmt.Sprintf(`sources:
  - name: files
    class: files
    why: "ordinary\n`+"```"+`sh\ntouch PWNED\n`+"```"+`"
    paths: [%s]
  - name: code
    class: git
    why: code
    paths: [%q]
`, strings.Join(paths, ", "), repos)), 0o644)
	if r := a.push(evil, nil, nil, "--plan", plan); r.code != 0 {
		t.Fatalf("push: %s", r)
	}
	if out := e.ok("jobs", "run", "drill"); !strings.HasPrefix(out, "drill: ok") {
		t.Fatalf("drill job: %q", out)
	}
	book, err := os.ReadFile(filepath.Join(e.repo, "runbook.md"))
	if err != nil {
		t.Fatal(err)
	}

	scratch := t.TempDir()
	root, copied := filepath.Join(scratch, "node"), filepath.Join(scratch, "copy")
	set := map[string]func(string) string{
		"KEY":   func(string) string { return evil.Key.PrivatePath },
		"ROOT":  func(string) string { return root },
		"DEST":  func(string) string { return copied },
		"STAGE": func(v string) string { return filepath.Join(scratch, "stage", filepath.Base(v)) },
	}
	assign := regexp.MustCompile(`^([A-Z]+)=(\S*)(\s+#.*)?$`)
	var blocks [][]string
	in := false
	for line := range strings.SplitSeq(string(book), "\n") {
		switch {
		case !in && line == "```sh":
			in = true
			blocks = append(blocks, nil)
		case in && line == "```":
			in = false
		case in:
			if m := assign.FindStringSubmatch(line); m != nil {
				f, ok := set[m[1]]
				if !ok {
					t.Fatalf("the runbook sets %s:\n%s", m[1], book)
				}
				line = m[1] + "=" + f(m[2])
			}
			blocks[len(blocks)-1] = append(blocks[len(blocks)-1], line)
		}
	}
	detected, lost := 0, 0
	var notes []string
	if len(blocks) != 4 {
		lost++
		notes = append(notes, fmt.Sprintf("%d sh blocks, want 4", len(blocks)))
	}
	env := append(cleanEnviron(), e.vars...)
	env = append(env, "PATH="+filepath.Dir(cairnBin)+":"+os.Getenv("PATH"), "GIT_CONFIG_NOSYSTEM=1")
	for i, b := range blocks {
		cmd := exec.Command(bash, "-euo", "pipefail", "-c", strings.Join(b, "\n")+"\n")
		cmd.Env, cmd.Dir = env, scratch
		if out, err := cmd.CombinedOutput(); err != nil {
			t.Fatalf("block %d failed: %v\n%s\n%s", i+1, err, strings.Join(b, "\n"), out)
		}
	}
	filepath.Walk(scratch, func(p string, fi os.FileInfo, err error) error {
		if err == nil && fi.Name() == "PWNED" {
			lost++
			notes = append(notes, "a node's name ran a command: "+p)
		}
		return nil
	})
	// Every name is restored on the node (the whole snapshot, by ID);
	// the copy from the appliance has those a command line can name,
	// and the runbook names the others.
	for i, n := range names {
		want := fmt.Sprintf("file %d\n", i)
		if b, err := os.ReadFile(filepath.Join(root, src, "files", n, "data")); err != nil || string(b) != want {
			lost++
			notes = append(notes, fmt.Sprintf("%q not restored on the node: %v", n, err))
			continue
		}
		b, err := os.ReadFile(filepath.Join(copied, src, "files", n, "data"))
		switch {
		case err == nil && string(b) == want:
			detected++
		case strings.Contains(n, "\n") && strings.Contains(string(book), fmt.Sprintf("# %q: its name has characters a command line cannot show: copy it by hand", filepath.Join(src, "files", n))):
			detected++
		default:
			lost++
			notes = append(notes, fmt.Sprintf("%q neither copied nor named: %v", n, err))
		}
	}
	for _, line := range strings.Split(string(book), "\n") {
		if strings.HasPrefix(line, "touch PWNED") || strings.HasPrefix(line, "```") && strings.Contains(line, "PWNED") {
			lost++
			notes = append(notes, fmt.Sprintf("a name made a line of its own: %q", line))
		}
	}
	for _, want := range []string{
		`--git-dir="$ROOT"/'` + strings.TrimPrefix(repos, "/") + `/$(touch PWNED).git' fsck --full`,
		`--git-dir="$ROOT"/'` + strings.TrimPrefix(repos, "/") + `/w'\'';touch PWNED;'\''/.git' fsck --full`,
		fmt.Sprintf("# %q: its name has characters a command line cannot show: check it by hand", strings.TrimPrefix(repos, "/")+"/n\ntouch PWNED.git"),
	} {
		if strings.Contains(string(book), want) {
			detected++
		} else {
			lost++
			notes = append(notes, "the runbook lacks "+want)
		}
	}
	record("hostile node: shell syntax in names reaching the runbook", len(names)+3, detected, lost,
		fmt.Sprintf("%d directory names and 3 repository names with $(…), quotes, backticks, newlines and fences; every block of runbook.md run: nothing of the node's ran, names quoted or left out with a comment", len(names)))
	if lost > 0 {
		t.Fatalf("%s\n%s", strings.Join(notes, "\n"), book)
	}
}
