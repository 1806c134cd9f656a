// Package crashpoint lets crash-consistency tests kill the process at a
// named point. The environment variable CAIRN_CRASHPOINT names the point,
// optionally with a count ("wire-put-blob:20" kills at the 20th time the
// point is reached); when execution reaches it the process sends itself
// SIGKILL, exactly as a power cut or the OOM killer would end it, with no
// deferred functions or buffered writes run.
//
// With the variable unset (always, outside tests) Hit costs one atomic
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

type point struct {
	name string
	at   int64 // the hit that kills; 1 without a count
	hits atomic.Int64
}

var configured = sync.OnceValue(func() *point {
	v := os.Getenv(Env)
	if v == "" {
		return nil
	}
	p := &point{name: v, at: 1}
	if name, n, ok := strings.Cut(v, ":"); ok {
		if c, err := strconv.ParseInt(n, 10, 64); err == nil && c > 0 {
			p.name, p.at = name, c
		}
	}
	return p
})

// Armed reports whether name is the configured crash point.
func Armed(name string) bool {
	p := configured()
	return p != nil && p.name == name
}

// Hit kills the process if name is the configured crash point and this
// is the hit it counts to.
func Hit(name string) {
	p := configured()
	if p == nil || p.name != name {
		return
	}
	if p.hits.Add(1) == p.at {
		syscall.Kill(os.Getpid(), syscall.SIGKILL)
		select {} // the signal ends the process before this blocks for long
	}
}
