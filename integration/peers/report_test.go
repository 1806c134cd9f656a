package main

import (
	"strings"
	"testing"
)

// A report of GNU time 1.9 -v, as written with -o: the command's exit
// line first, every line but that one indented with a tab.
const timeReport = "Command exited with non-zero status 3\n" +
	"\tCommand being timed: \"/usr/bin/kopia snapshot restore /src /t --write-sparse-files\"\n" +
	"\tUser time (seconds): 6.38\n" +
	"\tSystem time (seconds): 10.71\n" +
	"\tPercent of CPU this job got: 148%\n" +
	"\tElapsed (wall clock) time (h:mm:ss or m:ss): 1:02.57\n" +
	"\tAverage shared text size (kbytes): 0\n" +
	"\tAverage unshared data size (kbytes): 0\n" +
	"\tAverage stack size (kbytes): 0\n" +
	"\tAverage total size (kbytes): 0\n" +
	"\tMaximum resident set size (kbytes): 166336\n" +
	"\tAverage resident set size (kbytes): 0\n" +
	"\tMajor (requiring I/O) page faults: 18\n" +
	"\tMinor (reclaiming a frame) page faults: 88\n" +
	"\tVoluntary context switches: 3\n" +
	"\tInvoluntary context switches: 0\n" +
	"\tSwaps: 0\n" +
	"\tFile system inputs: 248\n" +
	"\tFile system outputs: 8\n" +
	"\tSocket messages sent: 0\n" +
	"\tSocket messages received: 0\n" +
	"\tSignals delivered: 0\n" +
	"\tPage size (bytes): 4096\n" +
	"\tExit status: 3\n"

func TestParseTimeReport(t *testing.T) {
	var m measurement
	if err := parseTimeReport(strings.NewReader(timeReport), &m); err != nil {
		t.Fatal(err)
	}
	if m.UserSeconds != 6.38 || m.SystemSeconds != 10.71 || m.MaxRSSKiB != 166336 || m.TimeElapsedSeconds != 62.57 {
		t.Errorf("parsed user %v s, system %v s, peak RSS %d KiB, elapsed %v s; want 6.38, 10.71, 166336, 62.57",
			m.UserSeconds, m.SystemSeconds, m.MaxRSSKiB, m.TimeElapsedSeconds)
	}
}

func TestParseTimeReportHours(t *testing.T) {
	var m measurement
	in := strings.Replace(timeReport, "1:02.57", "2:01:02.50", 1)
	if err := parseTimeReport(strings.NewReader(in), &m); err != nil {
		t.Fatal(err)
	}
	if m.TimeElapsedSeconds != 7262.5 {
		t.Errorf("elapsed %v s, want 7262.5", m.TimeElapsedSeconds)
	}
}

func TestParseTimeReportErrors(t *testing.T) {
	for _, tc := range []struct{ name, in, want string }{
		{"empty", "", "not a report of time -v"},
		{"command output only", "hello: world\n", "not a report of time -v"},
		{"no peak RSS", strings.Replace(timeReport, "\tMaximum resident set size (kbytes): 166336\n", "", 1), "not a report of time -v"},
		{"bad number", strings.Replace(timeReport, "User time (seconds): 6.38", "User time (seconds): 6,38", 1),
			`"\tUser time (seconds): 6,38": strconv.ParseFloat: parsing "6,38": invalid syntax`},
		{"bad clock", strings.Replace(timeReport, "1:02.57", "1:0x.57", 1),
			`"\tElapsed (wall clock) time (h:mm:ss or m:ss): 1:0x.57": strconv.ParseFloat: parsing "0x.57": invalid syntax`},
	} {
		t.Run(tc.name, func(t *testing.T) {
			var m measurement
			err := parseTimeReport(strings.NewReader(tc.in), &m)
			if err == nil || err.Error() != tc.want {
				t.Errorf("error %v, want %s", err, tc.want)
			}
		})
	}
}

func TestParseLoadAverage(t *testing.T) {
	for in, want := range map[string]string{
		"4.32 3.78 3.37 3/1043 123456\n": "4.32 3.78 3.37",
		"0.00 0.01 0.05 1/99 7":          "0.00 0.01 0.05",
		"4.32 3.78":                      "",
		"":                               "",
	} {
		if got := parseLoadAverage(in); got != want {
			t.Errorf("parseLoadAverage(%q) = %q, want %q", in, got, want)
		}
	}
}

