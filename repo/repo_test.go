package repo_test

import (
	"bytes"
	"errors"
	"fmt"
	"math/rand/v2"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/cairnbackup/cairn/repo"
	"github.com/cairnbackup/cairn/repo/backup"
	"github.com/cairnbackup/cairn/repo/blob"
	"github.com/cairnbackup/cairn/repo/check"
	"github.com/cairnbackup/cairn/repo/pack"
	"github.com/cairnbackup/cairn/repo/repotest"
	"github.com/cairnbackup/cairn/repo/restore"
	"github.com/cairnbackup/cairn/repo/snapfs"
	"github.com/cairnbackup/cairn/repo/snapshot"
	"github.com/cairnbackup/cairn/repo/storage"
)

// sampleTree writes a small tree with a file large enough for several
// chunks (with repotest's small chunk sizes), a symlink and an empty file.
func sampleTree(t *testing.T) string {
	t.Helper()
	src := filepath.Join(t.TempDir(), "src")
	big := make([]byte, 600<<10)
	rng := rand.New(rand.NewPCG(1, 2))
	for i := range big {
		big[i] = byte(rng.Uint32())
	}
	repotest.WriteTree(t, src, map[string]string{
		"etc/app.conf":   "listen = 127.0.0.1:8080\n",
		"data/big.bin":   string(big),
		"data/empty":     "",
		"data/dup1.txt":  strings.Repeat("same content\n", 1000),
		"data/dup2.txt":  strings.Repeat("same content\n", 1000),
		"emptydir/":      "",
		"deep/a/b/c.txt": "deep",
	})
	if err := os.Symlink("../etc/app.conf", filepath.Join(src, "data", "link")); err != nil {
		t.Fatal(err)
	}
	os.Chmod(filepath.Join(src, "etc", "app.conf"), 0o600)
	mt := time.Date(2020, 1, 2, 3, 4, 5, 6000, time.UTC)
	filepath.Walk(src, func(p string, fi os.FileInfo, err error) error {
		if err == nil && fi.Mode().Type() != os.ModeSymlink {
			os.Chtimes(p, mt, mt)
		}
		return nil
	})
	return src
}

func backupDir(t *testing.T, r *repo.Repository, src string) blob.ID {
	t.Helper()
	s := r.NewSession()
	res, err := backup.Run(t.Context(), s, []string{src}, backup.Options{Params: r.ChunkerParams(), Table: r.ChunkerTable()})
	if err != nil {
		t.Fatal(err)
	}
	if len(res.Summary.Warnings) > 0 {
		t.Fatalf("warnings: %v", res.Summary.Warnings)
	}
	id, err := s.Commit(t.Context(), &snapshot.Snapshot{Version: snapshot.Version, Time: time.Now(), Node: "lyra", Paths: []string{src}, Tree: res.Tree, Summary: res.Summary})
	if err != nil {
		t.Fatal(err)
	}
	return id
}

func restoreAndCompare(t *testing.T, r *repo.Repository, id blob.ID, src string) {
	t.Helper()
	sn, err := r.LoadSnapshot(t.Context(), id)
	if err != nil {
		t.Fatal(err)
	}
	dst := filepath.Join(t.TempDir(), "dst")
	if _, err := restore.Run(t.Context(), r, sn.Tree, src, dst, restore.Options{}); err != nil {
		t.Fatal(err)
	}
	repotest.AssertSameTree(t, src, filepath.Join(dst, filepath.Base(src)))
}

func TestBackupRestore(t *testing.T) {
	r := repotest.New(t)
	src := sampleTree(t)
	id := backupDir(t, r, src)
	list, err := r.Snapshots(t.Context(), snapshot.Filter{})
	if err != nil || len(list) != 1 || list[0].ID != id {
		t.Fatalf("snapshots = %v, %v", list, err)
	}
	// A second backup of the same data gives the identical tree for it:
	// reading the files did not change their access times. (The
	// directories above it, such as /tmp, may change meanwhile.)
	s := r.NewSession()
	res, err := backup.Run(t.Context(), s, []string{src}, backup.Options{Params: r.ChunkerParams(), Table: r.ChunkerTable()})
	if err != nil {
		t.Fatal(err)
	}
	first, err := snapfs.Lookup(t.Context(), r, list[0].Tree, src)
	if err != nil {
		t.Fatal(err)
	}
	if err := s.Flush(t.Context()); err != nil {
		t.Fatal(err)
	}
	second, err := snapfs.Lookup(t.Context(), r, res.Tree, src)
	if err != nil {
		t.Fatal(err)
	}
	if first.Subtree != second.Subtree {
		t.Fatal("unchanged backup has a different tree")
	}
	s.Abort()
	restoreAndCompare(t, r, id, src)
}

