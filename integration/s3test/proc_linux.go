package s3test

import "syscall"

// sysProcAttr has the kernel kill weed if the test binary dies without
// running its cleanups (killed, or a -timeout panic). Strictly, the signal
// comes when the thread that started weed exits, which the Go runtime does
// only for a goroutine that exits locked to its thread.
func sysProcAttr() *syscall.SysProcAttr {
	return &syscall.SysProcAttr{Pdeathsig: syscall.SIGKILL}
}
