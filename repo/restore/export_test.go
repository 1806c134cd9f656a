package restore

import "testing"

// PlanStats is the planner's accounting.
type PlanStats = planStats

// SetPlanBudget sets the planner's budget of plaintext for the test.
func SetPlanBudget(t testing.TB, n int64) {
	old := planBudget
	planBudget = n
	t.Cleanup(func() { planBudget = old })
}

// OnPlanned has fn called with the planner's accounting at the end of
// every planned restore of the test.
func OnPlanned(t testing.TB, fn func(PlanStats)) {
	testPlanned = fn
	t.Cleanup(func() { testPlanned = nil })
}
