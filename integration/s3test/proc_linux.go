package s3test

import (
	"bytes"
	"fmt"
	"os"
	"strconv"
	"strings"
	"syscall"
	"time"
)

// sysProcAttr has the kernel kill weed if the test binary dies without
// running its cleanups (killed, or a -timeout panic). Strictly, the signal
// comes when the thread that started weed exits, which the Go runtime does
// only for a goroutine that exits locked to its thread.
func sysProcAttr() *syscall.SysProcAttr {
	return &syscall.SysProcAttr{Pdeathsig: syscall.SIGKILL}
}

// cpuTime is the CPU time (user and system) process pid has used, from
// /proc/PID/stat; ok is false if it cannot be read.
func cpuTime(pid int) (d time.Duration, ok bool) {
	b, err := os.ReadFile(fmt.Sprintf("/proc/%d/stat", pid))
	if err != nil {
		return 0, false
	}
	// The command name (field 2) is in parentheses and may hold
	// spaces; the fields after it are numbers.
	i := bytes.LastIndexByte(b, ')')
	if i < 0 {
		return 0, false
	}
	f := strings.Fields(string(b[i+1:]))
	if len(f) < 13 {
		return 0, false
	}
	utime, err1 := strconv.ParseInt(f[11], 10, 64) // field 14
	stime, err2 := strconv.ParseInt(f[12], 10, 64) // field 15
	if err1 != nil || err2 != nil {
		return 0, false
	}
	const ticks = 100 // USER_HZ: what /proc counts in, on every Linux architecture Go supports
	return time.Duration(utime+stime) * time.Second / ticks, true
}
