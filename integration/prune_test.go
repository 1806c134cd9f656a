package integration

import (
	"encoding/json"
	"fmt"
	"os"
	"path/filepath"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
)

// backupVersions makes n snapshots of a tree that changes each time (a
// file replaced by new random data), keeping a copy of each version.
func backupVersions(t *testing.T, e *env, n int) (ids []string, copies []string) {
	src := filepath.Join(e.dir, "src")
	writeSource(t, src)
	for i := range n {
		os.WriteFile(filepath.Join(src, "var", "lib", "version.bin"), randomish(uint64(i+1), 1<<20), 0o644)
		bk := e.backupJSON("--node", "lyra", "--plan", "data", "--tag", fmt.Sprintf("v%d", i), src)
		ids = append(ids, bk.Snapshot)
		cp := filepath.Join(e.dir, fmt.Sprintf("copy%d", i))
		e.ok("restore", bk.Snapshot[:12]+":"+src, "--target", cp)
		copies = append(copies, filepath.Join(cp, "src"))
	}
	return ids, copies
}

func randomish(seed uint64, n int) []byte {
	b := make([]byte, n)
	x := seed*0x9E3779B97F4A7C15 | 1
	for i := range b {
		x ^= x << 13
		x ^= x >> 7
		x ^= x << 17
		b[i] = byte(x)
	}
	return b
}

func TestForgetPruneCLI(t *testing.T) {
	e := newEnv(t)
	e.ok("init")
	ids, copies := backupVersions(t, e, 4)
	// No policy anywhere: refused.
	if r := e.run(nil, "forget"); r.code != 2 || !strings.Contains(r.stderr, "forget: no policy") {
		t.Fatalf("forget without policy: %d %q", r.code, r.stderr)
	}
	// Dry run with --explain changes nothing.
	out := e.ok("forget", "--keep-last", "2", "--keep-tag", "v0", "--dry-run", "--explain")
	want := fmt.Sprintf("lyra/data [%s]: keep 3, would forget 1\n  keep   %s", filepath.Join(e.dir, "src"), ids[3][:8])
	if !strings.HasPrefix(out, want) || !strings.Contains(out, "(last 1)") || !strings.Contains(out, "(tag v0)") || !strings.Contains(out, "forget "+ids[1][:8]) {
		t.Fatalf("dry run:\n%s", out)
	}
	if n := len(e.snapshots()); n != 4 {
		t.Fatalf("dry run forgot: %d snapshots", n)
	}
	// Policies from the configuration.
	os.WriteFile(e.repo+".yaml", []byte("retention:\n  policies:\n    default: {keep_last: 2}\n"), 0o600)
	var res []struct {
		Node, Plan string
		Keep       []struct{ ID string }
		Forget     []struct{ ID string }
	}
	if err := json.Unmarshal([]byte(e.ok("forget", "--json")), &res); err != nil {
		t.Fatal(err)
	}
	if len(res) != 1 || len(res[0].Keep) != 2 || len(res[0].Forget) != 2 || res[0].Forget[0].ID != ids[1] || res[0].Forget[1].ID != ids[0] {
		t.Fatalf("forget: %+v", res)
	}
	var pr struct {
		PacksDeleted, PacksRepacked int
		BytesFreed                  int64 `json:"bytes_freed"`
	}
	before := dirBytes(t, filepath.Join(e.repo, "packs"))
	if err := json.Unmarshal([]byte(e.ok("prune", "--json")), &pr); err != nil {
		t.Fatal(err)
	}
	after := dirBytes(t, filepath.Join(e.repo, "packs"))
	// Two versions of a 1 MiB random file were dropped.
	if before-after < 2<<20-(64<<10) || before-after > 2<<20+(512<<10) {
		t.Fatalf("prune freed %d bytes on disk (%+v)", before-after, pr)
	}
	for i := 2; i < 4; i++ {
		dst := filepath.Join(e.dir, fmt.Sprintf("after%d", i))
		e.ok("restore", ids[i][:12], "--target", dst)
		repotestAssertSame(t, copies[i], filepath.Join(dst, strings.TrimPrefix(filepath.Join(e.dir, "src"), "/")))
	}
	e.ok("check", "--read-data")
}

func dirBytes(t *testing.T, dir string) int64 {
	var n int64
	filepath.Walk(dir, func(p string, fi os.FileInfo, err error) error {
		if err == nil && fi.Mode().IsRegular() {
			n += fi.Size()
		}
		return nil
	})
	return n
}

