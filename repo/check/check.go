// Package check verifies a repository and reports findings that name
// the snapshots and paths each problem affects.
//
// # What is checked
//
// Structure (always): every indexed pack exists with the recorded size;
// every pack file has a readable header; every snapshot file opens,
// authenticates and decodes; every snapshot the index lists has its file
// (one that does not is SnapshotMissing, unless a forget is removing it);
// every tree of every snapshot loads and decodes; every data blob a file
// references is in the index.
//
// Data (with ReadData): the chosen packs are read completely once: the
// file must hash to its name, and every blob must authenticate,
// decompress and re-hash to its ID. Packs that pass are marked verified
// in the index.
//
// # Memory
//
// One pack's blob at a time per reader and its read buffer
// ([repo.Repository.PackReaders] readers: two with 1 MiB buffers on a
// directory, four with 8 MiB on an object store), the set of tree IDs
// visited, and the findings.
package check

import (
	"cmp"
	"context"
	"encoding/binary"
	"errors"
	"fmt"
	"math/rand/v2"
	"path"
	"slices"
	"sort"
	"strconv"
	"strings"
	"sync"
	"time"

	"github.com/cairnbackup/cairn/repo"
	"github.com/cairnbackup/cairn/repo/blob"
	"github.com/cairnbackup/cairn/repo/snapfs"
	"github.com/cairnbackup/cairn/repo/snapshot"
	"github.com/cairnbackup/cairn/repo/storage"
	"github.com/cairnbackup/cairn/repo/tree"
	"golang.org/x/sync/errgroup"
)

// Kind classifies a finding.
type Kind string

// Finding kinds.
const (
	PackMissing     Kind = "pack-missing"     // indexed, but the file is gone
	PackSize        Kind = "pack-size"        // the file's size differs from the index
	PackHeader      Kind = "pack-header"      // the header cannot be read: its blobs are lost
	PackHash        Kind = "pack-hash"        // the file does not hash to its name
	BlobDamaged     Kind = "blob-damaged"     // fails authentication, decompression or re-hash
	BlobMissing     Kind = "blob-missing"     // referenced but not in the index
	SnapshotDamaged Kind = "snapshot-damaged" // the snapshot file does not open or decode
	SnapshotMissing Kind = "snapshot-missing" // the index lists the snapshot, its file is gone
	TreeDamaged     Kind = "tree-damaged"     // a tree blob loads but does not decode
	BlobUnreadable  Kind = "blob-unreadable"  // reading it failed (an I/O error)
)

// Affected names one place a problem reaches: a path in a snapshot, and
// the node and plan the snapshot belongs to.
type Affected struct {
	Node     string  `json:"node"`
	Plan     string  `json:"plan,omitempty"`
	Snapshot blob.ID `json:"snapshot"`
	Path     string  `json:"path"`
}

// Owner is "node" or "node/plan".
func (a Affected) Owner() string {
	if a.Plan == "" {
		return a.Node
	}
	return a.Node + "/" + a.Plan
}

// Finding is one problem.
type Finding struct {
	Kind     Kind       `json:"kind"`
	Pack     *blob.ID   `json:"pack,omitempty"`
	Blob     *blob.ID   `json:"blob,omitempty"`
	BlobType string     `json:"blob_type,omitempty"`
	Snapshot *blob.ID   `json:"snapshot,omitempty"`
	Message  string     `json:"message"`
	Affected []Affected `json:"affected,omitempty"`
}

func (f Finding) String() string {
	var b strings.Builder
	b.WriteString(string(f.Kind))
	switch {
	case f.Blob != nil:
		fmt.Fprintf(&b, " %s/%s", f.BlobType, f.Blob.Short())
	case f.Pack != nil:
		fmt.Fprintf(&b, " pack %s", f.Pack.Short())
	case f.Snapshot != nil:
		fmt.Fprintf(&b, " snapshot %s", f.Snapshot.Short())
	}
	b.WriteString(": ")
	b.WriteString(f.Message)
	for _, a := range f.Affected {
		fmt.Fprintf(&b, "\n    affects snapshot %s (%s): /%s", a.Snapshot.Short(), a.Owner(), a.Path)
	}
	return b.String()
}

