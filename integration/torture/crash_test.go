package torture

import (
	"encoding/json"
	"fmt"
	"hash/fnv"
	"math/rand/v2"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/cairnbackup/cairn/integration/apptest"
)

// Crash consistency: each operation that writes (backup, push, forget,
// prune, repair index, drill) is killed with SIGKILL many times, at
// deliberate phase boundaries and at random offsets, on a repository
// that keeps growing. After every kill the repository must open (no
// stale lock), have no temporary leftovers, check clean with
// --read-data (after cairn repair index where the design allows it:
// prune and repair index), and restore every snapshot acknowledged so
// far bit-identical to the copy of its source kept when it was made. A
// snapshot the killed operation managed to write must be complete and
// match the source it was made from.

// killer chooses where to kill the next run of an operation. A run of
// the operation to its end, traced (CAIRN_CRASHPOINT_TRACE), lists every
// crash point it passed in order; a random offset into that list gives a
// point and a count (name:N) that kills the next run at about the same
// place. Deliberate points are tried in turn in between.
type killer struct {
	rng        *rand.Rand
	deliberate []string
	turn       int
	learned    []string // the trace of the last complete run
}

// choose returns the crash point for the next run ("" to run it whole,
// to learn its trace) and whether it is a deliberate point.
func (k *killer) choose() (string, bool) {
	if len(k.learned) == 0 {
		return "", false
	}
	k.turn++
	if len(k.deliberate) > 0 && k.turn%2 == 1 {
		p := k.deliberate[(k.turn/2)%len(k.deliberate)]
		n := count(k.learned, p)
		if p == "storage-half-written" { // armed only when named: one per pack written
			n = count(k.learned, "after-pack-stored")
		}
		if n == 0 {
			n = 1
		}
		return fmt.Sprintf("%s:%d", p, 1+k.rng.IntN(n)), true
	}
	i := k.rng.IntN(len(k.learned))
	return fmt.Sprintf("%s:%d", k.learned[i], count(k.learned[:i+1], k.learned[i])), false
}

func count(list []string, s string) int {
	n := 0
	for _, x := range list {
		if x == s {
			n++
		}
	}
	return n
}

func readTrace(path string) []string {
	b, _ := os.ReadFile(path)
	os.Remove(path)
	return strings.Fields(string(b))
}

// chain is one repository that an operation kind is killed on, run
// after run, with the snapshots acknowledged on it and their copies.
type chain struct {
	t           *testing.T
	e           *env
	kind        string
	allowRepair bool // the design allows cairn repair index after this kill
	rng         *rand.Rand
	src         *source
	acked       map[string]string // snapshot ID → kept copy of its source
	copies      int
	app         *appliance // running appliance of push chains, or nil
	lyra        *node
}

// tally is what a family counted, for its table row.
type tally struct {
	kills, detected, lost, survived, deliberate, repaired int
	points                                                map[string]bool
}

// newChain makes a chain on a new repository: a directory, or what mk
// makes (an object store) when it is not nil.
func newChain(t *testing.T, kind string, rng *rand.Rand, allowRepair bool, mk func(testing.TB) *env) *chain {
	if mk == nil {
		mk = newEnv
	}
	e := mk(t)
	e.initRepo()
	c := &chain{t: t, e: e, kind: kind, allowRepair: allowRepair, rng: rng, acked: map[string]string{}}
	c.src = newSource(t, filepath.Join(e.dir, "src"), rng.Uint64(), smallSpec, 2<<20+rng.IntN(1<<20))
	return c
}

// keep copies the source as it is now.
func (c *chain) keep() string {
	c.copies++
	return c.src.keep(filepath.Join(c.e.dir, fmt.Sprintf("copy%d", c.copies)))
}

// backup makes a new version of the source and backs it up to the end.
func (c *chain) backup() {
	c.t.Helper()
	c.src.next()
	cp := c.keep()
	out := c.e.ok("backup", "--json", "--node", "lyra", "--plan", "files", c.src.dir)
	s, ok := summaryOf(out)
	if !ok {
		c.t.Fatalf("backup: no summary: %s", out)
	}
	c.acked[s.Snapshot] = cp
}