func TestWrongPassphraseWritesNothing(t *testing.T) {
	dir := repotest.Init(t, repotest.Options())
	before := listing(t, dir)
	_, err := repo.Open(t.Context(), dir, repo.Credentials{Password: []byte("wrong")}, repo.Options{})
	want := "wrong passphrase or key file: the passphrase opens none of the 1 passphrase keys in " + filepath.Join(dir, "keys")
	if !errors.Is(err, repo.ErrWrongKey) || err.Error() != want {
		t.Fatalf("err = %v\nwant %s", err, want)
	}
	if after := listing(t, dir); !slices.Equal(before, after) {
		t.Fatalf("files changed:\nbefore %v\nafter  %v", before, after)
	}
}

// listing returns every path under dir with its size and modification time.
func listing(t *testing.T, dir string) []string {
	var out []string
	filepath.Walk(dir, func(p string, fi os.FileInfo, err error) error {
		if err != nil {
			return err
		}
		out = append(out, fmt.Sprintf("%s %d %d", p, fi.Size(), fi.ModTime().UnixNano()))
		return nil
	})
	return out
}

func TestKeyFile(t *testing.T) {
	dir := filepath.Join(t.TempDir(), "repo")
	kf, err := repo.Init(t.Context(), dir, repo.Credentials{}, repotest.Options())
	if err != nil {
		t.Fatal(err)
	}
	if kf != dir+".key" {
		t.Fatalf("key file %s, want %s.key", kf, dir)
	}
	if fi, err := os.Stat(kf); err != nil || fi.Mode().Perm() != 0o600 {
		t.Fatalf("key file mode: %v %v", fi.Mode(), err)
	}
	r, err := repo.Open(t.Context(), dir, repo.Credentials{}, repo.Options{})
	if err != nil {
		t.Fatal(err)
	}
	r.Close()
	// A key file of another repository does not open this one.
	other := filepath.Join(t.TempDir(), "other")
	okf, err := repo.Init(t.Context(), other, repo.Credentials{}, repotest.Options())
	if err != nil {
		t.Fatal(err)
	}
	_, err = repo.Open(t.Context(), dir, repo.Credentials{KeyFile: okf}, repo.Options{})
	if !errors.Is(err, repo.ErrWrongKey) {
		t.Fatalf("other key file: %v", err)
	}
	// No credentials and no key file.
	os.Rename(kf, kf+".moved")
	_, err = repo.Open(t.Context(), dir, repo.Credentials{}, repo.Options{})
	if err == nil || !strings.HasPrefix(err.Error(), "no key: give a passphrase or a key file (") {
		t.Fatalf("no key: %v", err)
	}
	// Init refuses a key file inside the repository.
	in := filepath.Join(t.TempDir(), "r2")
	_, err = repo.Init(t.Context(), in, repo.Credentials{KeyFile: filepath.Join(in, "k")}, repo.InitOptions{})
	if err == nil || err.Error() != "init: key file "+filepath.Join(in, "k")+" is inside the repository; keep it outside, or a copy of the repository carries its own key" {
		t.Fatalf("key inside: %v", err)
	}
	if _, err := os.Stat(in); !os.IsNotExist(err) {
		t.Fatalf("a failed init left %s behind: %v", in, err)
	}
}

func TestInitRefusesNonEmpty(t *testing.T) {
	dir := t.TempDir()
	os.WriteFile(filepath.Join(dir, "x"), nil, 0o600)
	_, err := repo.Init(t.Context(), dir, repotest.Credentials(), repo.InitOptions{})
	if err == nil || err.Error() != "init: "+dir+" is not empty" {
		t.Fatalf("err = %v", err)
	}
}

