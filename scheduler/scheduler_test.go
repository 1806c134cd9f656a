package scheduler

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"log/slog"
	"reflect"
	"slices"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"testing/synctest"
	"time"
	_ "time/tzdata" // Europe/Berlin without the system's zoneinfo
)

// Every test that waits runs inside a synctest bubble: time.Sleep and
// the scheduler's time.After advance a fake clock as soon as every
// goroutine of the bubble is blocked, so a simulated day takes no real
// time. clockAt shifts that clock to a chosen date.

// clockAt returns a clock that reads base now and advances with the
// bubble's fake time. Call it inside the bubble.
func clockAt(base time.Time) func() time.Time {
	start := time.Now()
	return func() time.Time { return base.Add(time.Since(start)) }
}

func options(t *testing.T, base time.Time, loc *time.Location) Options {
	return Options{
		Now:      clockAt(base),
		Location: loc,
		Logger:   slog.New(slog.NewTextHandler(t.Output(), &slog.HandlerOptions{Level: slog.LevelDebug})),
	}
}

func mustNew(t *testing.T, jobs []Job, h History, o Options) *Scheduler {
	t.Helper()
	s, err := New(jobs, h, o)
	if err != nil {
		t.Fatal(err)
	}
	return s
}

// start runs s.Run in the bubble; the returned func cancels it, waits
// for it to return and checks it returned nil.
func start(t *testing.T, s *Scheduler) (stop func()) {
	ctx, cancel := context.WithCancel(t.Context())
	done := make(chan error, 1)
	go func() { done <- s.Run(ctx) }()
	return func() {
		t.Helper()
		cancel()
		if err := <-done; err != nil {
			t.Errorf("Run: %v", err)
		}
	}
}

func okRun(context.Context) (Result, error) { return Result{Summary: "fine"}, nil }

// runsOf returns the recorded runs of job, oldest first.
func runsOf(t *testing.T, h History, job string) []Run {
	t.Helper()
	runs, err := h.List(job, 0)
	if err != nil {
		t.Fatal(err)
	}
	slices.Reverse(runs)
	return runs
}

func starts(runs []Run) []time.Time {
	out := make([]time.Time, len(runs))
	for i, r := range runs {
		out[i] = r.Start
	}
	return out
}

func scheduled(runs []Run) []time.Time {
	out := make([]time.Time, len(runs))
	for i, r := range runs {
		out[i] = r.Scheduled
	}
	return out
}

func equalTimes(t *testing.T, what string, got, want []time.Time) {
	t.Helper()
	if !slices.EqualFunc(got, want, time.Time.Equal) {
		t.Errorf("%s:\n got %d: %v\nwant %d: %v", what, len(got), got, len(want), want)
	}
}

func hourly(base time.Time, from, to int) []time.Time {
	var out []time.Time
	for i := from; i <= to; i++ {
		out = append(out, base.Add(time.Duration(i)*time.Hour))
	}
	return out
}

func TestEveryHourOverADay(t *testing.T) {
	synctest.Test(t, func(t *testing.T) {
		base := time.Date(2026, 1, 10, 0, 0, 0, 0, time.UTC)
		h := NewMemoryHistory()
		s := mustNew(t, []Job{{Name: "verify", Schedule: "@every 1h", Run: okRun}}, h, options(t, base, time.UTC))
		stop := start(t, s)
		synctest.Wait()
		if next, ok := s.Next("verify"); !ok || !next.Equal(base.Add(time.Hour)) {
			t.Errorf("Next before the first run = %v, %v; want %v", next, ok, base.Add(time.Hour))
		}
		time.Sleep(24*time.Hour + 30*time.Minute)
		stop()

		runs := runsOf(t, h, "verify")
		want := hourly(base, 1, 24)
		equalTimes(t, "starts", starts(runs), want)
		equalTimes(t, "scheduled", scheduled(runs), want)
		for _, r := range runs {
			if r.Job != "verify" || r.Kind != "verify" || r.Status != StatusOK || r.Error != "" || r.Result.Summary != "fine" || !r.End.Equal(r.Start) {
				t.Errorf("run %+v", r)
			}
		}
		if _, ok := s.Next("verify"); ok {
			t.Error("Next reports a plan after Run returned")
		}
	})
}

