package prune

import (
	"errors"
	"fmt"
	"slices"
	"strconv"
	"strings"
	"time"

	"github.com/cairnbackup/cairn/repo/blob"
	"github.com/cairnbackup/cairn/repo/drill"
	"github.com/cairnbackup/cairn/repo/internal/yamldoc"
	"github.com/cairnbackup/cairn/repo/snapshot"
	"go.yaml.in/yaml/v3"
)

// Policy says which snapshots of one group (by default: one node, plan
// and set of paths, see [GroupBy]) to keep. A snapshot is kept if any
// rule keeps it; the rules are those of restic and borg:
//   - Last: the newest N snapshots;
//   - Hourly, Daily, Weekly, Monthly, Yearly: the newest snapshot in each
//     of the newest N hours, days, ISO weeks, months or years that have
//     snapshots, counted in the policy's time zone (calendar fields, so
//     daylight saving changes do not shift days);
//   - Within: every snapshot taken within that span before the newest
//     snapshot or now, whichever is earlier (not simply before now: a
//     node that stopped backing up keeps its last ones);
//   - Tags: every snapshot carrying one of the tags;
//
// and one of cairn's own:
//   - Drilled: the newest N snapshots whose newest drill passed (see
//     [drill.Proven]); 1 unless set, so the last proven restore point of
//     a group is never forgotten unless a policy says keep_drilled: 0.
//
// A snapshot dated after now (more than [snapshot.ClockSkew]) is always
// kept, and counts for none of the rules: it takes no keep-last or
// calendar slot from the real ones.
type Policy struct {
	Last    int      `yaml:"keep_last,omitempty" json:"keep_last,omitempty"`
	Hourly  int      `yaml:"keep_hourly,omitempty" json:"keep_hourly,omitempty"`
	Daily   int      `yaml:"keep_daily,omitempty" json:"keep_daily,omitempty"`
	Weekly  int      `yaml:"keep_weekly,omitempty" json:"keep_weekly,omitempty"`
	Monthly int      `yaml:"keep_monthly,omitempty" json:"keep_monthly,omitempty"`
	Yearly  int      `yaml:"keep_yearly,omitempty" json:"keep_yearly,omitempty"`
	Within  Span     `yaml:"keep_within,omitempty" json:"keep_within,omitzero"`
	Tags    []string `yaml:"keep_tag,omitempty" json:"keep_tag,omitempty"`
	// Drilled is nil when the policy does not say: [DefaultKeepDrilled].
	Drilled *int `yaml:"keep_drilled,omitempty" json:"keep_drilled,omitempty"`
}

// DefaultKeepDrilled is keep_drilled of a policy that does not set it.
const DefaultKeepDrilled = 1

// KeepDrilled returns how many proven snapshots the policy keeps.
func (p Policy) KeepDrilled() int {
	if p.Drilled == nil {
		return DefaultKeepDrilled
	}
	return max(*p.Drilled, 0)
}

// Empty reports whether the policy keeps nothing by itself (and so must
// not be applied: forgetting everything is never what an operator
// meant). keep_drilled does not count: it keeps a snapshot only once a
// drill passed, and not at all in a repository nobody drills.
func (p Policy) Empty() bool {
	return p.Last <= 0 && p.Hourly <= 0 && p.Daily <= 0 && p.Weekly <= 0 && p.Monthly <= 0 && p.Yearly <= 0 && p.Within.IsZero() && len(p.Tags) == 0
}

// Check refuses negative counts.
func (p Policy) Check() error {
	drilled := 0
	if p.Drilled != nil {
		drilled = *p.Drilled
	}
	for _, c := range []struct {
		name string
		n    int
	}{{"keep_last", p.Last}, {"keep_hourly", p.Hourly}, {"keep_daily", p.Daily}, {"keep_weekly", p.Weekly},
		{"keep_monthly", p.Monthly}, {"keep_yearly", p.Yearly}, {"keep_drilled", drilled}} {
		if c.n < 0 {
			return fmt.Errorf("%s is %d; give 0 or more", c.name, c.n)
		}
	}
	return nil
}

// Span is a calendar duration: years, months, days and hours, written
// like "1y6m", "30d", "12h" or "2y3m4d5h" ("m" is months).
type Span struct{ Years, Months, Days, Hours int }

// IsZero reports whether the span is empty.
func (s Span) IsZero() bool { return s == Span{} }

// ParseSpan parses "1y2m3d4h" style spans.
func ParseSpan(v string) (Span, error) {
	var s Span
	rest := strings.TrimSpace(v)
	if rest == "" {
		return s, errors.New("empty span")
	}
	for rest != "" {
		i := 0
		for i < len(rest) && rest[i] >= '0' && rest[i] <= '9' {
			i++
		}
		if i == 0 || i == len(rest) {
			return Span{}, fmt.Errorf("span %q: want numbers with units y, m, d, h (for example 7d or 1y6m)", v)
		}
		n, err := strconv.Atoi(rest[:i])
		if err != nil {
			return Span{}, fmt.Errorf("span %q: %w", v, err)
		}
		switch rest[i] {
		case 'y':
			s.Years += n
		case 'm':
			s.Months += n
		case 'd':
			s.Days += n
		case 'h':
			s.Hours += n
		default:
			return Span{}, fmt.Errorf("span %q: unknown unit %q (use y, m, d, h)", v, rest[i])
		}
		rest = rest[i+1:]
	}
	return s, nil
}