func TestLabel(t *testing.T) {
	for _, tc := range []struct{ tool, version, want string }{
		{"restic", "restic 0.14.0 compiled with go1.19.8 on linux/amd64", "restic 0.14.0"},
		{"restic19", "restic 0.19.1 compiled with go1.26.8 on linux/amd64", "restic 0.19.1"},
		{"kopia", "kopia v0.23.1", "kopia 0.23.1"},
		{"borg", "borg 1.2.4", "borg 1.2.4"},
		{"cairn", "cairn dev (repository format 1, go1.26.8)", "cairn"},
		{"kopia", "kopia (version unknown: exec: no such file)", "kopia"},
		{"borg", "", "borg"},
	} {
		if got := label(tc.tool, tc.version); got != tc.want {
			t.Errorf("label(%q, %q) = %q, want %q", tc.tool, tc.version, got, tc.want)
		}
	}
}

// phaseRun is one tool's figures in one phase of the test report.
type phaseRun struct {
	wall   float64
	rssMiB int64
	status string // "" for ok
}

// testReport is a run of all five tools with round figures, so that
// every ratio can be checked by hand: borg's check and kopia's backup
// after mutation failed, restic 0.19.1's unchanged backup saved with
// warnings.
func testReport() *report {
	r := &report{
		Date: "2026-12-07 12:00 UTC",
		Machine: machine{CPUs: 2, CPUModel: "AMD EPYC", MemTotalBytes: 24 << 30, Kernel: "6.1.0",
			OS: "Debian GNU/Linux 12 (bookworm)", WorkFS: "ext4 (/dev/vda on /)", GoVersion: "go1.26.8"},
		LoadBefore: "1.00 0.50 0.25",
		LoadAfter:  "2.00 1.50 1.00",
		Tools:      []string{"restic", "borg", "restic19", "kopia", "cairn"},
		Labels: map[string]string{"restic": "restic 0.14.0", "borg": "borg 1.2.4", "restic19": "restic 0.19.1",
			"kopia": "kopia 0.23.1", "cairn": "cairn"},
		Versions: []string{"restic 0.14.0 compiled with go1.19.8 on linux/amd64", "borg 1.2.4",
			"restic 0.19.1 compiled with go1.26.8 on linux/amd64", "kopia v0.23.1", "cairn dev"},
		Dataset:       datasetInfo{Name: "datagen.Homelab", Summary: "the tree", Mutation: "the change", ApparentBytes: 1 << 30},
		CachesDropped: true,
		Results:       map[string]map[string]*measurement{},
		Restore:       map[string]*restoreResult{},
		Repo:          map[string]*repoSize{},
		Notes:         []string{"a note"},
	}
	runs := map[string]map[string]phaseRun{
		"restic": {phaseInit: {2, 86, ""}, phaseBackup: {16, 100, ""}, phaseUnchanged: {2, 100, ""}, phaseChanged: {3, 100, ""},
			phaseRestore: {10, 100, ""}, phaseCheck: {5, 100, ""}},
		"borg": {phaseInit: {0.5, 80, ""}, phaseBackup: {19, 80, ""}, phaseUnchanged: {3.5, 80, ""}, phaseChanged: {5, 80, ""},
			phaseRestore: {12, 80, ""}, phaseCheck: {9.8, 80, "failed"}},
		"restic19": {phaseInit: {2, 100, ""}, phaseBackup: {16, 150, ""}, phaseUnchanged: {2, 150, "warnings"}, phaseChanged: {2.5, 150, ""},
			phaseRestore: {8, 150, ""}, phaseCheck: {4, 150, ""}},
		"kopia": {phaseInit: {4, 230, ""}, phaseBackup: {12, 300, ""}, phaseUnchanged: {1, 300, ""}, phaseChanged: {2, 300, "failed"},
			phaseRestore: {16, 300, ""}, phaseCheck: {20, 300, ""}},
		"cairn": {phaseInit: {0.5, 150, ""}, phaseBackup: {9, 270, ""}, phaseUnchanged: {1.2, 270, ""}, phaseChanged: {1.5, 270, ""},
			phaseRestore: {4, 120, ""}, phaseCheck: {2, 270, ""}, phaseCat: {1.6, 2, ""}},
	}
	for tool, phases := range runs {
		r.Results[tool] = map[string]*measurement{}
		for phase, pr := range phases {
			m := &measurement{Tool: tool, Phase: phase, Command: []string{tool}, Status: "ok",
				WallSeconds: pr.wall, UserSeconds: pr.wall, SystemSeconds: 0.5, MaxRSSKiB: pr.rssMiB << 10}
			switch pr.status {
			case "failed":
				m.Status, m.Note, m.Log = "failed", "exit code 2", "/w/logs/"+tool+"-"+phase+".log"
			case "warnings":
				m.Status, m.Note, m.Log = "warnings", "exit code 3: saved with warnings (see log)", "/w/logs/"+tool+"-"+phase+".log"
			}
			if phase == phaseChanged || phase == phaseRestore {
				m.Bytes = 1<<30 + 1<<20
			}
			r.Results[tool][phase] = m
		}
	}
	r.Results["cairn"][phaseBackup].OtherCPUSeconds = 0.9 // 0.10 CPUs over 9 s
	sparse := map[string]int64{"restic": 300, "borg": 76, "restic19": 13, "kopia": 12, "cairn": 12}
	for tool, alloc := range sparse {
		r.Restore[tool] = &restoreResult{SparseFiles: 1, SparseApparentBytes: 300 << 20, SourceSparseAlloc: 12 << 20, RestoredSparseAlloc: alloc << 20}
		r.Repo[tool] = &repoSize{ApparentBytes: 870 << 20, AllocatedBytes: 870 << 20, Cache: "/w/cache/" + tool, CacheBytes: 8 << 20}
	}
	r.Repo["kopia"].ApparentBytes = 880 << 20
	r.Repo["cairn"].ApparentBytes = 861 << 20
	r.Repo["cairn"].Cache, r.Repo["cairn"].CacheBytes = "", 0
	kr := r.Restore["kopia"]
	kr.Differences, kr.Fields = 4, map[string]int{"mtime": 2, "hardlinks": 1, "xattr": 1}
	kr.Sample, kr.DiffFile = []string{"db: mtime 2026-02-19T04:02:27Z != 2026-08-06T03:15:42Z"}, "/w/logs/kopia-restore.diff"
	return r
}