// TestCronAcrossDST asserts robfig/cron's daylight saving semantics in
// Europe/Berlin: 03:30 exists on every day and runs at 03:30 local; 02:30
// does not exist on the last Sunday of March (no run that day) and exists
// twice on the last Sunday of October (two runs, an hour apart).
func TestCronAcrossDST(t *testing.T) {
	berlin, err := time.LoadLocation("Europe/Berlin")
	if err != nil {
		t.Fatal(err)
	}
	cases := []struct {
		name        string
		from, until time.Time
		want0330    []string
		want0230    []string
		gaps0330    []time.Duration // between consecutive 03:30 runs
	}{
		{
			name:     "spring forward",
			from:     time.Date(2026, 3, 27, 12, 0, 0, 0, berlin),
			until:    time.Date(2026, 3, 31, 12, 0, 0, 0, berlin),
			want0330: []string{"2026-03-28T03:30:00+01:00", "2026-03-29T03:30:00+02:00", "2026-03-30T03:30:00+02:00", "2026-03-31T03:30:00+02:00"},
			want0230: []string{"2026-03-28T02:30:00+01:00", "2026-03-30T02:30:00+02:00", "2026-03-31T02:30:00+02:00"},
			gaps0330: []time.Duration{23 * time.Hour, 24 * time.Hour, 24 * time.Hour},
		},
		{
			name:     "fall back",
			from:     time.Date(2026, 10, 23, 12, 0, 0, 0, berlin),
			until:    time.Date(2026, 10, 27, 12, 0, 0, 0, berlin),
			want0330: []string{"2026-10-24T03:30:00+02:00", "2026-10-25T03:30:00+01:00", "2026-10-26T03:30:00+01:00", "2026-10-27T03:30:00+01:00"},
			want0230: []string{"2026-10-24T02:30:00+02:00", "2026-10-25T02:30:00+02:00", "2026-10-25T02:30:00+01:00", "2026-10-26T02:30:00+01:00", "2026-10-27T02:30:00+01:00"},
			gaps0330: []time.Duration{25 * time.Hour, 24 * time.Hour, 24 * time.Hour},
		},
	}
	local := func(runs []Run) []string {
		var out []string
		for _, r := range runs {
			if !r.Start.Equal(r.Scheduled) {
				out = append(out, "late:"+r.Start.String())
			}
			out = append(out, r.Start.In(berlin).Format(time.RFC3339))
		}
		return out
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			synctest.Test(t, func(t *testing.T) {
				h := NewMemoryHistory()
				s := mustNew(t, []Job{
					{Name: "verify", Schedule: "30 3 * * *", Run: okRun},
					{Name: "drill", Schedule: "30 2 * * *", Run: okRun},
				}, h, options(t, tc.from, berlin))
				stop := start(t, s)
				time.Sleep(tc.until.Sub(tc.from))
				stop()

				v, d := runsOf(t, h, "verify"), runsOf(t, h, "drill")
				if got := local(v); !slices.Equal(got, tc.want0330) {
					t.Errorf("30 3 * * *:\n got %q\nwant %q", got, tc.want0330)
				}
				if got := local(d); !slices.Equal(got, tc.want0230) {
					t.Errorf("30 2 * * *:\n got %q\nwant %q", got, tc.want0230)
				}
				for i := 1; i < len(v) && i <= len(tc.gaps0330); i++ {
					if gap := v[i].Start.Sub(v[i-1].Start); gap != tc.gaps0330[i-1] {
						t.Errorf("gap %d of 30 3 * * * = %v, want %v", i, gap, tc.gaps0330[i-1])
					}
				}
			})
		})
	}
}

// TestCronZonePrefix: CRON_TZ= overrides Options.Location for one job.
func TestCronZonePrefix(t *testing.T) {
	synctest.Test(t, func(t *testing.T) {
		base := time.Date(2026, 1, 10, 0, 0, 0, 0, time.UTC)
		h := NewMemoryHistory()
		s := mustNew(t, []Job{
			{Name: "berlin", Schedule: "CRON_TZ=Europe/Berlin 30 3 * * *", Run: okRun},
			{Name: "utc", Schedule: "30 3 * * *", Run: okRun},
		}, h, options(t, base, time.UTC))
		stop := start(t, s)
		time.Sleep(12 * time.Hour)
		stop()
		equalTimes(t, "berlin", starts(runsOf(t, h, "berlin")), []time.Time{time.Date(2026, 1, 10, 2, 30, 0, 0, time.UTC)})
		equalTimes(t, "utc", starts(runsOf(t, h, "utc")), []time.Time{time.Date(2026, 1, 10, 3, 30, 0, 0, time.UTC)})
	})
}

func TestMissedRuns(t *testing.T) {
	synctest.Test(t, func(t *testing.T) {
		base := time.Date(2026, 1, 10, 12, 20, 0, 0, time.UTC)
		day := func(d, hh, mm int) time.Time { return time.Date(2026, 1, d, hh, mm, 0, 0, time.UTC) }
		h := NewMemoryHistory()
		seed := []Run{
			{Job: "verify", Kind: "verify", Scheduled: day(8, 3, 0), Start: day(8, 3, 0), End: day(8, 3, 5), Status: StatusOK},
			{Job: "staleness", Kind: "staleness", Scheduled: day(10, 7, 0), Start: day(10, 7, 0), End: day(10, 7, 0), Status: StatusOK},
		}
		for _, r := range seed {
			if err := h.Record(r); err != nil {
				t.Fatal(err)
			}
		}
		s := mustNew(t, []Job{
			{Name: "verify", Schedule: "0 3 * * *", Run: okRun},    // last ran 2 days ago
			{Name: "drill", Schedule: "0 3 * * *", Run: okRun},     // never ran
			{Name: "staleness", Schedule: "@every 1h", Run: okRun}, // last ran 5 hours ago
		}, h, options(t, base, time.UTC))
		stop := start(t, s)
		synctest.Wait()

		// At start: one catch-up run each for verify and staleness,
		// standing for the latest missed time; nothing for drill.
		v := runsOf(t, h, "verify")
		if len(v) != 2 || !v[1].Start.Equal(base) || !v[1].Scheduled.Equal(day(10, 3, 0)) || v[1].Status != StatusOK {
			t.Fatalf("verify after start: %+v", v)
		}
		st := runsOf(t, h, "staleness")
		if len(st) != 2 || !st[1].Start.Equal(base) || !st[1].Scheduled.Equal(day(10, 12, 0)) {
			t.Fatalf("staleness after start: %+v", st)
		}
		if d := runsOf(t, h, "drill"); len(d) != 0 {
			t.Fatalf("drill never ran before but got a catch-up run: %+v", d)
		}
		for name, want := range map[string]time.Time{"verify": day(11, 3, 0), "drill": day(11, 3, 0), "staleness": day(10, 13, 0)} {
			if next, ok := s.Next(name); !ok || !next.Equal(want) {
				t.Errorf("Next(%q) = %v, %v; want %v", name, next, ok, want)
			}
		}

		time.Sleep(48 * time.Hour)
		stop()
		v = runsOf(t, h, "verify")
		equalTimes(t, "verify starts", starts(v), []time.Time{day(8, 3, 0), base, day(11, 3, 0), day(12, 3, 0)})
		equalTimes(t, "verify scheduled", scheduled(v), []time.Time{day(8, 3, 0), day(10, 3, 0), day(11, 3, 0), day(12, 3, 0)})
		d := runsOf(t, h, "drill")
		equalTimes(t, "drill starts", starts(d), []time.Time{day(11, 3, 0), day(12, 3, 0)})
		st = runsOf(t, h, "staleness")
		equalTimes(t, "staleness starts (first four)", starts(st[:4]), []time.Time{day(10, 7, 0), base, day(10, 13, 0), day(10, 14, 0)})
		if len(st) != 2+48 {
			t.Errorf("staleness ran %d times, want %d", len(st), 2+48)
		}
	})
}

