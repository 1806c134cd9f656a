package replica_test

import (
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/cairnbackup/cairn/repo/check"
	"github.com/cairnbackup/cairn/repo/replica"
	"github.com/cairnbackup/cairn/repo/repotest"
	"github.com/cairnbackup/cairn/repo/storage"
)

func flip(t *testing.T, p string, off int) {
	t.Helper()
	b, err := os.ReadFile(p)
	if err != nil {
		t.Fatal(err)
	}
	b[off] ^= 0x10
	if err := os.WriteFile(p, b, 0o600); err != nil {
		t.Fatal(err)
	}
}

// A pack damaged on the primary, a pack gone from it (indexed as lost at
// the next open) and a deleted snapshot file are put back from the
// replica, verified, and the index follows: check is clean and the
// snapshot restores. A replica whose copy is damaged too is named.
func TestHealFromReplica(t *testing.T) {
	dir := repotest.Init(t, repotest.Options())
	src := repotest.Open(t, dir)
	t0 := time.Date(2026, 12, 1, 3, 0, 0, 0, time.UTC)
	st := snap(t, src, t0, map[string][]byte{"a": randomBytes(1, 3<<20), "b": randomBytes(2, 3<<20)})
	usb := filepath.Join(t.TempDir(), "usb")
	bad := filepath.Join(t.TempDir(), "bad")
	replicate(t, src, usb, replica.Options{})
	replicate(t, src, bad, replica.Options{Name: "bad"})
	packs := objects(t, usb, storage.Packs)
	if len(packs) < 3 {
		t.Fatalf("want at least 3 packs, have %d", len(packs))
	}
	damaged, gone := packs[0], packs[1]
	pp := func(root, name string) string { return filepath.Join(root, "packs", name[:2], name) }
	flip(t, pp(dir, damaged), 300)
	flip(t, pp(bad, damaged), 300)
	os.Remove(pp(bad, gone))
	src.Close()
	os.Remove(pp(dir, gone))
	os.Remove(filepath.Join(dir, "snapshots", st.id.String()))
	src = repotest.Open(t, dir) // indexes the gone pack as lost

	rep, err := check.Run(t.Context(), src, check.Options{ReadData: true})
	if err != nil || rep.Clean() {
		t.Fatalf("check before: %v %+v", err, rep)
	}
	objs := []storage.Handle{{Kind: storage.Packs, Name: damaged}, {Kind: storage.Packs, Name: gone}, {Kind: storage.Snapshot, Name: st.id.String()}}
	sources := []replica.Source{{Name: "bad", Location: bad, Backend: storage.NewLocal(bad)}, {Name: "usb", Location: usb, Backend: storage.NewLocal(usb)}}
	healed, err := replica.Heal(t.Context(), src, objs, sources)
	if err != nil {
		t.Fatal(err)
	}
	// The packs from usb (bad's copies are damaged and missing), the
	// snapshot from bad, the first that has a good copy.
	for i, h := range healed {
		from := "usb"
		if i == 2 {
			from = "bad"
		}
		if !h.OK() || h.From != from || h.Object != objs[i].String() {
			t.Fatalf("healed %+v", healed)
		}
	}
	rep, err = check.Run(t.Context(), src, check.Options{ReadData: true})
	if err != nil || !rep.Clean() {
		t.Fatalf("check after: %v %+v", err, rep.Findings)
	}
	restores(t, src, st)

	// Only the damaged replica: named, nothing put back.
	flip(t, pp(dir, damaged), 300)
	healed, err = replica.Heal(t.Context(), src, objs[:2], sources[:1])
	if err != nil {
		t.Fatal(err)
	}
	if healed[0].OK() || !strings.HasPrefix(healed[0].Error, "replica bad: its copy is damaged too: ") ||
		healed[1].OK() || healed[1].Error != "replica bad: does not have it" {
		t.Fatalf("from a damaged replica: %+v", healed)
	}
	if got := healed[0].String(); !strings.HasPrefix(got, "packs/"+damaged+": not repaired: replica bad: its copy is damaged too: ") {
		t.Fatalf("%q", got)
	}
	if healed, _ := replica.Heal(t.Context(), src, objs[:1], nil); healed[0].Error != "no replica is configured" {
		t.Fatalf("no sources: %+v", healed)
	}
}
