package replica_test

import (
	"errors"
	"math/rand/v2"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/cairnbackup/cairn/repo"
	"github.com/cairnbackup/cairn/repo/backup"
	"github.com/cairnbackup/cairn/repo/blob"
	"github.com/cairnbackup/cairn/repo/check"
	"github.com/cairnbackup/cairn/repo/prune"
	"github.com/cairnbackup/cairn/repo/replica"
	"github.com/cairnbackup/cairn/repo/repotest"
	"github.com/cairnbackup/cairn/repo/restore"
	"github.com/cairnbackup/cairn/repo/snapshot"
	"github.com/cairnbackup/cairn/repo/storage"
)

func randomBytes(seed uint64, n int) []byte {
	rng := rand.New(rand.NewPCG(seed, seed))
	b := make([]byte, n)
	for i := range b {
		b[i] = byte(rng.Uint32())
	}
	return b
}

type state struct {
	id  blob.ID
	src string
}

// snap backs up files (written to a fresh directory) as a snapshot at t0.
func snap(t *testing.T, r *repo.Repository, t0 time.Time, files map[string][]byte) state {
	t.Helper()
	src := filepath.Join(t.TempDir(), "src")
	for p, b := range files {
		full := filepath.Join(src, p)
		os.MkdirAll(filepath.Dir(full), 0o755)
		if err := os.WriteFile(full, b, 0o644); err != nil {
			t.Fatal(err)
		}
	}
	s := r.NewSession()
	res, err := backup.Run(t.Context(), s, []string{src}, backup.Options{Params: r.ChunkerParams(), Table: r.ChunkerTable()})
	if err != nil {
		t.Fatal(err)
	}
	id, err := s.Commit(t.Context(), &snapshot.Snapshot{Version: 1, Time: t0, Node: "lyra", Paths: []string{src}, Tree: res.Tree})
	if err != nil {
		t.Fatal(err)
	}
	return state{id: id, src: src}
}

// restores restores st from r and compares it with its source.
func restores(t *testing.T, r *repo.Repository, st state) {
	t.Helper()
	sn, err := r.LoadSnapshot(t.Context(), st.id)
	if err != nil {
		t.Fatal(err)
	}
	dst := t.TempDir()
	if _, err := restore.Run(t.Context(), r, sn.Tree, st.src, dst, restore.Options{}); err != nil {
		t.Fatal(err)
	}
	repotest.AssertSameTree(t, st.src, filepath.Join(dst, "src"))
}

// replicate opens the replica at dir for copying and runs one
// replication.
func replicate(t *testing.T, src *repo.Repository, dir string, o replica.Options) *replica.Report {
	t.Helper()
	dst, seeded, err := src.OpenReplica(t.Context(), dir, repo.ReplicaOptions{Copy: true, Now: o.Now})
	if err != nil {
		t.Fatalf("open replica: %v", err)
	}
	defer dst.Close()
	if o.Name == "" {
		o.Name = "usb"
	}
	o.Seeded = seeded
	rep, err := replica.Run(t.Context(), src, dst, o)
	if err != nil {
		t.Fatalf("replicate: %v", err)
	}
	return rep
}

// openCopy opens the replica in dir with the primary's passphrase, as an
// operator would after losing the primary.
func openCopy(t *testing.T, dir string) *repo.Repository {
	t.Helper()
	r, err := repo.Open(t.Context(), dir, repotest.Credentials(), repo.Options{})
	if err != nil {
		t.Fatalf("open the replica as a repository: %v", err)
	}
	t.Cleanup(func() { r.Close() })
	return r
}

func objects(t *testing.T, dir string, k storage.Kind) []string {
	t.Helper()
	var out []string
	if err := storage.NewLocal(dir).List(t.Context(), k, func(name string, _ int64) error {
		out = append(out, name)
		return nil
	}); err != nil {
		t.Fatal(err)
	}
	slices.Sort(out)
	return out
}

