package snapshot

import (
	"errors"
	"flag"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/cairnbackup/cairn/repo/blob"
)

var writeFixture = flag.Bool("write-fixture", false, "create testdata/v1/record.json if it is missing (never overwrites)")

// frozenID is the ID of testdata/v1/record.json: a record with a plan's
// scope, written before records could carry a plan's before and after
// commands.
const frozenID = "e60f35d20d3bc3ef5909c55af0666b8a31e4831edea084b9b614396bea97519e"

// TestFrozenV1 decodes a record written by an earlier build and encodes
// it back to the same bytes, so its ID (the hash of those bytes) stays
// its ID: fields added since are optional and absent from it. The
// fixture is never regenerated.
func TestFrozenV1(t *testing.T) {
	path := filepath.Join("testdata", "v1", "record.json")
	if _, err := os.Stat(path); os.IsNotExist(err) && *writeFixture {
		parent := blob.Hash([]byte("parent"))
		s := &Snapshot{Version: Version, Time: time.Date(2026, 12, 7, 3, 0, 0, 123456789, time.UTC), Node: "lyra", Plan: "db", Host: "lyra.lan",
			Paths: []string{"/db.sql"}, Tags: []string{"nightly"}, Tree: blob.Hash([]byte("tree")), Parent: &parent,
			Excludes: []Exclude{{Rule: `plan /etc/cairn/plan.yaml source db "*.tmp"`, Count: 2}},
			Scope:    &Scope{PlanFile: "/etc/cairn/plan.yaml", Class: "database", Why: "all application data", Command: "pg_dumpall", Excludes: []string{"*.tmp"}},
			Summary:  Summary{Files: 1, Dirs: 1, FilesNew: 1, Bytes: 4096, BytesRead: 4096, BlobsAdded: 2, BytesAdded: 4200, StoredAdded: 1800, Duration: 1500 * time.Millisecond}}
		b, _, err := Encode(s)
		if err != nil {
			t.Fatal(err)
		}
		if err := os.WriteFile(path, b, 0o644); err != nil {
			t.Fatal(err)
		}
	}
	b, err := os.ReadFile(path)
	if err != nil {
		t.Fatalf("fixture: %v (create it once with -write-fixture)", err)
	}
	if id := blob.Hash(b); id.String() != frozenID {
		t.Fatalf("the fixture's ID is %s, want %s: it was changed", id, frozenID)
	}
	s, err := Decode(b)
	if err != nil {
		t.Fatal(err)
	}
	enc, id, err := Encode(s)
	if err != nil || string(enc) != string(b) || id.String() != frozenID {
		t.Fatalf("re-encoded (%v):\n%s\nwant\n%s", err, enc, b)
	}
	if s.Scope == nil || s.Scope.Command != "pg_dumpall" || s.Plan != "db" {
		t.Fatalf("decoded %+v", s)
	}
}

// A record with a source's before and after commands round-trips, and
// hooks are checked at decode.
func TestHooksRoundTrip(t *testing.T) {
	b, err := os.ReadFile(filepath.Join("testdata", "v1", "record.json"))
	if err != nil {
		t.Fatal(err)
	}
	s, err := Decode(b)
	if err != nil {
		t.Fatal(err)
	}
	zero, three := 0, 3
	s.Scope.Hooks = []Hook{
		{Phase: "before", Command: "systemctl stop app", Exit: &zero, Output: "stopped\n", Duration: 2 * time.Second},
		{Phase: "after", Command: "systemctl start app", Exit: &three, Error: "exit status 3", Output: "Job failed", Duration: time.Second},
	}
	enc, id, err := Encode(s)
	if err != nil {
		t.Fatal(err)
	}
	const want = `"hooks":[{"phase":"before","command":"systemctl stop app","exit":0,"output":"stopped\n","duration_ns":2000000000},{"phase":"after","command":"systemctl start app","exit":3,"error":"exit status 3","output":"Job failed","duration_ns":1000000000}]}`
	if !strings.Contains(string(enc), want) || id.String() == frozenID {
		t.Fatalf("encoded %s", enc)
	}
	got, err := Decode(enc)
	if err != nil {
		t.Fatal(err)
	}
	if enc2, id2, _ := Encode(got); string(enc2) != string(enc) || id2 != id {
		t.Fatalf("re-encoded differs:\n%s\n%s", enc, enc2)
	}
	for bad, msg := range map[string]string{
		`"phase":"before"`:               `snapshot: hook phase "during" is not before or after`,
		`"command":"systemctl stop app"`: "snapshot: a before hook's command is empty or longer than 65536 bytes",
	} {
		repl := map[string]string{`"phase":"before"`: `"phase":"during"`, `"command":"systemctl stop app"`: `"command":""`}[bad]
		_, err := Decode([]byte(strings.Replace(string(enc), bad, repl, 1)))
		if err == nil || !errors.Is(err, blob.ErrCorrupt) || err.Error() != msg {
			t.Errorf("%s: %v, want %s", repl, err, msg)
		}
	}
}
