package appliance

import (
	"time"

	"github.com/cairnbackup/cairn/repo/wire"
)

// logRedated warns about every snapshot the wire server dated itself
// because the node's clock was off (limits: clock_skew), naming the
// node and how far its clock is off.
func (a *Appliance) logRedated(node string, list []wire.Redated) {
	for _, r := range list {
		a.log.Warn("node clock is off: the appliance dated the snapshot itself", "node", node, "snapshot", r.Snapshot.String(),
			"clock", r.Describe(), "node_time", r.NodeTime.UTC().Format(time.RFC3339), "time", r.Time.UTC().Format(time.RFC3339))
	}
}
