package main

import (
	"bufio"
	"errors"
	"fmt"
	"io"
	"os"
	"os/exec"
	"path/filepath"
	"slices"
	"strconv"
	"strings"
	"syscall"
	"time"

	"golang.org/x/sys/unix"
)

// measurement is one tool's run of one phase.
type measurement struct {
	Tool    string   `json:"tool"`
	Phase   string   `json:"phase"`
	Command []string `json:"command"`
	Status  string   `json:"status"` // "ok", "warnings" (saved, with warnings) or "failed"
	Exit    int      `json:"exit_code"`
	// WallSeconds is measured here around the process (monotonic
	// clock); TimeElapsedSeconds is what /usr/bin/time printed.
	WallSeconds        float64 `json:"wall_seconds"`
	TimeElapsedSeconds float64 `json:"time_elapsed_seconds"`
	UserSeconds        float64 `json:"user_seconds"`
	SystemSeconds      float64 `json:"system_seconds"`
	MaxRSSKiB          int64   `json:"max_rss_kib"`
	// Bytes is what MB/s is computed from: the tree's apparent size for
	// backups, restores and pushes, the repository's size for checks,
	// the file's size for the FUSE read; 0 for none.
	Bytes       int64   `json:"bytes"`
	MBPerSecond float64 `json:"mb_per_second,omitempty"`
	CacheDrop   bool    `json:"page_cache_dropped"`
	// OtherCPUSeconds is the CPU time the whole machine spent during
	// the phase (/proc/stat) less the phase's own: other work competing
	// with it (this program's own share is tiny). -1: unknown.
	OtherCPUSeconds float64 `json:"other_cpu_seconds"`
	Log             string  `json:"log"`
	Note            string  `json:"note,omitempty"`
}

func (m *measurement) cpu() float64 { return m.UserSeconds + m.SystemSeconds }

func (m *measurement) setRate() {
	if m.Bytes > 0 && m.WallSeconds > 0 && m.Status != "failed" {
		m.MBPerSecond = float64(m.Bytes) / m.WallSeconds / 1e6
	}
}

// measure drops the page cache, runs c under /usr/bin/time -v and
// records the result under tool and phase.
func (b *bench) measure(tool, phase string, c command, bytes int64) *measurement {
	m := &measurement{Tool: tool, Phase: phase, Command: c.args, Bytes: bytes}
	m.Log = filepath.Join(b.o.work, "logs", tool+"-"+phase+".log")
	m.CacheDrop = dropCaches()
	busy := machineCPU()
	if err := runTimed(c, m); err != nil {
		m.Status, m.Note = "failed", err.Error()
	}
	m.setOther(busy)
	m.setRate()
	b.record(m)
	return m
}

// record stores m, counts a failure and prints one line.
func (b *bench) record(m *measurement) {
	if b.report.Results[m.Tool] == nil {
		b.report.Results[m.Tool] = map[string]*measurement{}
	}
	b.report.Results[m.Tool][m.Phase] = m
	line := fmt.Sprintf("%-8s %-14s %8.2f s  CPU %7.2f s  RSS %6.0f MiB", m.Tool, m.Phase, m.WallSeconds, m.cpu(), float64(m.MaxRSSKiB)/1024)
	if m.MBPerSecond > 0 {
		line += fmt.Sprintf("  %7.1f MB/s", m.MBPerSecond)
	}
	if m.Status != "ok" {
		line += "  " + strings.ToUpper(m.Status)
		if m.Note != "" {
			line += ": " + m.Note
		}
	}
	if m.Status == "failed" {
		b.report.Failures++
		if m.Log != "" {
			line += "\n" + tail(m.Log, 15)
		}
	}
	fmt.Println(line)
}