func TestNoOverlap(t *testing.T) {
	synctest.Test(t, func(t *testing.T) {
		base := time.Date(2026, 1, 10, 0, 0, 0, 0, time.UTC)
		at := func(hh, mm int) time.Time {
			return base.Add(time.Duration(hh)*time.Hour + time.Duration(mm)*time.Minute)
		}
		release := make(chan struct{})
		var active, calls, most atomic.Int32
		drill := func(ctx context.Context) (Result, error) {
			n := active.Add(1)
			defer active.Add(-1)
			calls.Add(1)
			for {
				m := most.Load()
				if n <= m || most.CompareAndSwap(m, n) {
					break
				}
			}
			select {
			case <-release:
				return Result{Summary: "restored"}, nil
			case <-ctx.Done():
				return Result{}, ctx.Err()
			}
		}
		h := NewMemoryHistory()
		s := mustNew(t, []Job{
			{Name: "drill", Kind: "drill", Schedule: "@every 1h", Run: drill},
			{Name: "drill-offsite", Kind: "drill", Schedule: "0 0 1 6 *", Run: okRun},
			{Name: "verify", Schedule: "@every 30m", Run: okRun},
		}, h, options(t, base, time.UTC))
		stop := start(t, s)

		time.Sleep(time.Hour + time.Minute) // 01:01, the 01:00 drill blocks
		synctest.Wait()
		running := map[string]bool{}
		for _, js := range s.Jobs() {
			running[js.Name] = js.Running
		}
		if want := map[string]bool{"drill": true, "drill-offsite": false, "verify": false}; !reflect.DeepEqual(running, want) {
			t.Errorf("Jobs running = %v, want %v", running, want)
		}
		for _, name := range []string{"drill", "drill-offsite"} {
			// A deadline, so that a Trigger that ran the blocking drill
			// fails the test instead of hanging it.
			ctx, cancel := context.WithTimeout(t.Context(), time.Second)
			r, err := s.Trigger(ctx, name)
			cancel()
			if !errors.Is(err, ErrBusy) {
				t.Errorf("Trigger(%q) while a drill runs = %+v, %v; want ErrBusy", name, r, err)
			} else if !strings.Contains(err.Error(), `"drill"`) {
				t.Errorf("Trigger error does not name the running job: %v", err)
			}
		}
		manual, err := s.Trigger(t.Context(), "verify") // another kind runs meanwhile
		if err != nil || manual.Status != StatusOK || !manual.Scheduled.Equal(at(1, 1)) || !manual.Start.Equal(at(1, 1)) {
			t.Errorf("Trigger(verify) = %+v, %v", manual, err)
		}

		time.Sleep(time.Hour) // 02:01: the 02:00 drill was due while 01:00 still runs
		synctest.Wait()
		d := runsOf(t, h, "drill")
		if len(d) != 1 || d[0].Status != StatusSkipped || d[0].Result.Summary != SkippedSummary ||
			!d[0].Scheduled.Equal(at(2, 0)) || !d[0].Start.Equal(at(2, 0)) || d[0].Error != "" {
			t.Fatalf("drill runs while the first blocks: %+v", d)
		}
		if n := calls.Load(); n != 1 {
			t.Fatalf("drill started %d times while the first blocks, want 1", n)
		}
		if r, _, _ := h.Last("drill-offsite"); r.Job != "" {
			t.Errorf("refused Trigger was recorded: %+v", r)
		}

		close(release)
		synctest.Wait()
		d = runsOf(t, h, "drill")
		if len(d) != 2 || d[0].Status != StatusOK || !d[0].Scheduled.Equal(at(1, 0)) || !d[0].Start.Equal(at(1, 0)) || !d[0].End.Equal(at(2, 1)) {
			t.Fatalf("drill runs after release: %+v", d)
		}

		time.Sleep(time.Hour) // 03:01
		stop()
		d = runsOf(t, h, "drill")
		equalTimes(t, "drill scheduled", scheduled(d), []time.Time{at(1, 0), at(2, 0), at(3, 0)}) // by start
		if d[2].Status != StatusOK {
			t.Errorf("03:00 drill: %+v", d[2])
		}
		if calls.Load() != 2 || most.Load() != 1 {
			t.Errorf("drill calls %d, most at once %d; want 2, 1", calls.Load(), most.Load())
		}
		v := runsOf(t, h, "verify")
		equalTimes(t, "verify starts", starts(v), []time.Time{at(0, 30), at(1, 0), at(1, 1), at(1, 30), at(2, 0), at(2, 30), at(3, 0)})
	})
}

