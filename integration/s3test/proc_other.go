//go:build !linux

package s3test

import (
	"syscall"
	"time"
)

func sysProcAttr() *syscall.SysProcAttr { return nil }

func cpuTime(int) (time.Duration, bool) { return 0, false }
