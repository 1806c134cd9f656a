package appliance

import (
	"github.com/cairnbackup/cairn/repo"
	"github.com/cairnbackup/cairn/repo/backup"
)

// streamUploader is the target of a push --stdin or --tar; the figures
// of its Added and Stats are those of the push's summary (the "N bytes
// added" the node reads, and the summary its snapshots list).
type streamUploader interface {
	backup.Target
	Stats() repo.SessionStats
}

// newStreamUploader returns the session itself, whose figures count what
// was new to the repository, or for an isolated node a counter of what
// the node sent (as if the repository had held nothing else): figures
// that depend on what other nodes stored would tell an isolated node
// whether they stored the same content. The repository stores each blob
// once either way.
func newStreamUploader(s *repo.Session, isolated bool) streamUploader {
	if isolated {
		return s.CountSent()
	}
	return s
}