func TestJitterInjected(t *testing.T) {
	synctest.Test(t, func(t *testing.T) {
		base := time.Date(2026, 1, 10, 0, 0, 0, 0, time.UTC)
		delays := []time.Duration{3 * time.Minute, 7 * time.Minute, 0, 9*time.Minute + 59*time.Second}
		var asked []int64
		o := options(t, base, time.UTC)
		o.Rand = func(n int64) int64 {
			asked = append(asked, n) // only the loop goroutine calls Rand
			return int64(delays[(len(asked)-1)%len(delays)])
		}
		h := NewMemoryHistory()
		s := mustNew(t, []Job{{Name: "verify", Schedule: "@every 1h", Jitter: 10 * time.Minute, Run: okRun}}, h, o)
		stop := start(t, s)
		synctest.Wait()
		if next, _ := s.Next("verify"); !next.Equal(base.Add(time.Hour + 3*time.Minute)) {
			t.Errorf("Next = %v, want 01:03", next)
		}
		time.Sleep(4*time.Hour + 30*time.Minute)
		stop()

		runs := runsOf(t, h, "verify")
		equalTimes(t, "scheduled", scheduled(runs), hourly(base, 1, 4))
		var want []time.Time
		for i, d := range delays {
			want = append(want, base.Add(time.Duration(i+1)*time.Hour+d))
		}
		equalTimes(t, "starts", starts(runs), want)
		// Four runs planned, and the fifth time (05:00) planned too.
		if !slices.Equal(asked, []int64{int64(10 * time.Minute), int64(10 * time.Minute), int64(10 * time.Minute), int64(10 * time.Minute), int64(10 * time.Minute)}) {
			t.Errorf("Rand asked %v", asked)
		}
	})
}

func TestJitterBounds(t *testing.T) {
	synctest.Test(t, func(t *testing.T) {
		base := time.Date(2026, 1, 10, 0, 0, 0, 0, time.UTC)
		const jitter = 45 * time.Minute
		h := NewMemoryHistory()
		s := mustNew(t, []Job{
			{Name: "verify", Schedule: "@every 1h", Jitter: jitter, Run: okRun},
			{Name: "prune", Schedule: "*/20 * * * *", Jitter: 5 * time.Minute, Run: okRun},
		}, h, options(t, base, time.UTC)) // real math/rand/v2
		stop := start(t, s)
		time.Sleep(300*time.Hour + 50*time.Minute)
		stop()

		for job, want := range map[string]struct {
			n      int
			every  time.Duration
			jitter time.Duration
		}{"verify": {300, time.Hour, jitter}, "prune": {3*300 + 2, 20 * time.Minute, 5 * time.Minute}} {
			runs := runsOf(t, h, job)
			if len(runs) != want.n {
				t.Errorf("%s ran %d times, want %d", job, len(runs), want.n)
			}
			offsets := map[time.Duration]bool{}
			for i, r := range runs {
				if !r.Scheduled.Equal(base.Add(time.Duration(i+1) * want.every)) {
					t.Errorf("%s run %d scheduled %v", job, i, r.Scheduled)
				}
				off := r.Start.Sub(r.Scheduled)
				if off < 0 || off >= want.jitter {
					t.Errorf("%s run %d starts %v after its time, want [0, %v)", job, i, off, want.jitter)
				}
				offsets[off] = true
			}
			if len(offsets) < 10 {
				t.Errorf("%s: only %d distinct delays in %d runs", job, len(offsets), len(runs))
			}
		}
	})
}

func TestHistoryAcrossRestart(t *testing.T) {
	synctest.Test(t, func(t *testing.T) {
		base := time.Date(2026, 1, 10, 0, 0, 0, 0, time.UTC)
		h := NewMemoryHistory()
		jobs := []Job{
			{Name: "verify", Schedule: "0 3 * * *", Run: okRun},
			{Name: "staleness", Schedule: "@every 1h", Run: okRun},
		}
		o := options(t, base, time.UTC)
		first := mustNew(t, jobs, h, o)
		stop := start(t, first)
		time.Sleep(4*time.Hour + 30*time.Minute) // verify ran at 03:00, staleness up to 04:00
		stop()

		second := mustNew(t, jobs, h, o) // the same clock goes on at 04:30
		stop = start(t, second)
		synctest.Wait()
		if next, _ := second.Next("staleness"); !next.Equal(base.Add(5 * time.Hour)) {
			t.Errorf("staleness after restart: Next = %v, want 05:00 (anchored on its history)", next)
		}
		time.Sleep(23 * time.Hour) // until 03:30 the next day
		stop()

		v := runsOf(t, h, "verify")
		equalTimes(t, "verify starts", starts(v), []time.Time{base.Add(3 * time.Hour), base.Add(27 * time.Hour)})
		equalTimes(t, "verify scheduled", scheduled(v), []time.Time{base.Add(3 * time.Hour), base.Add(27 * time.Hour)})
		st := runsOf(t, h, "staleness")
		equalTimes(t, "staleness starts", starts(st), hourly(base, 1, 27))
		equalTimes(t, "staleness scheduled", scheduled(st), hourly(base, 1, 27))
	})
}