// Subset chooses which packs ReadData reads. The zero value reads all.
type Subset struct {
	N, M    int     // read group N of M (1 ≤ N ≤ M): the packs whose ID's first four bytes are N-1 modulo M
	Percent float64 // or a random P% of the packs (at least one)
}

// maxSubsetGroups bounds M in N/M.
const maxSubsetGroups = 1 << 20

// ParseSubset parses "N/M" or "P%".
func ParseSubset(s string) (Subset, error) {
	if p, ok := strings.CutSuffix(s, "%"); ok {
		v, err := strconv.ParseFloat(p, 64)
		if err != nil || v <= 0 || v > 100 {
			return Subset{}, fmt.Errorf("subset %q: want a percentage above 0 and at most 100", s)
		}
		return Subset{Percent: v}, nil
	}
	a, b, ok := strings.Cut(s, "/")
	n, err1 := strconv.Atoi(a)
	m, err2 := strconv.Atoi(b)
	if !ok || err1 != nil || err2 != nil || m < 1 || n < 1 || n > m || m > maxSubsetGroups {
		return Subset{}, fmt.Errorf("subset %q: want N/M with 1 ≤ N ≤ M ≤ %d, or P%%", s, maxSubsetGroups)
	}
	return Subset{N: n, M: m}, nil
}

func (s Subset) pick(ids []blob.ID) []blob.ID {
	switch {
	case s.M > 0:
		var out []blob.ID
		for _, id := range ids {
			if uint64(binary.BigEndian.Uint32(id[:4]))%uint64(s.M) == uint64(s.N-1) {
				out = append(out, id)
			}
		}
		return out
	case s.Percent > 0 && s.Percent < 100:
		n := int(float64(len(ids)) * s.Percent / 100)
		if n < 1 && len(ids) > 0 {
			n = 1
		}
		out := slices.Clone(ids)
		rand.Shuffle(len(out), func(i, j int) { out[i], out[j] = out[j], out[i] })
		out = out[:n]
		slices.SortFunc(out, func(a, b blob.ID) int { return strings.Compare(a.String(), b.String()) })
		return out
	}
	return ids
}

// Options configure Run.
type Options struct {
	ReadData bool
	Subset   Subset
	// Packs, if not empty, are the packs ReadData reads (instead of
	// Subset): the verify job picks the least recently verified ones.
	Packs []blob.ID
	// Progress, if set, is called when ReadData starts reading and after
	// each pack it read, from one goroutine at a time.
	Progress func(ReadProgress)
}

// ReadProgress is how far the data read of a check is.
type ReadProgress struct {
	Packs, TotalPacks int
	Bytes, TotalBytes int64 // of the packs read, of all to read
}

// Report is the result of a check.
type Report struct {
	Snapshots int       `json:"snapshots"`
	Trees     int       `json:"trees"`
	Packs     int       `json:"packs"`
	PacksRead int       `json:"packs_read"`
	BytesRead int64     `json:"bytes_read"`
	Findings  []Finding `json:"findings"`
}

// Clean reports whether the check found nothing wrong.
func (r *Report) Clean() bool { return len(r.Findings) == 0 }

type checker struct {
	r     *repo.Repository
	rep   Report
	sizes map[blob.ID]int64 // of the pack files
	// plain is each readable pack's plaintext bytes, from its header:
	// what reading its data costs beyond its size.
	plain map[blob.ID]int64
	// bad holds the blobs found damaged or missing with the index of
	// their finding; the snapshot walk attaches the paths.
	bad map[blob.Handle]int
}

