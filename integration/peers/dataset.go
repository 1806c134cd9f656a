package main

import (
	"encoding/json"
	"fmt"
	"io/fs"
	"os"
	"path/filepath"
	"slices"
	"strconv"
	"strings"
	"time"
	"unicode"

	"github.com/cairnbackup/cairn/repo/repotest/datagen"
	"golang.org/x/sys/unix"
)

// dataset is the tree every tool backs up: a copy (WORK/src) of a
// generated tree kept pristine (WORK/pristine-NAME-seedN) so that reruns
// need not generate it again, although each run mutates its copy.
type dataset struct {
	name    string
	seed    uint64
	src     string
	stats   datagen.Stats   // what Generate made
	walk    []datagen.Entry // the source tree now
	mutated bool
}

// marker is written beside the pristine tree once it is complete.
type marker struct {
	Spec  string          `json:"spec"`
	Seed  uint64          `json:"seed"`
	Stats datagen.Stats   `json:"stats"`
	Walk  []datagen.Entry `json:"walk"`
}

// prepareDataset generates the pristine tree if needed and, when the
// first backup runs, copies it to src; otherwise src is used as a
// previous run left it.
func prepareDataset(o options, src string) (*dataset, error) {
	name, spec := "Homelab", datagen.Homelab
	if o.quick {
		name, spec = "Small", datagen.Small
	}
	d := &dataset{name: "datagen." + name, seed: dataSeed, src: src}
	pristine := filepath.Join(o.work, fmt.Sprintf("pristine-%s-seed%d", strings.ToLower(name), dataSeed))
	markerFile := pristine + ".json"

	var mk marker
	data, err := os.ReadFile(markerFile)
	if err == nil && !o.regenerate {
		err = json.Unmarshal(data, &mk)
		if err == nil && (mk.Spec != name || mk.Seed != dataSeed) {
			err = fmt.Errorf("%s is for %s seed %d", markerFile, mk.Spec, mk.Seed)
		}
	}
	if err != nil || o.regenerate {
		if err := removeAll(markerFile, pristine); err != nil {
			return nil, err
		}
		fmt.Printf("generating %s seed %d in %s\n", d.name, dataSeed, pristine)
		start := time.Now()
		st, err := datagen.Generate(pristine, spec, dataSeed)
		if err != nil {
			return nil, err
		}
		walk, err := datagen.Walk(pristine)
		if err != nil {
			return nil, err
		}
		mk = marker{Spec: name, Seed: dataSeed, Stats: st, Walk: walk}
		data, err := json.Marshal(mk)
		if err != nil {
			return nil, err
		}
		if err := os.WriteFile(markerFile, data, 0o644); err != nil {
			return nil, err
		}
		fmt.Printf("generated in %.1f s\n", time.Since(start).Seconds())
	} else {
		fmt.Printf("reusing %s seed %d in %s (--regenerate to make it again)\n", d.name, dataSeed, pristine)
	}
	d.stats = mk.Stats

	if o.phases[phaseBackup] {
		if err := os.RemoveAll(src); err != nil {
			return nil, err
		}
		if _, err := output(nil, "", "cp", "-a", pristine, src); err != nil {
			return nil, err
		}
		if d.walk, err = datagen.Walk(src); err != nil {
			return nil, err
		}
		if diff := datagen.Diff(mk.Walk, d.walk, true); diff != nil {
			return nil, fmt.Errorf("the copy %s differs from %s (%d differences, first: %s); run with --regenerate",
				src, pristine, len(diff), diff[0])
		}
		return d, nil
	}
	if _, err := os.Stat(src); err != nil {
		return nil, fmt.Errorf("no source tree from an earlier run (%w): run the %q phase", err, phaseBackup)
	}
	d.walk, err = datagen.Walk(src)
	if err != nil {
		return nil, err
	}
	d.mutated = datagen.Diff(mk.Walk, d.walk, true) != nil
	return d, nil
}

// mutate changes the source tree once with datagen.Mutate.
func (d *dataset) mutate() (datagen.MutateStats, error) {
	ms, err := datagen.Mutate(d.src, mutateSeed)
	if err != nil {
		return ms, err
	}
	d.mutated = true
	d.walk, err = datagen.Walk(d.src)
	return ms, err
}