// traceEnv returns the environment for a run killed at crash ("" for
// none) and traced into a new file.
func (c *chain) traceEnv(crash string) ([]string, string) {
	f, err := os.CreateTemp(c.e.dir, "trace-")
	if err != nil {
		c.t.Fatal(err)
	}
	f.Close()
	env := []string{"CAIRN_CRASHPOINT_TRACE=" + f.Name()}
	if crash != "" {
		env = append(env, "CAIRN_CRASHPOINT="+crash)
	}
	return env, f.Name()
}

// verify checks the repository after a kill described by what. pending
// is the copy of the source an interrupted backup or push was saving (a
// snapshot it managed to write must match it); mayGo are snapshots an
// interrupted forget was removing. It returns false (after reporting)
// when anything acknowledged is missing or differs or the repository is
// not consistent.
func (c *chain) verify(what, pending string, mayGo map[string]bool, tl *tally) bool {
	c.t.Helper()
	e := c.e
	fail := func(format string, args ...any) bool {
		c.t.Errorf("after %s: %s", what, fmt.Sprintf(format, args...))
		return false
	}
	r := e.run(nil, nil, "snapshots", "--json")
	if r.code != 0 {
		return fail("the repository does not open: %s", r)
	}
	if c.app == nil {
		// A killed drill's scratch directory is outside the repository:
		// the next drill removes it (checked by the drill family).
		if left := e.leftovers(c.kind != "drill"); len(left) > 0 {
			return fail("left behind after the next open: %v", left)
		}
	}
	if r := e.run(nil, nil, "check", "--read-data"); r.code != 0 {
		if !c.allowRepair || c.app != nil {
			return fail("check after the kill: %s", r)
		}
		tl.repaired++
		if r := e.run(nil, nil, "repair", "index"); r.code != 0 {
			return fail("repair index: %s", r)
		}
		if r := e.run(nil, nil, "check", "--read-data"); r.code != 0 {
			return fail("check after repair index: %s", r)
		}
		r = e.run(nil, nil, "snapshots", "--json")
	}
	list, err := parseSnapshots(r.stdout)
	if err != nil {
		return fail("%v", err)
	}
	ok := true
	for id, cp := range c.acked {
		if _, there := list[id]; !there {
			if mayGo[id] {
				delete(c.acked, id)
				continue
			}
			ok = fail("acknowledged snapshot %s is missing", id[:8])
			continue
		}
		if d := e.restoreCompare(id, c.src.dir, cp); len(d) > 0 {
			ok = fail("%s", strings.Join(d, "\n"))
		}
	}
	for id := range list {
		if _, known := c.acked[id]; known {
			continue
		}
		if pending == "" {
			ok = fail("snapshot %s appeared, but nothing was saving one", id[:8])
			continue
		}
		// The killed operation wrote its snapshot before it died: it
		// must be complete. From now on it is expected like the others.
		if d := e.restoreCompare(id, c.src.dir, pending); len(d) > 0 {
			ok = fail("the interrupted operation's snapshot: %s", strings.Join(d, "\n"))
		}
		c.acked[id] = pending
		pending = ""
	}
	return ok
}

// crashFamily is one operation kind killed over and over.
type crashFamily struct {
	kind        string
	deliberate  []string
	allowRepair bool
	kills       int // kills wanted
	// prepare readies a chain for the next run (unkilled work);
	// attempt runs the operation with the environment env and returns
	// whether it was acknowledged, what a snapshot it may have written
	// must match, and what it may have removed.
	prepare func(c *chain)
	attempt func(c *chain, env []string) (res result, pending string, mayGo map[string]bool)
	// after runs after each verified kill (drills: a full drill must
	// pass and leave nothing behind).
	after func(c *chain, tl *tally)
	// mkEnv makes the repositories (nil: directories); where is added
	// to the table's row names (" (object store)").
	mkEnv func(testing.TB) *env
	where string
}

