package appliance

import (
	"context"
	"errors"
	"fmt"
	"strings"
	"syscall"
	"time"

	"github.com/cairnbackup/cairn/repo/blob"
	"github.com/cairnbackup/cairn/repo/check"
	"github.com/cairnbackup/cairn/repo/prune"
	"github.com/cairnbackup/cairn/repo/status"
	"github.com/cairnbackup/cairn/scheduler"
)

// What the appliance notifies (notifications.go sends it): each function
// here turns one thing that happened into events and pings.

// pushStarted pings the start of a push session: the node's check, and
// the node/plan's when the plan is known at the start (push --tar or
// --stdin with --plan; a cairn push names its plan only in its commits).
func (a *Appliance) pushStarted(node, plan string) {
	cfg := a.Config()
	a.notes.ping(cfg, node, pingStart, "")
	if plan != "" {
		a.notes.ping(cfg, node+"/"+plan, pingStart, "")
	}
}

// pushEnded notifies how a push session ended: snaps were saved, with
// plans[i] the plan of snaps[i]; plans may hold one more, the plan of a
// commit that failed. Each saved snapshot pings its node/plan's check
// and ends a missed-backup condition of it; a failure pings /fail and is
// an alert naming the error.
func (a *Appliance) pushEnded(node string, snaps []blob.ID, plans []string, err error) {
	cfg := a.Config()
	done := map[string]bool{}
	for i, id := range snaps {
		plan := ""
		if i < len(plans) {
			plan = plans[i]
		}
		a.notes.over(EventBackupLate, node, plan)
		a.notes.over(EventNeverSeen, node, plan)
		if plan != "" && !done[plan] {
			done[plan] = true
			a.notes.ping(cfg, node+"/"+plan, pingSuccess, "snapshot "+id.String()+" saved")
		}
	}
	if len(snaps) > 0 {
		a.notes.over(EventNeverSeen, node, "")
		a.notes.over(EventBackupLate, node, "")
	}
	if err == nil {
		if len(snaps) > 0 {
			a.notes.ping(cfg, node, pingSuccess, fmt.Sprintf("%d snapshots saved", len(snaps)))
		}
		return
	}
	plan := ""
	if len(plans) > len(snaps) {
		plan = plans[len(snaps)]
	}
	name := "node " + node
	if plan != "" {
		name += ", plan " + plan + ","
	}
	why := err.Error()
	a.notes.ping(cfg, node, pingFail, why)
	if plan != "" {
		a.notes.ping(cfg, node+"/"+plan, pingFail, why)
	}
	a.notes.alert(cfg, Event{Kind: EventPushFailed, Node: node, Plan: plan, Reason: why,
		Title:   "cairn: push from " + planName(node, plan) + " failed",
		Message: fmt.Sprintf("A push from %s failed: %s", name, why)})
	if errors.Is(err, syscall.ENOSPC) || strings.Contains(why, "no space left on device") {
		a.checkDisk()
	}
}

// drillFailed alerts a failed drill of group g.
func (a *Appliance) drillFailed(cfg *Config, g prune.Group, snap, report blob.ID, reason string) {
	a.notes.alert(cfg, Event{Kind: EventDrillFailed, Node: g.Node, Plan: g.Plan, Paths: g.PathList(), Snapshot: snap.String(), Report: report.String(), Reason: reason,
		Title:   "cairn: drill of " + planName(g.Node, g.Plan) + " failed",
		Message: fmt.Sprintf("The drill of %s (snapshot %s) failed: %s (cairn drills %s)", g, snap.Short(), reason, report.Short())})
}

// verifyFailed alerts the damage a verify run found.
func (a *Appliance) verifyFailed(cfg *Config, rep *check.Report) {
	reason := findingsReason(rep)
	a.notes.alert(cfg, Event{Kind: EventVerifyFailed, Job: "verify", Reason: reason,
		Title:   fmt.Sprintf("cairn: verification found %d problems", len(rep.Findings)),
		Message: fmt.Sprintf("Verification found %d problems:\n%s", len(rep.Findings), reason)})
}

// findingsReason is the reason of a verification's alert: its first
// findings.
func findingsReason(rep *check.Report) string {
	var lines []string
	for _, f := range rep.Findings[:min(len(rep.Findings), 5)] {
		lines = append(lines, f.String())
	}
	if n := len(rep.Findings) - len(lines); n > 0 {
		lines = append(lines, fmt.Sprintf("and %d more (cairn check --read-data)", n))
	}
	return strings.Join(lines, "\n")
}

