package main

import (
	"bufio"
	"encoding/json"
	"fmt"
	"os"
	"path/filepath"
	"runtime"
	"slices"
	"strconv"
	"strings"
)

// report is everything a run measured; peers.json is this, encoded.
type report struct {
	Date          string                             `json:"date"`
	Machine       machine                            `json:"machine"`
	Tools         []string                           `json:"tools"`
	Versions      []string                           `json:"versions"`
	Dataset       datasetInfo                        `json:"dataset"`
	CachesDropped bool                               `json:"page_cache_dropped"`
	CacheNote     string                             `json:"page_cache_note,omitempty"`
	Results       map[string]map[string]*measurement `json:"results"` // by tool, then phase
	Restore       map[string]*restoreResult          `json:"restore"`
	Repo          map[string]*repoSize               `json:"repository"`
	Appliance     *applianceResult                   `json:"appliance,omitempty"`
	Fuse          *fuseResult                        `json:"fuse,omitempty"`
	Notes         []string                           `json:"notes,omitempty"`
	Failures      int                                `json:"failures"`
}

func (r *report) note(s string) { r.Notes = append(r.Notes, s) }

// machine describes where the run happened.
type machine struct {
	CPUs          int    `json:"cpus"`
	CPUModel      string `json:"cpu_model"`
	MemTotalBytes int64  `json:"mem_total_bytes"`
	Kernel        string `json:"kernel"`
	OS            string `json:"os"`
	GoVersion     string `json:"go_version"`
	WorkFS        string `json:"work_filesystem"`
}

func describeMachine(work string) machine {
	m := machine{CPUs: runtime.NumCPU(), GoVersion: runtime.Version()}
	m.CPUModel = procField("/proc/cpuinfo", "model name", ":")
	if kb, err := strconv.ParseInt(strings.TrimSuffix(procField("/proc/meminfo", "MemTotal", ":"), " kB"), 10, 64); err == nil {
		m.MemTotalBytes = kb << 10
	}
	if data, err := os.ReadFile("/proc/sys/kernel/osrelease"); err == nil {
		m.Kernel = strings.TrimSpace(string(data))
	}
	m.OS = strings.Trim(procField("/etc/os-release", "PRETTY_NAME", "="), `"`)
	m.WorkFS = filesystemOf(work)
	return m
}

// procField returns the value of the first line "key SEP value" of a
// file, trimmed, or "".
func procField(name, key, sep string) string {
	f, err := os.Open(name)
	if err != nil {
		return ""
	}
	defer f.Close()
	sc := bufio.NewScanner(f)
	for sc.Scan() {
		k, v, ok := strings.Cut(sc.Text(), sep)
		if ok && strings.TrimSpace(k) == key {
			return strings.TrimSpace(v)
		}
	}
	return ""
}

// filesystemOf names the file system type and device holding dir, from
// the longest mount point above it.
func filesystemOf(dir string) string {
	data, err := os.ReadFile("/proc/mounts")
	if err != nil {
		return ""
	}
	best, out := -1, ""
	for _, line := range strings.Split(string(data), "\n") {
		f := strings.Fields(line)
		if len(f) < 3 {
			continue
		}
		mp := f[1]
		if (dir == mp || strings.HasPrefix(dir, strings.TrimSuffix(mp, "/")+"/")) && len(mp) > best {
			best, out = len(mp), fmt.Sprintf("%s (%s on %s)", f[2], f[0], mp)
		}
	}
	return out
}

func (m machine) String() string {
	return fmt.Sprintf("%d CPUs (%s), %.1f GiB RAM, Linux %s, %s, work directory on %s",
		m.CPUs, m.CPUModel, float64(m.MemTotalBytes)/(1<<30), m.Kernel, m.OS, m.WorkFS)
}

// The rows of the table, in order, with their labels.
var rows = []struct{ phase, label string }{
	{phaseInit, "init"},
	{phaseBackup, "first backup"},
	{phaseUnchanged, "unchanged re-backup"},
	{phaseChanged, "backup after mutation"},
	{phaseRestore, "full restore (latest)"},
	{phaseCheck, "check, all data read"},
	{"push", "cairn push over loopback SSH, first"},
	{"push-unchanged", "cairn push over loopback SSH, unchanged"},
	{"fuse", "FUSE sequential read, largest file"},
}