func TestNotify(t *testing.T) {
	synctest.Test(t, func(t *testing.T) {
		base := time.Date(2026, 1, 10, 0, 0, 0, 0, time.UTC)
		var mu sync.Mutex
		var notified []Run
		o := options(t, base, time.UTC)
		o.Notify = func(ctx context.Context, r Run) {
			if ctx == nil {
				t.Error("Notify without a context")
			}
			mu.Lock()
			notified = append(notified, r)
			mu.Unlock()
		}
		detail := json.RawMessage(`{"damaged_packs":["ab12"]}`)
		h := NewMemoryHistory()
		s := mustNew(t, []Job{
			{Name: "fine", Schedule: "@every 1h", Run: okRun},
			{Name: "damage", Schedule: "@every 1h", Run: func(context.Context) (Result, error) {
				return Result{Summary: "1 damaged pack", Attention: true, Figures: map[string]float64{"packs_damaged": 1}, Detail: detail}, nil
			}},
			{Name: "broken", Schedule: "@every 1h", Run: func(context.Context) (Result, error) {
				return Result{Figures: map[string]float64{"packs_verified": 3}}, errors.New("disk on fire")
			}},
			{Name: "panics", Schedule: "@every 1h", Run: func(context.Context) (Result, error) { panic("oops") }},
		}, h, o)
		stop := start(t, s)
		time.Sleep(90 * time.Minute)
		stop()
		manual, err := s.Trigger(t.Context(), "broken")
		if err != nil || manual.Status != StatusFailed {
			t.Fatalf("Trigger(broken) = %+v, %v", manual, err)
		}

		// Each notified run is exactly the recorded one; "fine" is never
		// notified.
		recorded := runsOf(t, h, "")
		find := func(n Run) (Run, bool) {
			for _, r := range recorded {
				if r.Job == n.Job && r.Scheduled.Equal(n.Scheduled) {
					return r, true
				}
			}
			return Run{}, false
		}
		var names []string
		for _, n := range notified {
			names = append(names, n.Job+"/"+n.Status)
			if r, ok := find(n); !ok || !reflect.DeepEqual(r, n) {
				t.Errorf("notified %+v\nrecorded %+v", n, r)
			}
		}
		slices.Sort(names)
		if want := []string{"broken/failed", "broken/failed", "damage/attention", "panics/failed"}; !slices.Equal(names, want) {
			t.Errorf("notified %q, want %q", names, want)
		}
		for _, r := range recorded {
			switch r.Job {
			case "fine":
				if r.Status != StatusOK {
					t.Errorf("fine: %+v", r)
				}
			case "damage":
				if r.Status != StatusAttention || r.Error != "" || string(r.Result.Detail) != string(detail) || r.Result.Figures["packs_damaged"] != 1 {
					t.Errorf("damage: %+v", r)
				}
			case "broken":
				if r.Status != StatusFailed || r.Error != "disk on fire" || r.Result.Figures["packs_verified"] != 3 {
					t.Errorf("broken: %+v", r)
				}
			case "panics":
				if r.Status != StatusFailed || r.Error != "panic: oops" {
					t.Errorf("panics: %+v", r)
				}
			}
		}
		if len(recorded) != 5 {
			t.Errorf("%d runs recorded, want 5", len(recorded))
		}
	})
}

func TestStopCancelsRunningJobs(t *testing.T) {
	synctest.Test(t, func(t *testing.T) {
		base := time.Date(2026, 1, 10, 0, 0, 0, 0, time.UTC)
		var sawCancel, finished atomic.Bool
		h := NewMemoryHistory()
		s := mustNew(t, []Job{{Name: "drill", Schedule: "@every 1h", Run: func(ctx context.Context) (Result, error) {
			<-ctx.Done()
			sawCancel.Store(true)
			time.Sleep(5 * time.Minute) // cleaning up a restore target
			finished.Store(true)
			return Result{Summary: "interrupted"}, ctx.Err()
		}}}, h, options(t, base, time.UTC))
		clock := clockAt(base)
		stop := start(t, s)
		time.Sleep(90 * time.Minute)
		stop()
		if !sawCancel.Load() || !finished.Load() {
			t.Fatalf("Run returned before the running job ended: saw cancel %v, finished %v", sawCancel.Load(), finished.Load())
		}
		if now := clock(); !now.Equal(base.Add(95 * time.Minute)) {
			t.Errorf("Run returned at %v, want 01:35 (after the job's cleanup)", now)
		}
		runs := runsOf(t, h, "drill")
		if len(runs) != 1 || runs[0].Status != StatusFailed || runs[0].Error != context.Canceled.Error() ||
			!runs[0].Scheduled.Equal(base.Add(time.Hour)) || !runs[0].End.Equal(base.Add(95*time.Minute)) {
			t.Errorf("runs: %+v", runs)
		}
		if js := s.Jobs(); js[0].Running || js[0].Last == nil || js[0].Last.Status != StatusFailed {
			t.Errorf("Jobs after stop: %+v", js)
		}
	})
}

func TestRunTwiceAndCancelled(t *testing.T) {
	synctest.Test(t, func(t *testing.T) {
		base := time.Date(2026, 1, 10, 0, 0, 0, 0, time.UTC)
		h := NewMemoryHistory()
		s := mustNew(t, []Job{{Name: "verify", Schedule: "@every 1h", Run: okRun}}, h, options(t, base, time.UTC))
		stop := start(t, s)
		synctest.Wait()
		if err := s.Run(t.Context()); err == nil {
			t.Error("a second Run while the first goes returned nil")
		}
		stop()

		ctx, cancel := context.WithCancel(t.Context())
		cancel()
		if err := s.Run(ctx); err != nil {
			t.Errorf("Run with a done context: %v", err)
		}
		if runs := runsOf(t, h, ""); len(runs) != 0 {
			t.Errorf("runs: %+v", runs)
		}
	})
}

