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
	LoadBefore    string                             `json:"load_average_before"` // 1, 5, 15 min
	LoadAfter     string                             `json:"load_average_after"`
	Tools         []string                           `json:"tools"`
	Labels        map[string]string                  `json:"labels"` // by tool: "restic 0.19.1"
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
	{phaseCat, "cold read of cairn's packs (`cat packs/*/*`)"},
	{"push", "cairn push over loopback SSH, first"},
	{"push-unchanged", "cairn push over loopback SSH, unchanged"},
	{"fuse", "FUSE sequential read, largest file"},
}

// The settings of each tool, for the header.
var settings = map[string]string{
	"restic":   "restic 0.14: repository v2, `--compression auto`, cache in WORK/cache/restic",
	"borg":     "borg: `repokey-blake2`, `--compression zstd,3`, `extract --sparse`, cache in WORK/cache/borg",
	"restic19": "restic 0.19.1: repository v2, `--compression auto`, `restore --sparse`, cache in WORK/cache/restic19",
	"kopia":    "kopia: filesystem repository, global policy `--compression zstd`, `snapshot restore --write-sparse-files`, `content verify --full` as the check, config, cache and logs in WORK/cache/kopia",
	"cairn":    "cairn: defaults, passphrase (argon2id), no cache outside the repository",
}

// name is how the table names a tool: its label, or the tool.
func (r *report) name(tool string) string {
	if l := r.Labels[tool]; l != "" {
		return l
	}
	return tool
}

// candidates are the tools cairn is compared with: those of bestPeers
// in this run, or, with none of them, every other tool.
func (r *report) candidates() []string {
	var out []string
	for _, t := range r.Tools {
		if slices.Contains(bestPeers, t) {
			out = append(out, t)
		}
	}
	if len(out) > 0 {
		return out
	}
	for _, t := range r.Tools {
		if t != "cairn" {
			out = append(out, t)
		}
	}
	return out
}

// best returns the candidate with the lowest value, among those val
// has one for: the best peer.
func (r *report) best(val func(tool string) (float64, bool)) (tool string, v float64, ok bool) {
	for _, t := range r.candidates() {
		if x, has := val(t); has && (!ok || x < v) {
			tool, v, ok = t, x, true
		}
	}
	return tool, v, ok
}

// wall is a phase's wall time, when the phase did not fail.
func (r *report) wall(phase string) func(tool string) (float64, bool) {
	return func(t string) (float64, bool) {
		m := r.Results[t][phase]
		if !usable(m) {
			return 0, false
		}
		return m.WallSeconds, true
	}
}

// bestRatio renders cairn's value over the best peer's, naming the peer:
// "0.77 (kopia 0.23.1)"; "" when either is missing.
func (r *report) bestRatio(val func(tool string) (float64, bool)) string {
	c, okc := val("cairn")
	t, p, okp := r.best(val)
	if !okc || !okp {
		return ""
	}
	return fmt.Sprintf("%s (%s)", div(c, p), r.name(t))
}

// timeRatio is the "cairn / best peer" cell of a phase. In the row of
// the cold read of the packs it is check's time over the read's instead.
func (r *report) timeRatio(phase string) string {
	if phase == phaseCat {
		check, okc := r.wall(phaseCheck)("cairn")
		cat, okr := r.wall(phaseCat)("cairn")
		if !okc || !okr {
			return ""
		}
		return "check ÷ cat: " + div(check, cat)
	}
	return r.bestRatio(r.wall(phase))
}

// rssRatio is the cell of cairn's peak RSS over rssPeer's in a phase.
func (r *report) rssRatio(phase string) string {
	c, p := r.Results["cairn"][phase], r.Results[rssPeer][phase]
	if !usable(c) || !usable(p) {
		return ""
	}
	return div(float64(c.MaxRSSKiB), float64(p.MaxRSSKiB))
}

