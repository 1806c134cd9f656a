package torture

import (
	"fmt"
	"os"
	"path/filepath"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/cairnbackup/cairn/repo/repotest/datagen"
)

// Load: several nodes push at once, over and over, on loopback, while
// drills and forget+prune run through the appliance. Every push must
// commit; afterwards every snapshot still listed restores bit-identical,
// check --read-data is clean, and the push throughput and the
// appliance's peak RSS are reported.

var loadSpec = datagen.Spec{SmallFiles: 40, Dumps: []int64{256 << 10}, RandomFiles: []int64{512 << 10}, Symlinks: 2, Hardlinks: 1}

func TestLoad(t *testing.T) {
	nodes := scale(3, 8)
	duration := time.Duration(scale(20, 180)) * time.Second
	e := newEnv(t)
	e.initRepo()
	var ns []*node
	for i := range nodes {
		ns = append(ns, newNode(t, fmt.Sprintf("node%d", i), "push, read"))
	}
	a := e.serve(nil, "", ns...)

	type pushed struct{ id, src, cp string }
	var (
		mu       sync.Mutex
		all      []pushed
		failures []string
		bytes    atomic.Int64
		pushes   atomic.Int64
		drills   atomic.Int64
		prunes   atomic.Int64
	)
	deadline := time.Now().Add(duration)
	start := time.Now()
	var wg sync.WaitGroup
	for i, n := range ns {
		wg.Add(1)
		go func() {
			defer wg.Done()
			src := filepath.Join(e.dir, n.Name)
			s := newSource(t, src, seed+uint64(i)*1000, loadSpec, 2<<20)
			for round := 0; time.Now().Before(deadline); round++ {
				if round > 0 {
					s.next()
				}
				cp := s.keep(filepath.Join(e.dir, fmt.Sprintf("%s-copy%d", n.Name, round)))
				r := a.push(n, nil, nil, "--json", "--plan", "load", src)
				sum, ok := summaryOf(r.stdout)
				mu.Lock()
				if r.code != 0 || !ok {
					failures = append(failures, fmt.Sprintf("%s round %d: %s", n.Name, round, r))
					mu.Unlock()
					return
				}
				all = append(all, pushed{sum.Snapshot, src, cp})
				mu.Unlock()
				bytes.Add(int64(sum.Summary.BytesRead))
				pushes.Add(1)
			}
		}()
	}
	// Drills of the newest snapshots, and retention with prune, while the
	// nodes push.
	var side sync.WaitGroup
	side.Add(2)
	go func() {
		defer side.Done()
		for i := 0; time.Now().Before(deadline); i++ {
			r := e.run(nil, nil, "drill", "latest", "--node", ns[i%len(ns)].Name)
			if r.code == 0 {
				drills.Add(1)
			} else if !strings.Contains(r.stderr, "no snapshot matches") {
				mu.Lock()
				failures = append(failures, "drill: "+r.String())
				mu.Unlock()
			}
		}
	}()
	go func() {
		defer side.Done()
		for time.Now().Before(deadline) {
			time.Sleep(2 * time.Second)
			r := e.run(nil, nil, "forget", "--keep-last", "3", "--prune", "--max-unused", "1%")
			if r.code != 0 {
				mu.Lock()
				failures = append(failures, "forget --prune: "+r.String())
				mu.Unlock()
				continue
			}
			prunes.Add(1)
			// Drop the copies of forgotten snapshots (disk space).
			list, err := parseSnapshots(e.ok("snapshots", "--json"))
			if err != nil {
				continue
			}
			mu.Lock()
			for i, p := range all {
				if _, ok := list[p.id]; !ok && p.cp != "" {
					os.RemoveAll(p.cp)
					all[i].cp = ""
				}
			}
			mu.Unlock()
		}
	}()
	wg.Wait()
	side.Wait()
	elapsed := time.Since(start)
	rss := peakRSS(a.Pid())
	for _, f := range failures {
		t.Error(f)
	}

	lost := 0
	if r := e.run(nil, nil, "check", "--read-data"); r.code != 0 {
		t.Errorf("check --read-data after the load: %s", r)
		lost++
	}
	list, err := parseSnapshots(e.ok("snapshots", "--json"))
	if err != nil {
		t.Fatal(err)
	}
	restored := 0
	for _, p := range all {
		if _, ok := list[p.id]; !ok {
			continue // forgotten on purpose
		}
		if p.cp == "" {
			t.Errorf("snapshot %s is listed but its copy was dropped", p.id[:8])
			lost++
			continue
		}
		if d := e.restoreCompare(p.id, p.src, p.cp); len(d) > 0 {
			t.Errorf("%s", strings.Join(d, "\n"))
			lost++
		}
		restored++
	}
	if restored < nodes {
		t.Errorf("only %d snapshots left to restore", restored)
	}
	mbps := float64(bytes.Load()) / 1e6 / elapsed.Seconds()
	note := fmt.Sprintf("%d nodes for %s: %d pushes committed (%.1f MB/s read and pushed in total), %d drills and %d forget+prune runs meanwhile; appliance peak RSS %s; %d snapshots kept, all restored bit-identical; check --read-data clean",
		nodes, elapsed.Round(time.Second), pushes.Load(), mbps, drills.Load(), prunes.Load(), mib(rss), restored)
	t.Log(note)
	record(fmt.Sprintf("load: %d nodes pushing, drills and prunes at once", nodes), int(pushes.Load()), int(pushes.Load()), min(lost, 1), note)
	if rss > rssBound {
		t.Errorf("the appliance's peak RSS under load is %s, above %s", mib(rss), mib(rssBound))
	}
}