func (f *crashFamily) run(t *testing.T) {
	h := fnv.New64a()
	h.Write([]byte(f.kind))
	rng := rand.New(rand.NewPCG(seed, h.Sum64()))
	tl := &tally{points: map[string]bool{}}
	k := &killer{rng: rng, deliberate: f.deliberate}
	var c *chain
	deadline := time.Now().Add(time.Duration(scale(60, 240)) * time.Second)
	for attempts := 0; tl.kills < f.kills && attempts < 4*f.kills+10; attempts++ {
		if time.Now().After(deadline) {
			t.Errorf("%s: only %d kills of %d before the time limit", f.kind, tl.kills, f.kills)
			break
		}
		if c == nil || c.copies >= 12 {
			c = newChain(t, f.kind, rng, f.allowRepair, f.mkEnv)
			c.backup()
			c.backup()
		}
		f.prepare(c)
		crash, deliberate := k.choose()
		env, tracePath := c.traceEnv(crash)
		res, pending, mayGo := f.attempt(c, env)
		trace := readTrace(tracePath)
		what := fmt.Sprintf("%s killed at %s", f.kind, crash)
		switch {
		case !res.killed && res.code == 0:
			// Not killed (the count was past the end of this run): it
			// ran to the end; learn its trace.
			if crash != "" {
				tl.survived++
			}
			k.learned = trace
			continue
		case !res.killed:
			t.Fatalf("%s: failed without being killed: %s", what, res)
		}
		tl.kills++
		tl.detected++ // the caller saw the operation fail, not succeed
		tl.points[strings.Split(crash, ":")[0]] = true
		if deliberate {
			tl.deliberate++
		}
		if !c.verify(what, pending, mayGo, tl) {
			tl.lost++
			c = nil // the repository is suspect: start afresh
			continue
		}
		if f.after != nil {
			f.after(c, tl)
		}
	}
	pts := slices.Sorted(func(yield func(string) bool) {
		for p := range tl.points {
			if !yield(p) {
				return
			}
		}
	})
	note := fmt.Sprintf("%d at deliberate points, %d at random offsets (%d more runs outlived their count); points: %s", tl.deliberate, tl.kills-tl.deliberate, tl.survived, strings.Join(pts, ", "))
	if tl.repaired > 0 {
		note += fmt.Sprintf("; %d needed cairn repair index (allowed)", tl.repaired)
	}
	record("crash: SIGKILL during "+f.kind+f.where, tl.kills, tl.detected, tl.lost, note)
	if tl.kills < f.kills {
		t.Errorf("%s: %d kills, want %d", f.kind, tl.kills, f.kills)
	}
}

var storagePoints = []string{"storage-half-written", "storage-before-rename", "storage-after-rename", "after-pack-stored", "index-before-pack-key", "before-snapshot-write", "after-snapshot-write"}

func TestCrash(t *testing.T) {
	for _, f := range crashFamilies(storagePoints) {
		t.Run(f.kind, func(t *testing.T) {
			t.Parallel()
			f.run(t)
		})
	}
	t.Run("push", func(t *testing.T) {
		t.Parallel()
		pushCrashes(t, nil, storagePoints, "")
	})
}

