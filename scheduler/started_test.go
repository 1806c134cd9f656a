package scheduler

import (
	"testing"
	"testing/synctest"
	"time"
)

// Started is closed once Run has planned every job, so a caller that
// swaps schedulers (the appliance's reload) can tell when the new plan is
// in force without waiting for time to pass.
func TestStartedAfterPlanning(t *testing.T) {
	synctest.Test(t, func(t *testing.T) {
		base := time.Date(2026, 12, 7, 10, 30, 0, 0, time.UTC)
		s := mustNew(t, []Job{{Name: "verify", Schedule: "@daily", Run: okRun}, {Name: "staleness", Schedule: "@hourly", Run: okRun}}, nil, options(t, base, time.UTC))
		select {
		case <-s.Started():
			t.Fatal("Started is closed before Run")
		default:
		}
		stop := start(t, s)
		defer stop()
		<-s.Started()
		want := map[string]time.Time{"verify": time.Date(2026, 12, 8, 0, 0, 0, 0, time.UTC), "staleness": time.Date(2026, 12, 7, 11, 0, 0, 0, time.UTC)}
		for _, js := range s.Jobs() {
			if !js.Next.Equal(want[js.Name]) {
				t.Errorf("job %s: next %s, want %s", js.Name, js.Next, want[js.Name])
			}
		}
	})
}

// CheckSchedule accepts exactly what New accepts as a schedule, with the
// same reason, so a configuration can be checked before any scheduler is
// made.
func TestCheckSchedule(t *testing.T) {
	for _, spec := range []string{"0 3 * *", "@every 0s", "TZ=Europe/Berlin", "0 0 30 2 *", "@daily", "CRON_TZ=UTC 0 3 * * *"} {
		_, nerr := New([]Job{{Name: "j", Schedule: spec, Run: okRun}}, nil, Options{})
		cerr := CheckSchedule(spec)
		if (nerr == nil) != (cerr == nil) || nerr != nil && nerr.Error() != `scheduler: job "j": schedule "`+spec+`": `+cerr.Error() {
			t.Errorf("%q: New says %v, CheckSchedule %v", spec, nerr, cerr)
		}
	}
}
