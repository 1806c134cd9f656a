package integration

import (
	"os"
	"os/exec"
	"strconv"
	"strings"
	"time"
)

// procStatus returns fields of /proc/PID/status in MiB; ok is false once
// the process is gone.
func procStatus(pid int, fields ...string) (vals []float64, ok bool) {
	b, err := os.ReadFile("/proc/" + strconv.Itoa(pid) + "/status")
	if err != nil {
		return nil, false
	}
	vals = make([]float64, len(fields))
	for _, l := range strings.Split(string(b), "\n") {
		name, rest, found := strings.Cut(l, ":")
		if !found {
			continue
		}
		for i, f := range fields {
			if name == f {
				kb, _ := strconv.ParseFloat(strings.TrimSuffix(strings.TrimSpace(rest), " kB"), 64)
				vals[i] = kb / 1024
			}
		}
	}
	return vals, true
}

// rss is what a sampler saw of a process: its peak RSS (VmHWM) and the
// largest anonymous part of its RSS (RssAnon: heap and stacks, not the
// file pages it maps, such as badger's tables, which the kernel can
// take back), both in MiB.
type rss struct{ peak, anon float64 }

// sampleRSS follows process pid until stop is called or it ends. Both
// figures are read from /proc while it runs: ru_maxrss from wait4 is no
// use for this, since Linux carries the parent's high-water mark across
// fork and exec, so a child of a large test process reports at least
// the test process's own size.
func sampleRSS(pid int) (stop func() rss) {
	quit, done := make(chan struct{}), make(chan struct{})
	var r rss
	go func() {
		defer close(done)
		tick := time.NewTicker(5 * time.Millisecond)
		defer tick.Stop()
		for {
			v, ok := procStatus(pid, "VmHWM", "RssAnon")
			if ok {
				r.peak, r.anon = max(r.peak, v[0]), max(r.anon, v[1])
			}
			select {
			case <-quit:
				return
			case <-tick.C:
			}
		}
	}()
	return func() rss {
		close(quit)
		<-done
		return r
	}
}

// runPeakRSS runs cmd to its end and returns what sampleRSS saw of it.
func runPeakRSS(cmd *exec.Cmd) (rss, error) {
	if err := cmd.Start(); err != nil {
		return rss{}, err
	}
	stop := sampleRSS(cmd.Process.Pid)
	err := cmd.Wait()
	return stop(), err
}

// vmHWM returns the peak RSS of a running process so far, in MiB.
func vmHWM(pid int) float64 {
	v, ok := procStatus(pid, "VmHWM")
	if !ok {
		return -1
	}
	return v[0]
}
