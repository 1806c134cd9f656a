package index

import (
	"strings"
	"testing"
	"time"

	"github.com/cairnbackup/cairn/repo/blob"
	"github.com/dgraph-io/badger/v4"
)

var testKey = []byte(strings.Repeat("k", 32))

func open(t *testing.T, dir string) *Index {
	t.Helper()
	x, err := Open(dir, Options{EncryptionKey: testKey})
	if err != nil {
		t.Fatal(err)
	}
	return x
}

func TestPacksAndBlobs(t *testing.T) {
	dir := t.TempDir()
	x := open(t, dir)
	p1, p2 := blob.Hash([]byte("p1")), blob.Hash([]byte("p2"))
	d := func(s string) blob.Handle { return blob.Handle{ID: blob.Hash([]byte(s)), Type: blob.Data} }
	b1, b2, b3 := d("b1"), blob.Handle{ID: blob.Hash([]byte("b2")), Type: blob.Tree}, d("b3")
	loc1 := Location{Pack: p1, Offset: 12, Length: 100, RawLength: 70, Type: blob.Data}
	if err := x.AddPack(p1, PackInfo{Size: 500, Blobs: 2}, []BlobEntry{{b1, loc1}, {b2, Location{Pack: p1, Offset: 112, Length: 50, RawLength: 50, Type: blob.Tree}}}); err != nil {
		t.Fatal(err)
	}
	if err := x.AddPack(p2, PackInfo{Size: 300, Blobs: 1}, []BlobEntry{{b3, Location{Pack: p2, Offset: 12, Length: 40, RawLength: 1, Type: blob.Data}}}); err != nil {
		t.Fatal(err)
	}
	got, ok, err := x.Lookup(b1)
	if err != nil || !ok || got != loc1 {
		t.Fatalf("lookup = %+v %v %v", got, ok, err)
	}
	has, err := x.Has([]blob.Handle{b1, d("nope"), b3})
	if err != nil || !has[0] || has[1] || !has[2] {
		t.Fatalf("has = %v %v", has, err)
	}
	now := time.Unix(1700000000, 5)
	x.SetVerified(p1, now)
	if v, ok, _ := x.Verified(p1); !ok || !v.Equal(now) {
		t.Fatalf("verified = %v %v", v, ok)
	}
	// Reopen: everything persists.
	if err := x.Close(); err != nil {
		t.Fatal(err)
	}
	x = open(t, dir)
	defer x.Close()
	if info, ok, _ := x.Pack(p2); !ok || info != (PackInfo{Size: 300, Blobs: 1}) {
		t.Fatalf("pack p2 = %+v %v", info, ok)
	}
	stale, err := x.RemovePacks(map[blob.ID]bool{p1: true}, true, now)
	if err != nil || len(stale) != 2 {
		t.Fatal(stale, err)
	}
	var lost []blob.ID
	x.LostPacks(func(id blob.ID, when time.Time) error {
		if !when.Equal(now) {
			t.Errorf("lost at %v", when)
		}
		lost = append(lost, id)
		return nil
	})
	if len(lost) != 1 || lost[0] != p1 {
		t.Fatalf("lost packs %v", lost)
	}
	if _, ok, _ := x.Lookup(b1); ok {
		t.Fatal("blob of removed pack still indexed")
	}
	if _, ok, _ := x.Lookup(b3); !ok {
		t.Fatal("blob of other pack lost")
	}
	if _, ok, _ := x.Verified(p1); ok {
		t.Fatal("verification time of removed pack kept")
	}
	n := 0
	x.Packs(func(blob.ID, PackInfo) error { n++; return nil })
	if n != 1 {
		t.Fatalf("%d packs, want 1", n)
	}
}

func TestSnapshots(t *testing.T) {
	x := open(t, t.TempDir())
	defer x.Close()
	s1 := blob.Hash([]byte("s1"))
	x.AddSnapshot(s1, []byte(`{"a":1}`))
	var got []string
	x.Snapshots(func(id blob.ID, rec []byte) error { got = append(got, id.Short()+string(rec)); return nil })
	if len(got) != 1 || got[0] != s1.Short()+`{"a":1}` {
		t.Fatalf("snapshots = %v", got)
	}
	x.RemoveSnapshot(s1)
	got = nil
	x.Snapshots(func(id blob.ID, rec []byte) error { got = append(got, id.Short()); return nil })
	if len(got) != 0 {
		t.Fatalf("snapshots after remove = %v", got)
	}
}