func TestTriggerUnknown(t *testing.T) {
	s := mustNew(t, []Job{{Name: "verify", Schedule: "@daily", Run: okRun}, {Name: "drill", Schedule: "@daily", Run: okRun}}, nil, Options{Logger: slog.New(slog.DiscardHandler)})
	// The error lists the jobs there are.
	if _, err := s.Trigger(t.Context(), "drll"); !errors.Is(err, ErrUnknownJob) || err.Error() != `job "drll": no such job (the jobs are verify, drill)` {
		t.Errorf("Trigger(drll) = %v", err)
	}
	if _, err := mustNew(t, nil, nil, Options{Logger: slog.New(slog.DiscardHandler)}).Trigger(t.Context(), "drill"); err == nil || err.Error() != `job "drill": no such job (no jobs are configured)` {
		t.Errorf("Trigger(drill) without jobs = %v", err)
	}
	r, err := s.Trigger(t.Context(), "verify")
	if err != nil || r.Status != StatusOK || r.Job != "verify" || r.Kind != "verify" {
		t.Errorf("Trigger(verify) = %+v, %v", r, err)
	}
	js := s.Jobs()
	if len(js) != 2 || js[0].Last == nil || !js[0].Last.Start.Equal(r.Start) || !js[0].Next.IsZero() || js[0].Schedule != "@daily" {
		t.Errorf("Jobs = %+v", js)
	}
}

func TestNewRejects(t *testing.T) {
	job := func(name, sched string) Job { return Job{Name: name, Schedule: sched, Run: okRun} }
	cases := []struct {
		jobs []Job
		want string
	}{
		{[]Job{job("", "@daily")}, "scheduler: a job has no name"},
		{[]Job{job("verify", "@daily"), job("verify", "@hourly")}, `scheduler: job "verify": name used twice`},
		{[]Job{{Name: "verify", Schedule: "@daily"}}, `scheduler: job "verify": no Run func`},
		{[]Job{{Name: "verify", Schedule: "@daily", Jitter: -time.Second, Run: okRun}}, `scheduler: job "verify": negative jitter -1s`},
		{[]Job{job("verify", "0 3 * *")}, `scheduler: job "verify": schedule "0 3 * *": expected exactly 5 fields, found 4: [0 3 * *]`},
		{[]Job{job("drill", "0 3 * * * *")}, `scheduler: job "drill": schedule "0 3 * * * *": expected exactly 5 fields`},
		{[]Job{job("drill", "61 3 * * *")}, `scheduler: job "drill": schedule "61 3 * * *": end of range (61) above maximum (59): 61`},
		{[]Job{job("drill", "")}, `scheduler: job "drill": schedule "": empty spec string`},
		{[]Job{job("drill", "@fortnightly")}, `scheduler: job "drill": schedule "@fortnightly": unrecognized descriptor: @fortnightly`},
		{[]Job{job("drill", "@every 0s")}, `scheduler: job "drill": schedule "@every 0s": @every 0s: interval below one second`},
		{[]Job{job("drill", "@every -6h")}, `scheduler: job "drill": schedule "@every -6h": @every -6h0m0s: interval below one second`},
		{[]Job{job("drill", "@every soon")}, `scheduler: job "drill": schedule "@every soon": @every: time: invalid duration "soon"`},
		{[]Job{job("drill", "TZ=Europe/Berlin")}, `scheduler: job "drill": schedule "TZ=Europe/Berlin": time zone prefix without a schedule`},
		{[]Job{job("drill", "CRON_TZ=Mars/Olympus 0 3 * * *")}, `scheduler: job "drill": schedule "CRON_TZ=Mars/Olympus 0 3 * * *": provided bad location Mars/Olympus`},
		{[]Job{job("drill", "0 0 30 2 *")}, `scheduler: job "drill": schedule "0 0 30 2 *": no time matches in the next five years`},
	}
	for _, tc := range cases {
		s, err := New(tc.jobs, nil, Options{})
		if err == nil || !strings.HasPrefix(err.Error(), tc.want) {
			t.Errorf("New(%q) = %v, %v\nwant error %q", tc.jobs[len(tc.jobs)-1].Schedule, s, err, tc.want)
		}
	}
	if _, err := New([]Job{job("a", "0 3 * * *"), job("b", "@every 6h"), job("c", "CRON_TZ=UTC @weekly"), job("d", " @hourly ")}, nil, Options{}); err != nil {
		t.Errorf("valid schedules: %v", err)
	}
}

func TestRunJSON(t *testing.T) {
	at := time.Date(2026, 1, 10, 3, 0, 0, 0, time.UTC)
	r := Run{Job: "verify", Kind: "verify", Start: at, End: at.Add(time.Minute), Scheduled: at, Status: StatusFailed, Error: "disk on fire",
		Result: Result{Summary: "3 packs", Figures: map[string]float64{"packs_verified": 3}, Detail: json.RawMessage(`{"x":1}`)}}
	b, err := json.Marshal(r)
	if err != nil {
		t.Fatal(err)
	}
	want := `{"job":"verify","kind":"verify","start":"2026-01-10T03:00:00Z","end":"2026-01-10T03:01:00Z","scheduled":"2026-01-10T03:00:00Z","status":"failed","error":"disk on fire","result":{"summary":"3 packs","figures":{"packs_verified":3},"detail":{"x":1}}}`
	if string(b) != want {
		t.Errorf("JSON:\n got %s\nwant %s", b, want)
	}
	var back Run
	if err := json.Unmarshal(b, &back); err != nil || !reflect.DeepEqual(back, r) {
		t.Errorf("round trip: %+v, %v", back, err)
	}
}

