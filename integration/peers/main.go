// Command peers compares cairn with restic 0.14 and borg 1.2 (Debian's),
// restic 0.19.1 and kopia 0.23.1 on the same generated data in one run
// (issues 6 and 16): init, first backup, unchanged re-backup, backup
// after a mutation, full restore (compared with the source), full data
// check and repository size for every tool, a cold sequential read of
// cairn's pack files, plus cairn push over loopback SSH and FUSE
// sequential read. Every phase runs under /usr/bin/time -v with the page
// cache dropped before it (as root). It prints a Markdown table, with
// cairn's time over the best peer's per phase, and writes it to
// WORK/peers.md, with every raw figure in WORK/peers.json.
//
//	make bench-peers                        # builds restic 0.19.1 and kopia, then runs this
//	go run ./integration/peers --restic19 BIN --kopia BIN
//	go run ./integration/peers --tools restic,borg,cairn --quick
//
// See README.md beside this file for what each phase runs and how to read
// the table.
package main

import (
	"errors"
	"flag"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"slices"
	"strings"
	"time"
)

// The phases, in the order they run. Each tool's backups, restore and
// check run one tool after the other; the tree is mutated once, after
// every tool's unchanged backup.
const (
	phaseInit      = "init"
	phaseBackup    = "backup"    // first backup
	phaseUnchanged = "unchanged" // re-backup of the same tree
	phaseChanged   = "changed"   // backup after datagen.Mutate
	phaseRestore   = "restore"   // restore of the latest snapshot, compared with the source
	phaseCheck     = "check"     // full data check
	phaseCat       = "cat"       // cairn only: cat of every pack file, the cold read rate to judge check by
	phaseSize      = "size"      // repository size
	phasePush      = "push"      // cairn only: push to an appliance over loopback SSH
	phaseFuse      = "fuse"      // cairn only: sequential read through cairn mount
)

var allPhases = []string{phaseInit, phaseBackup, phaseUnchanged, phaseChanged, phaseRestore, phaseCheck, phaseCat, phaseSize, phasePush, phaseFuse}

// The tools: restic and borg are Debian's (restic 0.14, borg 1.2),
// restic19 and kopia the binaries --restic19 and --kopia name.
var allTools = []string{"restic", "borg", "restic19", "kopia", "cairn"}

// bestPeers are the tools whose best time per phase cairn is measured
// against ("cairn / best peer"); rssPeer is the one its peak RSS is.
var (
	bestPeers = []string{"restic19", "kopia"}
	rssPeer   = "restic19"
)

// Fixed seeds: the same tree and the same mutation on every run.
const (
	dataSeed   = 1
	mutateSeed = 2
)

type options struct {
	work       string
	tools      []string
	restic19   string // binary of restic 0.19.1
	kopia      string // binary of kopia 0.23.1
	phases     map[string]bool
	regenerate bool
	quick      bool
}

func main() {
	os.Exit(run())
}

func run() int {
	var o options
	var tools, phases string
	flag.StringVar(&o.work, "work", "/tmp/cairn-peers", "work directory: dataset, repositories, restores, logs and results")
	flag.StringVar(&tools, "tools", strings.Join(allTools, ","), "comma-separated tools to run: "+strings.Join(allTools, ", "))
	flag.StringVar(&o.restic19, "restic19", "", "the restic 0.19.1 binary (make bench-peers builds it into the cache and passes it)")
	flag.StringVar(&o.kopia, "kopia", "", "the kopia 0.23.1 binary (make bench-peers builds it into the cache and passes it)")
	flag.StringVar(&phases, "phases", strings.Join(allPhases, ","), "comma-separated phases to run: "+strings.Join(allPhases, ", "))
	flag.BoolVar(&o.regenerate, "regenerate", false, "generate the dataset again even if a generated one is there")
	flag.BoolVar(&o.quick, "quick", false, "use the small datagen.Small tree (a smoke run of well under a minute)")
	flag.Usage = func() {
		fmt.Fprintf(flag.CommandLine.Output(), "usage: go run ./integration/peers [flags]\n\nCompares cairn with restic, borg and kopia on the same generated data.\n\n")
		flag.PrintDefaults()
	}
	flag.Parse()
	if flag.NArg() > 0 {
		flag.Usage()
		return 2
	}
	var err error
	if o.tools, err = parseList(tools, allTools, "tool"); err != nil {
		fmt.Fprintln(os.Stderr, "peers:", err)
		return 2
	}
	list, err := parseList(phases, allPhases, "phase")
	if err != nil {
		fmt.Fprintln(os.Stderr, "peers:", err)
		return 2
	}
	o.phases = map[string]bool{}
	for _, p := range list {
		o.phases[p] = true
	}
	if o.work, err = filepath.Abs(o.work); err != nil {
		fmt.Fprintln(os.Stderr, "peers:", err)
		return 1
	}

	b, err := newBench(o)
	if err != nil {
		fmt.Fprintln(os.Stderr, "peers:", err)
		return 1
	}
	if err := b.run(); err != nil {
		fmt.Fprintln(os.Stderr, "peers:", err)
		return 1
	}
	md := b.report.markdown()
	fmt.Print("\n" + md)
	if err := b.writeResults(md); err != nil {
		fmt.Fprintln(os.Stderr, "peers:", err)
		return 1
	}
	fmt.Printf("\nwrote %s and %s\n", filepath.Join(o.work, "peers.md"), filepath.Join(o.work, "peers.json"))
	if b.report.Failures > 0 {
		fmt.Fprintf(os.Stderr, "peers: %d phase(s) failed; see the logs under %s\n", b.report.Failures, filepath.Join(o.work, "logs"))
		return 1
	}
	return 0
}

