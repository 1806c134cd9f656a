package appliance

import (
	"path/filepath"
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/cairnbackup/cairn/scheduler"
)

// jobPlan is the scheduler's job list as names and next times.
func jobPlan(s *scheduler.Scheduler) []string {
	var out []string
	for _, j := range s.Jobs() {
		out = append(out, j.Name+" "+j.Schedule+" "+j.Next.Format(time.RFC3339))
	}
	return out
}

// A reload with an invalid schedule used to be half applied: the new
// node could push and every scheduled job had stopped, while the log said
// the old configuration stayed. Now nothing changes: the new node is
// refused and the old jobs keep their plan.
func TestFailedReloadChangesNothing(t *testing.T) {
	lyra, vega := newTestNode(t, "lyra", "push"), newTestNode(t, "vega", "push")
	jobs := "jobs:\n  verify: {schedule: \"@daily\"}\n  staleness: {schedule: \"@hourly\"}\n"
	rn := serveTest(t, configText(jobs, lyra))
	cfg, sched := rn.a.Config(), rn.a.Scheduler()
	plan := jobPlan(sched)
	if len(plan) != 2 || strings.HasSuffix(plan[0], " 0001-01-01T00:00:00Z") || strings.HasSuffix(plan[1], " 0001-01-01T00:00:00Z") {
		t.Fatalf("the plan before the reload: %q", plan)
	}

	rn.write(configText(jobs+"  drill: {schedule: \"0 4 * *\"}\n", lyra, vega))
	err := rn.a.Reload()
	want := filepath.Join(rn.dir, "a.yaml") + `:11: jobs.drill.schedule: "0 4 * *": expected exactly 5 fields, found 4: [0 4 * *]`
	if err == nil || err.Error() != want {
		t.Errorf("Reload = %v\nwant %s", err, want)
	}
	if rn.a.Config() != cfg {
		t.Error("the configuration changed")
	}
	if rn.a.Scheduler() != sched {
		t.Error("the scheduler was replaced or stopped")
	} else if got := jobPlan(sched); !slices.Equal(got, plan) {
		t.Errorf("the plan after the failed reload: %q, want %q", got, plan)
	}
	if _, err := rn.dial(vega); err == nil || !strings.Contains(err.Error(), "unable to authenticate") {
		t.Errorf("vega connected after a failed reload: %v", err)
	}
	if code, _, err := rn.run(lyra, "snapshots"); err != nil || code != 0 {
		t.Errorf("lyra after the failed reload: exit %d, %v", code, err)
	}

	// Fixed, the same reload applies whole.
	rn.write(configText(jobs+"  drill: {schedule: \"0 4 * * *\"}\n", lyra, vega))
	if err := rn.a.Reload(); err != nil {
		t.Fatal(err)
	}
	if code, _, err := rn.run(vega, "snapshots"); err != nil || code != 0 {
		t.Errorf("vega after the reload: exit %d, %v", code, err)
	}
	got := jobPlan(rn.a.Scheduler())
	if len(got) != 3 || !strings.HasPrefix(got[1], "drill 0 4 * * * ") || strings.HasSuffix(got[1], " 0001-01-01T00:00:00Z") {
		t.Errorf("the plan after the reload: %q", got)
	}
}

// Everything a reload would otherwise find wrong only when it builds the
// scheduler is refused by the configuration check, naming the key, so
// that a configuration is whole before any of it is used; the new limits
// have their defaults.
func TestConfigChecksJobsAndLimits(t *testing.T) {
	for _, tc := range []struct{ yaml, want string }{
		{"jobs:\n  prune: {schedule: \"@fortnightly\"}\n", `t:2: jobs.prune.schedule: "@fortnightly": unrecognized descriptor: @fortnightly`},
		{"jobs:\n  staleness: {schedule: \"@every 0s\"}\n", `t:2: jobs.staleness.schedule: "@every 0s": @every 0s: interval below one second`},
		{"jobs:\n  verify: {schedule: \"@daily\", jitter: -1m}\n", `t:2: jobs.verify.jitter: -1m0s is negative`},
		{"jobs:\n  drill: {probes: {\"lyra/db\": \" \"}}\n", `t:2: jobs.drill.probes.lyra/db: give a node/plan or plan and a command`},
		{"jobs:\n  drill: {sample_files: -2}\n", `t:2: jobs.drill.sample_files: -2 is negative; give a number of files, or 0 for all`},
	} {
		if _, err := ParseConfig([]byte(tc.yaml), "t"); err == nil || err.Error() != tc.want {
			t.Errorf("%s: %v\nwant %s", tc.yaml, err, tc.want)
		}
	}
	c, err := ParseConfig(nil, "t")
	if err != nil {
		t.Fatal(err)
	}
	if l := c.Limits; l.Unauthenticated != 64 || l.UnauthenticatedPerAddress != 10 || l.HandshakeTimeout != 20*time.Second {
		t.Errorf("limits %+v", l)
	}
}
