package scheduler

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"log/slog"
	"math/rand/v2"
	"runtime/debug"
	"strings"
	"sync"
	"sync/atomic"
	"time"

	"github.com/robfig/cron/v3"
)

// Job is a named piece of work run on a schedule.
type Job struct {
	// Name identifies the job, e.g. "verify", "drill", "prune",
	// "staleness"; unique within a Scheduler.
	Name string
	// Kind groups jobs that must never overlap: while a run of a kind is
	// going, another run of that kind is skipped (see [Scheduler]). An
	// empty Kind is the job's Name, so a job at least never overlaps
	// itself.
	Kind string
	// Schedule is a cron expression of five fields ("0 3 * * *"), or a
	// descriptor (@daily, @hourly, @every 6h), with an optional
	// "CRON_TZ=Zone " prefix; see the package documentation.
	Schedule string
	// Jitter bounds a random delay in [0, Jitter) added to each
	// scheduled time; zero adds none.
	Jitter time.Duration
	// Run does the work. It must return soon after ctx is done. An error
	// makes the run "failed"; a Result with Attention makes it
	// "attention".
	Run func(ctx context.Context) (Result, error)
}

// Result is what a job reports about one run.
type Result struct {
	// Summary is one line for humans.
	Summary string `json:"summary,omitempty"`
	// Figures are numbers for status and metrics, e.g.
	// "packs_verified", "restore_seconds".
	Figures map[string]float64 `json:"figures,omitempty"`
	// Attention says the job ran but found something an operator must
	// see: damage, a failed drill, a missed backup.
	Attention bool `json:"attention,omitempty"`
	// Detail is the job's full report, as JSON.
	Detail json.RawMessage `json:"detail,omitempty"`
}

// Status values of a [Run].
const (
	StatusOK        = "ok"        // the job returned no error and no attention
	StatusAttention = "attention" // the job returned a Result with Attention
	StatusFailed    = "failed"    // the job returned an error or panicked
	StatusSkipped   = "skipped"   // not run: a run of the same kind was going
)

// SkippedSummary is the Result.Summary of a run with [StatusSkipped].
const SkippedSummary = "skipped: previous run still going"

// Run is one execution of a job, as recorded in the [History].
type Run struct {
	Job   string    `json:"job"`
	Kind  string    `json:"kind"`
	Start time.Time `json:"start"`
	End   time.Time `json:"end"`
	// Scheduled is the scheduled time this run stands for, without
	// jitter; for a run started by [Scheduler.Trigger], the time of the
	// trigger.
	Scheduled time.Time `json:"scheduled"`
	// Status is one of StatusOK, StatusAttention, StatusFailed and
	// StatusSkipped.
	Status string `json:"status"`
	// Error is the job's error, for StatusFailed.
	Error  string `json:"error,omitempty"`
	Result Result `json:"result"`
}

// JobStatus describes one job for status pages and the CLI.
type JobStatus struct {
	Name     string
	Kind     string
	Schedule string
	// Next is the next planned start, jitter included; zero while
	// [Scheduler.Run] is not going, or when the schedule has no further
	// time.
	Next time.Time
	// Running says a run of this job is going.
	Running bool
	// Last is the job's most recent recorded run; nil when it has none
	// or the history could not be read (that is logged).
	Last *Run
}

// Options configure a [Scheduler]. The zero value is usable.
type Options struct {
	// Now is the clock; default time.Now.
	Now func() time.Time
	// Rand returns a number in [0, n) for jitter; default
	// math/rand/v2.Int64N. It is called once for each planned time of a
	// job with a positive Jitter, in the order the times are planned,
	// only from the goroutine of [Scheduler.Run].
	Rand func(n int64) int64
	// Location is the zone schedules are read in; default time.Local.
	Location *time.Location
	// Logger receives one line per run and anything that cannot be
	// returned (a history that fails to record); default slog.Default().
	Logger *slog.Logger
	// Notify is called after each run whose Status is "failed" or
	// "attention", with the run as recorded and the run's context (done
	// if the run ended because the scheduler is stopping). The appliance
	// runs the operator's notify command with the run as JSON on stdin.
	Notify func(ctx context.Context, r Run)
	// After is the timer; default time.After.
	After func(d time.Duration) <-chan time.Time
}

// Errors returned by [Scheduler.Trigger], wrapped with the job's name.
var (
	ErrUnknownJob = errors.New("no such job")
	ErrBusy       = errors.New("a run of the same kind is still going")
)

