package main

import (
	"bytes"
	"net"
	"path/filepath"
	"regexp"
	"testing"
	"time"

	"github.com/cairnbackup/cairn/chunker"
	"github.com/cairnbackup/cairn/repo/appliance"
	"github.com/cairnbackup/cairn/repo/backup"
	"github.com/cairnbackup/cairn/repo/repotest"
	"github.com/cairnbackup/cairn/repo/wire"
)

// A node whose clock is off by more than the appliance's clock_skew
// still saves its snapshot, dated by the appliance, and is told how far
// its clock is off (issue 12, item 1). Here the appliance's clock is set
// back to 2020, so this machine's clock is years ahead of it.
func TestPushWarnsWhenApplianceDatesSnapshot(t *testing.T) {
	r := repotest.New(t)
	applianceNow := time.Date(2020, 1, 2, 3, 4, 5, 0, time.UTC)
	cli, srv := net.Pipe()
	done := make(chan wire.PushStats, 1)
	go func() {
		st, _ := wire.Serve(t.Context(), srv, appliance.Backend{R: r}, wire.SessionConfig{
			Node: "lyra", Perms: wire.PermPush | wire.PermRead, IdleTimeout: time.Minute, Now: func() time.Time { return applianceNow }})
		srv.Close()
		done <- st
	}()
	c, err := wire.Dial(t.Context(), cli, "cairn test", "lyra")
	if err != nil {
		t.Fatal(err)
	}
	src := filepath.Join(t.TempDir(), "src")
	repotest.WriteTree(t, src, map[string]string{"a.txt": "alpha"})
	var stdout, stderr bytes.Buffer
	g := &globalOptions{stdout: &stdout, stderr: &stderr}
	o := &pushOptions{}
	o.node = "lyra"
	w := c.Welcome()
	params := chunker.Params{Min: int(w.ChunkMin), Avg: int(w.ChunkAvg), Max: int(w.ChunkMax)}
	if _, _, err := o.push(t.Context(), g, &link{verb: "push", addr: "test"}, c, params, chunker.NewTable(w.ChunkerSeed), &pushJob{src: backup.Source{Paths: []string{src}}}); err != nil {
		t.Fatal(err)
	}
	c.Close()
	st := <-done
	if len(st.Snapshots) != 1 || len(st.Redated) != 1 || !st.Redated[0].Time.Equal(applianceNow) {
		t.Fatalf("stats %+v", st)
	}
	want := regexp.MustCompile(`^cairn: warning: this node's clock is \d+d\d+h ahead of the appliance's: the appliance dated snapshot ` +
		st.Snapshots[0].Short() + ` 2020-01-02T03:04:05Z instead of \S+; set the node's clock right \(NTP\)\n$`)
	if !want.MatchString(stderr.String()) {
		t.Fatalf("stderr %q", stderr.String())
	}
}