func TestSecondOpenLocked(t *testing.T) {
	dir := repotest.Init(t, repotest.Options())
	r := repotest.Open(t, dir)
	_, err := repo.Open(t.Context(), dir, repotest.Credentials(), repo.Options{})
	want := fmt.Sprintf("repository is in use by PID %d (%s)", os.Getpid(), dir)
	if !errors.Is(err, repo.ErrLocked) || err.Error() != want {
		t.Fatalf("err = %v, want %s", err, want)
	}
	r.Close()
	r2, err := repo.Open(t.Context(), dir, repotest.Credentials(), repo.Options{})
	if err != nil {
		t.Fatalf("open after close: %v", err)
	}
	r2.Close()
}

func TestLoadBlobErrors(t *testing.T) {
	r := repotest.New(t)
	s := r.NewSession()
	data := []byte(strings.Repeat("payload ", 100))
	id, added, err := s.SaveBlob(t.Context(), blob.Data, data)
	if err != nil || !added {
		t.Fatal(err)
	}
	if _, added, _ := s.SaveBlob(t.Context(), blob.Data, data); added {
		t.Fatal("duplicate added twice in one session")
	}
	if err := s.Flush(t.Context()); err != nil {
		t.Fatal(err)
	}
	got, err := r.LoadBlob(t.Context(), blob.Handle{ID: id, Type: blob.Data}, nil)
	if err != nil || !bytes.Equal(got, data) {
		t.Fatalf("load: %v", err)
	}
	_, err = r.LoadBlob(t.Context(), blob.Handle{ID: id, Type: blob.Tree}, nil)
	if !errors.Is(err, blob.ErrNotFound) {
		t.Fatalf("wrong type: %v", err)
	}
	missing := blob.Hash([]byte("missing"))
	_, err = r.LoadBlob(t.Context(), blob.Handle{ID: missing, Type: blob.Data}, nil)
	if !errors.Is(err, blob.ErrNotFound) || err.Error() != "blob data/"+missing.Short()+": not found" {
		t.Fatalf("missing: %v", err)
	}
}

// A node that sends a blob whose bytes do not match its ID is refused and
// nothing of it is stored.
func TestSavePreparedRehashes(t *testing.T) {
	r := repotest.New(t)
	s := r.NewSession()
	data := []byte("real data")
	lie := blob.Handle{ID: blob.Hash([]byte("other data")), Type: blob.Data}
	_, _, err := s.SavePrepared(t.Context(), lie, 0, data, len(data), nil)
	if !errors.Is(err, blob.ErrCorrupt) {
		t.Fatalf("err = %v", err)
	}
	if err := s.Flush(t.Context()); err != nil {
		t.Fatal(err)
	}
	if st := s.Stats(); st.BlobsAdded != 0 || st.Packs != 0 {
		t.Fatalf("stored something: %+v", st)
	}
	if ok, _ := r.HasBlobs([]blob.Handle{lie}); ok[0] {
		t.Fatal("lying blob indexed")
	}
}

func TestRebuildIndexAfterDelete(t *testing.T) {
	dir := repotest.Init(t, repotest.Options())
	r := repotest.Open(t, dir)
	src := sampleTree(t)
	id1 := backupDir(t, r, src)
	etc := filepath.Join(src, "etc")
	fi, _ := os.Stat(etc)
	os.WriteFile(filepath.Join(etc, "new.conf"), []byte("new"), 0o644)
	id2 := backupDir(t, r, src)
	r.Close()

	if err := os.RemoveAll(filepath.Join(dir, "index")); err != nil {
		t.Fatal(err)
	}
	r, err := repo.Open(t.Context(), dir, repotest.Credentials(), repo.Options{SkipIndex: true})
	if err != nil {
		t.Fatal(err)
	}
	defer r.Close()
	rep, err := r.RebuildIndex(t.Context())
	if err != nil {
		t.Fatal(err)
	}
	if rep.Snapshots != 2 || len(rep.UnreadablePacks) != 0 || rep.Packs == 0 {
		t.Fatalf("report %+v", rep)
	}
	list, err := r.Snapshots(t.Context(), snapshot.Filter{})
	if err != nil || len(list) != 2 {
		t.Fatalf("snapshots: %v %v", list, err)
	}
	restoreAndCompare(t, r, id2, src)
	os.Remove(filepath.Join(etc, "new.conf"))
	os.Chtimes(etc, fi.ModTime(), fi.ModTime())
	restoreAndCompare(t, r, id1, src)
}

