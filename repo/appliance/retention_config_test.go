package appliance

import (
	"testing"
	"time"

	"github.com/cairnbackup/cairn/repo/prune"
)

// The retention section's group_by and keep_drilled, and limits'
// clock_skew (issue 12 items 1 and 2, issue 19).
func TestRetentionConfig(t *testing.T) {
	c, err := ParseConfig([]byte(`
retention:
  group_by: node,plan
  policies:
    default: {keep_last: 3}
    lyra/git: {keep_last: 1, keep_drilled: 0}
limits:
  clock_skew: 2m
`), "test")
	if err != nil {
		t.Fatal(err)
	}
	if got := c.Retention.Grouping(); got != (prune.GroupBy{Node: true, Plan: true}) {
		t.Errorf("group_by %+v", got)
	}
	if p, _ := c.Retention.PolicyFor(prune.Group{Node: "lyra", Plan: "git", Paths: "/srv/git"}); p.KeepDrilled() != 0 || p.Last != 1 {
		t.Errorf("lyra/git policy %+v", p)
	}
	if p, _ := c.Retention.PolicyFor(prune.Group{Node: "rhea"}); p.KeepDrilled() != 1 {
		t.Errorf("default policy keeps %d drilled", p.KeepDrilled())
	}
	if c.Limits.ClockSkew != 2*time.Minute {
		t.Errorf("clock_skew %s", c.Limits.ClockSkew)
	}
	d, err := ParseConfig(nil, "empty")
	if err != nil || d.Retention.Grouping() != prune.DefaultGroupBy || d.Limits.ClockSkew != 5*time.Minute {
		t.Errorf("defaults: %+v %s %v", d.Retention.Grouping(), d.Limits.ClockSkew, err)
	}
	for doc, want := range map[string]string{
		"retention:\n  group_by: node,host\n":                                      `bad:2: retention.group_by: group by "node,host": unknown field "host" (use a comma list of node, plan, paths, or "")`,
		"retention:\n  policies:\n    default: {keep_drilled: 2}\n":                "bad:3: retention.policies.default: keeps nothing; give at least one keep_* rule (keep_drilled alone keeps nothing until a drill passes)",
		"retention:\n  policies:\n    default: {keep_last: 1, keep_drilled: -1}\n": "bad:3: retention.policies.default: keep_drilled is -1; give 0 or more",
		"limits:\n  clock_skew: -1m\n":                                             "bad:2: limits.clock_skew: -1m0s is negative; give a duration above 0, or leave it out for the default 5m0s",
	} {
		if _, err := ParseConfig([]byte(doc), "bad"); err == nil || err.Error() != want {
			t.Errorf("%q: %v, want %q", doc, err, want)
		}
	}
}
