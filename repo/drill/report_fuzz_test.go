package drill

import (
	"encoding/json"
	"testing"

	"github.com/cairnbackup/cairn/repo/blob"
)

// FuzzDecodeReport: drill reports are read from disk (after they
// authenticate) by cairn drills, status and the runbook. A report it
// accepts is of this version and encodes again (the status command and
// the runbook print it as JSON).
func FuzzDecodeReport(f *testing.F) {
	good, _ := json.Marshal(&Report{Version: Version, Node: "lyra", Plan: "git", Result: ResultFailed,
		Failures: []Failure{{Path: "/a", Reason: "hash mismatch"}}, Probes: []Probe{{Name: "git fsck", Target: "/repo", Output: "ok"}}})
	f.Add(good)
	configured, _ := json.Marshal(&Report{Version: Version, Node: "lyra", Plan: "db", Result: ResultOK, Configured: []string{"pg-check"},
		Probes: []Probe{{Name: "command", Target: "pg-check", OK: true}}})
	f.Add(configured)
	f.Add([]byte(`{"version":0}`))
	f.Add([]byte(`{"version":1,"failures":{}}`))
	f.Fuzz(func(t *testing.T, b []byte) {
		rep, err := decodeReport(b, blob.ID{})
		if err != nil {
			return
		}
		if rep.Version != Version {
			t.Fatalf("accepted version %d", rep.Version)
		}
		again, err := json.Marshal(rep)
		if err != nil {
			t.Fatalf("an accepted report does not encode: %v", err)
		}
		if _, err := decodeReport(again, blob.ID{}); err != nil {
			t.Fatalf("a re-encoded report does not decode: %v", err)
		}
	})
}