// Opening without an index directory rebuilds it on the fly from the
// packs (reconcile); every snapshot still restores.
func TestOpenWithoutIndex(t *testing.T) {
	dir := repotest.Init(t, repotest.Options())
	r := repotest.Open(t, dir)
	src := sampleTree(t)
	id := backupDir(t, r, src)
	r.Close()
	os.RemoveAll(filepath.Join(dir, "index"))
	r = repotest.Open(t, dir)
	restoreAndCompare(t, r, id, src)
}

// A pack left on disk without its index entries (a crash between the
// pack's rename and its index batch) is indexed at the next open.
func TestReconcileUnindexedPack(t *testing.T) {
	dir := repotest.Init(t, repotest.Options())
	r := repotest.Open(t, dir)
	src := sampleTree(t)
	id := backupDir(t, r, src)
	var packs int
	r.PackRecords(func(repo.PackRecord) error { packs++; return nil })
	r.Close()
	// Replace the index with an empty one that has only the snapshot:
	// simulate losing the pack entries.
	os.RemoveAll(filepath.Join(dir, "index"))
	r = repotest.Open(t, dir)
	var after int
	r.PackRecords(func(repo.PackRecord) error { after++; return nil })
	if after != packs {
		t.Fatalf("%d packs indexed after reconcile, want %d", after, packs)
	}
	restoreAndCompare(t, r, id, src)
}

// Many goroutines share one session, and two sessions run at once; the
// race detector watches, and every blob is stored and loads back.
func TestConcurrentSessions(t *testing.T) {
	r := repotest.New(t)
	blobs := make([][]byte, 400)
	for i := range blobs {
		blobs[i] = bytes.Repeat([]byte{byte(i), byte(i >> 8)}, 2000+i) // ~4-5 KiB, compressible
	}
	var ids [2][]blob.ID
	errc := make(chan error, 2)
	for si := range 2 {
		go func() {
			s := r.NewSession()
			idc := make(chan blob.ID, len(blobs))
			done := make(chan error, 4)
			for w := range 4 {
				go func() {
					for i := w; i < len(blobs); i += 4 {
						id, _, err := s.SaveBlob(t.Context(), blob.Data, blobs[i])
						if err != nil {
							done <- err
							return
						}
						idc <- id
					}
					done <- nil
				}()
			}
			for range 4 {
				if err := <-done; err != nil {
					errc <- err
					return
				}
			}
			close(idc)
			for id := range idc {
				ids[si] = append(ids[si], id)
			}
			_, err := s.Commit(t.Context(), &snapshot.Snapshot{Version: 1, Time: time.Now(), Node: fmt.Sprintf("n%d", si), Paths: []string{"/"}, Tree: ids[si][0]})
			errc <- err
		}()
	}
	for range 2 {
		if err := <-errc; err != nil {
			t.Fatal(err)
		}
	}
	for i, b := range blobs {
		got, err := r.LoadBlob(t.Context(), blob.Handle{ID: blob.Hash(b), Type: blob.Data}, nil)
		if err != nil || !bytes.Equal(got, b) {
			t.Fatalf("blob %d: %v", i, err)
		}
	}
	if len(ids[0]) != len(blobs) || len(ids[1]) != len(blobs) {
		t.Fatalf("ids %d %d", len(ids[0]), len(ids[1]))
	}
}

// A data chunk whose bytes equal an encoded tree (here the empty tree) is
// a separate blob: both restore and check is clean.
func TestDataAndTreeWithSameBytes(t *testing.T) {
	r := repotest.New(t)
	src := filepath.Join(t.TempDir(), "src")
	repotest.WriteTree(t, src, map[string]string{"empty/": "", "x": "\x01\x00"})
	id := backupDir(t, r, src)
	restoreAndCompare(t, r, id, src)
	rep, err := check.Run(t.Context(), r, check.Options{ReadData: true})
	if err != nil || !rep.Clean() {
		t.Fatalf("check: %v %v", err, rep.Findings)
	}
}