// bytes is the apparent size of the source's regular files, each inode
// once: the base of MB/s for backups and restores.
func (d *dataset) bytes() int64 {
	var n int64
	seen := map[uint64]bool{}
	for _, e := range d.walk {
		if e.Type == "file" && !seen[e.Inode] {
			seen[e.Inode] = true
			n += e.Size
		}
	}
	return n
}

// datasetInfo describes the tree in the report.
type datasetInfo struct {
	Name          string `json:"name"`
	Seed          uint64 `json:"seed"`
	Path          string `json:"path"`
	Files         int    `json:"files"` // regular files, distinct inodes
	Dirs          int    `json:"dirs"`
	Symlinks      int    `json:"symlinks"`
	Hardlinks     int    `json:"hardlinks"` // extra names
	Others        int    `json:"others"`    // FIFOs and the like
	ApparentBytes int64  `json:"apparent_bytes"`
	DataBytes     int64  `json:"data_bytes"` // written by Generate: holes excluded
	Mutated       bool   `json:"mutated_before_run"`
	Summary       string `json:"summary"`
	Mutation      string `json:"mutation,omitempty"`
}

func (d *dataset) describe() datasetInfo {
	in := datasetInfo{Name: d.name, Seed: d.seed, Path: d.src, Mutated: d.mutated, DataBytes: d.stats.DataBytes}
	seen := map[uint64]bool{}
	for _, e := range d.walk {
		switch e.Type {
		case "file":
			if seen[e.Inode] {
				in.Hardlinks++
				continue
			}
			seen[e.Inode] = true
			in.Files++
			in.ApparentBytes += e.Size
		case "dir":
			if e.Path != "." {
				in.Dirs++
			}
		case "symlink":
			in.Symlinks++
		default:
			in.Others++
		}
	}
	in.Summary = fmt.Sprintf("%s seed %d: %d files, %d directories, %d symlinks, %d hardlinks, %d others; %s apparent, %s data (holes excluded)",
		in.Name, in.Seed, in.Files, in.Dirs, in.Symlinks, in.Hardlinks, in.Others, human(in.ApparentBytes), human(in.DataBytes))
	if d.mutated {
		in.Summary += "; already mutated by an earlier run"
	}
	return in
}

// restoreResult is how a tool's restore compares with the source.
type restoreResult struct {
	Root        string         `json:"root"`
	Differences int            `json:"differences"`
	Fields      map[string]int `json:"fields,omitempty"` // differences by field
	Sample      []string       `json:"sample,omitempty"`
	DiffFile    string         `json:"diff_file,omitempty"`
	// Sparse files of the source (fewer bytes allocated than their
	// size) and what they take on disk, there and restored.
	SparseFiles         int    `json:"sparse_files"`
	SparseApparentBytes int64  `json:"sparse_apparent_bytes"`
	SourceSparseAlloc   int64  `json:"source_sparse_allocated_bytes"`
	RestoredSparseAlloc int64  `json:"restored_sparse_allocated_bytes"`
	Error               string `json:"error,omitempty"`
}

// restore restores p's latest snapshot into a new directory, times it
// and compares the result with ref. The restores are removed together
// after the last one.
func (b *bench) restore(p peer, ref []datagen.Entry) error {
	target := filepath.Join(b.o.work, "restore", p.name())
	if err := os.MkdirAll(target, 0o755); err != nil {
		return err
	}
	rr := &restoreResult{Root: p.restoredRoot(target)}
	b.report.Restore[p.name()] = rr
	c, err := p.restoreCmd(target)
	if err != nil {
		m := &measurement{Tool: p.name(), Phase: phaseRestore, Status: "failed", Note: err.Error()}
		b.record(m)
		rr.Error = err.Error()
		return nil
	}
	m := b.measure(p.name(), phaseRestore, c, b.data.bytes())
	got, err := datagen.Walk(rr.Root)
	if err != nil {
		rr.Error = err.Error()
		if m.Status == "failed" {
			rr.Error = "the restore failed; " + rr.Error
		}
		fmt.Printf("%-8s restore: cannot compare: %v\n", p.name(), err)
		return nil
	}
	diff := datagen.Diff(ref, got, true)
	rr.Differences = len(diff)
	rr.Fields = classify(diff, ref, got)
	rr.Sample = diff[:min(len(diff), 20)]
	if len(diff) > 0 {
		rr.DiffFile = filepath.Join(b.o.work, "logs", p.name()+"-restore.diff")
		if err := os.WriteFile(rr.DiffFile, []byte(strings.Join(diff, "\n")+"\n"), 0o644); err != nil {
			return err
		}
	}
	if err := rr.sparse(b.src, ref); err != nil {
		return err
	}
	fmt.Printf("%-8s restore: %d differences%s; sparse files: %s allocated (source %s)\n",
		p.name(), rr.Differences, strings.TrimSuffix(" "+fieldSummary(rr.Fields), " "), mib(rr.RestoredSparseAlloc), mib(rr.SourceSparseAlloc))
	return nil
}