// A first run copies everything (keys and config first), and the copy
// is a repository of its own that the primary's passphrase opens, whose
// snapshots restore bit-identical and whose check reads every pack
// clean. A second run copies nothing; after a new snapshot, a third
// copies only the new packs and the new snapshot.
func TestReplicateDirectory(t *testing.T) {
	src := repotest.New(t)
	t0 := time.Date(2026, 12, 1, 3, 0, 0, 0, time.UTC)
	a := snap(t, src, t0, map[string][]byte{"a": randomBytes(1, 3<<20), "dir/b": randomBytes(2, 200<<10), "c": []byte("small")})
	b := snap(t, src, t0.Add(time.Hour), map[string][]byte{"a": randomBytes(1, 3<<20), "d": randomBytes(3, 1<<20)})
	dir := filepath.Join(t.TempDir(), "usb", "cairn")

	rep := replicate(t, src, dir, replica.Options{})
	packs, _ := src.StoredPacks(t.Context())
	if rep.Packs != len(packs) || rep.Snapshots != 2 || rep.Keys != 2 || !rep.OK() || rep.LagBytes != 0 {
		t.Fatalf("first run: %+v, want %d packs, 2 snapshots, a key and the config, nothing left", rep, len(packs))
	}
	if got := objects(t, dir, storage.Packs); len(got) != len(packs) {
		t.Fatalf("replica holds %d packs, want %d", len(got), len(packs))
	}

	again := replicate(t, src, dir, replica.Options{})
	if again.Objects != 0 || again.Bytes != 0 || again.StoredPacks != len(packs) {
		t.Fatalf("second run copied %d objects (%d bytes), want none; stored %d packs", again.Objects, again.Bytes, again.StoredPacks)
	}

	before, _ := src.StoredPacks(t.Context())
	c := snap(t, src, t0.Add(2*time.Hour), map[string][]byte{"a": randomBytes(1, 3<<20), "e": randomBytes(4, 2<<20)})
	after, _ := src.StoredPacks(t.Context())
	var added int64
	for id, size := range after {
		if _, ok := before[id]; !ok {
			added += size
		}
	}
	inc := replicate(t, src, dir, replica.Options{})
	if inc.Snapshots != 1 || inc.Packs != len(after)-len(before) {
		t.Fatalf("incremental run: %d snapshots and %d packs, want 1 and %d", inc.Snapshots, inc.Packs, len(after)-len(before))
	}
	if inc.Bytes-added <= 0 || inc.Bytes-added > 64<<10 {
		t.Fatalf("incremental run sent %d bytes for %d bytes of new packs: want the packs and one snapshot record", inc.Bytes, added)
	}

	cp := openCopy(t, dir)
	for _, st := range []state{a, b, c} {
		restores(t, cp, st)
	}
	rc, err := check.Run(t.Context(), cp, check.Options{ReadData: true})
	if err != nil || !rc.Clean() {
		t.Fatalf("check --read-data of the replica: %v %+v", err, rc)
	}
}

// A pack damaged on the primary is not copied (it does not hash to its
// name), the snapshot that needs it is left for a later run, and the
// others are copied.
func TestReplicateDamagedPrimaryPack(t *testing.T) {
	src := repotest.New(t)
	t0 := time.Date(2026, 12, 1, 3, 0, 0, 0, time.UTC)
	a := snap(t, src, t0, map[string][]byte{"a": randomBytes(1, 1<<20)})
	sizesA, _ := src.StoredPacks(t.Context())
	b := snap(t, src, t0.Add(time.Hour), map[string][]byte{"b": randomBytes(2, 3<<20)})
	sizesB, _ := src.StoredPacks(t.Context())
	var victim blob.ID
	for id := range sizesB {
		if _, ok := sizesA[id]; !ok {
			entries, _, err := src.ReadPackHeader(t.Context(), id)
			if err == nil && entries[0].Type == blob.Data {
				victim = id
				break
			}
		}
	}
	p := filepath.Join(src.Dir(), "packs", victim.String()[:2], victim.String())
	raw, err := os.ReadFile(p)
	if err != nil {
		t.Fatal(err)
	}
	raw[100] ^= 0x40
	if err := os.WriteFile(p, raw, 0o600); err != nil {
		t.Fatal(err)
	}

	dir := filepath.Join(t.TempDir(), "replica")
	rep := replicate(t, src, dir, replica.Options{})
	if len(rep.Failed) != 1 || rep.Failed[0].Object != "packs/"+victim.String() ||
		!strings.Contains(rep.Failed[0].Error, "pack "+victim.Short()+" on the primary does not hash to its name: it is damaged") {
		t.Fatalf("failed: %+v, want pack %s named as damaged on the primary", rep.Failed, victim.Short())
	}
	if len(rep.Left) != 1 || rep.Left[0].ID != b.id || rep.Snapshots != 1 {
		t.Fatalf("left %+v, copied %d snapshots: want %s left and one copied", rep.Left, rep.Snapshots, b.id.Short())
	}
	if slices.Contains(objects(t, dir, storage.Packs), victim.String()) {
		t.Fatal("the damaged pack is on the replica")
	}
	if got := objects(t, dir, storage.Snapshot); !slices.Equal(got, []string{a.id.String()}) {
		t.Fatalf("replica snapshots %v, want only %s", got, a.id.Short())
	}
	if rep.LagBytes < sizesB[victim] {
		t.Fatalf("lag %d bytes, want at least the damaged pack's %d", rep.LagBytes, sizesB[victim])
	}
}