// maxSleep bounds one wait of the loop, so a step of the wall clock
// (NTP, a suspended machine) delays a run by at most this much.
const maxSleep = time.Minute

// Scheduler runs jobs on their schedules; see the package documentation.
// Its methods are safe for concurrent use.
type Scheduler struct {
	h      History
	now    func() time.Time
	rand   func(int64) int64
	loc    *time.Location
	log    *slog.Logger
	notify func(context.Context, Run)
	after  func(time.Duration) <-chan time.Time

	jobs   []*entry // in the order given to New; fixed after New
	byName map[string]*entry

	looping   atomic.Bool   // Run is going
	started   chan struct{} // closed once Run has planned every job
	startOnce sync.Once

	mu   sync.Mutex
	busy map[string]string // kind → name of the job whose run is going
}

// entry is a job and its plan.
type entry struct {
	job   Job
	sched cron.Schedule

	// Guarded by Scheduler.mu; written only by the goroutine of Run.
	slot time.Time // next scheduled time; zero when none is planned
	due  time.Time // slot plus jitter
}

// New checks jobs and returns a Scheduler for them. Names must be
// non-empty and unique, Run set, Jitter not negative, and each Schedule
// valid; an error names the job and the expression. A nil History is a
// [NewMemoryHistory].
func New(jobs []Job, h History, o Options) (*Scheduler, error) {
	if h == nil {
		h = NewMemoryHistory()
	}
	s := &Scheduler{
		h:       h,
		now:     o.Now,
		rand:    o.Rand,
		loc:     o.Location,
		log:     o.Logger,
		notify:  o.Notify,
		after:   o.After,
		byName:  make(map[string]*entry, len(jobs)),
		busy:    make(map[string]string),
		started: make(chan struct{}),
	}
	if s.now == nil {
		s.now = time.Now
	}
	if s.rand == nil {
		s.rand = rand.Int64N
	}
	if s.loc == nil {
		s.loc = time.Local
	}
	if s.log == nil {
		s.log = slog.Default()
	}
	if s.after == nil {
		s.after = time.After
	}
	now := s.clock()
	for _, j := range jobs {
		switch {
		case j.Name == "":
			return nil, errors.New("scheduler: a job has no name")
		case s.byName[j.Name] != nil:
			return nil, fmt.Errorf("scheduler: job %q: name used twice", j.Name)
		case j.Run == nil:
			return nil, fmt.Errorf("scheduler: job %q: no Run func", j.Name)
		case j.Jitter < 0:
			return nil, fmt.Errorf("scheduler: job %q: negative jitter %s", j.Name, j.Jitter)
		}
		sc, err := parse(j.Schedule, now)
		if err != nil {
			return nil, fmt.Errorf("scheduler: job %q: schedule %q: %w", j.Name, j.Schedule, err)
		}
		if j.Kind == "" {
			j.Kind = j.Name
		}
		e := &entry{job: j, sched: sc}
		s.jobs = append(s.jobs, e)
		s.byName[j.Name] = e
	}
	return s, nil
}

// clock returns the current time in the scheduling zone, without a
// monotonic reading: schedules are wall-clock times.
func (s *Scheduler) clock() time.Time { return s.now().In(s.loc) }

