package status

import (
	"fmt"
	"time"

	"github.com/cairnbackup/cairn/repo"
)

// Replica is a replica's state: when it was last replicated, verified
// and drilled, and how far it lags behind the repository.
type Replica struct {
	Name     string        `json:"name"`
	Location string        `json:"location"`
	Schedule string        `json:"schedule,omitempty"`
	Interval time.Duration `json:"interval_ns,omitempty"` // between two runs of the schedule
	Delete   string        `json:"delete"`                // never, or after SPAN

	// The newest replication that ran (any result).
	LastRun     time.Time `json:"last_run,omitzero"`
	LastStatus  string    `json:"last_status,omitempty"` // ok, attention, failed
	LastError   string    `json:"last_error,omitempty"`
	LastSummary string    `json:"last_summary,omitempty"`
	// Replicated is when the newest replication that got through
	// listed the repository's snapshots: the replica holds what the
	// repository held then, but LagAtEnd. Zero: never replicated.
	Replicated time.Time `json:"replicated,omitzero"`
	Ended      time.Time `json:"ended,omitzero"`
	LagAtEnd   int64     `json:"-"`
	// LagBytes is what the replica lacks now: what that run left
	// behind, and the packs stored since it ended.
	LagBytes    int64         `json:"lag_bytes"`
	Lag         time.Duration `json:"lag_ns"` // since Replicated (0: never)
	StoredBytes int64         `json:"stored_bytes"`
	Overdue     bool          `json:"overdue"` // no replication got through within two intervals of the schedule
	// Late says why the replica is Overdue ("never replicated (…)" or
	// "last replicated … ago …"): status's attention and the
	// replica_lag notification; "" when it is not.
	Late string `json:"late,omitempty"`

	LastVerified  time.Time `json:"last_verified,omitzero"`
	VerifyStatus  string    `json:"verify_status,omitempty"`
	VerifySummary string    `json:"verify_summary,omitempty"`
	LastDrilled   time.Time `json:"last_drilled,omitzero"`
	DrillStatus   string    `json:"drill_status,omitempty"` // the newest drill of the replica: ok or failed
	DrillSummary  string    `json:"drill_summary,omitempty"`
}

// replicas fills in the replicas' lag and what needs attention: a
// replica that was never replicated or whose newest replication that
// got through is older than two intervals of its schedule, whose last
// replication left something behind, whose verification found damage,
// or whose drill failed. A replica job that failed outright is a failed
// job, which Gather lists already.
func replicas(r Stored, st *Status, o Options) error {
	for _, rp := range o.Replicas {
		if !rp.Replicated.IsZero() {
			rp.Lag = o.Now.Sub(rp.Replicated)
			rp.LagBytes = rp.LagAtEnd
			err := r.PackRecords(func(p repo.PackRecord) error {
				if p.Created.After(rp.Ended) {
					rp.LagBytes += p.Size
				}
				return nil
			})
			if err != nil {
				return err
			}
		} else {
			rp.LagBytes = st.StoredBytes
		}
		name := "replica " + rp.Name
		switch {
		case rp.Replicated.IsZero() && rp.Schedule != "":
			rp.Late = fmt.Sprintf("never replicated (cairn replicate %s)", rp.Name)
		case rp.Interval > 0 && rp.Lag > 2*rp.Interval:
			rp.Late = fmt.Sprintf("last replicated %s ago (%s), its schedule runs every %s; %s behind",
				round(rp.Lag), rp.Replicated.UTC().Format(time.RFC3339), round(rp.Interval), HumanBytes(uint64(rp.LagBytes)))
		}
		if rp.Late != "" {
			rp.Overdue = true
			st.Attention = append(st.Attention, name+": "+rp.Late)
		}
		// A job that failed outright has its own line ("job
		// replicate/NAME failed at …"); these ran and found something.
		if rp.LastStatus == "attention" {
			st.Attention = append(st.Attention, fmt.Sprintf("%s: the last replication at %s left objects behind: %s", name, rp.LastRun.UTC().Format(time.RFC3339), rp.LastSummary))
		}
		if rp.VerifyStatus == "attention" {
			st.Attention = append(st.Attention, fmt.Sprintf("%s: the last verification found damage: %s", name, rp.VerifySummary))
		}
		if rp.DrillStatus == "failed" {
			st.Attention = append(st.Attention, fmt.Sprintf("%s: the last drill failed: %s", name, rp.DrillSummary))
		}
		st.Replicas = append(st.Replicas, rp)
	}
	return nil
}
