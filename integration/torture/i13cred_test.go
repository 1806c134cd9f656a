package torture

import (
	"encoding/json"
	"fmt"
	"os"
	"path/filepath"
	"strings"
	"testing"
)

// A wrong operator key while the appliance runs: the appliance runs
// relayed commands with its own key, so a key file or password file the
// operator names must be proven on the operator's side, or a wrong
// (damaged, foreign, forged) off-site key copy passes check, and a
// destructive command (forget) runs with it. Every command naming a
// wrong key must be refused with exit 1 and a message naming the key and
// the repository, must change nothing, and every acknowledged snapshot
// must still restore.
func TestWrongOperatorKey(t *testing.T) {
	e := newEnv(t)
	e.initRepo()
	src := newSource(t, filepath.Join(e.dir, "src"), seed^0xce7d, smallSpec, 256<<10)
	acked := map[string]string{}
	for i := range 2 {
		cp := src.keep(filepath.Join(e.dir, fmt.Sprintf("copy%d", i)))
		r := e.run(nil, nil, "backup", "--json", "--node", "lyra", "--plan", "files", src.dir)
		s, ok := summaryOf(r.stdout)
		if r.code != 0 || !ok {
			t.Fatalf("backup %d: %s", i, r)
		}
		acked[s.Snapshot] = cp
		src.next()
	}
	e.serve(nil, "")

	// The wrong keys.
	right := mustReadFile(t, e.repo+".key")
	var kf map[string]any
	if err := json.Unmarshal(right, &kf); err != nil {
		t.Fatal(err)
	}
	write := func(name string, b []byte) string {
		p := filepath.Join(e.dir, name)
		if err := os.WriteFile(p, b, 0o600); err != nil {
			t.Fatal(err)
		}
		return p
	}
	variant := func(name, field string, v any) string {
		m := map[string]any{}
		for k, x := range kf {
			m[k] = x
		}
		m[field] = v
		b, _ := json.Marshal(m)
		return write(name, b)
	}
	secret := []byte(kf["secret"].(string)) // base64
	if secret[0] == 'A' {
		secret[0] = 'B'
	} else {
		secret[0] = 'A'
	}
	otherRepo := newEnv(t)
	otherRepo.initRepo()
	keys := []struct{ name, path string }{
		{"garbage", write("garbage.key", []byte("garbage\n"))},
		{"empty", write("empty.key", nil)},
		{"truncated", write("truncated.key", right[:len(right)/2])},
		{"another repository's key file", otherRepo.repo + ".key"},
		{"the right key with its secret changed", variant("forged.key", "secret", string(secret))},
		{"the right secret naming another key", variant("renamed.key", "key", "0123456789abcdef")},
	}
	password := write("password", []byte("a guess\n"))

	snaps := e.ok("snapshots", "--json")
	commands := [][]string{
		{"check"},
		{"snapshots"},
		{"forget", "--keep-last", "1"},
		{"restore", "latest", "--target", filepath.Join(e.dir, "restored")},
		{"key", "test"},
	}
	runs, refused := 0, 0
	try := func(what string, cred []string, env []string, want string) {
		for _, c := range commands {
			runs++
			r := e.run(env, nil, append(append([]string{}, cred...), c...)...)
			if r.code == 1 && r.stdout == "" && strings.HasPrefix(r.stderr, want) && strings.Count(r.stderr, "\n") == 1 {
				refused++
			} else {
				t.Errorf("%s, %v: not refused: %s", what, c, r)
			}
		}
	}
	for _, k := range keys {
		want := "cairn: the key file " + k.path + " does not open repository " + e.repo + ": it "
		try(k.name, []string{"--key-file", k.path}, nil, want)
		try(k.name+" (CAIRN_KEY_FILE)", nil, []string{"CAIRN_KEY_FILE=" + k.path}, want)
	}
	try("a passphrase", []string{"--password-file", password}, nil,
		"cairn: the password file "+password+" does not open repository "+e.repo+": the passphrase opens nothing: the repository has no passphrase keys (use its key file)")

	lost := 0
	if _, err := os.Stat(filepath.Join(e.dir, "restored")); !os.IsNotExist(err) {
		t.Errorf("a refused restore wrote its target: %v", err)
	}
	if got := e.ok("snapshots", "--json"); got != snaps {
		t.Errorf("the snapshots changed:\n%s\nwant\n%s", got, snaps)
	}
	list, err := parseSnapshots(e.ok("snapshots", "--json"))
	if err != nil {
		t.Fatal(err)
	}
	for id, cp := range acked {
		if _, ok := list[id]; !ok {
			t.Errorf("snapshot %s is gone", id[:8])
			lost++
			continue
		}
		if d := e.restoreCompare(id, src.dir, cp); len(d) > 0 {
			t.Errorf("%s", strings.Join(d, "\n"))
			lost++
		}
	}
	record("wrong operator key, appliance running", runs, refused, lost,
		fmt.Sprintf("%d wrong keys (garbage, empty, truncated, foreign, forged secret, renamed) and a passphrase, by flag and variable, against check, snapshots, forget, restore, key test", len(keys)))
}

func mustReadFile(t *testing.T, p string) []byte {
	t.Helper()
	b, err := os.ReadFile(p)
	if err != nil {
		t.Fatal(err)
	}
	return b
}