// parseList splits a comma-separated list and checks each name against
// valid, keeping valid's order.
func parseList(s string, valid []string, what string) ([]string, error) {
	seen := map[string]bool{}
	for _, name := range strings.Split(s, ",") {
		name = strings.TrimSpace(name)
		if name == "" {
			continue
		}
		if !slices.Contains(valid, name) {
			return nil, fmt.Errorf("unknown %s %q (known: %s)", what, name, strings.Join(valid, ", "))
		}
		seen[name] = true
	}
	var out []string
	for _, name := range valid {
		if seen[name] {
			out = append(out, name)
		}
	}
	if len(out) == 0 {
		return nil, fmt.Errorf("no %s given", what)
	}
	return out, nil
}

// bench is one run: the options, the tools and what was measured.
type bench struct {
	o      options
	peers  []peer
	cairn  *cairnPeer // nil when cairn is not among the tools
	src    string     // the tree every tool backs up
	data   *dataset
	report *report
}

func newBench(o options) (*bench, error) {
	if err := os.MkdirAll(filepath.Join(o.work, "logs"), 0o755); err != nil {
		return nil, err
	}
	// Restores of an earlier run go now, long before this run's: on
	// ext4 without a journal, files created within about a minute of
	// many deletions cost more (the allocator skips recently freed
	// inodes), which would tax whichever tool restores next.
	if err := os.RemoveAll(filepath.Join(o.work, "restore")); err != nil {
		return nil, err
	}
	b := &bench{o: o, src: filepath.Join(o.work, "src")}
	b.report = &report{
		Date:       time.Now().UTC().Format("2006-01-02 15:04 MST"),
		Machine:    describeMachine(o.work),
		LoadBefore: loadAverage(),
		Tools:      o.tools,
		Labels:     map[string]string{},
		Results:    map[string]map[string]*measurement{},
		Restore:    map[string]*restoreResult{},
		Repo:       map[string]*repoSize{},
	}
	if err := ensurePackages(o); err != nil {
		return nil, err
	}
	b.report.CachesDropped, b.report.CacheNote = canDropCaches()
	if !b.report.CachesDropped {
		fmt.Println("note: the page cache is NOT dropped before phases:", b.report.CacheNote)
	}
	pw := filepath.Join(o.work, "password")
	if err := os.WriteFile(pw, []byte("peers benchmark passphrase\n"), 0o600); err != nil {
		return nil, err
	}
	repos := filepath.Join(o.work, "repos")
	for _, name := range o.tools {
		var p peer
		switch name {
		case "restic":
			p = newRestic(repos, filepath.Join(o.work, "cache", "restic"), b.src)
		case "borg":
			p = newBorg(repos, filepath.Join(o.work, "cache", "borg"), b.src)
		case "restic19":
			bin, err := binary(o.restic19, "--restic19", "restic 0.19.1")
			if err != nil {
				return nil, err
			}
			p = newRestic19(bin, repos, filepath.Join(o.work, "cache", "restic19"), b.src)
		case "kopia":
			bin, err := binary(o.kopia, "--kopia", "kopia 0.23.1")
			if err != nil {
				return nil, err
			}
			p = newKopia(bin, repos, filepath.Join(o.work, "cache", "kopia"), b.src)
		case "cairn":
			bin := filepath.Join(o.work, "cairn")
			if err := buildCairn(bin); err != nil {
				return nil, err
			}
			b.cairn = newCairn(bin, repos, pw, b.src)
			p = b.cairn
		}
		b.peers = append(b.peers, p)
		v := p.version()
		b.report.Versions = append(b.report.Versions, v)
		b.report.Labels[name] = label(name, v)
	}
	return b, nil
}