func TestMemoryHistory(t *testing.T) {
	h := NewMemoryHistory()
	if _, ok, err := h.Last("verify"); ok || err != nil {
		t.Fatalf("Last of nothing: %v, %v", ok, err)
	}
	at := time.Date(2026, 1, 10, 0, 0, 0, 0, time.UTC)
	for i, job := range []string{"verify", "drill", "verify", "prune", "verify"} {
		r := Run{Job: job, Scheduled: at.Add(time.Duration(i) * time.Hour), Result: Result{Summary: fmt.Sprint(i), Figures: map[string]float64{"i": float64(i)}}}
		if err := h.Record(r); err != nil {
			t.Fatal(err)
		}
		r.Result.Figures["i"] = -1 // the history keeps its own copy
	}
	summaries := func(runs []Run, err error) string {
		if err != nil {
			t.Fatal(err)
		}
		var s []string
		for _, r := range runs {
			s = append(s, r.Job+":"+r.Result.Summary)
		}
		return strings.Join(s, " ")
	}
	for _, tc := range []struct {
		job   string
		limit int
		want  string
	}{
		{"verify", 0, "verify:4 verify:2 verify:0"},
		{"verify", 2, "verify:4 verify:2"},
		{"", 0, "verify:4 prune:3 verify:2 drill:1 verify:0"},
		{"", 3, "verify:4 prune:3 verify:2"},
		{"", -1, "verify:4 prune:3 verify:2 drill:1 verify:0"},
		{"staleness", 5, ""},
	} {
		if got := summaries(h.List(tc.job, tc.limit)); got != tc.want {
			t.Errorf("List(%q, %d) = %q, want %q", tc.job, tc.limit, got, tc.want)
		}
	}
	last, ok, err := h.Last("verify")
	if !ok || err != nil || last.Result.Summary != "4" || last.Result.Figures["i"] != 4 {
		t.Errorf("Last = %+v, %v, %v", last, ok, err)
	}
	last.Result.Figures["i"] = 99
	if again, _, _ := h.Last("verify"); again.Result.Figures["i"] != 4 {
		t.Error("a change to a returned run reached the history")
	}

	// A long run recorded after a later one lists by its Start.
	h2 := NewMemoryHistory()
	for _, r := range []Run{
		{Job: "drill", Start: at.Add(2 * time.Hour), Result: Result{Summary: "skip"}},
		{Job: "drill", Start: at.Add(1 * time.Hour), Result: Result{Summary: "long"}},
		{Job: "drill", Start: at.Add(3 * time.Hour), Result: Result{Summary: "next"}},
		{Job: "verify", Start: at.Add(90 * time.Minute), Result: Result{Summary: "v"}},
	} {
		if err := h2.Record(r); err != nil {
			t.Fatal(err)
		}
	}
	if got := summaries(h2.List("", 0)); got != "drill:next drill:skip verify:v drill:long" {
		t.Errorf("List by start = %q", got)
	}
	if last, _, _ := h2.Last("drill"); last.Result.Summary != "next" {
		t.Errorf("Last by start = %+v", last)
	}

	for i := range MemoryHistoryRuns + 10 {
		if err := h.Record(Run{Job: "prune", Result: Result{Summary: fmt.Sprint(i)}}); err != nil {
			t.Fatal(err)
		}
	}
	all, _ := h.List("prune", 0)
	if len(all) != MemoryHistoryRuns || all[0].Result.Summary != fmt.Sprint(MemoryHistoryRuns+9) || all[len(all)-1].Result.Summary != "10" {
		t.Errorf("prune keeps %d runs, newest %q, oldest %q", len(all), all[0].Result.Summary, all[len(all)-1].Result.Summary)
	}
}

func TestLatestSlot(t *testing.T) {
	daily, _ := parse("0 3 * * *", time.Now())
	at := func(d, hh int) time.Time { return time.Date(2026, 1, d, hh, 0, 0, 0, time.UTC) }
	for _, tc := range []struct {
		after, now time.Time
		want       time.Time // zero: none
	}{
		{at(8, 3), at(10, 12), at(10, 3)},
		{at(10, 3), at(10, 12), time.Time{}},
		{at(10, 2), at(10, 3), at(10, 3)},
		{time.Date(2015, 1, 1, 0, 0, 0, 0, time.UTC), at(10, 12), at(10, 3)}, // years ago: still a short walk
		{at(10, 12), at(10, 3), time.Time{}},
	} {
		got, ok := latestSlot(daily, tc.after, tc.now)
		if ok != !tc.want.IsZero() || !got.Equal(tc.want) {
			t.Errorf("latestSlot(daily, %v, %v) = %v, %v; want %v", tc.after, tc.now, got, ok, tc.want)
		}
	}
	leap, _ := parse("0 0 29 2 *", time.Now())
	if got, ok := latestSlot(leap, at(1, 0).AddDate(-10, 0, 0), at(10, 0)); !ok || !got.Equal(time.Date(2024, 2, 29, 0, 0, 0, 0, time.UTC)) {
		t.Errorf("latestSlot(29 Feb) = %v, %v", got, ok)
	}
}

// recordOrderHistory is a History whose newest run is the one recorded
// last, as a store keyed by a sequence number would have it.
type recordOrderHistory struct {
	mu   sync.Mutex
	runs []Run
}

func (h *recordOrderHistory) Record(r Run) error {
	h.mu.Lock()
	defer h.mu.Unlock()
	h.runs = append(h.runs, r)
	return nil
}

func (h *recordOrderHistory) Last(job string) (Run, bool, error) {
	runs, _ := h.List(job, 1)
	if len(runs) == 0 {
		return Run{}, false, nil
	}
	return runs[0], true, nil
}

func (h *recordOrderHistory) List(job string, limit int) ([]Run, error) {
	h.mu.Lock()
	defer h.mu.Unlock()
	var out []Run
	for i := len(h.runs) - 1; i >= 0 && (limit <= 0 || len(out) < limit); i-- {
		if job == "" || h.runs[i].Job == job {
			out = append(out, h.runs[i])
		}
	}
	return out, nil
}