// Run checks the repository.
func Run(ctx context.Context, r *repo.Repository, o Options) (*Report, error) {
	c := &checker{r: r, bad: map[blob.Handle]int{}, rep: Report{Findings: []Finding{}}}
	packs, err := c.checkPacks(ctx)
	if err != nil {
		return nil, err
	}
	if o.ReadData {
		chosen := o.Subset.pick(packs)
		if len(o.Packs) > 0 {
			chosen = o.Packs
		}
		if err := c.readData(ctx, chosen, o.Progress); err != nil {
			return nil, err
		}
	}
	if err := c.walkSnapshots(ctx); err != nil {
		return nil, err
	}
	return &c.rep, nil
}

func (c *checker) add(f Finding) int {
	c.rep.Findings = append(c.rep.Findings, f)
	return len(c.rep.Findings) - 1
}

func idp(id blob.ID) *blob.ID { return &id }

func (c *checker) addBlob(kind Kind, h blob.Handle, pack *blob.ID, msg string) {
	if _, ok := c.bad[h]; ok {
		return
	}
	c.bad[h] = c.add(Finding{Kind: kind, Blob: idp(h.ID), BlobType: h.Type.String(), Pack: pack, Message: msg})
}

// checkPacks compares the index with packs/, reads every pack's header,
// and returns the IDs of all pack files, sorted.
func (c *checker) checkPacks(ctx context.Context) ([]blob.ID, error) {
	onDisk, err := c.r.StoredPacks(ctx)
	if err != nil {
		return nil, err
	}
	c.sizes = onDisk
	err = c.r.LostPacks(func(id blob.ID, when time.Time) error {
		if _, back := onDisk[id]; !back {
			c.add(Finding{Kind: PackMissing, Pack: idp(id), Message: fmt.Sprintf("pack %s disappeared (noticed %s); its blobs are lost unless stored again", id, when.UTC().Format(time.RFC3339))})
		}
		return nil
	})
	if err != nil {
		return nil, err
	}
	missing := map[blob.ID]bool{}
	indexed := map[blob.ID]bool{}
	err = c.r.PackRecords(func(p repo.PackRecord) error {
		id, size := p.ID, p.Size
		indexed[id] = true
		got, ok := onDisk[id]
		switch {
		case !ok:
			missing[id] = true
			c.add(Finding{Kind: PackMissing, Pack: idp(id), Message: fmt.Sprintf("pack %s is in the index but its file is missing", id)})
		case got != size:
			c.add(Finding{Kind: PackSize, Pack: idp(id), Message: fmt.Sprintf("pack %s is %d bytes, the index says %d", id, got, size)})
		}
		return nil
	})
	if err != nil {
		return nil, err
	}
	ids := make([]blob.ID, 0, len(onDisk))
	for id := range onDisk {
		ids = append(ids, id)
	}
	sort.Slice(ids, func(i, j int) bool { return string(ids[i][:]) < string(ids[j][:]) })
	c.rep.Packs = len(ids)
	// Every header must read: a damaged header loses the pack's blobs as
	// soon as the index is rebuilt.
	headerErrs := make([]error, len(ids))
	plain := make([]int64, len(ids))
	g, gctx := errgroup.WithContext(ctx)
	g.SetLimit(c.r.HeaderReaders())
	for i, id := range ids {
		g.Go(func() error {
			entries, _, err := c.r.ReadPackHeader(gctx, id)
			if gctx.Err() != nil {
				return gctx.Err()
			}
			headerErrs[i] = err
			for _, e := range entries {
				plain[i] += int64(e.RawLength)
			}
			return nil
		})
	}
	if err := g.Wait(); err != nil {
		return nil, err
	}
	c.plain = make(map[blob.ID]int64, len(ids))
	for i, id := range ids {
		c.plain[id] = plain[i]
	}
	for i, id := range ids {
		switch {
		case headerErrs[i] != nil && indexed[id]:
			c.add(Finding{Kind: PackHeader, Pack: idp(id), Message: fmt.Sprintf("pack %s: header unreadable (%v); its blobs still read through the index, and cairn repair index keeps their entries", id, headerErrs[i])})
		case headerErrs[i] != nil:
			c.add(Finding{Kind: PackHeader, Pack: idp(id), Message: fmt.Sprintf("pack %s: header unreadable, its blobs are lost: %v", id, headerErrs[i])})
		case !indexed[id]:
			c.add(Finding{Kind: PackHeader, Pack: idp(id), Message: fmt.Sprintf("pack %s is not in the index; opening the repository again indexes it", id)})
		}
	}
	// Blobs indexed in missing packs are lost: find them now, so that
	// the snapshot walk names what they affect.
	if len(missing) > 0 {
		err := c.r.IndexedBlobs(func(h blob.Handle, loc repo.Location) error {
			if missing[loc.Pack] {
				c.addBlob(BlobMissing, h, idp(loc.Pack), "its pack is missing")
			}
			return nil
		})
		if err != nil {
			return nil, err
		}
	}
	return ids, nil
}

