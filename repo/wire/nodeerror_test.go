package wire_test

import (
	"errors"
	"slices"
	"testing"

	"github.com/cairnbackup/cairn/repo/repotest"
	"github.com/cairnbackup/cairn/repo/wire"
)

// A client may end its session with an Error (PROTOCOL.md: either side):
// its push failed on its side. Serve returns it as a *wire.NodeError in
// the node's words, answers nothing, and names the plans the session
// listed, so the appliance can tell whose push failed.
func TestServeNodeReportsFailure(t *testing.T) {
	r := repotest.New(t)
	s := serve(t, r, config(wire.PermPush|wire.PermRead))
	c, err := wire.Dial(t.Context(), s.conn, "test", "lyra")
	if err != nil {
		t.Fatal(err)
	}
	if _, err := c.ListSnapshots(t.Context(), "db"); err != nil {
		t.Fatal(err)
	}
	if err := c.Fail("source db: before command \"pg_ctl stop\" failed: exit status 1"); err != nil {
		t.Fatalf("fail: %v", err)
	}
	st, err := s.wait()
	var ne *wire.NodeError
	if !errors.As(err, &ne) || ne.Message != "source db: before command \"pg_ctl stop\" failed: exit status 1" ||
		err.Error() != "the node reported: source db: before command \"pg_ctl stop\" failed: exit status 1" {
		t.Fatalf("serve: %#v", err)
	}
	if !slices.Equal(st.Listed, []string{"db"}) || len(st.Snapshots) != 0 {
		t.Errorf("stats %+v", st)
	}
}