// stale alerts the node/plans that missed a backup and what never
// backed up, each once per notifications.repeat while it lasts.
func (a *Appliance) stale(cfg *Config, st *status.Status) {
	for _, l := range st.Late {
		why := fmt.Sprintf("last backup %s ago (%s), expected every %s", shortDur(l.Age), l.Last.UTC().Format(time.RFC3339), shortDur(l.Expected))
		a.notes.condition(cfg, Event{Kind: EventBackupLate, Node: l.Node, Plan: l.Plan, Reason: why,
			Title: "cairn: " + l.Name() + " missed its backup", Message: l.Name() + ": " + why})
	}
	for _, n := range st.Never {
		why := "never backed up"
		if n.Expected > 0 {
			why += fmt.Sprintf(" (expected every %s)", shortDur(n.Expected))
		}
		a.notes.condition(cfg, Event{Kind: EventNeverSeen, Node: n.Node, Plan: n.Plan, Reason: why,
			Title: "cairn: " + n.Name() + " never backed up", Message: n.Name() + ": " + why})
	}
}

// replicasLate alerts the replicas that lag past their schedule, each
// once per notifications.repeat while it lasts, and ends the condition
// of the others; it returns "NAME (why)" of each late one.
func (a *Appliance) replicasLate(cfg *Config, st *status.Status) []string {
	var late []string
	for _, rp := range st.Replicas {
		if !rp.Overdue {
			a.notes.overReplica(EventReplicaLag, rp.Name)
			continue
		}
		late = append(late, rp.Name+" ("+rp.Late+")")
		a.notes.condition(cfg, Event{Kind: EventReplicaLag, Replica: rp.Name, Reason: rp.Late,
			Title: "cairn: replica " + rp.Name + " is late", Message: "Replica " + rp.Name + " (" + rp.Location + "): " + rp.Late})
	}
	return late
}

// jobFailed alerts a job that failed (returned an error).
// A replica's jobs (verify/NAME, drill/NAME, replicate/NAME) are told
// as the repository's verify and drill jobs are, naming the replica.
func (a *Appliance) jobFailed(cfg *Config, run scheduler.Run) {
	kind := EventJobFailed
	job, replica := run.Job, ""
	if isReplicaJob(cfg, run.Job) {
		job, replica, _ = strings.Cut(run.Job, "/")
	}
	switch job {
	case "verify":
		kind = EventVerifyFailed
	case "drill":
		kind = EventDrillFailed
	}
	a.notes.alert(cfg, Event{Kind: kind, Job: run.Job, Replica: replica, Reason: run.Error,
		Title:   "cairn: job " + run.Job + " failed",
		Message: fmt.Sprintf("The %s job failed: %s", run.Job, run.Error)})
}

// checkDisk alerts while the repository's file system has less free
// space than the index's reserve (pack writes are refused then), once
// per notifications.repeat.
func (a *Appliance) checkDisk() {
	free, reserve, err := a.space()
	if err != nil {
		return
	}
	if free >= reserve {
		a.notes.over(EventDiskLow, "", "")
		return
	}
	why := fmt.Sprintf("%s: %d MiB free, below the %d MiB kept for the index: pushes are refused until space is freed (cairn forget --prune)", a.r.Dir(), free>>20, reserve>>20)
	cfg := a.Config()
	a.notes.condition(cfg, Event{Kind: EventDiskLow, Reason: why, Title: "cairn: repository disk space below the reserve", Message: why})
}

// background runs what the appliance does on its own while it serves:
// the daily size sample for the status page's history (at start, then
// every hour) and the disk space check (every minute). stop ends it and
// waits.
func (a *Appliance) background() (stop func()) {
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan struct{})
	go func() {
		defer close(done)
		sample := func() {
			s, err := status.Sample(ctx, a.r, time.Now())
			if err == nil {
				err = a.r.PutSizeSample(s)
			}
			if err != nil && ctx.Err() == nil {
				a.log.Warn("size sample", "err", err)
			}
		}
		sample()
		a.checkDisk()
		minute := time.NewTicker(time.Minute)
		defer minute.Stop()
		for n := 1; ; n++ {
			select {
			case <-ctx.Done():
				return
			case <-minute.C:
			}
			a.checkDisk()
			if n%60 == 0 {
				sample()
			}
		}
	}()
	return func() { cancel(); <-done }
}