func (c *checker) readData(ctx context.Context, ids []blob.ID, progress func(ReadProgress)) error {
	var mu sync.Mutex
	reports := make([]repo.PackReport, len(ids))
	done := ReadProgress{TotalPacks: len(ids)}
	for _, id := range ids {
		done.TotalBytes += c.sizes[id]
	}
	if progress != nil {
		progress(done)
	}
	g, gctx := errgroup.WithContext(ctx)
	g.SetLimit(c.r.PackReaders())
	for _, i := range costliestFirst(ids, c.sizes, c.plain) {
		id := ids[i]
		g.Go(func() error {
			rep := c.r.VerifyPack(gctx, id)
			if err := gctx.Err(); err != nil {
				return err
			}
			if rep.Err == nil && len(rep.Damaged) == 0 {
				if err := c.r.MarkVerified(id); err != nil {
					return err
				}
			}
			mu.Lock()
			reports[i] = rep
			done.Packs++
			done.Bytes += c.sizes[id]
			if progress != nil {
				progress(done)
			}
			mu.Unlock()
			return nil
		})
	}
	if err := g.Wait(); err != nil {
		return err
	}
	for _, rep := range reports {
		c.rep.PacksRead++
		c.rep.BytesRead += rep.Size
		pid := idp(rep.ID)
		if rep.Err != nil {
			kind := PackHash
			if errors.Is(rep.Err, storage.ErrNotExist) {
				kind = PackMissing
			} else if rep.Entries == nil {
				kind = PackHeader
			}
			if kind != PackMissing || !c.hasPackFinding(rep.ID, PackMissing) {
				c.add(Finding{Kind: kind, Pack: pid, Message: rep.Err.Error()})
			}
		}
		for _, d := range rep.Damaged {
			c.addBlob(BlobDamaged, d.Handle, pid, d.Err.Error())
		}
		if rep.Entries == nil && rep.Err != nil {
			// Without a header the pack could not be read blob by
			// blob: read each blob the index places in it instead.
			// Those that authenticate and re-hash are intact (and
			// repair index keeps their entries); the rest are damaged.
			var hs []blob.Handle
			err := c.r.IndexedBlobs(func(h blob.Handle, loc repo.Location) error {
				if loc.Pack == rep.ID {
					hs = append(hs, h)
				}
				return nil
			})
			if err != nil {
				return err
			}
			var buf []byte
			for _, h := range hs {
				buf, err = c.r.LoadBlob(ctx, h, buf)
				if ctx.Err() != nil {
					return ctx.Err()
				}
				if err != nil {
					c.addBlob(BlobDamaged, h, pid, fmt.Sprintf("its pack's header is unreadable, and so is the blob: %v", err))
				}
			}
		}
	}
	return nil
}

func (c *checker) hasPackFinding(id blob.ID, k Kind) bool {
	for _, f := range c.rep.Findings {
		if f.Kind == k && f.Pack != nil && *f.Pack == id {
			return true
		}
	}
	return false
}

