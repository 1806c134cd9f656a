// Package crashpoint lets crash-consistency tests kill the process at a
// named point in the write path. The environment variable
// CAIRN_CRASHPOINT names the point; when execution reaches it the process
// sends itself SIGKILL, exactly as a power cut or the OOM killer would end
// it, with no deferred functions or buffered writes run.
//
// With the variable unset (always, outside tests) Hit costs one atomic
// load.
package crashpoint

import (
	"os"
	"sync"
	"syscall"
)

// Env is the environment variable naming the point to crash at.
const Env = "CAIRN_CRASHPOINT"

var point = sync.OnceValue(func() string { return os.Getenv(Env) })

// Armed reports whether name is the configured crash point.
func Armed(name string) bool {
	p := point()
	return p != "" && p == name
}

// Hit kills the process if name is the configured crash point.
func Hit(name string) {
	if Armed(name) {
		syscall.Kill(os.Getpid(), syscall.SIGKILL)
		select {} // the signal is delivered before this returns control
	}
}
