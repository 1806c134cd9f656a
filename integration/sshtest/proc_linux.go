package sshtest

import (
	"fmt"
	"os"
	"strconv"
	"strings"
	"syscall"

	"golang.org/x/sys/unix"
)

// sysProcAttr has the kernel kill sshd if the test binary dies without
// running its cleanups (killed, or a -timeout panic). Strictly, the signal
// comes when the thread that started sshd exits, which the Go runtime does
// only for a goroutine that exits locked to its thread.
func sysProcAttr() *syscall.SysProcAttr {
	return &syscall.SysProcAttr{Pdeathsig: syscall.SIGKILL}
}

// connections holds pidfds of the per-connection processes of one sshd
// listener. A pidfd names its process even after the pid is reused.
type connections []int

// openConnections returns the listener's live child processes: sshd forks
// one per connection, which outlives the listener.
func openConnections(listener int) connections {
	data, err := os.ReadFile(fmt.Sprintf("/proc/%d/task/%d/children", listener, listener))
	if err != nil {
		return nil
	}
	var c connections
	for _, field := range strings.Fields(string(data)) {
		pid, err := strconv.Atoi(field)
		if err != nil {
			continue
		}
		fd, err := unix.PidfdOpen(pid, 0)
		if err != nil {
			continue // exited already
		}
		// The pid may have been reaped and reused before PidfdOpen; the
		// parent, read after it, tells.
		if parentOf(pid) != listener {
			unix.Close(fd)
			continue
		}
		c = append(c, fd)
	}
	return c
}

// parentOf returns the parent pid of pid, or -1.
func parentOf(pid int) int {
	data, err := os.ReadFile(fmt.Sprintf("/proc/%d/status", pid))
	if err != nil {
		return -1
	}
	for line := range strings.Lines(string(data)) {
		if v, ok := strings.CutPrefix(line, "PPid:"); ok {
			ppid, err := strconv.Atoi(strings.TrimSpace(v))
			if err != nil {
				return -1
			}
			return ppid
		}
	}
	return -1
}

// kill sends SIGKILL to every process in c that still runs.
func (c connections) kill() {
	for _, fd := range c {
		unix.PidfdSendSignal(fd, unix.SIGKILL, nil, 0) // ESRCH once it has exited
	}
}

// close releases the pidfds.
func (c connections) close() {
	for _, fd := range c {
		unix.Close(fd)
	}
}
