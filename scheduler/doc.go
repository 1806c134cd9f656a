// Package scheduler runs the appliance's named jobs (verify, drill,
// prune, staleness alerts) on cron schedules, records every run in a
// [History], and tells the operator about runs that failed or found
// something ([Options].Notify).
//
// A [Job] is a name, a kind, a schedule, a jitter and a Run func; the
// work itself comes from the caller (repo/appliance's jobs.go wires the
// verify, drill, prune and staleness jobs in through closures), so this
// package imports none of them.
// [Scheduler.Run] is the loop; [Scheduler.Trigger] runs a job by hand;
// [Scheduler.Next] and [Scheduler.Jobs] report the plan.
//
// # Schedules
//
// Schedules are parsed by github.com/robfig/cron/v3's standard parser:
// five fields (minute, hour, day of month, month, day of week: "0 3 * *
// *", "*/15 * * * 1-5") or a descriptor (@yearly, @monthly, @weekly,
// @daily, @hourly, @every 6h). A day-of-month and a day-of-week that are
// both restricted match when either does, as in cron. Calendar schedules
// are read in [Options].Location (default time.Local) unless the
// expression starts with "CRON_TZ=Zone ". @every is a fixed interval
// counted from the job's newest recorded scheduled time, or from the
// start of [Scheduler.Run] when it has none; it is at least a second.
// [New] rejects, naming the job and the expression, anything the parser
// rejects, a zone prefix with no schedule, and a schedule that matches no
// time in the next five years ("0 0 30 2 *").
//
// Daylight saving time follows robfig/cron: a time of day that does not
// exist on the day clocks go forward is skipped that day ("30 2 * * *" in
// Europe/Berlin does not run on the last Sunday of March), and one that
// exists twice on the day clocks go back runs twice, an hour apart (02:30
// CEST and 02:30 CET on the last Sunday of October). Times outside the
// changed hour run at their local time every day, so the real interval
// between two runs of "30 3 * * *" is 23 or 25 hours across a change.
// @every ignores zones.
//
// # Missed runs
//
// A scheduled time that passes while the scheduler is not running is
// missed. At the start of [Scheduler.Run], a job that has a recorded run
// and whose schedule had a time after its latest recorded Scheduled time
// and no later than now runs once, at once (without jitter), standing for
// the latest such time: it runs once however many times were missed. A job
// that has never run gets no catch-up run; it waits for its next time.
// Every recorded run counts as having served its scheduled time, whatever
// its status: a failed run, a skipped run, and a run cut short because the
// scheduler stopped (recorded as failed with the context's error) are not
// repeated. A manual run ([Scheduler.Trigger]) counts too: its Scheduled
// time is the moment of the trigger.
//
// While running, the same rule applies to a run that starts late (a wall
// clock that stepped forward, a jitter longer than the interval): the run
// stands for the latest scheduled time before its start, and the next one
// follows that.
//
// # Overlap
//
// Runs of one Kind never overlap. When a job's time comes while a run of
// its kind is going (its own previous run, or another job of the kind),
// the new run does not start: it is recorded with Status "skipped" and
// Summary [SkippedSummary], and the job waits for its next time.
// [Scheduler.Trigger] refuses in the same case with [ErrBusy] and records
// nothing. Runs of different kinds go in parallel, each in its own
// goroutine, so a long drill does not delay verify.
//
// # Jitter
//
// A job with a positive Jitter starts at each scheduled time plus a delay
// drawn from [0, Jitter) by [Options].Rand when that time is planned, so
// the plan ([Scheduler.Next]) already includes it. The run's Scheduled
// time is without jitter. Catch-up and manual runs start at once. Keep
// Jitter well below the interval: a start pushed past the next scheduled
// time stands for that time too (see Missed runs).
//
// # History
//
// Every run is recorded, skipped ones included, with its start, end,
// scheduled time, status, error and result. The [History] is the only
// memory of past runs: the scheduler reads it at start (to find missed
// runs) and in [Scheduler.Jobs], and keeps O(jobs) itself: one plan per
// job and the set of busy kinds. Job results, including Detail, live only
// in the history. Newest means latest Start (a long run is recorded after
// the skips of the times that passed while it went, but lists before
// them); at start the scheduler reads the two newest runs of each job, so
// a store that orders by recording works as well. [NewMemoryHistory] keeps
// the newest
// [MemoryHistoryRuns] runs of each job; the appliance stores history in
// its index, where it is disposable: losing it costs at most the catch-up
// runs of the next start.
//
// # Clock
//
// Time comes from [Options].Now and waits from [Options].After; tests
// run the real ones inside a testing/synctest bubble, so a simulated week
// takes no real time. The loop sleeps at most a minute at a time and
// then reads the clock again, so a step of the wall clock (NTP, a
// suspended machine) delays a run by at most a minute; runs are planned
// and recorded in wall-clock time in [Options].Location.
//
// All methods of [Scheduler] are safe for concurrent use; Run may be
// going only once at a time.
package scheduler
