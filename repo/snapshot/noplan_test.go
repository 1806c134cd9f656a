package snapshot

import "testing"

// A snapshot without a plan shows its plan as @none, and --plan @none
// selects exactly those; @none can never be a real plan's name.
func TestNoPlan(t *testing.T) {
	none, etc := &Snapshot{Node: "lyra"}, &Snapshot{Node: "lyra", Plan: "etc"}
	if PlanName(none.Plan) != "@none" || PlanName(etc.Plan) != "etc" {
		t.Errorf("PlanName: %q, %q", PlanName(none.Plan), PlanName(etc.Plan))
	}
	f := Filter{Plan: NoPlan}
	if !f.Match(none) || f.Match(etc) {
		t.Errorf("--plan @none: matches %v %v", f.Match(none), f.Match(etc))
	}
	if f := (Filter{Plan: "etc"}); f.Match(none) || !f.Match(etc) {
		t.Errorf("--plan etc: matches %v %v", f.Match(none), f.Match(etc))
	}
	if CheckName("plan", NoPlan) == nil {
		t.Errorf("@none is accepted as a plan name")
	}
}
