package scheduler

import (
	"fmt"
	"strings"
	"time"

	"github.com/robfig/cron/v3"
)

// CheckSchedule reports why spec is not a schedule [New] would accept, or
// nil; the error is the reason alone (New adds the job and the
// expression).
func CheckSchedule(spec string) error {
	_, err := parse(spec, time.Now())
	return err
}

// Interval returns the time between the first two runs of spec after now
// (a day for @daily, 15 minutes for "*/15 * * * *"), or why spec is not a
// schedule [New] would accept. Callers use it to size work that is
// spread over runs.
func Interval(spec string, now time.Time) (time.Duration, error) {
	sc, err := parse(spec, now)
	if err != nil {
		return 0, err
	}
	first := sc.Next(now)
	second := sc.Next(first)
	if second.IsZero() {
		return 0, fmt.Errorf("no second time matches in the next five years")
	}
	return second.Sub(first), nil
}

// parse reads a schedule the way robfig/cron's standard parser does (five
// fields or a descriptor, with an optional CRON_TZ= or TZ= prefix) and
// rejects what that parser would accept silently but that is never what
// an operator meant: a zone prefix with no schedule (the parser panics),
// an @every shorter than a second (the parser turns it into one second)
// and a schedule with no time in the next five years ("0 0 30 2 *").
// now is used only for that last check.
func parse(spec string, now time.Time) (cron.Schedule, error) {
	rest := strings.TrimSpace(spec)
	if strings.HasPrefix(rest, "TZ=") || strings.HasPrefix(rest, "CRON_TZ=") {
		i := strings.IndexAny(rest, " \t")
		if i < 0 {
			return nil, fmt.Errorf("time zone prefix without a schedule")
		}
		rest = strings.TrimSpace(rest[i:])
	}
	if d, ok := strings.CutPrefix(rest, "@every "); ok {
		iv, err := time.ParseDuration(strings.TrimSpace(d))
		if err != nil {
			return nil, fmt.Errorf("@every: %w", err)
		}
		if iv < time.Second {
			return nil, fmt.Errorf("@every %s: interval below one second", iv)
		}
	}
	sc, err := cron.ParseStandard(strings.TrimSpace(spec))
	if err != nil {
		return nil, err
	}
	if sc.Next(now).IsZero() {
		return nil, fmt.Errorf("no time matches in the next five years")
	}
	return sc, nil
}

// latestSlot returns the latest scheduled time of sc in (after, now], and
// false when none falls there. Calendar schedules do not depend on where
// the search starts, so it looks back through growing windows and never
// walks more than one window's slots, however long ago after was; @every
// is computed directly.
func latestSlot(sc cron.Schedule, after, now time.Time) (time.Time, bool) {
	if !after.Before(now) {
		return time.Time{}, false
	}
	if cd, ok := sc.(cron.ConstantDelaySchedule); ok {
		first := cd.Next(after)
		if first.After(now) {
			return time.Time{}, false
		}
		return first.Add(now.Sub(first) / cd.Delay * cd.Delay), true
	}
	const day = 24 * time.Hour
	for _, w := range []time.Duration{time.Hour, day + time.Hour, 32 * day, 367 * day, 5*366*day + day} {
		from := now.Add(-w)
		if from.Before(after) {
			from = after
		}
		if t, ok := scan(sc, from, now); ok {
			return t, true
		}
		if from.Equal(after) {
			break
		}
	}
	return time.Time{}, false
}

// scan walks sc from from and returns the last time it reaches that is
// not after now.
func scan(sc cron.Schedule, from, now time.Time) (time.Time, bool) {
	var last time.Time
	for t := sc.Next(from); !t.IsZero() && !t.After(now); t = sc.Next(t) {
		last = t
	}
	return last, !last.IsZero()
}