// hit is a problem found below a tree, with its path relative to that tree.
type hit struct {
	path string
	h    blob.Handle
}

// costliestFirst returns the indexes of ids in the order readData starts
// them: the packs that cost most to verify first, so that the readers
// finish together instead of one of them ending the check alone with a
// pack of compressed text (which costs several times a pack of media of
// the same size: every plaintext byte is decompressed and hashed).
// The cost is the pack's size (hashed, decrypted) plus its plaintext
// (hashed) plus what decompression makes beyond the stored size.
func costliestFirst(ids []blob.ID, sizes, plain map[blob.ID]int64) []int {
	cost := func(id blob.ID) int64 {
		return sizes[id] + plain[id] + max(plain[id]-sizes[id], 0)
	}
	order := make([]int, len(ids))
	for i := range order {
		order[i] = i
	}
	slices.SortStableFunc(order, func(a, b int) int { return cmp.Compare(cost(ids[b]), cost(ids[a])) })
	return order
}

// walkSnapshots loads every snapshot file and walks every tree once,
// checking that trees decode and that referenced data blobs are indexed,
// and attaches the snapshots and paths affected to each blob finding.
func (c *checker) walkSnapshots(ctx context.Context) error {
	ids, err := c.r.SnapshotFiles(ctx)
	if err != nil {
		return err
	}
	var snaps []snapshot.Entry
	for _, id := range ids {
		sn, err := c.r.LoadSnapshot(ctx, id)
		if err != nil {
			if ctx.Err() != nil {
				return ctx.Err()
			}
			c.add(Finding{Kind: SnapshotDamaged, Snapshot: idp(id), Message: err.Error()})
			continue
		}
		snaps = append(snaps, snapshot.Entry{ID: id, Snapshot: sn})
	}
	missing, err := c.r.MissingSnapshots(ctx)
	if err != nil {
		return err
	}
	for _, m := range missing {
		if m.Snapshot == nil {
			c.add(Finding{Kind: SnapshotMissing, Snapshot: idp(m.ID), Message: fmt.Sprintf(
				"snapshot %s is in the index, but its file snapshots/%s is missing, and the index's copy of its record is damaged: the snapshot is lost", m.ID, m.ID)})
			continue
		}
		owner := Affected{Node: m.Snapshot.Node, Plan: m.Snapshot.Plan}.Owner()
		c.add(Finding{Kind: SnapshotMissing, Snapshot: idp(m.ID), Message: fmt.Sprintf(
			"snapshot %s (%s, %s) is in the index, but its file snapshots/%s is missing; cairn repair index writes it back from the index's copy of its record",
			m.ID, owner, m.Snapshot.Time.UTC().Format(time.RFC3339), m.ID)})
		// Its data is still there (prune keeps it): walk it too, so
		// damage in it is named.
		snaps = append(snaps, snapshot.Entry{ID: m.ID, Snapshot: m.Snapshot})
	}
	snapshot.Sort(snaps) // findings list affected snapshots oldest first
	// Trees found bad reading packs are not read again: the walk sees
	// errKnownBad for them.
	known := knownBad{l: c.r, bad: map[blob.ID]bool{}}
	for h := range c.bad {
		if h.Type == blob.Tree {
			known.bad[h.ID] = true
		}
	}
	memo := map[blob.ID][]hit{}
	seen := map[blob.ID]struct{}{}
	for _, e := range snaps {
		c.rep.Snapshots++
		hits, err := c.tree(ctx, known, e.Tree, memo, seen)
		if err != nil {
			return err
		}
		for _, h := range hits {
			i := c.bad[h.h]
			c.rep.Findings[i].Affected = append(c.rep.Findings[i].Affected, Affected{Node: e.Node, Plan: e.Plan, Snapshot: e.ID, Path: h.path})
		}
	}
	return nil
}

// errKnownBad is the error of a tree found bad before the walk.
var errKnownBad = errors.New("tree found bad before")