func TestTimeRatio(t *testing.T) {
	r := testReport()
	for phase, want := range map[string]string{
		phaseInit:      "0.25 (restic 0.19.1)",
		phaseBackup:    "0.75 (kopia 0.23.1)",
		phaseUnchanged: "1.20 (kopia 0.23.1)",
		phaseChanged:   "0.60 (restic 0.19.1)", // kopia failed: not a candidate
		phaseRestore:   "0.50 (restic 0.19.1)",
		phaseCheck:     "0.50 (restic 0.19.1)",
		phaseCat:       "check ÷ cat: 1.25",
		"push":         "",
	} {
		if got := r.timeRatio(phase); got != want {
			t.Errorf("timeRatio(%s) = %q, want %q", phase, got, want)
		}
	}
	r.Results["cairn"][phaseCheck].Status = "failed"
	if got := r.timeRatio(phaseCheck); got != "" {
		t.Errorf("timeRatio(check) with cairn's check failed = %q, want empty", got)
	}
	if got := r.timeRatio(phaseCat); got != "" {
		t.Errorf("timeRatio(cat) with cairn's check failed = %q, want empty", got)
	}
}

func TestRSSRatio(t *testing.T) {
	r := testReport()
	for phase, want := range map[string]string{
		phaseInit:      "1.50",
		phaseBackup:    "1.80",
		phaseUnchanged: "1.80", // restic 0.19.1 saved with warnings: still measured
		phaseRestore:   "0.80",
		phaseCat:       "",
	} {
		if got := r.rssRatio(phase); got != want {
			t.Errorf("rssRatio(%s) = %q, want %q", phase, got, want)
		}
	}
}