// Run plans and runs the jobs until ctx is done, then waits for the runs
// going to end (their context is ctx, so they see it cancelled) and
// returns nil. At start, a job whose newest recorded run is for a time
// before the latest scheduled time that has passed runs once at once (see
// Missed runs in the package documentation). Each run has its own
// goroutine. Run returns an error only when it is already going.
func (s *Scheduler) Run(ctx context.Context) error {
	if !s.looping.CompareAndSwap(false, true) {
		return errors.New("scheduler: Run is already going")
	}
	defer s.looping.Store(false)
	var wg sync.WaitGroup
	defer func() {
		wg.Wait()
		s.mu.Lock()
		for _, e := range s.jobs {
			e.slot, e.due = time.Time{}, time.Time{}
		}
		s.mu.Unlock()
	}()
	if ctx.Err() != nil {
		return nil
	}

	now := s.clock()
	for _, e := range s.jobs {
		after, ok := s.lastScheduled(e.job.Name)
		switch {
		case !ok:
			s.plan(e, e.sched.Next(now))
		case after.After(now): // the clock went back past the last run
			s.plan(e, e.sched.Next(now))
		default:
			if missed, ok := latestSlot(e.sched, after, now); ok {
				s.log.Info("job missed while stopped: running it now", "job", e.job.Name, "last_scheduled", after, "scheduled", missed)
				s.fire(ctx, &wg, e, missed)
				after = missed
			}
			s.plan(e, e.sched.Next(after))
		}
	}
	s.startOnce.Do(func() { close(s.started) })

	for {
		if ctx.Err() != nil {
			return nil
		}
		now := s.clock()
		wake := now.Add(maxSleep)
		for _, e := range s.jobs {
			s.mu.Lock()
			slot, due := e.slot, e.due
			s.mu.Unlock()
			if slot.IsZero() {
				continue
			}
			if !due.After(now) {
				// A run stands for every scheduled time up to now: after
				// a clock step or a jitter past the next slot, it does not
				// run once per slot.
				if l, ok := latestSlot(e.sched, slot, now); ok {
					slot = l
				}
				s.fire(ctx, &wg, e, slot)
				due = s.plan(e, e.sched.Next(slot))
				if due.IsZero() {
					continue
				}
			}
			if due.Before(wake) {
				wake = due
			}
		}
		select {
		case <-ctx.Done():
			return nil
		case <-s.after(wake.Sub(now)):
		}
	}
}

// Started is closed once [Scheduler.Run] has planned every job (and
// started the runs missed while it was stopped): from then on
// [Scheduler.Next] and [Scheduler.Jobs] report the plan. It stays closed
// after Run returns.
func (s *Scheduler) Started() <-chan struct{} { return s.started }

// lastScheduled returns the latest Scheduled time among the job's two
// newest runs. Runs of a job never overlap and its scheduled times are
// handled in order, so when the history orders by Start the newest run
// has the latest Scheduled time; when it orders by recording, a long run
// is recorded after the skips of the times that passed while it went, the
// last of which is then second newest.
func (s *Scheduler) lastScheduled(job string) (time.Time, bool) {
	runs, err := s.h.List(job, 2)
	if err != nil {
		s.log.Error("cannot read job history: planning as if the job never ran", "job", job, "err", err)
		return time.Time{}, false
	}
	var t time.Time
	for _, r := range runs {
		if r.Scheduled.After(t) {
			t = r.Scheduled
		}
	}
	return t.In(s.loc), !t.IsZero()
}

// plan sets the job's next scheduled time and draws its jitter; a zero
// slot plans nothing. It returns the planned start.
func (s *Scheduler) plan(e *entry, slot time.Time) time.Time {
	due := slot
	if !slot.IsZero() {
		slot = slot.In(s.loc)
		due = slot
		if e.job.Jitter > 0 {
			due = slot.Add(time.Duration(s.rand(int64(e.job.Jitter))))
		}
	}
	s.mu.Lock()
	e.slot, e.due = slot, due
	s.mu.Unlock()
	return due
}

// acquire marks the job's kind busy; when it already is, it returns the
// name of the job whose run holds it.
func (s *Scheduler) acquire(e *entry) (holder string, ok bool) {
	s.mu.Lock()
	defer s.mu.Unlock()
	if h, busy := s.busy[e.job.Kind]; busy {
		return h, false
	}
	s.busy[e.job.Kind] = e.job.Name
	return "", true
}

func (s *Scheduler) release(e *entry) {
	s.mu.Lock()
	delete(s.busy, e.job.Kind)
	s.mu.Unlock()
}

// fire starts a run of e for scheduled in its own goroutine, or records
// it as skipped when a run of its kind is going.
func (s *Scheduler) fire(ctx context.Context, wg *sync.WaitGroup, e *entry, scheduled time.Time) {
	holder, ok := s.acquire(e)
	if !ok {
		now := s.clock()
		r := Run{
			Job: e.job.Name, Kind: e.job.Kind,
			Start: now, End: now, Scheduled: scheduled,
			Status: StatusSkipped,
			Result: Result{Summary: SkippedSummary},
		}
		s.log.Warn("job skipped: previous run still going", "job", e.job.Name, "kind", e.job.Kind, "running", holder, "scheduled", scheduled)
		if err := s.h.Record(r); err != nil {
			s.log.Error("cannot record job run", "job", e.job.Name, "err", err)
		}
		return
	}
	wg.Go(func() {
		if _, err := s.execute(ctx, e, scheduled); err != nil {
			s.log.Error("cannot record job run", "job", e.job.Name, "err", err)
		}
	})
}