// markdown renders the header, the table and the notes.
func (r *report) markdown() string {
	var sb strings.Builder
	w := func(format string, args ...any) { fmt.Fprintf(&sb, format, args...) }
	w("### %s on %s (%s)\n\n", strings.Join(r.Tools, ", "), r.Dataset.Name, r.Date)
	w("- Machine: %s.\n", r.Machine)
	w("- Versions: %s.\n", strings.Join(r.Versions, "; "))
	w("- Dataset: %s.\n", r.Dataset.Summary)
	if r.Dataset.Mutation != "" {
		w("- Mutation: %s.\n", r.Dataset.Mutation)
	}
	settings := map[string]string{
		"restic": "restic: repository v2, `--compression auto`, cache in WORK/cache/restic",
		"borg":   "borg: `repokey-blake2`, `--compression zstd,3`, `extract --sparse`, cache in WORK/cache/borg",
		"cairn":  "cairn: defaults, passphrase (argon2id), no cache outside the repository",
	}
	var set []string
	for _, t := range r.Tools {
		set = append(set, settings[t])
	}
	w("- Settings: %s.\n", strings.Join(set, "; "))
	if r.CachesDropped {
		w("- Page cache dropped (`sync; echo 3 > /proc/sys/vm/drop_caches`) before every phase.\n")
	} else {
		w("- **Page cache NOT dropped** before the phases (%s): figures are warm-cache.\n", r.CacheNote)
	}
	if other, phase, ok := r.mostOther(); ok {
		w("- Other processes kept at most %.2f CPUs busy on average during a timed phase (%s); %s.\n", other, phase, quiet(other))
	}
	w("\n")

	tools := r.Tools
	ratio := slices.Contains(tools, "cairn") && slices.Contains(tools, "restic")
	w("| phase |")
	for _, t := range tools {
		w(" %s s | MB/s | CPU s | RSS MiB |", t)
	}
	if ratio {
		w(" cairn/restic time | cairn/restic RSS |")
	}
	w("\n|---|")
	for range tools {
		w("---:|---:|---:|---:|")
	}
	if ratio {
		w("---:|---:|")
	}
	w("\n")
	for _, row := range rows {
		has := false
		for _, t := range tools {
			if r.Results[t][row.phase] != nil {
				has = true
			}
		}
		if !has {
			continue
		}
		w("| %s |", row.label)
		for _, t := range tools {
			m := r.Results[t][row.phase]
			if m == nil {
				w(" – | | | |")
				continue
			}
			wall := seconds(m.WallSeconds)
			switch m.Status {
			case "failed":
				wall = "FAIL"
			case "warnings":
				wall += " (w)"
			}
			w(" %s | %s | %s | %.0f |", wall, rate(m.MBPerSecond), seconds(m.cpu()), float64(m.MaxRSSKiB)/1024)
		}
		if ratio {
			c, rs := r.Results["cairn"][row.phase], r.Results["restic"][row.phase]
			if usable(c) && usable(rs) {
				w(" %s | %s |", div(c.WallSeconds, rs.WallSeconds), div(float64(c.MaxRSSKiB), float64(rs.MaxRSSKiB)))
			} else {
				w(" | |")
			}
		}
		w("\n")
	}
	// Single figures per tool: in the tool's first column.
	single := func(label string, val func(t string) (string, float64, bool), showRatio bool) {
		has := false
		for _, t := range tools {
			if _, _, ok := val(t); ok {
				has = true
			}
		}
		if !has {
			return
		}
		w("| %s |", label)
		for _, t := range tools {
			s, _, ok := val(t)
			if !ok {
				s = "–"
			}
			w(" %s | | | |", s)
		}
		if ratio {
			_, c, okc := val("cairn")
			_, rs, okr := val("restic")
			if showRatio && okc && okr {
				w(" %s | |", div(c, rs))
			} else {
				w(" | |")
			}
		}
		w("\n")
	}
	single("restore: differences from the source", func(t string) (string, float64, bool) {
		rr := r.Restore[t]
		if rr == nil {
			return "", 0, false
		}
		if rr.Error != "" {
			return "not compared", 0, true
		}
		return strconv.Itoa(rr.Differences), float64(rr.Differences), true
	}, false)
	var sparseSrc string
	single("restore: sparse files, MiB allocated", func(t string) (string, float64, bool) {
		rr := r.Restore[t]
		if rr == nil || rr.Error != "" || rr.SparseFiles == 0 {
			return "", 0, false
		}
		sparseSrc = fmt.Sprintf("%d sparse file(s), %.0f MiB apparent, %.1f MiB allocated in the source",
			rr.SparseFiles, float64(rr.SparseApparentBytes)/(1<<20), float64(rr.SourceSparseAlloc)/(1<<20))
		return fmt.Sprintf("%.1f", float64(rr.RestoredSparseAlloc)/(1<<20)), float64(rr.RestoredSparseAlloc), true
	}, true)
	single("repository size, MiB (du -sb; ratio: size)", func(t string) (string, float64, bool) {
		rs := r.Repo[t]
		if rs == nil {
			return "", 0, false
		}
		return fmt.Sprintf("%.1f", float64(rs.ApparentBytes)/(1<<20)), float64(rs.ApparentBytes), true
	}, true)

	w("\n")
	w("MB/s is the tree's apparent size (%s before the mutation run, %s at the end) over wall time for backups, restores and pushes, the repository's size (du -sb) for checks, and the file's size for the FUSE read. CPU s is user + system time and RSS the peak resident set, from `/usr/bin/time -v`. (w): saved with warnings (see the log).\n",
		mibShort(r.Dataset.ApparentBytes), mibShort(r.endBytes()))
	if sparseSrc != "" {
		w("Sparse files: %s.\n", sparseSrc)
	}
	w("\n")
	for _, t := range tools {
		if rr := r.Restore[t]; rr != nil {
			switch {
			case rr.Error != "":
				w("- %s restore: not compared: %s\n", t, rr.Error)
			case rr.Differences == 0:
				w("- %s restore: identical to the source (contents, types, modes, sizes, mtimes, symlink targets, xattrs, hardlink groups).\n", t)
			default:
				w("- %s restore: %d differences %s, e.g. `%s`; all in %s.\n", t, rr.Differences, fieldSummary(rr.Fields), rr.Sample[0], rr.DiffFile)
			}
		}
	}
	for _, t := range tools {
		if rs := r.Repo[t]; rs != nil {
			w("- %s repository: %s apparent, %s allocated", t, mib(rs.ApparentBytes), mib(rs.AllocatedBytes))
			if rs.Cache != "" {
				w("; cache outside it: %s", mib(rs.CacheBytes))
			}
			w(".\n")
		}
	}
	if a := r.Appliance; a != nil {
		w("- cairn push: the appliance (`cairn serve`, embedded SSH server) used %.1f CPU s and %.0f MiB peak RSS over both pushes (start-up included); its repository: %s. The push rows show the client.\n",
			a.CPUSeconds, float64(a.MaxRSSKiB)/1024, mib(a.RepoBytes))
	}
	if f := r.Fuse; f != nil {
		w("- FUSE read: `%s` read with a 1 MiB buffer; CPU s and RSS are the `cairn mount` process's over its whole life (mount included).\n", f.File)
	}
	for _, n := range r.Notes {
		w("- %s\n", n)
	}
	for _, t := range tools {
		for _, row := range rows {
			if m := r.Results[t][row.phase]; m != nil && m.Status != "ok" {
				w("- %s %s: %s: %s", t, row.phase, m.Status, m.Note)
				if m.Log != "" {
					w(" (log: %s)", m.Log)
				}
				w("\n")
			}
		}
	}
	return sb.String()
}

