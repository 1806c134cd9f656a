package appliance

import (
	"bytes"
	"encoding/json"
	"fmt"
	"math/rand/v2"
	"os"
	"path/filepath"
	"testing"

	"github.com/cairnbackup/cairn/repo"
	"github.com/cairnbackup/cairn/repo/blob"
	"github.com/cairnbackup/cairn/repo/repotest"
	"github.com/cairnbackup/cairn/repo/snapshot"
	"github.com/cairnbackup/cairn/repo/status"
	"github.com/cairnbackup/cairn/repo/tree"
	"github.com/cairnbackup/cairn/repo/wire"
)

// figures are the summary figures a stream push reports.
type figures struct {
	Blobs  uint64 `json:"blobs_added"`
	Bytes  uint64 `json:"bytes_added"`
	Stored uint64 `json:"stored_added"`
}

// An isolated node's stream push counts what it sent, never what other
// nodes hold: lyra, isolated, pushes with --stdin a stream vega stored
// already, and its output and the summary its `snapshots` lists say that
// every blob of the push was added, with the bytes and stored size a
// push into an empty repository reports; the appliance stores the chunks
// once. A node that is not isolated is told its chunks were there
// already (dedup across nodes, by design).
func TestIsolatedStreamPushCountsWhatItSent(t *testing.T) {
	r := repotest.New(t)
	cfgPath := filepath.Join(t.TempDir(), "a.yaml")
	if err := os.WriteFile(cfgPath, []byte("nodes: {}\n"), 0o600); err != nil {
		t.Fatal(err)
	}
	a, err := New(Options{Repo: r, ConfigPath: cfgPath})
	if err != nil {
		t.Fatal(err)
	}
	// Several chunks, some of them more than once in the stream:
	// counted once. The chunker's gear table is the repository's, new in
	// every run, so the part repeats three times and is four times the
	// largest chunk: the second copy's cut points meet the first's
	// (300 KiB twice failed 5 runs in 40).
	part := make([]byte, 1<<20)
	rand.NewChaCha8([32]byte{8}).Read(part)
	stream := append(bytes.Repeat([]byte("a dump line that compresses\n"), 4000), bytes.Repeat(part, 3)...)

	push := func(node string, isolated bool) (string, snapshot.Entry) {
		t.Helper()
		var stdout, stderr bytes.Buffer
		if code := a.NodeSession(t.Context(), node, wire.PermPush, isolated, "push --stdin --name db.sql", bytes.NewReader(stream), &stdout, &stderr); code != 0 {
			t.Fatalf("%s's push: exit %d, %s", node, code, stderr.String())
		}
		list, err := r.Snapshots(t.Context(), snapshot.Filter{Node: node})
		if err != nil || len(list) != 1 {
			t.Fatalf("%s's snapshots: %v %v", node, list, err)
		}
		return stdout.String(), list[0]
	}
	// listed returns the summary figures of node's only snapshot as the
	// node's snapshots command lists them.
	listed := func(node string, isolated bool) figures {
		t.Helper()
		var stdout, stderr bytes.Buffer
		if code := a.NodeSession(t.Context(), node, wire.PermPush, isolated, "snapshots", nil, &stdout, &stderr); code != 0 {
			t.Fatalf("%s's snapshots: exit %d, %s", node, code, stderr.String())
		}
		var out []struct {
			Record struct {
				Summary figures `json:"summary"`
			} `json:"record"`
		}
		if err := json.Unmarshal(stdout.Bytes(), &out); err != nil || len(out) != 1 {
			t.Fatalf("%s's snapshots: %v %s", node, err, stdout.String())
		}
		return out[0].Record.Summary
	}

	_, vega := push("vega", false)
	vegaTree := stored(t, r, blob.Tree, vega.Tree)
	data := chunksOf(t, r, vega.Tree)
	if len(data) < 3 {
		t.Fatalf("the stream made %d distinct chunks, want several", len(data))
	}
	var chunks figures
	for _, id := range data {
		f := stored(t, r, blob.Data, id)
		chunks.Blobs++
		chunks.Bytes += f.Bytes
		chunks.Stored += f.Stored
	}
	if want := plus(chunks, vegaTree); vega.Summary.BlobsAdded != want.Blobs || vega.Summary.BytesAdded != want.Bytes || vega.Summary.StoredAdded != want.Stored {
		t.Fatalf("vega's summary %+v, want %+v", vega.Summary, want)
	}
	blobsBefore := countBlobs(t, r)

	out, lyra := push("lyra", true)
	want := plus(chunks, stored(t, r, blob.Tree, lyra.Tree))
	if wantOut := fmt.Sprintf("snapshot %s saved: 1 file, %s, %s added\n", lyra.ID.Short(), status.HumanBytes(uint64(len(stream))), status.HumanBytes(want.Bytes)); out != wantOut {
		t.Fatalf("lyra's output %q, want %q", out, wantOut)
	}
	if got := listed("lyra", true); got != want {
		t.Fatalf("lyra's listed summary %+v, want %+v", got, want)
	}
	if n := countBlobs(t, r); n != blobsBefore+1 {
		t.Fatalf("%d blobs after lyra's push, want %d (its tree only)", n, blobsBefore+1)
	}

	out, proxima := push("proxima", false)
	tr := stored(t, r, blob.Tree, proxima.Tree)
	if wantOut := fmt.Sprintf("snapshot %s saved: 1 file, %s, %s added\n", proxima.ID.Short(), status.HumanBytes(uint64(len(stream))), status.HumanBytes(tr.Bytes)); out != wantOut {
		t.Fatalf("proxima's output %q, want %q", out, wantOut)
	}
	if got := listed("proxima", false); got != tr {
		t.Fatalf("proxima's listed summary %+v, want %+v", got, tr)
	}
}

func plus(a, b figures) figures {
	return figures{Blobs: a.Blobs + b.Blobs, Bytes: a.Bytes + b.Bytes, Stored: a.Stored + b.Stored}
}

// stored returns the figures of one stored blob: its plaintext and
// stored lengths, from the index.
func stored(t *testing.T, r *repo.Repository, typ blob.Type, id blob.ID) figures {
	t.Helper()
	loc, ok, err := r.Lookup(blob.Handle{ID: id, Type: typ})
	if err != nil || !ok {
		t.Fatalf("blob %s/%s: %v %v", typ, id.Short(), ok, err)
	}
	return figures{Blobs: 1, Bytes: uint64(loc.RawLength), Stored: uint64(loc.Length)}
}

// chunksOf returns the distinct chunks of the one file of the tree root.
func chunksOf(t *testing.T, r *repo.Repository, root blob.ID) []blob.ID {
	t.Helper()
	b, err := r.LoadBlob(t.Context(), blob.Handle{ID: root, Type: blob.Tree}, nil)
	if err != nil {
		t.Fatal(err)
	}
	tr, err := tree.Decode(b)
	if err != nil || len(tr.Nodes) != 1 {
		t.Fatalf("tree %v %v", tr, err)
	}
	seen := map[blob.ID]bool{}
	var out []blob.ID
	for _, c := range tr.Nodes[0].Content {
		if !seen[c.ID] {
			seen[c.ID] = true
			out = append(out, c.ID)
		}
	}
	if len(out) == len(tr.Nodes[0].Content) {
		t.Fatal("no chunk appears twice in the stream")
	}
	return out
}

func countBlobs(t *testing.T, r *repo.Repository) int {
	t.Helper()
	n := 0
	if err := r.IndexedBlobs(func(blob.Handle, repo.Location) error { n++; return nil }); err != nil {
		t.Fatal(err)
	}
	return n
}