// execute runs e, whose kind the caller has acquired, records the run,
// releases the kind and notifies. The error is the history's.
func (s *Scheduler) execute(ctx context.Context, e *entry, scheduled time.Time) (Run, error) {
	r := Run{Job: e.job.Name, Kind: e.job.Kind, Scheduled: scheduled, Start: s.clock()}
	res, err := s.call(ctx, e)
	r.End = s.clock()
	r.Result = res
	switch {
	case err != nil:
		r.Status, r.Error = StatusFailed, err.Error()
	case res.Attention:
		r.Status = StatusAttention
	default:
		r.Status = StatusOK
	}
	attrs := []any{"job", r.Job, "status", r.Status, "scheduled", r.Scheduled, "duration", r.End.Sub(r.Start)}
	if r.Error != "" {
		attrs = append(attrs, "err", r.Error)
	}
	if res.Summary != "" {
		attrs = append(attrs, "summary", res.Summary)
	}
	level := slog.LevelInfo
	if r.Status != StatusOK {
		level = slog.LevelWarn
	}
	s.log.Log(ctx, level, "job finished", attrs...)

	recErr := s.h.Record(r)
	s.release(e)
	if s.notify != nil && (r.Status == StatusFailed || r.Status == StatusAttention) {
		s.notify(ctx, cloneRun(r))
	}
	if recErr != nil {
		return r, fmt.Errorf("scheduler: job %q: record run: %w", r.Job, recErr)
	}
	return r, nil
}

// call runs the job, turning a panic into an error.
func (s *Scheduler) call(ctx context.Context, e *entry) (res Result, err error) {
	defer func() {
		if p := recover(); p != nil {
			s.log.Error("job panicked", "job", e.job.Name, "panic", p, "stack", string(debug.Stack()))
			err = fmt.Errorf("panic: %v", p)
		}
	}()
	return e.job.Run(ctx)
}

// Trigger runs the job named name now, in the calling goroutine with ctx,
// records the run and returns it; a failed or attention run is notified
// as any other. Its Scheduled time is the time of the trigger, and it
// does not move the job's plan. When a run of the job's kind is going, it
// runs nothing, records nothing and returns an error wrapping [ErrBusy].
// The error is otherwise [ErrUnknownJob], naming the jobs there are, or the history's (the run
// happened and is returned).
func (s *Scheduler) Trigger(ctx context.Context, name string) (Run, error) {
	e, ok := s.byName[name]
	if !ok {
		have := "no jobs are configured"
		if len(s.jobs) > 0 {
			names := make([]string, len(s.jobs))
			for i, e := range s.jobs {
				names[i] = e.job.Name
			}
			have = "the jobs are " + strings.Join(names, ", ")
		}
		return Run{}, fmt.Errorf("job %q: %w (%s)", name, ErrUnknownJob, have)
	}
	holder, ok := s.acquire(e)
	if !ok {
		return Run{}, fmt.Errorf("scheduler: trigger %q: %w (job %q, kind %q)", name, ErrBusy, holder, e.job.Kind)
	}
	return s.execute(ctx, e, s.clock())
}

// Next returns the next planned start of the job named name, jitter
// included, and false when there is no such job, [Scheduler.Run] is not
// going, or the schedule has no further time.
func (s *Scheduler) Next(name string) (time.Time, bool) {
	e, ok := s.byName[name]
	if !ok {
		return time.Time{}, false
	}
	s.mu.Lock()
	defer s.mu.Unlock()
	return e.due, !e.due.IsZero()
}

// Jobs describes every job, in the order given to [New]. It reads each
// job's last run from the history.
func (s *Scheduler) Jobs() []JobStatus {
	out := make([]JobStatus, len(s.jobs))
	s.mu.Lock()
	for i, e := range s.jobs {
		out[i] = JobStatus{
			Name:     e.job.Name,
			Kind:     e.job.Kind,
			Schedule: e.job.Schedule,
			Next:     e.due,
			Running:  s.busy[e.job.Kind] == e.job.Name,
		}
	}
	s.mu.Unlock()
	for i := range out {
		last, ok, err := s.h.Last(out[i].Name)
		if err != nil {
			s.log.Warn("cannot read job history", "job", out[i].Name, "err", err)
			continue
		}
		if ok {
			out[i].Last = &last
		}
	}
	return out
}