// crashFamilies returns the operations TestCrash kills, with storage the
// crash points of the backend's writes (they differ between a directory
// and an object store).
func crashFamilies(storage []string) []*crashFamily {
	return []*crashFamily{
		{
			kind: "backup", deliberate: storage, kills: scale(3, 40),
			prepare: func(c *chain) {},
			attempt: func(c *chain, env []string) (result, string, map[string]bool) {
				c.src.next()
				cp := c.keep()
				r := c.e.run(env, nil, "backup", "--json", "--node", "lyra", "--plan", "files", c.src.dir)
				if s, ok := summaryOf(r.stdout); ok && r.code == 0 {
					c.acked[s.Snapshot] = cp
				}
				return r, cp, nil
			},
		},
		{
			kind: "forget", deliberate: []string{"forget-before-delete", "forget-before-index"}, kills: scale(3, 30),
			prepare: func(c *chain) {
				for len(c.acked) < 4 {
					c.backup()
				}
			},
			attempt: func(c *chain, env []string) (result, string, map[string]bool) {
				keep := 1 + c.rng.IntN(2)
				gone := c.forgetSet(keep)
				r := c.e.run(env, nil, "forget", "--keep-last", fmt.Sprint(keep))
				if r.code == 0 {
					for id := range gone {
						delete(c.acked, id)
					}
				}
				return r, "", gone
			},
		},
		{
			kind: "prune", allowRepair: true, kills: scale(4, 40),
			deliberate: append([]string{"prune-after-repack", "prune-after-index", "prune-mid-delete"},
				pick(storage, "storage-before-rename", "storage-after-rename", "after-pack-stored", "index-before-pack-key", "storage-half-written")...),
			prepare: func(c *chain) {
				c.backup()
				gone := c.forgetSet(2)
				c.e.ok("forget", "--keep-last", "2")
				for id := range gone {
					delete(c.acked, id)
				}
			},
			attempt: func(c *chain, env []string) (result, string, map[string]bool) {
				return c.e.run(env, nil, "prune", "--max-unused", "0.1%"), "", nil
			},
		},
		{
			kind: "repair index", allowRepair: true, kills: scale(3, 30),
			deliberate: []string{"index-before-pack-key", "rebuild-before-swap", "rebuild-mid-swap"},
			prepare: func(c *chain) {
				if c.rng.IntN(3) == 0 {
					c.backup()
				}
			},
			attempt: func(c *chain, env []string) (result, string, map[string]bool) {
				return c.e.run(env, nil, "repair", "index"), "", nil
			},
		},
		{
			kind: "drill", kills: scale(3, 30),
			deliberate: append([]string{"restore-file-done"}, pick(storage, "storage-before-rename", "storage-after-rename")...),
			prepare:    func(c *chain) {},
			attempt: func(c *chain, env []string) (result, string, map[string]bool) {
				return c.e.run(env, nil, "drill", c.anyAcked()), "", nil
			},
			after: func(c *chain, tl *tally) {
				r := c.e.run(nil, nil, "drill", c.anyAcked())
				if r.code != 0 {
					c.t.Errorf("a drill after the kill failed: %s", r)
					tl.lost++
				}
				if left := c.e.leftovers(true); len(left) > 0 {
					c.t.Errorf("left behind after a killed drill and a complete one: %v", left)
					tl.lost++
				}
			},
		},
	}
}

// pick returns the points of want that are in have, in want's order.
func pick(have []string, want ...string) []string {
	var out []string
	for _, p := range want {
		if slices.Contains(have, p) {
			out = append(out, p)
		}
	}
	return out
}

// forgetSet returns the snapshots forget --keep-last keep would remove.
func (c *chain) forgetSet(keep int) map[string]bool {
	out := c.e.ok("forget", "--keep-last", fmt.Sprint(keep), "--dry-run", "--json")
	var groups []struct {
		Forget []struct{ ID string }
	}
	if err := json.Unmarshal([]byte(out), &groups); err != nil {
		c.t.Fatalf("forget --dry-run --json: %v: %s", err, out)
	}
	gone := map[string]bool{}
	for _, g := range groups {
		for _, s := range g.Forget {
			gone[s.ID] = true
		}
	}
	return gone
}

// anyAcked returns a random acknowledged snapshot's ID.
func (c *chain) anyAcked() string {
	ids := make([]string, 0, len(c.acked))
	for id := range c.acked {
		ids = append(ids, id)
	}
	slices.Sort(ids)
	return ids[c.rng.IntN(len(ids))]
}