// A replica object found damaged (marked by the replica's verification)
// is copied again from the primary at the next run.
func TestReplicateRepairsDamagedReplicaObject(t *testing.T) {
	src := repotest.New(t)
	st := snap(t, src, time.Date(2026, 12, 1, 3, 0, 0, 0, time.UTC), map[string][]byte{"a": randomBytes(1, 2<<20)})
	dir := filepath.Join(t.TempDir(), "replica")
	replicate(t, src, dir, replica.Options{})
	names := objects(t, dir, storage.Packs)
	p := filepath.Join(dir, "packs", names[0][:2], names[0])
	raw, _ := os.ReadFile(p)
	raw[50] ^= 1
	os.WriteFile(p, raw, 0o600)
	snapFile := filepath.Join(dir, "snapshots", st.id.String())
	os.WriteFile(snapFile, []byte("garbage"), 0o600) // a different size: seen in the listing

	h := storage.Handle{Kind: storage.Packs, Name: names[0]}
	if err := src.SetReplicaMarks("usb", repo.ReplicaDamaged, []repo.ReplicaMark{{Handle: h, Time: time.Now()}}, true); err != nil {
		t.Fatal(err)
	}
	rep := replicate(t, src, dir, replica.Options{})
	if rep.Repaired != 2 || rep.Packs != 1 || rep.Snapshots != 1 || !rep.OK() {
		t.Fatalf("report %+v: want the pack and the snapshot copied again", rep)
	}
	if marks, _ := src.ReplicaMarks("usb", repo.ReplicaDamaged); len(marks) != 0 {
		t.Fatalf("damage marks left: %v", marks)
	}
	restores(t, openCopy(t, dir), st)
}

// A directory holding another repository, or other files, is refused.
func TestReplicaRefusesOtherPlaces(t *testing.T) {
	src := repotest.New(t)
	other := repotest.Init(t, repotest.Options())
	if _, _, err := src.OpenReplica(t.Context(), other, repo.ReplicaOptions{Copy: true}); err == nil || !strings.Contains(err.Error(), "holds a repository that this repository's key does not open: it is not a copy of it") {
		t.Fatalf("another repository: %v", err)
	}
	full := t.TempDir()
	os.WriteFile(filepath.Join(full, "notes.txt"), []byte("mine"), 0o600)
	if _, _, err := src.OpenReplica(t.Context(), full, repo.ReplicaOptions{Copy: true}); err == nil || err.Error() != "replica "+full+" is not empty and holds no cairn repository (it holds notes.txt): give a directory of its own" {
		t.Fatalf("a directory of other files: %v", err)
	}
	if _, _, err := src.OpenReplica(t.Context(), src.Dir(), repo.ReplicaOptions{Copy: true}); err == nil || err.Error() != "replica "+src.Dir()+" is the repository itself" {
		t.Fatalf("the repository itself: %v", err)
	}
	empty := filepath.Join(t.TempDir(), "none")
	if _, _, err := src.OpenReplica(t.Context(), empty, repo.ReplicaOptions{}); err == nil || err.Error() != "replica "+empty+" holds no repository yet (cairn replicate copies one there)" {
		t.Fatalf("reading a replica never copied: %v", err)
	}
}