// run runs the selected phases in their order.
func (b *bench) run() error {
	o := b.o
	var err error
	if b.data, err = prepareDataset(o, b.src); err != nil {
		return err
	}
	b.report.Dataset = b.data.describe()
	fmt.Printf("dataset: %s\n", b.report.Dataset.Summary)

	if o.phases[phaseInit] {
		for _, p := range b.peers {
			if err := p.wipe(); err != nil {
				return err
			}
			b.measure(p.name(), phaseInit, p.initCmd(), 0)
		}
	}
	for _, p := range b.peers {
		if o.phases[phaseBackup] {
			b.measure(p.name(), phaseBackup, p.backupCmd("first"), b.data.bytes())
		}
		if o.phases[phaseUnchanged] {
			b.measure(p.name(), phaseUnchanged, p.backupCmd("unchanged"), b.data.bytes())
		}
	}
	if o.phases[phaseChanged] {
		ms, err := b.data.mutate()
		if err != nil {
			return err
		}
		b.report.Dataset.Mutation = fmt.Sprintf("datagen.Mutate seed %d: %d dump appended (1 MiB), %d dump with 4 KiB inserted in the middle, %d small files modified, %d added, %d deleted, %d touched",
			mutateSeed, ms.Appended, ms.Inserted, ms.Modified, ms.Added, ms.Deleted, ms.Touched)
		fmt.Println("mutated:", b.report.Dataset.Mutation)
		for _, p := range b.peers {
			b.measure(p.name(), phaseChanged, p.backupCmd("changed"), b.data.bytes())
		}
	}
	if o.phases[phaseRestore] {
		for _, p := range b.peers {
			if err := b.restore(p, b.data.walk); err != nil {
				return err
			}
		}
		// Every tool restored into a directory of its own, none
		// deleted before the last restore (see newBench).
		if err := os.RemoveAll(filepath.Join(o.work, "restore")); err != nil {
			return err
		}
	}
	if o.phases[phaseCheck] {
		for _, p := range b.peers {
			size, _ := du(p.repo(), true) // no repository: the check fails and says so
			b.measure(p.name(), phaseCheck, p.checkCmd(), size)
		}
	}
	if b.cairn != nil && o.phases[phaseCat] {
		b.catPacks()
	}
	if o.phases[phaseSize] {
		for _, p := range b.peers {
			rs, err := measureRepo(p)
			if err != nil {
				b.report.note(fmt.Sprintf("%s repository size: %v", p.name(), err))
				fmt.Printf("%-8s repository size: %v\n", p.name(), err)
				continue
			}
			b.report.Repo[p.name()] = rs
			fmt.Printf("%-8s repository: %s apparent, %s allocated; cache outside it: %s\n",
				p.name(), mib(rs.ApparentBytes), mib(rs.AllocatedBytes), mib(rs.CacheBytes))
		}
	}
	if b.cairn != nil && o.phases[phasePush] {
		if err := b.push(); err != nil {
			b.report.note("cairn push: " + err.Error())
			fmt.Println("cairn push:", err)
			b.report.Failures++
		}
	}
	if b.cairn != nil && o.phases[phaseFuse] {
		if err := b.fuseRead(); err != nil {
			var skip skipError
			if errors.As(err, &skip) {
				b.report.note("FUSE sequential read skipped: " + skip.why)
				fmt.Println("fuse: skipped:", skip.why)
			} else {
				b.report.note("FUSE sequential read failed: " + err.Error())
				fmt.Println("fuse:", err)
				b.report.Failures++
			}
		}
	}
	b.report.LoadAfter = loadAverage()
	return nil
}

// catPacks times a plain sequential read of every pack file of cairn's
// repository, cold: the rate the disk gives, to judge check --read-data
// by.
func (b *bench) catPacks() {
	dir := b.cairn.repo()
	size, _ := du(filepath.Join(dir, "packs"), true) // no packs: cat fails and says so
	b.measure("cairn", phaseCat, command{args: []string{"sh", "-c", "cat packs/*/* > /dev/null"}, dir: dir}, size)
}

// binary checks the binary a flag names for a tool.
func binary(path, flagName, tool string) (string, error) {
	if path == "" {
		return "", fmt.Errorf("%s not given: make bench-peers builds %s into the cache and passes it; or leave it out of --tools", flagName, tool)
	}
	bin, err := exec.LookPath(path)
	if err != nil {
		return "", fmt.Errorf("%s %s: %w", flagName, path, err)
	}
	return filepath.Abs(bin)
}

// skipError says why a phase could not run here; it is not a failure.
type skipError struct{ why string }

func (s skipError) Error() string { return "skipped: " + s.why }
