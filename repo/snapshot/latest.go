package snapshot

import "time"

// ClockSkew is how far ahead of the clock that judges it a snapshot's
// time may lie before the snapshot counts as future-dated. Clocks of
// machines that keep time differ by seconds; five minutes forgives a
// node whose clock drifts without letting it pass a later day off as now.
const ClockSkew = 5 * time.Minute

// FutureDated reports whether a snapshot taken at t lies in the future
// at now: more than [ClockSkew] after it. A future-dated snapshot never
// counts as newer than now: not as the latest one of its node, not for
// retention, not for staleness.
func FutureDated(t, now time.Time) bool { return t.After(now.Add(ClockSkew)) }

// Latest returns the index of the newest snapshot of list (sorted by
// [Sort], oldest first) that is not future-dated at now; when every one
// is, the newest of them; -1 for an empty list. Everything in cairn that
// picks "the latest" snapshot of a node, plan or source (the latest
// reference, the mount's latest link, parent selection, drills, status)
// picks it with this function.
func Latest(list []Entry, now time.Time) int {
	for i := len(list) - 1; i >= 0; i-- {
		if !FutureDated(list[i].Time, now) {
			return i
		}
	}
	return len(list) - 1
}
