package prune_test

import (
	"context"
	"math/rand/v2"
	"os"
	"path/filepath"
	"testing"
	"time"

	"github.com/cairnbackup/cairn/repo"
	"github.com/cairnbackup/cairn/repo/backup"
	"github.com/cairnbackup/cairn/repo/blob"
	"github.com/cairnbackup/cairn/repo/check"
	"github.com/cairnbackup/cairn/repo/prune"
	"github.com/cairnbackup/cairn/repo/repotest"
	"github.com/cairnbackup/cairn/repo/restore"
	"github.com/cairnbackup/cairn/repo/snapshot"
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
	src string // a copy of the tree as backed up
}

// snap backs up files (written to a fresh directory) as a snapshot at t.
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

func diskBytes(t *testing.T, r *repo.Repository) int64 {
	sizes, err := r.StoredPacks(t.Context())
	if err != nil {
		t.Fatal(err)
	}
	var n int64
	for _, s := range sizes {
		n += s
	}
	return n
}

func TestForgetAndPrune(t *testing.T) {
	r := repotest.New(t)
	common := randomBytes(1, 700<<10)
	gone := randomBytes(2, 2<<20) // only in the first snapshot
	t0 := time.Date(2026, 1, 1, 0, 0, 0, 0, time.UTC)
	s1 := snap(t, r, t0, map[string][]byte{"common.bin": common, "gone.bin": gone})
	s2 := snap(t, r, t0.Add(time.Hour), map[string][]byte{"common.bin": common, "new.txt": []byte("second")})
	s3 := snap(t, r, t0.Add(2*time.Hour), map[string][]byte{"common.bin": common, "new.txt": []byte("third")})

	// Each snapshot has its own source directory: group by node and plan.
	res, err := prune.Forget(t.Context(), r, prune.ForgetOptions{GroupBy: prune.GroupBy{Node: true, Plan: true},
		PolicyFor: func(prune.Group) (prune.Policy, bool) { return prune.Policy{Last: 2}, true }, Loc: time.UTC, Now: t0.Add(24 * time.Hour)})
	if err != nil {
		t.Fatal(err)
	}
	ds := res[prune.Group{Node: "lyra"}]
	if len(ds) != 3 || !ds[0].Keep || !ds[1].Keep || ds[2].Keep || ds[2].ID != s1.id {
		t.Fatalf("decisions %+v", ds)
	}
	if list, _ := r.Snapshots(t.Context(), snapshot.Filter{}); len(list) != 2 {
		t.Fatalf("%d snapshots after forget", len(list))
	}
	before := diskBytes(t, r)

	dry, err := prune.Run(t.Context(), r, prune.Options{DryRun: true})
	if err != nil {
		t.Fatal(err)
	}
	if diskBytes(t, r) != before || dry.BytesFreed < int64(len(gone))*9/10 {
		t.Fatalf("dry run: %+v, disk %d → %d", dry, before, diskBytes(t, r))
	}
	rep, err := prune.Run(t.Context(), r, prune.Options{})
	if err != nil {
		t.Fatal(err)
	}
	after := diskBytes(t, r)
	// gone.bin is random (stored uncompressed): about its size is freed.
	freed := before - after
	if freed < int64(len(gone))*95/100 || freed > int64(len(gone))+(256<<10) {
		t.Fatalf("freed %d bytes on disk (report %+v), want about %d", freed, rep, len(gone))
	}
	if rep.PacksDeleted+rep.PacksRepacked == 0 || rep.Snapshots != 2 {
		t.Fatalf("report %+v", rep)
	}
	restores(t, r, s2)
	restores(t, r, s3)
	ch, err := check.Run(t.Context(), r, check.Options{ReadData: true})
	if err != nil || !ch.Clean() {
		t.Fatalf("check: %v %v", err, ch.Findings)
	}
	// A second prune finds nothing more to do.
	rep, err = prune.Run(t.Context(), r, prune.Options{})
	if err != nil || rep.PacksDeleted != 0 || rep.PacksRepacked != 0 {
		t.Fatalf("second prune: %+v %v", rep, err)
	}
}

// A push in flight that was told a blob exists keeps it, even if no
// snapshot uses it when the prune runs; its snapshot then restores.
func TestPruneKeepsWhatAPushReliesOn(t *testing.T) {
	r := repotest.New(t)
	orphan := randomBytes(3, 1<<20)
	t0 := time.Date(2026, 1, 1, 0, 0, 0, 0, time.UTC)
	s1 := snap(t, r, t0, map[string][]byte{"orphan.bin": orphan})
	if err := r.DeleteSnapshot(t.Context(), s1.id); err != nil {
		t.Fatal(err)
	}
	// A push (a session that began before the prune) learns the
	// orphan's chunks exist and will reuse them.
	push := r.NewSession()
	chunks := chunkIDs(t, r, orphan)
	for _, id := range chunks {
		if ok, err := push.Known(blob.Handle{ID: id, Type: blob.Data}); err != nil || !ok {
			t.Fatalf("known: %v %v", ok, err)
		}
	}
	// And a session that starts during the prune relies on them too.
	// The orphan's tree pack goes (no push relies on it); its data
	// pack stays.
	if _, err := prune.Run(t.Context(), r, prune.Options{}); err != nil {
		t.Fatal(err)
	}
	for _, id := range chunks {
		if _, err := r.LoadBlob(t.Context(), blob.Handle{ID: id, Type: blob.Data}, nil); err != nil {
			t.Fatalf("chunk %s gone: %v", id.Short(), err)
		}
	}
	push.Abort()
	// With the push over, the orphan goes.
	rep, err := prune.Run(t.Context(), r, prune.Options{})
	if err != nil || rep.PacksDeleted == 0 {
		t.Fatalf("after the push: %+v %v", rep, err)
	}
	for _, id := range chunks {
		if _, err := r.LoadBlob(t.Context(), blob.Handle{ID: id, Type: blob.Data}, nil); err == nil {
			t.Fatalf("chunk %s still there after the push ended", id.Short())
		}
	}
}

// chunkIDs returns the chunk IDs of data as the repository cuts it.
func chunkIDs(t *testing.T, r *repo.Repository, data []byte) []blob.ID {
	var ids []blob.ID
	s := r.NewSession()
	defer s.Abort()
	dir := t.TempDir()
	p := filepath.Join(dir, "f")
	os.WriteFile(p, data, 0o644)
	res, err := backup.Run(t.Context(), uploaderFunc(func(d []byte) blob.ID {
		id := blob.Hash(d)
		ids = append(ids, id)
		return id
	}), []string{p}, backup.Options{Params: r.ChunkerParams(), Table: r.ChunkerTable(), Workers: 1})
	if err != nil || res == nil {
		t.Fatal(err)
	}
	return ids
}

type uploaderFunc func([]byte) blob.ID

func (f uploaderFunc) SaveBlob(_ context.Context, t blob.Type, d []byte) (blob.ID, bool, error) {
	if t == blob.Tree {
		return blob.Hash(d), false, nil
	}
	return f(d), false, nil
}

func (f uploaderFunc) Known(blob.Handle) (bool, error) { return false, nil }