// Without restic 0.19.1 and kopia, cairn is compared with the others.
func TestBestPeerFallback(t *testing.T) {
	r := testReport()
	r.Tools = []string{"restic", "borg", "cairn"}
	if got, want := r.timeRatio(phaseInit), "1.00 (borg 1.2.4)"; got != want {
		t.Errorf("timeRatio(init) = %q, want %q", got, want)
	}
	if got, want := r.timeRatio(phaseCheck), "0.40 (restic 0.14.0)"; got != want { // borg's failed
		t.Errorf("timeRatio(check) = %q, want %q", got, want)
	}
	md := r.markdown()
	if !strings.Contains(md, "| cairn s | CPU s | RSS MiB | cairn / best peer |\n") {
		t.Errorf("the table's header has an RSS ratio column without restic 0.19.1:\n%s", md)
	}
	r.Tools = []string{"restic", "borg"}
	if md := r.markdown(); strings.Contains(md, "best peer") {
		t.Errorf("a table without cairn has ratios:\n%s", md)
	}
}

func TestMarkdown(t *testing.T) {
	got := testReport().markdown()
	want := "### restic 0.14.0, borg 1.2.4, restic 0.19.1, kopia 0.23.1, cairn on datagen.Homelab (2026-12-07 12:00 UTC)\n" +
		"\n" +
		"- Machine: 2 CPUs (AMD EPYC), 24.0 GiB RAM, Linux 6.1.0, Debian GNU/Linux 12 (bookworm), work directory on ext4 (/dev/vda on /).\n" +
		"- Load average (1, 5, 15 min, as `uptime` shows it): 1.00 0.50 0.25 before the run, 2.00 1.50 1.00 after.\n" +
		"- Versions: restic 0.14.0 compiled with go1.19.8 on linux/amd64; borg 1.2.4; restic 0.19.1 compiled with go1.26.8 on linux/amd64; kopia v0.23.1; cairn dev.\n" +
		"- Dataset: the tree.\n" +
		"- Mutation: the change.\n" +
		"- Settings: restic 0.14: repository v2, `--compression auto`, cache in WORK/cache/restic; " +
		"borg: `repokey-blake2`, `--compression zstd,3`, `extract --sparse`, cache in WORK/cache/borg; " +
		"restic 0.19.1: repository v2, `--compression auto`, `restore --sparse`, cache in WORK/cache/restic19; " +
		"kopia: filesystem repository, global policy `--compression zstd`, `snapshot restore --write-sparse-files`, `content verify --full` as the check, config, cache and logs in WORK/cache/kopia; " +
		"cairn: defaults, passphrase (argon2id), no cache outside the repository.\n" +
		"- Page cache dropped (`sync; echo 3 > /proc/sys/vm/drop_caches`) before every phase.\n" +
		"- Other processes kept at most 0.10 CPUs busy on average during a timed phase (cairn backup); the machine was otherwise quiet.\n" +
		"\n" +
		"| phase | restic 0.14.0 s | CPU s | RSS MiB | borg 1.2.4 s | CPU s | RSS MiB | restic 0.19.1 s | CPU s | RSS MiB | kopia 0.23.1 s | CPU s | RSS MiB | cairn s | CPU s | RSS MiB | cairn / best peer | cairn / restic 0.19.1 RSS |\n" +
		"|---|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|\n" +
		"| init | 2.00 | 2.50 | 86 | 0.50 | 1.00 | 80 | 2.00 | 2.50 | 100 | 4.00 | 4.50 | 230 | 0.50 | 1.00 | 150 | 0.25 (restic 0.19.1) | 1.50 |\n" +
		"| first backup | 16.0 | 16.5 | 100 | 19.0 | 19.5 | 80 | 16.0 | 16.5 | 150 | 12.0 | 12.5 | 300 | 9.00 | 9.50 | 270 | 0.75 (kopia 0.23.1) | 1.80 |\n" +
		"| unchanged re-backup | 2.00 | 2.50 | 100 | 3.50 | 4.00 | 80 | 2.00 (w) | 2.50 | 150 | 1.00 | 1.50 | 300 | 1.20 | 1.70 | 270 | 1.20 (kopia 0.23.1) | 1.80 |\n" +
		"| backup after mutation | 3.00 | 3.50 | 100 | 5.00 | 5.50 | 80 | 2.50 | 3.00 | 150 | FAIL | 2.50 | 300 | 1.50 | 2.00 | 270 | 0.60 (restic 0.19.1) | 1.80 |\n" +
		"| full restore (latest) | 10.0 | 10.5 | 100 | 12.0 | 12.5 | 80 | 8.00 | 8.50 | 150 | 16.0 | 16.5 | 300 | 4.00 | 4.50 | 120 | 0.50 (restic 0.19.1) | 0.80 |\n" +
		"| check, all data read | 5.00 | 5.50 | 100 | FAIL | 10.3 | 80 | 4.00 | 4.50 | 150 | 20.0 | 20.5 | 300 | 2.00 | 2.50 | 270 | 0.50 (restic 0.19.1) | 1.80 |\n" +
		"| cold read of cairn's packs (`cat packs/*/*`) | – | | | – | | | – | | | – | | | 1.60 | 2.10 | 2 | check ÷ cat: 1.25 | |\n" +
		"| restore: differences from the source | 0 | | | 0 | | | 0 | | | 4 | | | 0 | | | | |\n" +
		"| restore: sparse files, MiB allocated | 300.0 | | | 76.0 | | | 13.0 | | | 12.0 | | | 12.0 | | | 1.00 (kopia 0.23.1) | |\n" +
		"| repository size, MiB (du -sb) | 870.0 | | | 870.0 | | | 870.0 | | | 880.0 | | | 861.0 | | | 0.99 (restic 0.19.1) | |\n" +
		"\n" +
		"Seconds are wall time; CPU s is user + system time and RSS MiB the peak resident set, from `/usr/bin/time -v`. (w): saved with warnings (see the log). " +
		"cairn / best peer: cairn's figure over the lowest of restic 0.19.1 and kopia 0.23.1 in that row (below 1: cairn is faster or smaller); in the row of the cold read, cairn check's time over the read's. " +
		"cairn / restic 0.19.1 RSS: cairn's peak RSS over restic 0.19.1's. " +
		"MB/s of every phase (the tree's apparent size, 1024 MiB before the mutation run, 1025 MiB at the end; the repository's size for checks) is in peers.json.\n" +
		"Sparse files: 1 sparse file(s), 300 MiB apparent, 12.0 MiB allocated in the source.\n" +
		"\n" +
		"- restic 0.14.0 restore: identical to the source (contents, types, modes, sizes, mtimes, symlink targets, xattrs, hardlink groups).\n" +
		"- borg 1.2.4 restore: identical to the source (contents, types, modes, sizes, mtimes, symlink targets, xattrs, hardlink groups).\n" +
		"- restic 0.19.1 restore: identical to the source (contents, types, modes, sizes, mtimes, symlink targets, xattrs, hardlink groups).\n" +
		"- kopia 0.23.1 restore: 4 differences (mtime 2, hardlinks 1, xattr 1), e.g. `db: mtime 2026-02-19T04:02:27Z != 2026-08-06T03:15:42Z`; all in /w/logs/kopia-restore.diff.\n" +
		"- cairn restore: identical to the source (contents, types, modes, sizes, mtimes, symlink targets, xattrs, hardlink groups).\n" +
		"- restic 0.14.0 repository: 870.0 MiB apparent, 870.0 MiB allocated; cache outside it: 8.0 MiB.\n" +
		"- borg 1.2.4 repository: 870.0 MiB apparent, 870.0 MiB allocated; cache outside it: 8.0 MiB.\n" +
		"- restic 0.19.1 repository: 870.0 MiB apparent, 870.0 MiB allocated; cache outside it: 8.0 MiB.\n" +
		"- kopia 0.23.1 repository: 880.0 MiB apparent, 870.0 MiB allocated; cache outside it: 8.0 MiB.\n" +
		"- cairn repository: 861.0 MiB apparent, 870.0 MiB allocated.\n" +
		"- a note\n" +
		"- borg 1.2.4 check: failed: exit code 2 (log: /w/logs/borg-check.log)\n" +
		"- restic 0.19.1 unchanged: warnings: exit code 3: saved with warnings (see log) (log: /w/logs/restic19-unchanged.log)\n" +
		"- kopia 0.23.1 changed: failed: exit code 2 (log: /w/logs/kopia-changed.log)\n"
	if got != want {
		gl, wl := strings.Split(got, "\n"), strings.Split(want, "\n")
		for i := range max(len(gl), len(wl)) {
			var g, w string
			if i < len(gl) {
				g = gl[i]
			}
			if i < len(wl) {
				w = wl[i]
			}
			if g != w {
				t.Errorf("line %d:\n got %q\nwant %q", i+1, g, w)
			}
		}
	}
}