// runTimed runs c under /usr/bin/time -v, output to m.Log, and fills m.
func runTimed(c command, m *measurement) error {
	timeFile := strings.TrimSuffix(m.Log, ".log") + ".time"
	log, err := os.Create(m.Log)
	if err != nil {
		return err
	}
	defer log.Close()
	fmt.Fprintf(log, "$ %s\n", strings.Join(c.args, " "))
	args := append([]string{"-v", "-o", timeFile, "--"}, c.args...)
	cmd := exec.Command("/usr/bin/time", args...)
	cmd.Env = append(baseEnv(), c.env...)
	cmd.Dir = c.dir
	cmd.Stdout, cmd.Stderr = log, log
	start := time.Now()
	runErr := cmd.Run()
	m.WallSeconds = time.Since(start).Seconds()
	var ee *exec.ExitError
	switch {
	case errors.As(runErr, &ee):
		m.Exit = ee.ExitCode()
	case runErr != nil:
		return runErr
	}
	// The rusage of /usr/bin/time includes the child it waited for; it
	// stands in when time's report cannot be read.
	if ru, ok := cmd.ProcessState.SysUsage().(*syscall.Rusage); ok {
		m.UserSeconds = time.Duration(ru.Utime.Nano()).Seconds()
		m.SystemSeconds = time.Duration(ru.Stime.Nano()).Seconds()
		m.MaxRSSKiB = ru.Maxrss
	}
	if err := parseTime(timeFile, m); err != nil {
		m.Note = "rusage instead of /usr/bin/time: " + err.Error()
	}
	switch {
	case m.Exit == 0:
		m.Status = "ok"
	case slices.Contains(c.warnCodes, m.Exit):
		m.Status = "warnings"
		m.Note = fmt.Sprintf("exit code %d: saved with warnings (see log)", m.Exit)
	default:
		m.Status = "failed"
		m.Note = fmt.Sprintf("exit code %d", m.Exit)
	}
	return nil
}

// parseTime reads the report of GNU time -v in file name into m.
func parseTime(name string, m *measurement) error {
	f, err := os.Open(name)
	if err != nil {
		return err
	}
	defer f.Close()
	if err := parseTimeReport(f, m); err != nil {
		return fmt.Errorf("%s: %w", name, err)
	}
	return nil
}

// parseTimeReport reads a report of GNU time -v: user and system time,
// peak RSS and elapsed wall time. The command's own output may precede
// it; a report missing one of the four is an error.
func parseTimeReport(r io.Reader, m *measurement) error {
	found := 0
	sc := bufio.NewScanner(r)
	for sc.Scan() {
		key, val, ok := strings.Cut(strings.TrimSpace(sc.Text()), ": ")
		if !ok {
			continue
		}
		var err error
		switch {
		case key == "User time (seconds)":
			m.UserSeconds, err = strconv.ParseFloat(val, 64)
		case key == "System time (seconds)":
			m.SystemSeconds, err = strconv.ParseFloat(val, 64)
		case key == "Maximum resident set size (kbytes)":
			m.MaxRSSKiB, err = strconv.ParseInt(val, 10, 64)
		case strings.HasPrefix(key, "Elapsed (wall clock) time"):
			m.TimeElapsedSeconds, err = parseClock(val)
		default:
			continue
		}
		if err != nil {
			return fmt.Errorf("%q: %w", sc.Text(), err)
		}
		found++
	}
	if err := sc.Err(); err != nil {
		return err
	}
	if found < 4 {
		return errors.New("not a report of time -v")
	}
	return nil
}

// parseClock parses [h:]m:ss.cc into seconds.
func parseClock(s string) (float64, error) {
	var total float64
	for _, part := range strings.Split(s, ":") {
		v, err := strconv.ParseFloat(part, 64)
		if err != nil {
			return 0, err
		}
		total = total*60 + v
	}
	return total, nil
}

const dropCachesFile = "/proc/sys/vm/drop_caches"

// canDropCaches tries once to drop the page cache and says why not if it
// cannot.
func canDropCaches() (bool, string) {
	if os.Geteuid() != 0 {
		return false, "not running as root"
	}
	unix.Sync()
	if err := os.WriteFile(dropCachesFile, []byte("3\n"), 0); err != nil {
		return false, err.Error()
	}
	return true, ""
}

// dropCaches writes back dirty pages and drops the page cache, dentries
// and inodes; false if it could not.
func dropCaches() bool {
	unix.Sync()
	return os.WriteFile(dropCachesFile, []byte("3\n"), 0) == nil
}