// While a replication holds the packs a snapshot needs, a prune that
// moves their blobs keeps the old packs; the replica gets a complete
// snapshot.
func TestPruneKeepsHeldPacks(t *testing.T) {
	src := repotest.New(t)
	t0 := time.Date(2026, 12, 1, 3, 0, 0, 0, time.UTC)
	a := snap(t, src, t0, map[string][]byte{"a": randomBytes(1, 2<<20), "b": randomBytes(2, 2<<20)})
	b := snap(t, src, t0.Add(time.Hour), map[string][]byte{"a": randomBytes(1, 2<<20)})
	hold := src.HoldPacks()
	defer hold.Close()
	sn, _ := src.LoadSnapshot(t.Context(), b.id)
	held := map[blob.ID]bool{}
	err := prune.Reach(t.Context(), src, sn.Tree, map[blob.ID]struct{}{}, func(h blob.Handle) error {
		loc, ok, err := hold.Locate(h)
		if !ok || err != nil {
			t.Fatalf("locate %s: %v %v", h, ok, err)
		}
		held[loc.Pack] = true
		return nil
	})
	if err != nil {
		t.Fatal(err)
	}
	if err := src.DeleteSnapshot(t.Context(), a.id); err != nil {
		t.Fatal(err)
	}
	rep, err := prune.Run(t.Context(), src, prune.Options{MaxUnused: 0.01})
	if err != nil {
		t.Fatal(err)
	}
	sizes, _ := src.StoredPacks(t.Context())
	for id := range held {
		if _, ok := sizes[id]; !ok {
			t.Fatalf("held pack %s was deleted by prune (%+v)", id.Short(), rep)
		}
	}
	if rep.PacksKept == 0 {
		t.Fatalf("prune kept no pack for the hold: %+v", rep)
	}
	hold.Close()
	rep, err = prune.Run(t.Context(), src, prune.Options{MaxUnused: 0.01})
	if err != nil || rep.PacksDeleted+rep.PacksRepacked == 0 {
		t.Fatalf("after the hold, prune freed nothing: %+v %v", rep, err)
	}
	restores(t, src, b)
}

