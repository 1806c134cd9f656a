package drill

import (
	"slices"
	"testing"

	"github.com/cairnbackup/cairn/repo/blob"
)

// A drill that ran fewer probes than the configuration gave for its plan
// is not ok, whatever else passed.
func TestConfiguredProbesNotRunFail(t *testing.T) {
	ran := Probe{Name: "command", Target: "pg-check lyra", OK: true}
	for _, c := range []struct {
		name       string
		configured []string
		probes     []Probe
		result     string
		failures   []Failure
	}{
		{"none configured", nil, nil, ResultOK, []Failure{}},
		{"configured and run", []string{"pg-check lyra"}, []Probe{{Name: "git fsck", Target: "/srv/git", OK: true}, ran}, ResultOK, []Failure{}},
		{"configured, not run", []string{"pg-check lyra"}, []Probe{{Name: "git fsck", Target: "/srv/git", OK: true}}, ResultFailed,
			[]Failure{{Path: "/", Reason: `configured probes not run: "pg-check lyra"`}}},
		{"a built-in probe of the same text is not the command", []string{"/srv/git"}, []Probe{{Name: "git fsck", Target: "/srv/git", OK: true}}, ResultFailed,
			[]Failure{{Path: "/", Reason: `configured probes not run: "/srv/git"`}}},
	} {
		d := &drill{rep: &Report{Configured: c.configured, Probes: c.probes}}
		d.finish()
		if d.rep.Result != c.result || !slices.Equal(d.rep.Failures, c.failures) {
			t.Errorf("%s: result %s, failures %q; want %s, %q", c.name, d.rep.Result, d.rep.Failures, c.result, c.failures)
		}
	}
}

// Reports written before drills recorded their configured probes still
// decode, with none, and keep their result.
func TestDecodeReportWithoutConfigured(t *testing.T) {
	old := `{"version":1,"snapshot":"` + blob.Hash([]byte("s")).String() + `","node":"lyra","plan":"srv","started":"2026-11-01T04:00:00Z",` +
		`"finished":"2026-11-01T04:00:02Z","restore_seconds":1.5,"files":3,"bytes":10,"mb_per_second":0,"sampled":false,"result":"ok",` +
		`"failures":[],"probes":[{"name":"command","target":"true","ok":true,"output":"","seconds":0.01}]}`
	rep, err := decodeReport([]byte(old), blob.ID{})
	if err != nil || rep.Configured != nil || !rep.OK() || len(rep.Probes) != 1 {
		t.Fatalf("old report: %+v, %v", rep, err)
	}
}