// sparse measures the source's sparse files and their restored copies.
func (rr *restoreResult) sparse(src string, ref []datagen.Entry) error {
	for _, e := range ref {
		if e.Type != "file" {
			continue
		}
		alloc, err := allocated(filepath.Join(src, filepath.FromSlash(e.Path)))
		if err != nil {
			return err
		}
		if alloc >= e.Size {
			continue
		}
		rr.SparseFiles++
		rr.SparseApparentBytes += e.Size
		rr.SourceSparseAlloc += alloc
		if got, err := allocated(filepath.Join(rr.Root, filepath.FromSlash(e.Path))); err == nil {
			rr.RestoredSparseAlloc += got
		}
	}
	return nil
}

// allocated returns the bytes a file takes on disk.
func allocated(name string) (int64, error) {
	var st unix.Stat_t
	if err := unix.Lstat(name, &st); err != nil {
		return 0, &fs.PathError{Op: "lstat", Path: name, Err: err}
	}
	return st.Blocks * 512, nil
}

// classify counts the lines of datagen.Diff by the field that differs:
// "missing" (only in the source), "extra" (only in the restore), or the
// field name (mode, mtime, sha256, xattr, hardlinks, …).
func classify(diff []string, a, b []datagen.Entry) map[string]int {
	if len(diff) == 0 {
		return nil
	}
	paths := map[string]bool{}
	for _, list := range [][]datagen.Entry{a, b} {
		for _, e := range list {
			paths[showPath(e.Path)] = true
		}
	}
	out := map[string]int{}
	for _, line := range diff {
		out[fieldOf(line, paths)]++
	}
	return out
}

func fieldOf(line string, paths map[string]bool) string {
	for i := 0; ; {
		j := strings.Index(line[i:], ": ")
		if j < 0 {
			return "other"
		}
		i += j
		if paths[line[:i]] {
			rest := line[i+2:]
			switch {
			case rest == "only in a":
				return "missing"
			case rest == "only in b":
				return "extra"
			}
			field, _, _ := strings.Cut(rest, " ")
			return field
		}
		i += 2
	}
}

// showPath is how datagen.Diff prints a path.
func showPath(p string) string {
	if strings.ContainsFunc(p, unicode.IsControl) {
		return strconv.Quote(p)
	}
	return p
}

// fieldSummary shows counts by field, largest first: "(mtime 40, nlink 2)".
func fieldSummary(fields map[string]int) string {
	if len(fields) == 0 {
		return ""
	}
	keys := make([]string, 0, len(fields))
	for k := range fields {
		keys = append(keys, k)
	}
	slices.SortFunc(keys, func(x, y string) int {
		if fields[x] != fields[y] {
			return fields[y] - fields[x]
		}
		return strings.Compare(x, y)
	})
	parts := make([]string, len(keys))
	for i, k := range keys {
		parts[i] = fmt.Sprintf("%s %d", k, fields[k])
	}
	return "(" + strings.Join(parts, ", ") + ")"
}

// human shows a size in GiB from 1 GiB, in MiB below.
func human(n int64) string {
	if n >= 1<<30 {
		return fmt.Sprintf("%.2f GiB", float64(n)/(1<<30))
	}
	return fmt.Sprintf("%.1f MiB", float64(n)/(1<<20))
}