// Flush may run while workers add blobs; every blob added is durable after
// Commit, and nothing is added after it.
func TestFlushDuringSaves(t *testing.T) {
	r := repotest.New(t)
	s := r.NewSession()
	var wg sync.WaitGroup
	stop := make(chan struct{})
	wg.Add(1)
	go func() {
		defer wg.Done()
		for {
			select {
			case <-stop:
				return
			default:
				if err := s.Flush(t.Context()); err != nil {
					t.Error(err)
					return
				}
			}
		}
	}()
	var saved sync.Map
	var workers sync.WaitGroup
	for w := range 8 {
		workers.Add(1)
		go func() {
			defer workers.Done()
			for i := range 200 {
				data := []byte(fmt.Sprintf("blob %d of worker %d %s", i, w, strings.Repeat("x", i*50)))
				id, _, err := s.SaveBlob(t.Context(), blob.Data, data)
				if err != nil {
					t.Error(err)
					return
				}
				saved.Store(id, data)
			}
		}()
	}
	workers.Wait()
	close(stop)
	wg.Wait()
	some := blob.Hash([]byte("blob 0 of worker 0 "))
	if _, err := s.Commit(t.Context(), &snapshot.Snapshot{Version: 1, Time: time.Now(), Node: "n", Paths: []string{"/"}, Tree: some}); err != nil {
		t.Fatal(err)
	}
	if _, _, err := s.SaveBlob(t.Context(), blob.Data, []byte("late")); err == nil || err.Error() != "session: add after commit or abort" {
		t.Fatalf("add after commit: %v", err)
	}
	n := 0
	saved.Range(func(k, v any) bool {
		n++
		got, err := r.LoadBlob(t.Context(), blob.Handle{ID: k.(blob.ID), Type: blob.Data}, nil)
		if err != nil || !bytes.Equal(got, v.([]byte)) {
			t.Errorf("blob %s: %v", k.(blob.ID).Short(), err)
		}
		return true
	})
	if n != 1600 {
		t.Fatalf("%d blobs saved", n)
	}
}

// A compressed payload is never larger than its plaintext, so no envelope
// exceeds what pack readers accept.
func TestSavePreparedRefusesBloatedPayload(t *testing.T) {
	r := repotest.New(t)
	s := r.NewSession()
	data := []byte("0123456789")
	payload, _ := pack.Compress(nil, bytes.Repeat(data, 1), pack.LevelFastest)
	payload = append(payload, make([]byte, 32)...) // skippable junk
	h := blob.Handle{ID: blob.Hash(data), Type: blob.Data}
	_, _, err := s.SavePrepared(t.Context(), h, pack.Zstd, payload, len(data), nil)
	if !errors.Is(err, blob.ErrCorrupt) || !strings.Contains(err.Error(), "is not smaller than its 10-byte plaintext") {
		t.Fatalf("err = %v", err)
	}
}

// A damaged file in keys/ does not stop the right passphrase.
func TestBadKeyFileIgnored(t *testing.T) {
	dir := repotest.Init(t, repotest.Options())
	if err := os.WriteFile(filepath.Join(dir, "keys", "0000"), []byte("garbage"), 0o600); err != nil {
		t.Fatal(err)
	}
	r := repotest.Open(t, dir)
	r.Close()
	_, err := repo.Open(t.Context(), dir, repo.Credentials{Password: []byte("wrong")}, repo.Options{})
	if !errors.Is(err, repo.ErrWrongKey) || !strings.Contains(err.Error(), "; damaged: key "+filepath.Join(dir, "keys", "0000")+" is damaged (put back a copy of the file): seal: wrapped key: invalid character") {
		t.Fatalf("err = %v", err)
	}
}

