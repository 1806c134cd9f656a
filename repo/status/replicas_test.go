package status_test

import (
	"slices"
	"testing"
	"time"

	"github.com/cairnbackup/cairn/repo/repotest"
	"github.com/cairnbackup/cairn/repo/status"
)

// What a replica needs attention for: never replicated (with a
// schedule), the newest run that got through older than two intervals,
// a run that left something behind, a verification that found damage, a
// failed drill. A replica replicated on time, or without a schedule,
// needs nothing.
func TestReplicaAttention(t *testing.T) {
	r := repotest.New(t)
	now := time.Date(2026, 12, 7, 12, 0, 0, 0, time.UTC)
	day := 24 * time.Hour
	st, err := status.Gather(t.Context(), r, status.Options{Now: now, Replicas: []status.Replica{
		{Name: "fine", Schedule: "@daily", Interval: day, Replicated: now.Add(-30 * time.Hour), Ended: now.Add(-30 * time.Hour), LastStatus: "ok", DrillStatus: "ok"},
		{Name: "manual"},
		{Name: "new", Schedule: "@daily", Interval: day},
		{Name: "late", Schedule: "@daily", Interval: day, Replicated: now.Add(-49 * time.Hour), Ended: now.Add(-49 * time.Hour), LastStatus: "failed", LastRun: now.Add(-time.Hour), LastError: "unreachable"},
		{Name: "left", Schedule: "@daily", Interval: day, Replicated: now.Add(-time.Hour), LastStatus: "attention", LastRun: now.Add(-time.Hour), LastSummary: "copied 1 objects; 1 objects not copied"},
		{Name: "rot", VerifyStatus: "attention", VerifySummary: "verified 3 packs: 1 problems"},
		{Name: "drill", DrillStatus: "failed", DrillSummary: "snapshot 1a2b3c4d (lyra/git), report 5e6f7a8b: a file differs"},
	}})
	if err != nil {
		t.Fatal(err)
	}
	want := []string{
		"replica new: never replicated (cairn replicate new)",
		"replica late: last replicated 2d1h ago (2026-12-05T11:00:00Z), its schedule runs every 1d; 0 B behind",
		"replica left: the last replication at 2026-12-07T11:00:00Z left objects behind: copied 1 objects; 1 objects not copied",
		"replica rot: the last verification found damage: verified 3 packs: 1 problems",
		"replica drill: the last drill failed: snapshot 1a2b3c4d (lyra/git), report 5e6f7a8b: a file differs",
	}
	if !slices.Equal(st.Attention, want) {
		t.Fatalf("attention:\n%q\nwant\n%q", st.Attention, want)
	}
	if len(st.Replicas) != 7 || st.Replicas[0].Overdue || !st.Replicas[2].Overdue || !st.Replicas[3].Overdue || st.Replicas[0].Lag != 30*time.Hour {
		t.Fatalf("replicas %+v", st.Replicas)
	}
	// Why a replica is late, as the notification tells it.
	late := []string{"", "", "never replicated (cairn replicate new)", "last replicated 2d1h ago (2026-12-05T11:00:00Z), its schedule runs every 1d; 0 B behind", "", "", ""}
	for i, rp := range st.Replicas {
		if rp.Late != late[i] {
			t.Errorf("replica %s: late %q, want %q", rp.Name, rp.Late, late[i])
		}
	}
}