// markdown renders the header, the table and the notes.
func (r *report) markdown() string {
	var sb strings.Builder
	w := func(format string, args ...any) { fmt.Fprintf(&sb, format, args...) }
	tools := r.Tools
	var names []string
	for _, t := range tools {
		names = append(names, r.name(t))
	}
	w("### %s on %s (%s)\n\n", strings.Join(names, ", "), r.Dataset.Name, r.Date)
	w("- Machine: %s.\n", r.Machine)
	if r.LoadBefore != "" || r.LoadAfter != "" {
		w("- Load average (1, 5, 15 min, as `uptime` shows it): %s before the run, %s after.\n", orUnknown(r.LoadBefore), orUnknown(r.LoadAfter))
	}
	w("- Versions: %s.\n", strings.Join(r.Versions, "; "))
	w("- Dataset: %s.\n", r.Dataset.Summary)
	if r.Dataset.Mutation != "" {
		w("- Mutation: %s.\n", r.Dataset.Mutation)
	}
	var set []string
	for _, t := range tools {
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

	hasCairn := slices.Contains(tools, "cairn")
	bestCol := hasCairn && len(r.candidates()) > 0
	rssCol := hasCairn && slices.Contains(tools, rssPeer)
	w("| phase |")
	for _, t := range tools {
		w(" %s s | CPU s | RSS MiB |", r.name(t))
	}
	if bestCol {
		w(" cairn / best peer |")
	}
	if rssCol {
		w(" cairn / %s RSS |", r.name(rssPeer))
	}
	w("\n|---|")
	for range tools {
		w("---:|---:|---:|")
	}
	if bestCol {
		w("---:|")
	}
	if rssCol {
		w("---:|")
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
				w(" – | | |")
				continue
			}
			wall := seconds(m.WallSeconds)
			switch m.Status {
			case "failed":
				wall = "FAIL"
			case "warnings":
				wall += " (w)"
			}
			w(" %s | %s | %.0f |", wall, seconds(m.cpu()), float64(m.MaxRSSKiB)/1024)
		}
		if bestCol {
			w("%s", cell(r.timeRatio(row.phase)))
		}
		if rssCol {
			w("%s", cell(r.rssRatio(row.phase)))
		}
		w("\n")
	}
	// Single figures per tool: in the tool's first column.
	single := func(label string, show func(t string) (string, bool), val func(t string) (float64, bool)) {
		has := false
		for _, t := range tools {
			if _, ok := show(t); ok {
				has = true
			}
		}
		if !has {
			return
		}
		w("| %s |", label)
		for _, t := range tools {
			s, ok := show(t)
			if !ok {
				s = "–"
			}
			w(" %s | | |", s)
		}
		if bestCol {
			ratio := ""
			if val != nil {
				ratio = r.bestRatio(val)
			}
			w("%s", cell(ratio))
		}
		if rssCol {
			w(" |")
		}
		w("\n")
	}
	single("restore: differences from the source", func(t string) (string, bool) {
		rr := r.Restore[t]
		if rr == nil {
			return "", false
		}
		if rr.Error != "" {
			return "not compared", true
		}
		return strconv.Itoa(rr.Differences), true
	}, nil)
	sparse := func(t string) (float64, bool) {
		rr := r.Restore[t]
		if rr == nil || rr.Error != "" || rr.SparseFiles == 0 {
			return 0, false
		}
		return float64(rr.RestoredSparseAlloc), true
	}
	var sparseSrc string
	single("restore: sparse files, MiB allocated", func(t string) (string, bool) {
		v, ok := sparse(t)
		if !ok {
			return "", false
		}
		rr := r.Restore[t]
		sparseSrc = fmt.Sprintf("%d sparse file(s), %.0f MiB apparent, %.1f MiB allocated in the source",
			rr.SparseFiles, float64(rr.SparseApparentBytes)/(1<<20), float64(rr.SourceSparseAlloc)/(1<<20))
		return fmt.Sprintf("%.1f", v/(1<<20)), true
	}, sparse)
	size := func(t string) (float64, bool) {
		rs := r.Repo[t]
		if rs == nil {
			return 0, false
		}
		return float64(rs.ApparentBytes), true
	}
	single("repository size, MiB (du -sb)", func(t string) (string, bool) {
		v, ok := size(t)
		return fmt.Sprintf("%.1f", v/(1<<20)), ok
	}, size)

	w("\n")
	w("Seconds are wall time; CPU s is user + system time and RSS MiB the peak resident set, from `/usr/bin/time -v`. (w): saved with warnings (see the log).")
	if bestCol {
		var cands []string
		for _, t := range r.candidates() {
			cands = append(cands, r.name(t))
		}
		w(" cairn / best peer: cairn's figure over the lowest of %s in that row (below 1: cairn is faster or smaller)", strings.Join(cands, " and "))
		if r.Results["cairn"][phaseCat] != nil {
			w("; in the row of the cold read, cairn check's time over the read's")
		}
		w(".")
	}
	if rssCol {
		w(" cairn / %s RSS: cairn's peak RSS over %s's.", r.name(rssPeer), r.name(rssPeer))
	}
	w(" MB/s of every phase (the tree's apparent size, %s before the mutation run, %s at the end; the repository's size for checks) is in peers.json.\n",
		mibShort(r.Dataset.ApparentBytes), mibShort(r.endBytes()))
	if sparseSrc != "" {
		w("Sparse files: %s.\n", sparseSrc)
	}
	w("\n")
	for _, t := range tools {
		if rr := r.Restore[t]; rr != nil {
			switch {
			case rr.Error != "":
				w("- %s restore: not compared: %s\n", r.name(t), rr.Error)
			case rr.Differences == 0:
				w("- %s restore: identical to the source (contents, types, modes, sizes, mtimes, symlink targets, xattrs, hardlink groups).\n", r.name(t))
			default:
				w("- %s restore: %d differences %s, e.g. `%s`; all in %s.\n", r.name(t), rr.Differences, fieldSummary(rr.Fields), rr.Sample[0], rr.DiffFile)
			}
		}
	}
	for _, t := range tools {
		if rs := r.Repo[t]; rs != nil {
			w("- %s repository: %s apparent, %s allocated", r.name(t), mib(rs.ApparentBytes), mib(rs.AllocatedBytes))
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
				w("- %s %s: %s: %s", r.name(t), row.phase, m.Status, m.Note)
				if m.Log != "" {
					w(" (log: %s)", m.Log)
				}
				w("\n")
			}
		}
	}
	return sb.String()
}

// cell renders one table cell after a "|": " s |", or " |" when empty.
func cell(s string) string {
	if s == "" {
		return " |"
	}
	return " " + s + " |"
}

func orUnknown(s string) string {
	if s == "" {
		return "unknown"
	}
	return s
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
