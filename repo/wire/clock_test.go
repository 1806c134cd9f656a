package wire_test

import (
	"testing"
	"time"

	"github.com/cairnbackup/cairn/repo/blob"
	"github.com/cairnbackup/cairn/repo/repotest"
	"github.com/cairnbackup/cairn/repo/snapshot"
	"github.com/cairnbackup/cairn/repo/wire"
)

// A node dates its snapshots, but only within [session start − skew,
// now + skew] by the server's clock; outside that the server dates the
// snapshot at the session's start and reports it (issue 12, item 1). A
// backup is never refused for a clock.
func TestServeBoundsSnapshotTime(t *testing.T) {
	r := repotest.New(t)
	start := time.Date(2026, 12, 7, 12, 0, 0, 0, time.UTC)
	clock := start
	sc := config(wire.PermPush)
	sc.Now = func() time.Time { return clock }
	sc.ClockSkew = 5 * time.Minute
	s := serve(t, r, sc)
	c := newRawClient(t, s)
	c.hello("lyra")
	chunk := []byte("lyra's data")
	tr := fileTree(t, chunk)
	c.putBlob(dataHandle(chunk), chunk)
	c.putBlob(treeHandle(tr), tr)
	commit := func(req uint32, tm time.Time) blob.ID {
		t.Helper()
		rec, _, err := snapshot.Encode(&snapshot.Snapshot{Version: snapshot.Version, Time: tm, Node: "lyra", Paths: []string{"/data"}, Tree: blob.Hash(tr)})
		if err != nil {
			t.Fatal(err)
		}
		return c.commit(req, rec)
	}
	future := time.Date(2099, 1, 1, 0, 0, 0, 0, time.UTC)
	clock = start.Add(time.Hour) // the push took an hour
	cases := []struct {
		given, want time.Time
	}{
		{start.Add(30 * time.Minute), start.Add(30 * time.Minute)},                   // within the session
		{start.Add(-5 * time.Minute), start.Add(-5 * time.Minute)},                   // the node's clock a little behind
		{start.Add(time.Hour + 5*time.Minute), start.Add(time.Hour + 5*time.Minute)}, // a little ahead
		{start.Add(time.Hour + 6*time.Minute), start},                                // too far ahead
		{future, start},                      // the hostile node
		{start.Add(-6 * time.Minute), start}, // too far behind
	}
	var ids []blob.ID
	for i, c := range cases {
		id := commit(uint32(i+1), c.given)
		ids = append(ids, id)
		sn, err := r.LoadSnapshot(t.Context(), id)
		if err != nil {
			t.Fatal(err)
		}
		if !sn.Time.Equal(c.want) {
			t.Errorf("node's time %s: stored %s, want %s", c.given, sn.Time, c.want)
		}
	}
	c.send(wire.TypeBye, nil)
	st, err := s.wait()
	if err != nil {
		t.Fatal(err)
	}
	want := []wire.Redated{
		{Snapshot: ids[3], NodeTime: cases[3].given, Time: start},
		{Snapshot: ids[4], NodeTime: future, Time: start},
		{Snapshot: ids[5], NodeTime: cases[5].given, Time: start},
	}
	if len(st.Redated) != len(want) {
		t.Fatalf("redated %+v, want %+v", st.Redated, want)
	}
	for i, w := range want {
		g := st.Redated[i]
		if g.Snapshot != w.Snapshot || !g.NodeTime.Equal(w.NodeTime) || !g.Time.Equal(w.Time) {
			t.Errorf("redated %d: %+v, want %+v", i, g, w)
		}
	}
	for i, w := range []string{"1h6m0s ahead", "26322d12h ahead", "6m0s behind"} {
		if got := st.Redated[i].Describe(); got != w {
			t.Errorf("redated %d: %q, want %q", i, got, w)
		}
	}
}
