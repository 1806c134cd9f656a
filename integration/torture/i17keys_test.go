package torture

import (
	"fmt"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"testing"
)

// Key changes killed at every step. While the appliance runs, each key
// change (a passphrase added, a key file added, the passphrase changed,
// the appliance's key file given a new secret, a key removed) is run
// once to learn the crash points it passes, then killed with SIGKILL at
// each of them in turn. After each kill: the old credential opens the
// repository until the step that removes its key, the new one from the
// step that stores it, and the key file at its path always opens it;
// the same command run again succeeds, and after it no temporary file
// is left (in keys/ or beside a key file) and every key in keys/ is
// opened by a credential the test holds (a key whose only secret was in
// a killed change's temporary file is gone); check is clean. At the end
// the appliance starts again with its rotated key file and every
// acknowledged snapshot restores bit-identical.
func TestKeyChangesKilled(t *testing.T) {
	e := newEnv(t)
	e.initRepo()
	src := newSource(t, filepath.Join(e.dir, "src"), seed^0x4e75, smallSpec, 256<<10)
	acked := map[string]string{}
	backup := func() {
		cp := src.keep(filepath.Join(e.dir, fmt.Sprintf("copy%d", len(acked))))
		r := e.run(nil, nil, "backup", "--json", "--node", "lyra", "--plan", "files", src.dir)
		s, ok := summaryOf(r.stdout)
		if r.code != 0 || !ok {
			t.Fatalf("backup: %s", r)
		}
		acked[s.Snapshot] = cp
		src.next()
	}
	backup()
	app := e.serve(nil, "")
	ks := &keyState{t: t, e: e, kf: e.repo + ".key"}
	ks.pw = ks.newPassword()
	e.ok("key", "add", "--passphrase", "--new-password-file", ks.pw)

	ops := []*keyOp{
		{
			name: "key add --passphrase",
			attempt: func(s *keyState) []string {
				s.newPW = s.newPassword()
				return []string{"key", "add", "--passphrase", "--new-password-file", s.newPW}
			},
			verify: func(s *keyState, reached func(string) bool) {
				s.mustOpen("the key file", "--key-file", s.kf)
				s.mustOpen("the passphrase", "--password-file", s.pw)
				if reached("key-added") {
					s.mustOpen("the new passphrase", "--password-file", s.newPW)
				}
			},
			again: func(s *keyState) {
				if s.opens("--password-file", s.newPW) != "" {
					s.newPW = s.newPassword()
				}
				s.e.ok("key", "add", "--passphrase", "--new-password-file", s.newPW)
			},
		},
		{
			name: "key add --new-key-file",
			attempt: func(s *keyState) []string {
				s.newKF = s.path("new", ".key")
				return []string{"--password-file", s.pw, "key", "add", "--new-key-file", s.newKF}
			},
			verify: func(s *keyState, reached func(string) bool) {
				s.mustOpen("the key file", "--key-file", s.kf)
				s.mustOpen("the passphrase", "--password-file", s.pw)
				_, err := os.Stat(s.newKF)
				if exists := err == nil; exists != reached("key-file-written") {
					s.t.Errorf("the new key file exists: %v, but the change reached key-file-written: %v", exists, reached("key-file-written"))
				}
				if reached("key-file-written") {
					s.mustOpen("the new key file", "--key-file", s.newKF)
				}
			},
			again: func(s *keyState) {
				if _, err := os.Stat(s.newKF); err == nil {
					s.creds = append(s.creds, []string{"--key-file", s.newKF})
					s.newKF = s.path("new", ".key")
				}
				s.e.ok("--password-file", s.pw, "key", "add", "--new-key-file", s.newKF)
			},
		},
		{
			name: "key passwd (passphrase)",
			attempt: func(s *keyState) []string {
				s.newPW = s.newPassword()
				return []string{"--password-file", s.pw, "key", "passwd", "--new-password-file", s.newPW}
			},
			verify: func(s *keyState, reached func(string) bool) {
				s.mustOpen("the key file", "--key-file", s.kf)
				if reached("key-removed") {
					s.mustNotOpen("the old passphrase", "--password-file", s.pw)
				} else {
					s.mustOpen("the old passphrase", "--password-file", s.pw)
				}
				if reached("key-added") {
					s.mustOpen("the new passphrase", "--password-file", s.newPW)
				}
			},
			done: func(s *keyState) { s.pw = s.newPW },
			again: func(s *keyState) {
				old := s.pw
				if s.opens("--password-file", old) == "" {
					old = s.newPW
				}
				s.pw = s.newPassword()
				s.e.ok("--password-file", old, "key", "passwd", "--new-password-file", s.pw)
			},
		},
		{
			name: "key passwd (key file)",
			attempt: func(s *keyState) []string {
				s.oldKF = s.path("old", ".key")
				if err := os.WriteFile(s.oldKF, mustReadFile(t, s.kf), 0o600); err != nil {
					t.Fatal(err)
				}
				return []string{"key", "passwd"}
			},
			verify: func(s *keyState, reached func(string) bool) {
				key := s.mustOpen("the key file at its path", "--key-file", s.kf)
				s.mustOpen("the passphrase", "--password-file", s.pw)
				if reached("key-removed") {
					s.mustNotOpen("a copy of the old key file", "--key-file", s.oldKF)
				} else {
					s.mustOpen("a copy of the old key file", "--key-file", s.oldKF)
				}
				if old := s.opens("--key-file", s.oldKF); reached("key-file-written") == (key == old && old != "") {
					s.t.Errorf("the key file holds the old key %v, but the change reached key-file-written: %v", key == old, reached("key-file-written"))
				}
			},
			again: func(s *keyState) {
				s.creds = append(s.creds, []string{"--key-file", s.oldKF})
				s.oldKF = s.path("old", ".key")
				os.WriteFile(s.oldKF, mustReadFile(t, s.kf), 0o600)
				s.e.ok("key", "passwd")
			},
		},
		{
			name: "key remove",
			prepare: func(s *keyState) {
				s.newPW = s.newPassword()
				s.e.ok("key", "add", "--passphrase", "--new-password-file", s.newPW)
				s.gone = s.opens("--password-file", s.newPW)
			},
			attempt: func(s *keyState) []string { return []string{"key", "remove", s.gone} },
			verify: func(s *keyState, reached func(string) bool) {
				s.mustOpen("the key file", "--key-file", s.kf)
				s.mustOpen("the passphrase", "--password-file", s.pw)
				if reached("key-removed") {
					s.mustNotOpen("the removed passphrase", "--password-file", s.newPW)
				} else {
					s.mustOpen("the passphrase being removed", "--password-file", s.newPW)
				}
			},
			again: func(s *keyState) {
				if s.opens("--password-file", s.newPW) != "" {
					s.e.ok("key", "remove", s.gone)
				}
			},
		},
	}

	kills, lost := 0, 0
	var points []string
	for _, op := range ops {
		// A run to the end, traced: the points to kill at.
		if op.prepare != nil {
			op.prepare(ks)
		}
		args := op.attempt(ks)
		env, tracePath := ks.traceEnv("")
		if r := e.run(env, nil, args...); r.code != 0 {
			t.Fatalf("%s: %s", op.name, r)
		}
		trace := readTrace(tracePath)
		if op.done != nil {
			op.done(ks)
		}
		ks.settle(op.name + " (complete)")
		if len(trace) == 0 {
			t.Fatalf("%s passed no crash point", op.name)
		}
		for i, p := range trace {
			crash := fmt.Sprintf("%s:%d", p, count(trace[:i+1], p))
			what := op.name + " killed at " + crash
			if op.prepare != nil {
				op.prepare(ks)
			}
			args := op.attempt(ks)
			env, tracePath := ks.traceEnv(crash)
			r := e.run(env, nil, args...)
			os.Remove(tracePath)
			if !r.killed {
				t.Errorf("%s: not killed: %s", what, r)
				continue
			}
			kills++
			points = append(points, p)
			failed := t.Failed()
			reached := func(q string) bool { return slices.Contains(trace[:i+1], q) }
			op.verify(ks, reached)
			op.again(ks)
			ks.settle(what)
			if !failed && t.Failed() {
				lost++
				t.Logf("after %s", what)
			}
		}
	}

	// The appliance served throughout, and starts with the rotated key
	// file.
	backup()
	app.Stop()
	e.serve(nil, "")
	if r := e.run(nil, nil, "check", "--read-data"); r.code != 0 {
		t.Errorf("check --read-data: %s", r)
		lost++
	}
	list, err := parseSnapshots(e.ok("snapshots", "--json"))
	if err != nil {
		t.Fatal(err)
	}
	for id, cp := range acked {
		if _, ok := list[id]; !ok {
			t.Errorf("snapshot %s is gone", id[:8])
			lost++
		} else if d := e.restoreCompare(id, src.dir, cp); len(d) > 0 {
			t.Errorf("%s", strings.Join(d, "\n"))
			lost++
		}
	}
	slices.Sort(points)
	record("crash: key changes killed at every step", kills, kills, lost,
		fmt.Sprintf("%d ops (add passphrase, add key file, change passphrase, rotate the appliance's key file, remove) with the appliance running, each killed at every point it passes: %s",
			len(ops), strings.Join(slices.Compact(points), ", ")))
}

