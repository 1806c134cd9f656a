package integration

import (
	"encoding/json"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"syscall"
	"testing"
	"text/tabwriter"
	"time"

	"github.com/cairnbackup/cairn/integration/testenv"
	"golang.org/x/sys/unix"
)

// keyListEntry is one key of cairn key list --json.
type keyListEntry struct {
	Name    string    `json:"name"`
	Kind    string    `json:"kind"`
	Created time.Time `json:"created"`
	Argon2  *struct {
		Time      int `json:"time"`
		MemoryKiB int `json:"memory_kib"`
		Threads   int `json:"threads"`
	} `json:"argon2id"`
	OpenedBy []string `json:"opened_by"`
}

func keyList(t *testing.T, e *env, args ...string) []keyListEntry {
	t.Helper()
	var list []keyListEntry
	if err := json.Unmarshal([]byte(e.ok(append(args, "key", "list", "--json")...)), &list); err != nil {
		t.Fatal(err)
	}
	return list
}

// keyFileKey is the wrapped key a key file names.
func keyFileKey(t *testing.T, path string) string {
	t.Helper()
	var kf struct{ Key string }
	if err := json.Unmarshal(mustRead(t, path), &kf); err != nil {
		t.Fatal(err)
	}
	return kf.Key
}

// Keys managed while the appliance runs: a recovery passphrase beside
// the key file, the appliance's own key file rotated, a second key file,
// a passphrase changed, lost keys removed, the last key kept. The
// appliance serves throughout and starts again with the rotated key
// file.
func TestKeyCommands(t *testing.T) {
	e := newEnv(t)
	e.vars = []string{"CAIRN_REPO=" + e.repo, "TZ=UTC"} // key file mode
	e.ok("init")
	a := e.serve()
	e.ok("backup", "--node", "rhea", filepath.Join(e.dir, "password"))
	kf := e.repo + ".key"
	k0 := keyFileKey(t, kf)
	check := func(what string, r result, code int, stdout, stderr string) {
		t.Helper()
		if r.code != code || r.stdout != stdout || r.stderr != stderr {
			t.Errorf("%s: exit %d\nstdout %q\nstderr %q\nwant %d %q %q", what, r.code, r.stdout, r.stderr, code, stdout, stderr)
		}
	}
	write := func(name, content string) string {
		p := filepath.Join(e.dir, name)
		if err := os.WriteFile(p, []byte(content), 0o600); err != nil {
			t.Fatal(err)
		}
		return p
	}

	// One key, opened by the default key file.
	list := keyList(t, e)
	if len(list) != 1 || list[0].Name != k0 || list[0].Kind != "key file" || list[0].Argon2 != nil || strings.Join(list[0].OpenedBy, ",") != "key file "+kf {
		t.Fatalf("key list: %+v", list)
	}

	// A recovery passphrase; none when there is neither a file nor a
	// terminal to ask on.
	check("add a passphrase without one", e.run(nil, "key", "add", "--passphrase"), 2, "",
		"cairn: no new passphrase: give --new-password-file FILE (standard input is not a terminal to ask on)\n")
	check("add nothing", e.run(nil, "key", "add"), 2, "",
		"cairn: key add: give --passphrase (with --new-password-file FILE, or asked on the terminal) or --new-key-file PATH\n")
	pw := write("recovery", "recovery words\n")
	r := e.run(nil, "key", "add", "--passphrase", "--new-password-file", pw)
	list = keyList(t, e, "--password-file", pw)
	var p1 string
	for _, k := range list {
		if k.Kind == "passphrase" {
			p1 = k.Name
		}
	}
	check("add a passphrase", r, 0, "added key "+p1+" (passphrase) to repository "+e.repo+"\n", "")
	if len(list) != 2 || p1 == "" {
		t.Fatalf("key list: %+v", list)
	}

	// The table, with both credentials named.
	list = keyList(t, e, "--password-file", pw, "--key-file", kf)
	var want strings.Builder
	tw := tabwriter.NewWriter(&want, 0, 4, 2, ' ', 0)
	fmt.Fprint(tw, "KEY\tKIND\tCREATED\tARGON2ID\tOPENED BY\n")
	for _, k := range list {
		cost := ""
		if k.Argon2 != nil {
			cost = "t=3 m=64MiB p=2"
			if k.Argon2.Time != 3 || k.Argon2.MemoryKiB != 64<<10 || k.Argon2.Threads != 2 {
				t.Errorf("argon2id costs %+v", k.Argon2)
			}
		}
		fmt.Fprintf(tw, "%s\t%s\t%s\t%s\t%s\n", k.Name[:16], k.Kind, k.Created.UTC().Format("2006-01-02 15:04:05 MST"), cost, strings.Join(k.OpenedBy, ", "))
	}
	tw.Flush()
	check("key list", e.run(nil, "--password-file", pw, "--key-file", kf, "key", "list"), 0, want.String(), "")
	if !strings.Contains(want.String(), "password file "+pw) || !strings.Contains(want.String(), "key file "+kf) {
		t.Errorf("the table does not say which credential opens which key:\n%s", want.String())
	}

	// The key the caller's only credential opens is not removed; nor is
	// anything ambiguous or missing.
	check("remove the caller's key", e.run(nil, "key", "remove", k0[:8]), 1, "",
		"cairn: keys/"+k0+" is the only key the key file "+kf+" opens: to remove it, also name a credential that opens a key that stays (--password-file and --key-file both)\n")
	check("remove a missing key", e.run(nil, "key", "remove", "zzzz"), 1, "",
		"cairn: "+filepath.Join(e.repo, "keys")+" has no key zzzz: not found\n")

	// The appliance's key file gets a new secret while it runs; an old
	// copy stops opening the repository.
	old := write("old.key", string(mustRead(t, kf)))
	if err := os.Chmod(kf, 0o640); err != nil {
		t.Fatal(err)
	}
	r = e.run(nil, "key", "passwd")
	k1 := keyFileKey(t, kf)
	check("rotate the key file", r, 0, "gave key file "+kf+" a new secret: key "+k1+" replaces key "+k0+" in repository "+e.repo+
		"\ncopies of the old key file no longer open it: copy the new one off this machine\n", "")
	if fi, err := os.Stat(kf); err != nil || fi.Mode().Perm() != 0o640 {
		t.Errorf("the rotated key file: %v %v", fi.Mode(), err)
	}
	check("the old key file", e.run(nil, "--key-file", old, "key", "test"), 1, "",
		"cairn: the key file "+old+" does not open repository "+e.repo+": it names key "+k0+", which this repository does not have\n")
	check("the new key file", e.run(nil, "key", "test"), 0, "the key file "+kf+" opens repository "+e.repo+" (key "+k1+")\n", "")

	// A second key file, made with the passphrase.
	other := filepath.Join(e.dir, "other.key")
	r = e.run(nil, "--password-file", pw, "key", "add", "--new-key-file", other)
	k2 := keyFileKey(t, other)
	check("add a key file", r, 0, "added key "+k2+" (key file "+other+") to repository "+e.repo+
		"\nkeep a copy of the key file off this machine: it opens every backup\n", "")
	check("add over it", e.run(nil, "--password-file", pw, "key", "add", "--new-key-file", other), 1, "",
		"cairn: key file "+other+" exists already; move it away or name another\n")

	// The passphrase changed.
	check("passwd with two credentials", e.run(nil, "--password-file", pw, "--key-file", kf, "key", "passwd"), 2, "",
		"cairn: key passwd changes one credential: name --password-file or --key-file, not both\n")
	pw2 := write("recovery2", "other words\n")
	r = e.run(nil, "--password-file", pw, "key", "passwd", "--new-password-file", pw2)
	p2 := ""
	for _, k := range keyList(t, e, "--password-file", pw2) {
		if len(k.OpenedBy) > 0 {
			p2 = k.Name
		}
	}
	check("change the passphrase", r, 0, "changed the passphrase of repository "+e.repo+": key "+p2+" replaces key "+p1+"\n", "")
	check("the old passphrase", e.run(nil, "--password-file", pw, "key", "test"), 1, "",
		"cairn: the password file "+pw+" does not open repository "+e.repo+": the passphrase opens none of the 1 passphrase keys in "+filepath.Join(e.repo, "keys")+"\n")

	// Lost keys removed, by another credential; never the last.
	check("remove the passphrase", e.run(nil, "--key-file", other, "key", "remove", p2), 0, "removed key "+p2+" from repository "+e.repo+"\n", "")
	check("remove the second key file", e.run(nil, "key", "remove", k2[:6]), 0, "removed key "+k2+" from repository "+e.repo+"\n", "")
	check("remove the last key", e.run(nil, "key", "remove", k1), 1, "", "cairn: keys/"+k1+" is the only key of this repository\n")
	if keys, _ := os.ReadDir(filepath.Join(e.repo, "keys")); len(keys) != 1 || keys[0].Name() != k1 {
		t.Fatalf("keys/: %v", keys)
	}
	entries, _ := os.ReadDir(e.dir)
	for _, en := range entries {
		if strings.Contains(en.Name(), ".tmp-") {
			t.Errorf("left behind: %s", en.Name())
		}
	}

	// The appliance served all along, and starts again with the
	// rotated key file.
	e.ok("backup", "--node", "rhea", filepath.Join(e.dir, "password"))
	a.Cmd.Process.Signal(syscall.SIGTERM)
	<-a.Exited()
	a.Stopped = true
	e.serve()
	if out := e.ok("check"); !strings.HasPrefix(out, "checked 2 snapshots") {
		t.Fatalf("check: %s", out)
	}
}

