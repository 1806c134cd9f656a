package torture

import (
	"encoding/json"
	"fmt"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/cairnbackup/cairn/integration/apptest"
	"github.com/cairnbackup/cairn/repo/blob"
	"github.com/cairnbackup/cairn/repo/snapshot"
	"github.com/cairnbackup/cairn/repo/tree"
	"github.com/cairnbackup/cairn/repo/wire"
)

// Future-dated commits: a push-only node commits ten snapshots dated
// 2097–2099 over the wire (issue 12, item 1). Before the appliance
// bounded snapshot times, `forget --keep-last 3 --keep-daily 7
// --keep-within 7d` then forgot every real snapshot of the node. The
// appliance must date those commits itself (and log how far the node's
// clock is off), and retention must keep every real snapshot.
func TestFutureDatedCommits(t *testing.T) {
	e := newEnv(t)
	e.initRepo()
	bob := newNode(t, "bob", "push")
	a := e.serve(nil, "", bob)
	src := newSource(t, filepath.Join(e.dir, "bob-src"), seed^0xf7, smallSpec, 1<<20)
	acked := map[string]string{}
	for i := range 4 {
		cp := src.keep(filepath.Join(e.dir, fmt.Sprintf("bob-copy%d", i)))
		r := a.push(bob, nil, nil, "--json", src.dir)
		s, ok := summaryOf(r.stdout)
		if r.code != 0 || !ok {
			t.Fatalf("bob's push: %s", r)
		}
		acked[s.Snapshot] = cp
		src.next()
	}

	// The hostile commits, each referring to a tree bob sent itself.
	empty, err := tree.Encode(nil, &tree.Tree{})
	if err != nil {
		t.Fatal(err)
	}
	root := blob.Hash(empty)
	rs, err := a.open(bob, "cairn-wire")
	if err != nil {
		t.Fatal(err)
	}
	defer rs.close()
	if _, err := rs.hello("bob"); err != nil {
		t.Fatal(err)
	}
	rs.frame(wire.TypePutBlob, (&wire.PutBlob{Handle: blob.Handle{ID: root, Type: blob.Tree}, Compression: wire.CompressionRaw, RawLength: uint32(len(empty)), Payload: empty}).Append(nil))
	sent := time.Now()
	future := time.Date(2097, 1, 1, 12, 0, 0, 0, time.UTC)
	var bogus []string
	for i := range 10 {
		rec, _, err := snapshot.Encode(&snapshot.Snapshot{Version: snapshot.Version, Time: future.AddDate(0, 0, 100*i), Node: "bob",
			Paths: []string{src.dir}, Tree: root})
		if err != nil {
			t.Fatal(err)
		}
		rs.frame(wire.TypeCommit, (&wire.Commit{Req: uint32(i + 1), Record: rec}).Append(nil))
		tp, body, err := rs.next(30 * time.Second)
		if err != nil || tp != wire.TypeCommitted {
			t.Fatalf("commit %d: %v %v %s", i, tp, err, rs.Stderr())
		}
		c, err := wire.DecodeCommitted(body)
		if err != nil {
			t.Fatal(err)
		}
		bogus = append(bogus, c.Snapshot.String())
	}
	rs.frame(wire.TypeBye, nil)
	if st, err := rs.exit(30 * time.Second); err != nil || st != 0 {
		t.Fatalf("session: exit %d %v", st, err)
	}

	// The appliance dated every commit by its own clock and said so.
	var list []struct {
		ID   string    `json:"id"`
		Time time.Time `json:"time"`
	}
	if err := json.Unmarshal([]byte(e.ok("snapshots", "--json", "--node", "bob")), &list); err != nil {
		t.Fatal(err)
	}
	listed := map[string]time.Time{}
	for _, s := range list {
		listed[s.ID] = s.Time
		if s.Time.After(time.Now().Add(5 * time.Minute)) {
			t.Errorf("snapshot %s is dated %s, in the future", s.ID[:8], s.Time)
		}
	}
	// Dated at the session's start, the ten records are one and the
	// same snapshot.
	redated := 0
	for _, id := range bogus {
		if tm, ok := listed[id]; ok && !tm.Before(sent.Add(-time.Minute)) && !tm.After(time.Now()) {
			redated++
		}
	}
	warned := a.logCount("level=WARN", "node=bob", "clock", "ahead")
	if redated != 10 || warned != 10 {
		t.Errorf("%d of 10 commits dated by the appliance, %d warnings logged:\n%s", redated, warned, apptest.Tail(a.Log(), 20))
	}

	e.ok("forget", "--node", "bob", "--keep-last", "3", "--keep-daily", "7", "--keep-within", "7d")
	lost := 0
	var lostNotes []string
	for id, cp := range acked {
		if d := e.restoreCompare(id, src.dir, cp); len(d) > 0 {
			lost++
			lostNotes = append(lostNotes, strings.Join(d, "; "))
		}
	}
	if lost > 0 {
		t.Errorf("real snapshots lost after forget: %s", strings.Join(lostNotes, "\n"))
	}
	if r := e.run(nil, nil, "check", "--read-data"); r.code != 0 {
		t.Errorf("check: %s", r)
	}
	detected := 0
	if redated == 10 && warned == 10 {
		detected = 1
	}
	record("future-dated commits", 1, detected, lost,
		fmt.Sprintf("10 commits dated 2097-2099 by a push-only node: %d dated by the appliance's clock, %d warnings logged; forget --keep-last 3 --keep-daily 7 --keep-within 7d kept %d of %d real snapshots",
			redated, warned, len(acked)-lost, len(acked)))
}