// du returns the size of the tree at dir as du counts it (hardlinks
// once, directories included): apparent bytes (du -sb) or allocated
// bytes (du -sB1).
func du(dir string, apparent bool) (int64, error) {
	flag := "-sB1"
	if apparent {
		flag = "-sb"
	}
	out, err := output(nil, "", "du", flag, dir)
	if err != nil {
		return 0, err
	}
	fields := strings.Fields(out)
	if len(fields) == 0 {
		return 0, fmt.Errorf("du %s: no output", dir)
	}
	return strconv.ParseInt(fields[0], 10, 64)
}

// repoSize is a repository's size, and that of the cache the tool keeps
// outside it (restic's and borg's caches; cairn has none).
type repoSize struct {
	Path           string `json:"path"`
	ApparentBytes  int64  `json:"apparent_bytes"`  // du -sb
	AllocatedBytes int64  `json:"allocated_bytes"` // du -sB1
	Cache          string `json:"cache,omitempty"`
	CacheBytes     int64  `json:"cache_apparent_bytes,omitempty"`
}

func measureRepo(p peer) (*repoSize, error) {
	rs := &repoSize{Path: p.repo(), Cache: p.cache()}
	var err error
	if rs.ApparentBytes, err = du(p.repo(), true); err != nil {
		return nil, err
	}
	if rs.AllocatedBytes, err = du(p.repo(), false); err != nil {
		return nil, err
	}
	if rs.Cache != "" {
		if _, err := os.Stat(rs.Cache); err == nil {
			if rs.CacheBytes, err = du(rs.Cache, true); err != nil {
				return nil, err
			}
		}
	}
	return rs, nil
}

// tail returns the last n lines of a file, indented.
func tail(name string, n int) string {
	data, err := os.ReadFile(name)
	if err != nil {
		return "    (" + err.Error() + ")"
	}
	lines := strings.Split(strings.TrimRight(string(data), "\n"), "\n")
	if len(lines) > n {
		lines = lines[len(lines)-n:]
	}
	return "    " + strings.Join(lines, "\n    ")
}

func mib(n int64) string { return fmt.Sprintf("%.1f MiB", float64(n)/(1<<20)) }

// machineCPU returns the CPU seconds all CPUs have been busy since boot
// (user, nice, system, irq, softirq, steal), or -1.
func machineCPU() float64 {
	f, err := os.Open("/proc/stat")
	if err != nil {
		return -1
	}
	defer f.Close()
	sc := bufio.NewScanner(f)
	if !sc.Scan() {
		return -1
	}
	fields := strings.Fields(sc.Text())
	if len(fields) < 9 || fields[0] != "cpu" {
		return -1
	}
	var ticks int64
	for _, i := range []int{1, 2, 3, 6, 7, 8} { // user nice system [idle iowait] irq softirq steal
		v, err := strconv.ParseInt(fields[i], 10, 64)
		if err != nil {
			return -1
		}
		ticks += v
	}
	return float64(ticks) / clockTicks
}

// clockTicks is USER_HZ, the unit of /proc/stat: 100 on Linux.
const clockTicks = 100

// setOther sets OtherCPUSeconds from the machine's busy time before the
// phase.
func (m *measurement) setOther(before float64) {
	m.OtherCPUSeconds = -1
	if after := machineCPU(); before >= 0 && after >= 0 {
		m.OtherCPUSeconds = max(after-before-m.cpu(), 0)
	}
}

// loadAverage returns the 1, 5 and 15 minute load averages as uptime
// shows them ("0.52 0.58 0.59"), or "".
func loadAverage() string {
	data, err := os.ReadFile("/proc/loadavg")
	if err != nil {
		return ""
	}
	return parseLoadAverage(string(data))
}

// parseLoadAverage takes the first three fields of /proc/loadavg.
func parseLoadAverage(s string) string {
	f := strings.Fields(s)
	if len(f) < 3 {
		return ""
	}
	return strings.Join(f[:3], " ")
}