// A pack whose header is damaged still serves its blobs through the index,
// check names it, and a rebuilt index keeps its entries.
func TestHeaderDamageSurvivesRebuild(t *testing.T) {
	dir := repotest.Init(t, repotest.Options())
	r := repotest.Open(t, dir)
	src := sampleTree(t)
	id := backupDir(t, r, src)
	sn, _ := r.LoadSnapshot(t.Context(), id)
	n, err := snapfs.Lookup(t.Context(), r, sn.Tree, src+"/etc/app.conf")
	if err != nil {
		t.Fatal(err)
	}
	loc, _, _ := r.Lookup(blob.Handle{ID: n.Content[0].ID, Type: blob.Data})
	p := storage.NewLocal(dir).Path(storage.Handle{Kind: storage.Packs, Name: loc.Pack.String()})
	fi, _ := os.Stat(p)
	f, _ := os.OpenFile(p, os.O_RDWR, 0)
	f.WriteAt([]byte{0xAA}, fi.Size()-pack.FooterSize-5) // inside the sealed header
	f.Close()
	rep, err := check.Run(t.Context(), r, check.Options{})
	if err != nil || len(rep.Findings) != 1 || rep.Findings[0].Kind != check.PackHeader || *rep.Findings[0].Pack != loc.Pack {
		t.Fatalf("check: %v %v", err, rep.Findings)
	}
	rb, err := r.RebuildIndex(t.Context())
	if err != nil {
		t.Fatal(err)
	}
	if len(rb.UnreadablePacks) != 1 || rb.KeptBlobs == 0 {
		t.Fatalf("rebuild: %+v", rb)
	}
	restoreAndCompare(t, r, id, src)
	r.Close()
	// Without the old index nothing can be kept: the loss is named.
	os.RemoveAll(filepath.Join(dir, "index"))
	r2, err := repo.Open(t.Context(), dir, repotest.Credentials(), repo.Options{SkipIndex: true})
	if err != nil {
		t.Fatal(err)
	}
	defer r2.Close()
	rb, err = r2.RebuildIndex(t.Context())
	if err != nil || len(rb.UnreadablePacks) != 1 || rb.KeptBlobs != 0 {
		t.Fatalf("rebuild without old index: %+v %v", rb, err)
	}
}

// A session told during a prune that a blob exists keeps the blob's pack:
// DropPacks does not drop it.
func TestDropPacksKeepsBlobsReliedOnDuringPrune(t *testing.T) {
	r := repotest.New(t)
	s := r.NewSession()
	data := []byte(strings.Repeat("relied upon ", 1000))
	id, _, err := s.SaveBlob(t.Context(), blob.Data, data)
	if err != nil {
		t.Fatal(err)
	}
	s.Flush(t.Context())
	s.Abort()
	h := blob.Handle{ID: id, Type: blob.Data}
	loc, _, _ := r.Lookup(h)
	p, err := r.BeginPrune()
	if err != nil {
		t.Fatal(err)
	}
	if _, err := r.BeginPrune(); !errors.Is(err, repo.ErrPruneRunning) {
		t.Fatalf("second prune: %v", err)
	}
	push := r.NewSession() // starts while the prune runs
	if ok, _ := push.Known(h); !ok {
		t.Fatal("not known")
	}
	dropped, err := p.DropPacks(t.Context(), map[blob.ID]int64{loc.Pack: 1})
	if err != nil || len(dropped) != 0 {
		t.Fatalf("dropped %v %v", dropped, err)
	}
	p.End()
	push.Abort()
	if got, err := r.LoadBlob(t.Context(), h, nil); err != nil || !bytes.Equal(got, data) {
		t.Fatalf("blob: %v", err)
	}
	// Without anyone relying on it, the pack goes.
	p, _ = r.BeginPrune()
	dropped, err = p.DropPacks(t.Context(), map[blob.ID]int64{loc.Pack: 1})
	p.End()
	if err != nil || len(dropped) != 1 {
		t.Fatalf("dropped %v %v", dropped, err)
	}
	if _, err := r.LoadBlob(t.Context(), h, nil); !errors.Is(err, blob.ErrNotFound) {
		t.Fatalf("after drop: %v", err)
	}
}