// openPTY returns a pseudo-terminal's master and its terminal.
func openPTY(t *testing.T) (master, tty *os.File) {
	t.Helper()
	m, err := os.OpenFile("/dev/ptmx", os.O_RDWR|syscall.O_NOCTTY, 0)
	if err != nil {
		testenv.Missing(t, "no pseudo-terminal: %v", err)
	}
	t.Cleanup(func() { m.Close() })
	if err := unix.IoctlSetPointerInt(int(m.Fd()), unix.TIOCSPTLCK, 0); err != nil {
		t.Fatal(err)
	}
	n, err := unix.IoctlGetInt(int(m.Fd()), unix.TIOCGPTN)
	if err != nil {
		t.Fatal(err)
	}
	s, err := os.OpenFile(fmt.Sprintf("/dev/pts/%d", n), os.O_RDWR|syscall.O_NOCTTY, 0)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { s.Close() })
	return m, s
}

// The new passphrase is asked for twice on the terminal, without echo;
// two different answers change nothing.
func TestKeyAddAsksTwice(t *testing.T) {
	e := newEnv(t)
	e.vars = []string{"CAIRN_REPO=" + e.repo}
	e.ok("init")
	run := func(typed string) result {
		t.Helper()
		m, tty := openPTY(t)
		if _, err := m.WriteString(typed); err != nil {
			t.Fatal(err)
		}
		cmd := exec.Command(cairnBin, "key", "add", "--passphrase")
		cmd.Env = append(cleanEnviron(), e.vars...)
		cmd.Stdin = tty
		var out, errb strings.Builder
		cmd.Stdout, cmd.Stderr = &out, &errb
		err := cmd.Run()
		res := result{stdout: out.String(), stderr: errb.String()}
		if ee, ok := err.(*exec.ExitError); ok {
			res.code = ee.ExitCode()
		} else if err != nil {
			t.Fatal(err)
		}
		return res
	}
	r := run("one\ntwo\n")
	if r.code != 1 || r.stdout != "" || r.stderr != "new passphrase: \nthe new passphrase again: \ncairn: the two new passphrases differ; nothing was changed\n" {
		t.Fatalf("different answers: %d %q %q", r.code, r.stdout, r.stderr)
	}
	if keys, _ := os.ReadDir(filepath.Join(e.repo, "keys")); len(keys) != 1 {
		t.Fatalf("keys/ after a refused add: %v", keys)
	}
	r = run("typed words\ntyped words\n")
	if r.code != 0 || !strings.HasPrefix(r.stdout, "added key ") || r.stderr != "new passphrase: \nthe new passphrase again: \n" {
		t.Fatalf("add: %d %q %q", r.code, r.stdout, r.stderr)
	}
	pw := filepath.Join(e.dir, "typed")
	os.WriteFile(pw, []byte("typed words"), 0o600)
	if r := e.run(nil, "--password-file", pw, "key", "test"); r.code != 0 {
		t.Fatalf("the typed passphrase does not open: %q", r.stderr)
	}
}