// A prune killed at each of its steps leaves a repository that checks
// clean (after an index repair at most) and restores every snapshot.
func TestPruneKilledAtEachStep(t *testing.T) {
	for _, point := range []string{"prune-after-repack", "prune-after-index", "prune-mid-delete", "storage-before-rename"} {
		t.Run(point, func(t *testing.T) {
			e := newEnv(t)
			e.ok("init", "--pack-size", "1MiB")
			ids, copies := backupVersions(t, e, 3)
			e.ok("forget", "--keep-last", "2")
			// Force repacking too: every partly used pack qualifies.
			r := e.run([]string{"CAIRN_CRASHPOINT=" + point}, "prune", "--max-unused", "0.1%")
			if r.code != -1 {
				t.Fatalf("prune was not killed at %s: exit %d %s", point, r.code, r.stderr)
			}
			if c := e.run(nil, "check", "--read-data"); c.code != 0 {
				e.ok("repair", "index")
				e.ok("check", "--read-data")
			}
			for i := 1; i < 3; i++ {
				dst := filepath.Join(e.dir, fmt.Sprintf("after%d", i))
				e.ok("restore", ids[i][:12], "--target", dst)
				repotestAssertSame(t, copies[i], filepath.Join(dst, strings.TrimPrefix(filepath.Join(e.dir, "src"), "/")))
			}
			// A prune run to the end then leaves nothing behind.
			e.ok("prune", "--max-unused", "0.1%")
			e.ok("check", "--read-data")
		})
	}
}

// Two nodes push continuously while prunes run; every committed snapshot
// restores.
func TestPruneWhilePushing(t *testing.T) {
	e := newEnv(t)
	e.ok("init", "--pack-size", "1MiB")
	lyra, vega := newNode(t, "lyra", "push"), newNode(t, "vega", "push")
	a := e.serve(lyra, vega)
	type pushed struct {
		id, copy, src string
	}
	var mu sync.Mutex
	var done []pushed
	var stop atomic.Bool
	var wg sync.WaitGroup
	for i, n := range []*node{lyra, vega} {
		wg.Add(1)
		go func() {
			defer wg.Done()
			src := filepath.Join(e.dir, n.Name)
			for round := 0; !stop.Load() && round < 30; round++ {
				os.MkdirAll(src, 0o755)
				// Old data goes away (garbage for prune), some stays.
				os.WriteFile(filepath.Join(src, "stable.bin"), randomish(uint64(100+i), 300<<10), 0o644)
				os.WriteFile(filepath.Join(src, "changing.bin"), randomish(uint64(1000*i+round), 400<<10), 0o644)
				r := a.push(n, nil, "--json", src)
				if r.code != 0 {
					t.Errorf("%s push %d: %s", n.Name, round, r.stderr)
					return
				}
				bk := parseBackupJSON(t, r.stdout)
				cp := filepath.Join(e.dir, fmt.Sprintf("%s-%d", n.Name, round))
				os.MkdirAll(cp, 0o755)
				for _, f := range []string{"stable.bin", "changing.bin"} {
					b, _ := os.ReadFile(filepath.Join(src, f))
					os.WriteFile(filepath.Join(cp, f), b, 0o644)
				}
				mu.Lock()
				done = append(done, pushed{id: bk.Snapshot, copy: cp, src: src})
				mu.Unlock()
			}
		}()
	}
	for range 4 {
		e.ok("forget", "--keep-last", "3")
		e.ok("prune", "--max-unused", "1%")
	}
	stop.Store(true)
	wg.Wait()
	e.ok("check", "--read-data")
	list := e.snapshots()
	kept := map[string]bool{}
	for _, s := range list {
		kept[s.ID] = true
	}
	restored := 0
	for _, p := range done {
		if !kept[p.id] {
			continue // forgotten on purpose
		}
		dst := filepath.Join(e.dir, "r-"+p.id[:8])
		e.ok("restore", p.id[:12]+":"+p.src, "--target", dst)
		for _, f := range []string{"stable.bin", "changing.bin"} {
			a, _ := os.ReadFile(filepath.Join(p.copy, f))
			b, _ := os.ReadFile(filepath.Join(dst, filepath.Base(p.src), f))
			if string(a) != string(b) {
				t.Fatalf("snapshot %s: %s differs", p.id[:8], f)
			}
		}
		restored++
	}
	if restored < 2 {
		t.Fatalf("only %d snapshots left to restore", restored)
	}
}