// Another schema (another external magic) refuses to open the database.
func TestSchemaMismatch(t *testing.T) {
	dir := t.TempDir()
	open(t, dir).Close()
	db, err := badger.Open(badgerOptions(dir, Options{EncryptionKey: testKey}).WithExternalMagic(SchemaVersion + 1))
	if err == nil {
		db.Close()
		t.Fatal("opened with another schema version")
	}
	if !strings.Contains(err.Error(), "External Magic Version") && !strings.Contains(strings.ToLower(err.Error()), "magic") {
		t.Fatalf("err = %v", err)
	}
}

func TestWrongEncryptionKey(t *testing.T) {
	dir := t.TempDir()
	open(t, dir).Close()
	_, err := Open(dir, Options{EncryptionKey: []byte(strings.Repeat("x", 32))})
	if err == nil || !strings.Contains(err.Error(), "index: open") {
		t.Fatalf("err = %v", err)
	}
}

// A data blob and a tree blob with the same bytes are two blobs; a blob
// stored twice keeps its first location.
func TestTypedKeysAndFirstLocation(t *testing.T) {
	x := open(t, t.TempDir())
	defer x.Close()
	id := blob.Hash([]byte("\x01\x00"))
	p1, p2 := blob.Hash([]byte("p1")), blob.Hash([]byte("p2"))
	data := blob.Handle{ID: id, Type: blob.Data}
	tr := blob.Handle{ID: id, Type: blob.Tree}
	x.AddPack(p1, PackInfo{Size: 1, Blobs: 1}, []BlobEntry{{tr, Location{Pack: p1, Offset: 12, Length: 40, Type: blob.Tree}}})
	if has, _ := x.Has([]blob.Handle{data, tr}); has[0] || !has[1] {
		t.Fatalf("has = %v, want [false true]", has)
	}
	x.AddPack(p2, PackInfo{Size: 1, Blobs: 2}, []BlobEntry{
		{data, Location{Pack: p2, Offset: 12, Length: 40, Type: blob.Data}},
		{tr, Location{Pack: p2, Offset: 52, Length: 40, Type: blob.Tree}},
	})
	if loc, _, _ := x.Lookup(tr); loc.Pack != p1 {
		t.Fatalf("tree moved to %s", loc.Pack.Short())
	}
	if loc, _, _ := x.Lookup(data); loc.Pack != p2 || loc.Type != blob.Data {
		t.Fatalf("data at %+v", loc)
	}
}

func TestNilIndex(t *testing.T) {
	var x *Index
	if _, _, err := x.Lookup(blob.Handle{}); err != ErrNotOpen {
		t.Fatalf("err = %v", err)
	}
}

func TestJobRuns(t *testing.T) {
	x := open(t, t.TempDir())
	defer x.Close()
	t0 := time.Unix(1800000000, 0)
	for i := range 5 {
		x.PutJobRun("verify", t0.Add(time.Duration(i)*time.Hour), []byte{byte('a' + i)}, 4, i == 0)
	}
	x.PutJobRun("drill", t0, []byte("d"), 4, false)
	var got []string
	// The oldest run went when the fifth came: four are kept.
	x.JobRuns("verify", 0, func(job string, v []byte) bool { got = append(got, job+":"+string(v)); return true })
	if strings.Join(got, ",") != "verify:e,verify:d,verify:c,verify:b" {
		t.Fatalf("verify runs kept %v", got)
	}
	// The good run outlives the cap; a job without one has none.
	if v, ok, err := x.LastGoodJobRun("verify"); string(v) != "a" || !ok || err != nil {
		t.Fatalf("last good verify run %q %v %v", v, ok, err)
	}
	if v, ok, err := x.LastGoodJobRun("drill"); v != nil || ok || err != nil {
		t.Fatalf("last good drill run %q %v %v", v, ok, err)
	}
	got = nil
	x.JobRuns("verify", 3, func(job string, v []byte) bool { got = append(got, job+":"+string(v)); return true })
	if strings.Join(got, ",") != "verify:e,verify:d,verify:c" {
		t.Fatalf("verify runs %v", got)
	}
	got = nil
	x.JobRuns("", 1, func(job string, v []byte) bool { got = append(got, job+":"+string(v)); return true })
	if strings.Join(got, ",") != "verify:e,drill:d" {
		t.Fatalf("all jobs, one each: %v", got)
	}
	// "verif" is a prefix of "verify" but not the same job.
	got = nil
	x.JobRuns("verif", 0, func(job string, v []byte) bool { got = append(got, job); return true })
	if len(got) != 0 {
		t.Fatalf("verif: %v", got)
	}
}