// knownBad is the check's loader: a tree in bad fails with errKnownBad,
// unread. bad is not changed during the walk (read from several
// goroutines).
type knownBad struct {
	l   snapfs.BlobLoader
	bad map[blob.ID]bool
}

func (k knownBad) LoadBlob(ctx context.Context, h blob.Handle, buf []byte) ([]byte, error) {
	if h.Type == blob.Tree && k.bad[h.ID] {
		return nil, errKnownBad
	}
	return k.l.LoadBlob(ctx, h, buf)
}

// tree returns the problems below tree root, walking with [snapfs.Walk]
// the trees not walked before (seen) and gathering each directory's
// problems at its end (memo: each tree is loaded once however many
// snapshots share it).
func (c *checker) tree(ctx context.Context, l snapfs.BlobLoader, root blob.ID, memo map[blob.ID][]hit, seen map[blob.ID]struct{}) ([]hit, error) {
	if hits, ok := memo[root]; ok {
		return hits, nil
	}
	type frame struct {
		hits   []hit // relative to the directory
		failed bool  // its tree could not be read
	}
	stack := []frame{{}} // per directory being walked, the root first
	below := func(top *frame, name string, hits []hit) {
		for _, s := range hits {
			top.hits = append(top.hits, hit{path: path.Join(name, s.path), h: s.h})
		}
	}
	for e, err := range snapfs.Walk(ctx, l, root, snapfs.WalkOptions{Seen: seen, Leave: true}) {
		top := &stack[len(stack)-1]
		if err != nil {
			var te *snapfs.TreeError
			if ctx.Err() != nil || !errors.As(err, &te) {
				return nil, err
			}
			h := blob.Handle{ID: te.Tree, Type: blob.Tree}
			c.treeFailed(h, te.Err)
			top.hits, top.failed = append(top.hits, hit{path: "", h: h}), true
			continue
		}
		n := e.Node
		switch {
		case e.Leave: // the root's last
			memo[e.Tree] = top.hits
			if !top.failed {
				c.rep.Trees++
			}
			if stack = stack[:len(stack)-1]; n != nil {
				below(&stack[len(stack)-1], n.Name, top.hits)
			}
		case n.Type == tree.Dir && e.Seen:
			below(top, n.Name, memo[n.Subtree])
		case n.Type == tree.Dir:
			stack = append(stack, frame{})
		case n.Type == tree.File:
			for _, ch := range n.Content {
				if ch.ID.IsZero() {
					continue
				}
				dh := blob.Handle{ID: ch.ID, Type: blob.Data}
				if _, bad := c.bad[dh]; !bad {
					_, ok, err := c.r.Lookup(dh)
					if err != nil {
						return nil, err
					}
					if !ok {
						c.addBlob(BlobMissing, dh, nil, "referenced but not in the index")
					}
				}
				if _, bad := c.bad[dh]; bad {
					top.hits = append(top.hits, hit{path: n.Name, h: dh})
				}
			}
		}
	}
	return memo[root], nil
}

// treeFailed records the finding for a tree that cannot be read (none
// for one found bad before the walk).
func (c *checker) treeFailed(h blob.Handle, err error) {
	if errors.Is(err, errKnownBad) {
		return
	}
	var pack *blob.ID
	if l, ok, _ := c.r.Lookup(h); ok {
		pack = idp(l.Pack)
	}
	var de *tree.DecodeError
	switch {
	case errors.Is(err, blob.ErrNotFound):
		c.addBlob(BlobMissing, h, pack, err.Error())
	case errors.As(err, &de):
		c.addBlob(TreeDamaged, h, pack, err.Error())
	case errors.Is(err, blob.ErrCorrupt):
		c.addBlob(BlobDamaged, h, pack, err.Error())
	default: // an I/O error: the tree cannot be read now
		c.addBlob(BlobUnreadable, h, pack, err.Error())
	}
}