// With a deletion delay, what the primary forgot and pruned stays on
// the replica until it was missing for the delay, then goes (snapshot
// and packs); a snapshot whose file the primary lost (still listed by
// its index) is never deleted.
func TestReplicateDeleteAfter(t *testing.T) {
	src := repotest.New(t)
	t0 := time.Date(2026, 12, 1, 3, 0, 0, 0, time.UTC)
	a := snap(t, src, t0, map[string][]byte{"gone": randomBytes(1, 2<<20)})
	b := snap(t, src, t0.Add(time.Hour), map[string][]byte{"kept": randomBytes(2, 1<<20)})
	dir := filepath.Join(t.TempDir(), "replica")
	now := t0.Add(2 * time.Hour)
	clock := func() time.Time { return now }
	month := 30 * 24 * time.Hour
	replicate(t, src, dir, replica.Options{DeleteAfter: month, Now: clock})
	packsBefore := objects(t, dir, storage.Packs)

	if err := src.DeleteSnapshot(t.Context(), a.id); err != nil {
		t.Fatal(err)
	}
	if _, err := prune.Run(t.Context(), src, prune.Options{}); err != nil {
		t.Fatal(err)
	}
	srcPacks, _ := src.StoredPacks(t.Context())
	pruned := len(packsBefore) - len(srcPacks)
	if pruned == 0 {
		t.Fatal("prune removed no pack")
	}

	never := replicate(t, src, dir, replica.Options{Name: "keep", Now: clock})
	if never.Deleted != 0 || never.PendingDeletes != 0 {
		t.Fatalf("delete never: %+v", never)
	}
	now = now.Add(24 * time.Hour)
	first := replicate(t, src, dir, replica.Options{DeleteAfter: month, Now: clock})
	if first.Deleted != 0 || first.PendingDeletes != pruned+1 {
		t.Fatalf("first run after the prune: deleted %d, pending %d; want 0 and %d", first.Deleted, first.PendingDeletes, pruned+1)
	}
	now = now.Add(month - time.Hour)
	early := replicate(t, src, dir, replica.Options{DeleteAfter: month, Now: clock})
	if early.Deleted != 0 {
		t.Fatalf("deleted %d objects before the delay", early.Deleted)
	}
	now = now.Add(time.Hour)
	due := replicate(t, src, dir, replica.Options{DeleteAfter: month, Now: clock})
	if due.Deleted != pruned+1 || due.PendingDeletes != 0 {
		t.Fatalf("after the delay: deleted %d, pending %d; want %d and 0", due.Deleted, due.PendingDeletes, pruned+1)
	}
	if got := objects(t, dir, storage.Snapshot); !slices.Equal(got, []string{b.id.String()}) {
		t.Fatalf("replica snapshots %v, want %s", got, b.id.Short())
	}
	if marks, _ := src.ReplicaMarks("usb", repo.ReplicaGone); len(marks) != 0 {
		t.Fatalf("marks left: %v", marks)
	}
	cp := openCopy(t, dir)
	restores(t, cp, b)
	cp.Close()

	// A snapshot file lost on the primary is damage to heal, not a
	// deletion to copy.
	if err := os.Remove(filepath.Join(src.Dir(), "snapshots", b.id.String())); err != nil {
		t.Fatal(err)
	}
	now = now.Add(2 * month)
	replicate(t, src, dir, replica.Options{DeleteAfter: month, Now: clock})
	lost := replicate(t, src, dir, replica.Options{DeleteAfter: month, Now: func() time.Time { return now.Add(3 * month) }})
	if lost.Deleted != 0 || lost.PendingDeletes != 0 {
		t.Fatalf("a snapshot lost on the primary: %+v", lost)
	}
	if _, err := os.Stat(filepath.Join(dir, "snapshots", b.id.String())); err != nil {
		t.Fatalf("the replica's copy of a snapshot the primary lost: %v", err)
	}
}

// A replica that already holds the objects is found consistent when
// another repository with the same objects is not: the keys decide.
func TestReplicaCopyKilledBeforeConfig(t *testing.T) {
	src := repotest.New(t)
	dir := filepath.Join(t.TempDir(), "replica")
	replicate(t, src, dir, replica.Options{})
	if err := os.Remove(filepath.Join(dir, "config")); err != nil {
		t.Fatal(err)
	}
	rep := replicate(t, src, dir, replica.Options{})
	if rep.Keys != 1 {
		t.Fatalf("copied %d keys and configs after the config was lost, want the config alone", rep.Keys)
	}
	if _, err := os.Stat(filepath.Join(dir, "config")); err != nil {
		t.Fatal(err)
	}
	if _, err := repo.Open(t.Context(), dir, repo.Credentials{Password: []byte("wrong")}, repo.Options{}); !errors.Is(err, repo.ErrWrongKey) {
		t.Fatalf("wrong passphrase on the replica: %v", err)
	}
}

// A first copy killed while it wrote the config leaves a temporary file
// in the replica's directory: the next run removes it and goes on.
func TestReplicaFirstCopyKilledInConfig(t *testing.T) {
	src := repotest.New(t)
	dir := filepath.Join(t.TempDir(), "replica")
	os.MkdirAll(filepath.Join(dir, "keys"), 0o700)
	os.WriteFile(filepath.Join(dir, storage.TempPrefix+"0123456789abcdef"), []byte("half a config"), 0o600)
	rep := replicate(t, src, dir, replica.Options{})
	if rep.Keys != 2 {
		t.Fatalf("%+v", rep)
	}
	if _, err := os.Stat(filepath.Join(dir, storage.TempPrefix+"0123456789abcdef")); !os.IsNotExist(err) {
		t.Fatalf("the temporary file stays: %v", err)
	}
}
