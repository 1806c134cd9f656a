package wire

import (
	"fmt"
	"time"

	"github.com/cairnbackup/cairn/repo/blob"
	"github.com/cairnbackup/cairn/repo/snapshot"
)

// Redated is a snapshot whose time the server set itself because the
// node's clock was off: a snapshot dated by a node is accepted only
// within [session start − skew, now + skew] by the server's clock.
type Redated struct {
	Snapshot blob.ID   // the snapshot as stored
	NodeTime time.Time // the time the node's record gave
	Time     time.Time // the time stored: the session's start
}

// Offset is how far the node's clock was off: positive when it was
// ahead of the server's.
func (r Redated) Offset() time.Duration { return r.NodeTime.Sub(r.Time) }

// Describe says how far and which way the node's clock was off: "3h5m
// ahead", "26297d behind".
func (r Redated) Describe() string { return DescribeOffset(r.Offset()) }

// DescribeOffset writes a clock offset as "3h5m0s ahead" or, beyond two
// days, "26297d12h ahead" ("behind" for a negative one).
func DescribeOffset(d time.Duration) string {
	way := "ahead"
	if d < 0 {
		d, way = -d, "behind"
	}
	if d < 48*time.Hour {
		return d.Round(time.Second).String() + " " + way
	}
	return fmt.Sprintf("%dd%dh %s", d/(24*time.Hour), d%(24*time.Hour)/time.Hour, way)
}

// now is the session's clock.
func (s *session) now() time.Time {
	if s.sc.Now != nil {
		return s.sc.Now()
	}
	return time.Now()
}

// boundTime keeps a node from dating a snapshot in the future (where
// retention would count it as the newest, and keep it over real ones) or
// long before the push: a time outside [session start − skew, now +
// skew] is replaced by the session's start. It returns the node's time
// and whether it was replaced. A backup is never refused for its clock.
func (s *session) boundTime(sn *snapshot.Snapshot) (time.Time, bool) {
	skew := s.sc.ClockSkew
	if skew <= 0 {
		skew = snapshot.ClockSkew
	}
	given := sn.Time
	if given.Before(s.start.Add(-skew)) || given.After(s.now().Add(skew)) {
		sn.Time = s.start
		return given, true
	}
	return given, false
}

// noteRedated records a snapshot the server dated, for the appliance's
// log (PushStats.Redated). The node learns of it from the Committed ID,
// which is not the hash of the record it sent.
func (s *session) noteRedated(id blob.ID, nodeTime time.Time, sn *snapshot.Snapshot) {
	s.mu.Lock()
	s.stats.Redated = append(s.stats.Redated, Redated{Snapshot: id, NodeTime: nodeTime, Time: sn.Time})
	s.mu.Unlock()
}