func (s Span) String() string {
	var b strings.Builder
	for _, p := range []struct {
		n int
		u string
	}{{s.Years, "y"}, {s.Months, "m"}, {s.Days, "d"}, {s.Hours, "h"}} {
		if p.n != 0 {
			fmt.Fprintf(&b, "%d%s", p.n, p.u)
		}
	}
	return b.String()
}

// MarshalText and UnmarshalText let spans appear in YAML and JSON;
// UnmarshalYAML gives a wrong span in a YAML file its line.
func (s Span) MarshalText() ([]byte, error) { return []byte(s.String()), nil }

// UnmarshalText parses a span.
func (s *Span) UnmarshalText(b []byte) error { return parseInto(s, string(b), ParseSpan) }

// parseInto sets *dst to what parse makes of text; text that parse
// refuses leaves *dst as it was.
func parseInto[T any](dst *T, text string, parse func(string) (T, error)) error {
	v, err := parse(text)
	if err != nil {
		return err
	}
	*dst = v
	return nil
}

// UnmarshalYAML parses a span in a YAML file (yamldoc.Parse lists a
// wrong one with its line and key).
func (s *Span) UnmarshalYAML(n *yaml.Node) error {
	return yamldoc.Scalar(n, "a span (such as 7d or 1y6m)", func(v string) error { return s.UnmarshalText([]byte(v)) })
}

// before returns t minus the span, by the calendar.
func (s Span) before(t time.Time) time.Time {
	return t.AddDate(-s.Years, -s.Months, -s.Days).Add(-time.Duration(s.Hours) * time.Hour)
}

// Decision is what a policy says about one snapshot.
type Decision struct {
	snapshot.Entry
	Keep    bool
	Reasons []string // why it is kept, e.g. "daily 2026-11-26", "last 1", "within 7d", "tag important", "drilled-ok 1a2b3c4d", "future-dated"
	// Proven is set on the group's proven restore points (keep_drilled).
	Proven bool
}

// Env is what a policy is applied against.
type Env struct {
	// Now is the appliance's clock: snapshots dated after it (beyond
	// snapshot.ClockSkew) are future-dated.
	Now time.Time
	// Loc is the time zone of the calendar rules.
	Loc *time.Location
	// Marks are the drill marks of the snapshots (drill.Marks).
	Marks map[blob.ID]drill.Mark
}

// Apply decides, for the snapshots of one group, which the policy keeps.
// It returns decisions newest first.
func Apply(list []snapshot.Entry, p Policy, env Env) []Decision {
	sorted := slices.Clone(list)
	slices.SortStableFunc(sorted, func(a, b snapshot.Entry) int {
		if c := b.Time.Compare(a.Time); c != 0 {
			return c
		}
		return strings.Compare(b.ID.String(), a.ID.String())
	})
	// Future-dated snapshots first in sorted order: the real ones follow,
	// and only they take part in the rules.
	future := 0
	for future < len(sorted) && snapshot.FutureDated(sorted[future].Time, env.Now) {
		future++
	}
	present := sorted[future:]
	type bucket struct {
		name  string
		count int
		key   func(t time.Time) string
		last  string
	}
	buckets := []*bucket{
		{name: "hourly", count: p.Hourly, key: func(t time.Time) string { return t.Format("2006-01-02 15h") }},
		{name: "daily", count: p.Daily, key: func(t time.Time) string { return t.Format("2006-01-02") }},
		{name: "weekly", count: p.Weekly, key: func(t time.Time) string {
			y, w := t.ISOWeek()
			return fmt.Sprintf("%d-W%02d", y, w)
		}},
		{name: "monthly", count: p.Monthly, key: func(t time.Time) string { return t.Format("2006-01") }},
		{name: "yearly", count: p.Yearly, key: func(t time.Time) string { return t.Format("2006") }},
	}
	var withinFrom time.Time
	if !p.Within.IsZero() && len(present) > 0 {
		from := present[0].Time
		if from.After(env.Now) {
			from = env.Now
		}
		withinFrom = p.Within.before(from)
	}
	proven := map[int]drill.Proof{}
	for _, pr := range drill.Proven(present, env.Marks, p.KeepDrilled(), env.Now) {
		proven[pr.Index] = pr
	}
	out := make([]Decision, len(sorted))
	for i, e := range sorted[:future] {
		out[i] = Decision{Entry: e, Keep: true, Reasons: []string{"future-dated"}}
	}
	for i, e := range present {
		d := Decision{Entry: e}
		t := e.Time.In(env.Loc)
		if i < p.Last {
			d.Reasons = append(d.Reasons, fmt.Sprintf("last %d", i+1))
		}
		for _, b := range buckets {
			if b.count <= 0 {
				continue
			}
			if k := b.key(t); k != b.last {
				b.last = k
				b.count--
				d.Reasons = append(d.Reasons, b.name+" "+k)
			}
		}
		if !withinFrom.IsZero() && !e.Time.Before(withinFrom) {
			d.Reasons = append(d.Reasons, "within "+p.Within.String())
		}
		for _, tag := range p.Tags {
			if slices.Contains(e.Tags, tag) {
				d.Reasons = append(d.Reasons, "tag "+tag)
			}
		}
		if pr, ok := proven[i]; ok {
			d.Proven = true
			d.Reasons = append(d.Reasons, pr.Reason())
		}
		d.Keep = len(d.Reasons) > 0
		out[future+i] = d
	}
	return out
}