// TestRestartAfterSkip: a run that outlasted its next scheduled time is
// recorded after the skip of that time; a restart must not take the slot
// the skip stood for as missed, whichever way the history orders runs.
func TestRestartAfterSkip(t *testing.T) {
	for name, newHistory := range map[string]func() History{
		"by start":  NewMemoryHistory,
		"by record": func() History { return &recordOrderHistory{} },
	} {
		t.Run(name, func(t *testing.T) {
			synctest.Test(t, func(t *testing.T) {
				base := time.Date(2026, 1, 10, 0, 0, 0, 0, time.UTC)
				release := make(chan struct{})
				var calls atomic.Int32
				jobs := []Job{{Name: "drill", Schedule: "@every 1h", Run: func(ctx context.Context) (Result, error) {
					if calls.Add(1) == 1 {
						<-release
					}
					return Result{}, nil
				}}}
				h := newHistory()
				o := options(t, base, time.UTC)
				first := mustNew(t, jobs, h, o)
				stop := start(t, first)
				time.Sleep(2*time.Hour + 10*time.Minute) // 01:00 runs on, 02:00 is skipped
				close(release)
				synctest.Wait()
				stop()

				second := mustNew(t, jobs, h, o)
				stop = start(t, second) // at 02:10
				time.Sleep(time.Hour)
				stop()
				runs := runsOf(t, h, "drill")
				var got []string
				for _, r := range runs {
					got = append(got, r.Scheduled.Format("15:04")+" "+r.Status+" "+r.Start.Format("15:04"))
				}
				slices.Sort(got)
				if want := []string{"01:00 ok 01:00", "02:00 skipped 02:00", "03:00 ok 03:00"}; !slices.Equal(got, want) {
					t.Errorf("runs %q, want %q", got, want)
				}
			})
		})
	}
}

// TestLateStart: a run that starts after the next scheduled time has
// passed (a jitter longer than the interval, a wall clock that stepped
// forward) stands for the latest time passed; it does not run once per
// time.
func TestLateStart(t *testing.T) {
	t.Run("jitter past the next time", func(t *testing.T) {
		synctest.Test(t, func(t *testing.T) {
			base := time.Date(2026, 1, 10, 0, 0, 0, 0, time.UTC)
			o := options(t, base, time.UTC)
			o.Rand = func(int64) int64 { return int64(90 * time.Minute) }
			h := NewMemoryHistory()
			s := mustNew(t, []Job{{Name: "verify", Schedule: "@every 1h", Jitter: 2 * time.Hour, Run: okRun}}, h, o)
			stop := start(t, s)
			time.Sleep(7 * time.Hour)
			stop()
			runs := runsOf(t, h, "verify")
			equalTimes(t, "starts", starts(runs), []time.Time{base.Add(150 * time.Minute), base.Add(270 * time.Minute), base.Add(390 * time.Minute)})
			equalTimes(t, "scheduled", scheduled(runs), []time.Time{base.Add(2 * time.Hour), base.Add(4 * time.Hour), base.Add(6 * time.Hour)})
		})
	})
	t.Run("clock step", func(t *testing.T) {
		synctest.Test(t, func(t *testing.T) {
			base := time.Date(2026, 1, 10, 0, 0, 0, 0, time.UTC)
			var step atomic.Int64
			o := options(t, base, time.UTC)
			clock := o.Now
			o.Now = func() time.Time { return clock().Add(time.Duration(step.Load())) }
			h := NewMemoryHistory()
			s := mustNew(t, []Job{{Name: "verify", Schedule: "@every 1h", Run: okRun}}, h, o)
			stop := start(t, s)
			time.Sleep(90 * time.Minute)
			step.Store(int64(5 * time.Hour)) // 01:30 becomes 06:30
			time.Sleep(time.Hour)            // until 07:30
			stop()
			runs := runsOf(t, h, "verify")
			equalTimes(t, "scheduled", scheduled(runs), []time.Time{base.Add(time.Hour), base.Add(6 * time.Hour), base.Add(7 * time.Hour)})
			// The loop rereads the clock within a minute of the step.
			if late := runs[1].Start.Sub(base.Add(390 * time.Minute)); late < 0 || late > time.Minute {
				t.Errorf("run after the step started %v after it", late)
			}
		})
	})
}

// Interval reads a schedule with the scheduler's own parser: the gap
// between its next two runs, and the same refusals as New.
func TestInterval(t *testing.T) {
	now := time.Date(2026, 12, 7, 10, 17, 0, 0, time.UTC)
	for spec, want := range map[string]time.Duration{
		"@daily":                       24 * time.Hour,
		"*/15 * * * *":                 15 * time.Minute,
		"30 3 * * *":                   24 * time.Hour,
		"@weekly":                      7 * 24 * time.Hour,
		"@every 90s":                   90 * time.Second,
		"TZ=UTC 0 3 * * 1":             7 * 24 * time.Hour,
		"CRON_TZ=Asia/Tokyo 0 3 * * *": 24 * time.Hour,
	} {
		got, err := Interval(spec, now)
		if err != nil || got != want {
			t.Errorf("Interval(%q) = %v, %v; want %v", spec, got, err, want)
		}
	}
	for spec, want := range map[string]string{
		"@every 10ms": "@every 10ms: interval below one second",
		"0 0 30 2 *":  "no time matches in the next five years",
		"TZ=UTC":      "time zone prefix without a schedule",
		"@dialy":      "unrecognized descriptor: @dialy",
	} {
		if _, err := Interval(spec, now); err == nil || err.Error() != want {
			t.Errorf("Interval(%q): %v; want %q", spec, err, want)
		}
	}
}