// pushCrashes kills pushes from both ends: the node's cairn push while it
// streams blobs (the appliance must drop the session and stay healthy),
// and the appliance itself at every point a push passes on its side (the
// push must fail, never be acknowledged, and what the appliance wrote
// must be consistent when it is started again).
// mk makes the repository (nil: a directory), storage lists the
// backend's crash points and where is added to the table's row names.
func pushCrashes(t *testing.T, mk func(testing.TB) *env, storage []string, where string) {
	h := fnv.New64a()
	h.Write([]byte("push"))
	rng := rand.New(rand.NewPCG(seed, h.Sum64()))
	want := scale(2, 20)
	deadline := time.Now().Add(time.Duration(scale(60, 240)) * time.Second)

	c := newChain(t, "push", rng, false, mk)
	c.lyra = newNode(t, "lyra", "push, read")
	pushOnce := func(a *appliance, env []string) (result, string) {
		c.src.next()
		cp := c.keep()
		r := a.push(c.lyra, env, nil, "--json", "--plan", "files", c.src.dir)
		if s, ok := summaryOf(r.stdout); ok && r.code == 0 {
			c.acked[s.Snapshot] = cp
		}
		return r, cp
	}

	// The node killed.
	tl := &tally{points: map[string]bool{}}
	k := &killer{rng: rng, deliberate: []string{"wire-put-blob"}}
	a := c.e.serve(nil, "", c.lyra)
	c.app = a
	for attempts := 0; tl.kills < want && attempts < 4*want+10 && time.Now().Before(deadline); attempts++ {
		crash, deliberate := k.choose()
		env, tracePath := c.traceEnv(crash)
		r, _ := pushOnce(a, env)
		trace := readTrace(tracePath)
		if !r.killed {
			if r.code != 0 {
				t.Fatalf("push failed without being killed: %s", r)
			}
			if crash != "" {
				tl.survived++
			}
			k.learned = trace
			continue
		}
		tl.kills++
		tl.points[strings.Split(crash, ":")[0]] = true
		if deliberate {
			tl.deliberate++
		}
		a.WaitFor(`msg="push failed" node=lyra kind=cairn-wire`)
		tl.detected++
		if !c.verify("cairn push killed at "+crash, "", nil, tl) {
			tl.lost++
		}
	}
	a.Stop()
	c.app = nil
	record("crash: SIGKILL of cairn push (node side)"+where, tl.kills, tl.detected, tl.lost,
		fmt.Sprintf("%d at random blobs of the stream; the appliance logged each as a failed push and kept serving", tl.kills))
	if tl.kills < want {
		t.Errorf("node kills: %d, want %d", tl.kills, want)
	}

	// The appliance killed.
	ta := &tally{points: map[string]bool{}}
	k = &killer{rng: rng, deliberate: storage}
	for attempts := 0; ta.kills < want && attempts < 4*want+10 && time.Now().Before(deadline); attempts++ {
		crash, deliberate := k.choose()
		env, tracePath := c.traceEnv(crash)
		a := c.e.serve(env, "", c.lyra)
		r, cp := pushOnce(a, nil)
		if r.code == 0 {
			if !a.Dead() {
				a.Stop()
			}
			if crash != "" {
				ta.survived++
			}
			k.learned = readTrace(tracePath)
			continue
		}
		if !a.KilledBySIGKILL(30 * time.Second) {
			t.Fatalf("push failed but the appliance was not killed at %s: %s\n%s", crash, r, apptest.Tail(a.Log(), 30))
		}
		readTrace(tracePath)
		ta.kills++
		ta.detected++ // the push reported failure, not a snapshot
		ta.points[strings.Split(crash, ":")[0]] = true
		if deliberate {
			ta.deliberate++
		}
		if !c.verify("the appliance killed at "+crash+" during a push", cp, nil, ta) {
			ta.lost++
		}
	}
	pts := slices.Sorted(func(yield func(string) bool) {
		for p := range ta.points {
			if !yield(p) {
				return
			}
		}
	})
	record("crash: SIGKILL of the appliance during a push"+where, ta.kills, ta.detected, ta.lost,
		fmt.Sprintf("%d at deliberate points, %d at random offsets (%d more runs outlived their count); every interrupted push failed at the node; points: %s",
			ta.deliberate, ta.kills-ta.deliberate, ta.survived, strings.Join(pts, ", ")))
	if ta.kills < want {
		t.Errorf("appliance kills: %d, want %d", ta.kills, want)
	}
}