// mostOther returns the highest average number of CPUs that other
// processes kept busy during one timed phase of a second or more, and
// which. Pushes and the FUSE read are left out: there the appliance or
// the mount, part of the work, counts as "other".
func (r *report) mostOther() (most float64, which string, ok bool) {
	for _, t := range r.Tools {
		for _, row := range rows {
			m := r.Results[t][row.phase]
			if m == nil || m.Command == nil || m.OtherCPUSeconds < 0 || m.WallSeconds < 1 ||
				strings.HasPrefix(row.phase, "push") || row.phase == "fuse" {
				continue
			}
			if cpus := m.OtherCPUSeconds / m.WallSeconds; !ok || cpus > most {
				most, which, ok = cpus, t+" "+row.phase, true
			}
		}
	}
	return most, which, ok
}

func quiet(cpus float64) string {
	if cpus < 0.2 {
		return "the machine was otherwise quiet"
	}
	return "**other work disturbed the figures** (other_cpu_seconds per phase in peers.json)"
}

// endBytes is the tree's size at the end: after the mutation, if any.
func (r *report) endBytes() int64 {
	for _, p := range []string{"push", phaseRestore, phaseChanged} {
		for _, t := range r.Tools {
			if m := r.Results[t][p]; m != nil && m.Bytes > 0 {
				return m.Bytes
			}
		}
	}
	return r.Dataset.ApparentBytes
}

func usable(m *measurement) bool { return m != nil && m.Status != "failed" }

func seconds(s float64) string {
	if s < 10 {
		return fmt.Sprintf("%.2f", s)
	}
	return fmt.Sprintf("%.1f", s)
}

func rate(mbs float64) string {
	switch {
	case mbs == 0:
		return "–"
	case mbs < 100:
		return fmt.Sprintf("%.1f", mbs)
	default:
		return fmt.Sprintf("%.0f", mbs)
	}
}

func div(a, b float64) string {
	if b == 0 {
		return "–"
	}
	return fmt.Sprintf("%.2f", a/b)
}

func mibShort(n int64) string { return fmt.Sprintf("%.0f MiB", float64(n)/(1<<20)) }

// writeResults writes the table to WORK/peers.md and the raw figures to
// WORK/peers.json.
func (b *bench) writeResults(md string) error {
	if err := os.WriteFile(filepath.Join(b.o.work, "peers.md"), []byte(md), 0o644); err != nil {
		return err
	}
	data, err := json.MarshalIndent(b.report, "", "  ")
	if err != nil {
		return err
	}
	return os.WriteFile(filepath.Join(b.o.work, "peers.json"), append(data, '\n'), 0o644)
}
