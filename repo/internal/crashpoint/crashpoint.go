// Package crashpoint lets crash-consistency tests kill the process at a
// named point. The environment variable CAIRN_CRASHPOINT names the point,
// optionally with a count ("wire-put-blob:20" kills at the 20th time the
// point is reached); when execution reaches it the process sends itself
// SIGKILL, exactly as a power cut or the OOM killer would end it, with no
// deferred functions or buffered writes run.
//
// CAIRN_CRASHPOINT_TRACE names a file to which every point reached is
// appended as a line (its name), written before the point can kill. A
// torture test runs an operation once with a trace to learn which points
// it passes and how often, then kills later runs at a point and count
// drawn from that sequence: a random offset into the operation, reached
// deterministically.
//
// Points (the phase boundaries they mark):
//
//	storage-half-written   a pack's temporary file half written and synced
//	storage-before-rename  an object's temporary file complete, not yet linked to its name
//	storage-after-rename   an object durable under its name (directory synced)
//	s3-part-stored         a part of an S3 multipart upload stored, the upload not yet completed
//	after-pack-stored      a pack durable, its blobs not yet indexed
//	index-before-pack-key  a pack's blob keys written, its pack key not yet
//	before-snapshot-write  a commit's packs and index durable, the snapshot file not written
//	after-snapshot-write   the snapshot file durable, not yet cached in the index
//	forget-before-delete   a snapshot marked as being forgotten (index synced), its file not yet deleted
//	forget-before-index    a forgotten snapshot's file deleted, its index entry not yet
//	prune-after-repack     repacked packs durable and indexed, old packs still indexed
//	prune-after-index      dropped packs gone from the (synced) index, files not yet deleted
//	prune-mid-delete       after each pack file a prune deletes
//	rebuild-before-swap    a rebuilt index complete in index.new, not yet swapped in
//	rebuild-mid-swap       the old index moved to index.old, index.new not yet renamed
//	restore-file-done      a restored file written and verified (restores and drills)
//	wire-put-blob          a push client about to send a blob
//
// With neither variable set (always, outside tests) Hit costs one atomic
// load.
package crashpoint

import (
	"os"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"syscall"
)

// Env is the environment variable naming the point to crash at.
const Env = "CAIRN_CRASHPOINT"

// TraceEnv is the environment variable naming the file every point
// reached is appended to.
const TraceEnv = "CAIRN_CRASHPOINT_TRACE"

type point struct {
	name string
	at   int64 // the hit that kills; 1 without a count
	hits atomic.Int64
}

type config struct {
	kill  *point
	mu    sync.Mutex
	trace *os.File
}

var configured = sync.OnceValue(func() *config {
	v, tr := os.Getenv(Env), os.Getenv(TraceEnv)
	if v == "" && tr == "" {
		return nil
	}
	c := &config{}
	if v != "" {
		p := &point{name: v, at: 1}
		if name, n, ok := strings.Cut(v, ":"); ok {
			if k, err := strconv.ParseInt(n, 10, 64); err == nil && k > 0 {
				p.name, p.at = name, k
			}
		}
		c.kill = p
	}
	if tr != "" {
		// Unbuffered appends: a line written before a kill stays.
		c.trace, _ = os.OpenFile(tr, os.O_WRONLY|os.O_APPEND|os.O_CREATE, 0o600)
	}
	return c
})

// Armed reports whether name is the configured crash point.
func Armed(name string) bool {
	c := configured()
	return c != nil && c.kill != nil && c.kill.name == name
}

// Hit records that execution reached point name (in the trace, if one is
// configured) and kills the process if name is the configured crash point
// and this is the hit it counts to.
func Hit(name string) {
	c := configured()
	if c == nil {
		return
	}
	if c.trace != nil {
		c.mu.Lock()
		c.trace.WriteString(name + "\n")
		c.mu.Unlock()
	}
	p := c.kill
	if p == nil || p.name != name {
		return
	}
	if p.hits.Add(1) == p.at {
		syscall.Kill(os.Getpid(), syscall.SIGKILL)
		select {} // the signal ends the process before this blocks for long
	}
}
