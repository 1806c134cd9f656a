package torture

import (
	"encoding/json"
	"fmt"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/cairnbackup/cairn/repo/blob"
	"github.com/cairnbackup/cairn/repo/snapshot"
	"github.com/cairnbackup/cairn/repo/tree"
	"github.com/cairnbackup/cairn/repo/wire"
)

// Tree-ID borrowing: vega (push and read) has learnt the ID of lyra's
// root tree and of one of lyra's chunks (from a log line, a screen, a
// leaked listing) and tries to make them part of a snapshot of its own,
// which it could then restore with restore --from. Each attempt must be
// refused with Error 2 naming the blob, write no snapshot, and leave
// lyra's snapshot restoring bit-identical; vega's restore --from then
// finds nothing to restore.
func TestTreeIDBorrowing(t *testing.T) {
	e := newEnv(t)
	e.initRepo()
	lyra, vega := newNode(t, "lyra", "push, read"), newNode(t, "vega", "push, read")
	a := e.serve(nil, "", lyra, vega)
	src := filepath.Join(e.dir, "lyra-src")
	s := newSource(t, src, seed^0x7b, smallSpec, 0)
	secret := []byte("lyra's one-chunk secret, which vega has never seen\n")
	if err := os.WriteFile(filepath.Join(src, "secret.txt"), secret, 0o600); err != nil {
		t.Fatal(err)
	}
	kept := s.keep(filepath.Join(e.dir, "lyra-copy"))
	r := a.push(lyra, nil, nil, "--json", src)
	sum, ok := summaryOf(r.stdout)
	if r.code != 0 || !ok {
		t.Fatalf("lyra's push: %s", r)
	}
	var list []struct {
		Tree blob.ID `json:"tree"`
	}
	if err := json.Unmarshal([]byte(e.ok("snapshots", "--json")), &list); err != nil || len(list) != 1 {
		t.Fatalf("snapshots: %v", err)
	}
	lyraTree, chunk := list[0].Tree, blob.Hash(secret)

	treeMsg := fmt.Sprintf("tree %s is not part of node vega's snapshots and was not sent in this session", lyraTree.Short())
	attempts := []struct {
		name string
		send func(r *raw) (blob.ID, error) // sends blobs, returns the root to commit
		msg  string
	}{
		{"nests lyra's root tree under a tree of its own", func(r *raw) (blob.ID, error) {
			b, err := tree.Encode(nil, &tree.Tree{Nodes: []tree.Node{{Name: "borrowed", Type: tree.Dir, Mode: 0o755, Subtree: lyraTree}}})
			if err != nil {
				return blob.ID{}, err
			}
			return blob.Hash(b), putRaw(r, blob.Tree, b)
		}, treeMsg},
		{"lists lyra's chunk in a file of its own", func(r *raw) (blob.ID, error) {
			mine := []byte("vega's own chunk\n")
			n := tree.Node{Name: "f", Type: tree.File, Mode: 0o644, Size: uint64(len(mine) + len(secret)),
				Content: []tree.Chunk{{ID: blob.Hash(mine), Size: uint64(len(mine))}, {ID: chunk, Size: uint64(len(secret))}}}
			n.FileHash = blob.Hash(append(append([]byte(nil), mine...), secret...))
			b, err := tree.Encode(nil, &tree.Tree{Nodes: []tree.Node{n}})
			if err != nil {
				return blob.ID{}, err
			}
			if err := putRaw(r, blob.Data, mine); err != nil {
				return blob.ID{}, err
			}
			return blob.Hash(b), putRaw(r, blob.Tree, b)
		}, fmt.Sprintf("data blob %s is not part of node vega's snapshots, was not sent in this session and was not reported present by have-blobs in this session", chunk.Short())},
		// Last: were it accepted, it would be vega's latest snapshot, which
		// restore --from latest below would restore.
		{"commits lyra's root tree", func(r *raw) (blob.ID, error) { return lyraTree, nil }, treeMsg},
	}
	refused := 0
	var notes []string
	for _, at := range attempts {
		t.Run(at.name, func(t *testing.T) {
			r, err := a.open(vega, "cairn-wire")
			if err != nil {
				t.Fatal(err)
			}
			defer r.close()
			if _, err := r.hello("vega"); err != nil {
				t.Fatal(err)
			}
			root, err := at.send(r)
			if err != nil {
				t.Fatal(err)
			}
			rec, _, err := snapshot.Encode(&snapshot.Snapshot{Version: snapshot.Version, Time: time.Now(), Node: "vega", Paths: []string{"/x"}, Tree: root})
			if err != nil {
				t.Fatal(err)
			}
			if err := r.frame(wire.TypeCommit, (&wire.Commit{Req: 1, Record: rec}).Append(nil)); err != nil {
				t.Fatal(err)
			}
			m, err := r.refusal(30 * time.Second)
			if err != nil || m == nil {
				t.Fatalf("no Error frame: %v", err)
			}
			st, err := r.exit(30 * time.Second)
			if m.Code != wire.CodePermissionDenied || m.Message != at.msg || err != nil || st != 1 {
				t.Fatalf("Error %d %q, exit %d %v; want Error %d %q, exit 1", m.Code, m.Message, st, err, wire.CodePermissionDenied, at.msg)
			}
			if out := e.ok("snapshots", "--json", "--node", "vega"); strings.TrimSpace(out) != "[]" {
				t.Fatalf("vega has snapshots: %s", out)
			}
			a.WaitFor(`msg="push failed" node=vega`)
			refused++
			notes = append(notes, m.Message[:strings.Index(m.Message, " is not")])
		})
	}

	// restore --from as vega: nothing of lyra's, whether it asks for its
	// latest snapshot or names lyra's.
	from := func(ref string) result {
		return e.run(nil, nil, "restore", "--from", fmt.Sprintf("ssh://vega@127.0.0.1:%d", a.Port), "-i", vega.Key.PrivatePath,
			"--host-key", a.HostKey, ref, "--target", filepath.Join(e.dir, "vega-restore"))
	}
	prefix := fmt.Sprintf("cairn: restore: ssh://vega@127.0.0.1:%d: ", a.Port)
	restoreRefused := 0
	if r := from("latest"); r.code == 1 && r.stderr == prefix+"no snapshot matches: not found\n" {
		restoreRefused++
	} else {
		t.Errorf("vega's restore --from latest: %s", r)
	}
	if r := from(sum.Snapshot); r.code == 1 && r.stderr == prefix+"snapshot "+sum.Snapshot+": not found\n" {
		restoreRefused++
	} else {
		t.Errorf("vega's restore --from of lyra's snapshot: %s", r)
	}
	if _, err := os.Stat(filepath.Join(e.dir, "vega-restore", src, "secret.txt")); err == nil {
		t.Error("vega restored lyra's files")
	}

	lost := 0
	if d := e.restoreCompare(sum.Snapshot, src, kept); len(d) > 0 {
		t.Errorf("lyra's snapshot after the attempts: %s", strings.Join(d, "\n"))
		lost = 1
	}
	if r := e.run(nil, nil, "check", "--read-data"); r.code != 0 {
		t.Errorf("check after the attempts: %s", r)
	}
	record("tree-ID borrowing", len(attempts)+2, refused+restoreRefused, lost,
		fmt.Sprintf("refused with Error 2: %s; restore --from as vega: nothing to restore", strings.Join(notes, ", ")))
}

// putRaw sends b as a raw PutBlob of type t.
func putRaw(r *raw, t blob.Type, b []byte) error {
	m := &wire.PutBlob{Handle: blob.Handle{ID: blob.Hash(b), Type: t}, Compression: wire.CompressionRaw, RawLength: uint32(len(b)), Payload: b}
	return r.frame(wire.TypePutBlob, m.Append(nil))
}