// A snapshot file that rots after it was indexed used to be dropped by
// RebuildIndex, losing an acknowledged snapshot whose record the index
// still held (found by the torture suite's bit-rot matrix). The rebuild
// now rewrites the file from the index's copy, which must hash to the
// snapshot's ID; without an index to recover it from, the loss is named.
func TestRebuildRecoversDamagedSnapshotFile(t *testing.T) {
	dir := repotest.Init(t, repotest.Options())
	r := repotest.Open(t, dir)
	src := sampleTree(t)
	id := backupDir(t, r, src)
	p := storage.NewLocal(dir).Path(storage.Handle{Kind: storage.Snapshot, Name: id.String()})
	good, err := os.ReadFile(p)
	if err != nil {
		t.Fatal(err)
	}
	damaged := slices.Clone(good)
	damaged[len(damaged)/2] ^= 0x10
	os.WriteFile(p, damaged, 0o600)
	if _, err := r.LoadSnapshot(t.Context(), id); err == nil {
		t.Fatal("the damaged snapshot file loads")
	}
	rb, err := r.RebuildIndex(t.Context())
	if err != nil {
		t.Fatal(err)
	}
	if rb.Snapshots != 1 || len(rb.UnreadableSnapshots) != 0 || len(rb.RecoveredSnapshots) != 1 || rb.RecoveredSnapshots[0].ID != id {
		t.Fatalf("rebuild: %+v", rb)
	}
	if _, err := r.LoadSnapshot(t.Context(), id); err != nil {
		t.Fatalf("the rewritten snapshot file: %v", err)
	}
	restoreAndCompare(t, r, id, src)
	rep, err := check.Run(t.Context(), r, check.Options{ReadData: true})
	if err != nil || len(rep.Findings) != 0 {
		t.Fatalf("check after the rebuild: %v %v", err, rep.Findings)
	}
	if temps, _ := filepath.Glob(filepath.Join(dir, "snapshots", storage.TempPrefix+"*")); len(temps) != 0 {
		t.Fatalf("temporary files left: %v", temps)
	}
	r.Close()

	// Without the old index there is nothing to recover from.
	os.WriteFile(p, damaged, 0o600)
	os.RemoveAll(filepath.Join(dir, "index"))
	r2, err := repo.Open(t.Context(), dir, repotest.Credentials(), repo.Options{SkipIndex: true})
	if err != nil {
		t.Fatal(err)
	}
	defer r2.Close()
	rb, err = r2.RebuildIndex(t.Context())
	if err != nil || rb.Snapshots != 0 || len(rb.UnreadableSnapshots) != 1 || len(rb.RecoveredSnapshots) != 0 {
		t.Fatalf("rebuild without the old index: %+v %v", rb, err)
	}
}

// The snapshot list comes from the index's cached records, and the index
// (badger, a cache) returned damaged bytes as they were: a record changed
// there would have been listed as if it were the snapshot (found by the
// torture suite, which rots the index). Each record is now checked
// against its ID, and a damaged one is read from the snapshot file.
func TestSnapshotsDistrustDamagedCache(t *testing.T) {
	dir := repotest.Init(t, repotest.Options())
	r := repotest.Open(t, dir)
	src := sampleTree(t)
	id := backupDir(t, r, src)
	list, err := r.Snapshots(t.Context(), snapshot.Filter{})
	if err != nil || len(list) != 1 {
		t.Fatal(list, err)
	}
	rec, _, err := snapshot.Encode(list[0].Snapshot)
	if err != nil {
		t.Fatal(err)
	}
	forged := bytes.Replace(rec, []byte(`"lyra"`), []byte(`"vega"`), 1)
	if bytes.Equal(forged, rec) {
		t.Fatalf("record %s has no node to change", rec)
	}
	if err := r.CacheSnapshotRecord(id, forged); err != nil {
		t.Fatal(err)
	}
	list, err = r.Snapshots(t.Context(), snapshot.Filter{})
	if err != nil || len(list) != 1 || list[0].ID != id || list[0].Node != "lyra" {
		t.Fatalf("snapshots with a damaged cache: %+v %v", list, err)
	}
	if got, err := r.Snapshots(t.Context(), snapshot.Filter{Node: "vega"}); err != nil || len(got) != 0 {
		t.Fatalf("the forged record is listed: %+v %v", got, err)
	}
	// With the file damaged too, listing fails rather than lie.
	p := storage.NewLocal(dir).Path(storage.Handle{Kind: storage.Snapshot, Name: id.String()})
	b, _ := os.ReadFile(p)
	b[len(b)/2] ^= 1
	os.WriteFile(p, b, 0o600)
	if list, err := r.Snapshots(t.Context(), snapshot.Filter{}); err == nil {
		t.Fatalf("listed %+v from a damaged cache and a damaged file", list)
	}
}