// keyOp is one kind of key change.
type keyOp struct {
	name    string
	prepare func(s *keyState)          // unkilled work before each run
	attempt func(s *keyState) []string // the command line (fresh credentials)
	// verify checks what the stage the run was killed at guarantees;
	// reached says whether the run passed a crash point.
	verify func(s *keyState, reached func(string) bool)
	// done records what a run to the end changed.
	done func(s *keyState)
	// again runs the command again to its end (with fresh credentials
	// where the killed run's took effect).
	again func(s *keyState)
}

// keyState is the repository's credentials as the test holds them.
type keyState struct {
	t     *testing.T
	e     *env
	kf    string // the appliance's key file, DIR.key
	pw    string // the current passphrase's file
	newPW string // the passphrase an op adds
	newKF string // the key file an op adds
	oldKF string // a copy of kf before it was rotated
	gone  string // the key an op removes
	creds [][]string
	n     int
}

func (s *keyState) path(prefix, suffix string) string {
	s.n++
	return filepath.Join(s.e.dir, fmt.Sprintf("%s%d%s", prefix, s.n, suffix))
}

// newPassword writes a new passphrase to a new file.
func (s *keyState) newPassword() string {
	p := s.path("pw", "")
	if err := os.WriteFile(p, []byte(fmt.Sprintf("passphrase %d\n", s.n)), 0o600); err != nil {
		s.t.Fatal(err)
	}
	s.creds = append(s.creds, []string{"--password-file", p})
	return p
}

func (s *keyState) traceEnv(crash string) ([]string, string) {
	f, err := os.CreateTemp(s.e.dir, "trace-")
	if err != nil {
		s.t.Fatal(err)
	}
	f.Close()
	env := []string{"CAIRN_CRASHPOINT_TRACE=" + f.Name()}
	if crash != "" {
		env = append(env, "CAIRN_CRASHPOINT="+crash)
	}
	return env, f.Name()
}

// opens returns the key the credential opens, or "".
func (s *keyState) opens(cred ...string) string {
	s.t.Helper()
	r := s.e.run(nil, nil, append(cred, "key", "test")...)
	if r.code != 0 {
		return ""
	}
	_, key, _ := strings.Cut(strings.TrimSpace(r.stdout), "(key ")
	return strings.TrimSuffix(key, ")")
}

func (s *keyState) mustOpen(what string, cred ...string) string {
	s.t.Helper()
	key := s.opens(cred...)
	if key == "" {
		s.t.Errorf("%s (%s) does not open the repository", what, strings.Join(cred, " "))
	}
	return key
}

func (s *keyState) mustNotOpen(what string, cred ...string) {
	s.t.Helper()
	if key := s.opens(cred...); key != "" {
		s.t.Errorf("%s (%s) still opens the repository (key %s)", what, strings.Join(cred, " "), key)
	}
}

// settle checks the repository after a key change ran to its end: no
// temporary file in keys/ or beside the key files, every key opened by
// a credential the test holds, check clean; then it removes every key
// but those of the key file and the current passphrase.
func (s *keyState) settle(what string) {
	s.t.Helper()
	for _, dir := range []string{filepath.Join(s.e.repo, "keys"), s.e.dir} {
		entries, _ := os.ReadDir(dir)
		for _, en := range entries {
			if strings.Contains(en.Name(), ".tmp-") {
				s.t.Errorf("after %s: left behind: %s", what, filepath.Join(dir, en.Name()))
			}
		}
	}
	opened := map[string]bool{}
	keep := []string{s.mustOpen("the key file", "--key-file", s.kf), s.mustOpen("the passphrase", "--password-file", s.pw)}
	creds := append([][]string{{"--key-file", s.kf}}, s.creds...)
	for _, f := range []string{s.newKF, s.oldKF} {
		if f != "" {
			creds = append(creds, []string{"--key-file", f})
		}
	}
	entries, err := os.ReadDir(filepath.Join(s.e.repo, "keys"))
	if err != nil {
		s.t.Fatal(err)
	}
	for _, c := range creds {
		if len(opened) == len(entries) {
			break
		}
		if k := s.opens(c...); k != "" {
			opened[k] = true
		}
	}
	for _, en := range entries {
		switch {
		case !opened[en.Name()]:
			s.t.Errorf("after %s: keys/%s is opened by no credential the test holds", what, en.Name())
		case !slices.Contains(keep, en.Name()):
			if r := s.e.run(nil, nil, "--password-file", s.pw, "key", "remove", en.Name()); r.code != 0 {
				s.t.Errorf("after %s: remove keys/%s: %s", what, en.Name(), r)
			}
		}
	}
	if r := s.e.run(nil, nil, "check"); r.code != 0 {
		s.t.Errorf("after %s: check: %s", what, r)
	}
	s.creds = [][]string{{"--password-file", s.pw}}
	s.newKF, s.oldKF = "", ""
}
