package replica

import (
	"bufio"
	"context"
	"errors"
	"fmt"
	"io"

	"github.com/cairnbackup/cairn/repo"
	"github.com/cairnbackup/cairn/repo/blob"
	"github.com/cairnbackup/cairn/repo/storage"
	"github.com/minio/sha256-simd"
)

// Source is a replica a repair fetches copies from (read only: objects
// appear on a replica whole, so it can be read while it is written).
type Source struct {
	Name, Location string
	Backend        storage.Backend
}

// Healed says what became of one damaged or missing object.
type Healed struct {
	Object string `json:"object"` // "packs/ID", "snapshots/ID"
	// From is the replica whose copy was put back; empty when none
	// could be (Error says why).
	From     string `json:"from,omitempty"`
	Location string `json:"location,omitempty"`
	Error    string `json:"error,omitempty"`
}

// OK reports whether the object was repaired.
func (h Healed) OK() bool { return h.From != "" }

func (h Healed) String() string {
	if h.OK() {
		return fmt.Sprintf("%s: repaired from replica %s (%s)", h.Object, h.From, h.Location)
	}
	return fmt.Sprintf("%s: not repaired: %s", h.Object, h.Error)
}

// Heal puts back each of objects (damaged or missing in r) from the
// first source that holds a good copy: a pack's copy is streamed from
// the replica, hashed on the way and stored only if it hashes to its
// name, then read again whole and verified in place (every blob
// authenticated and re-hashed) and marked verified; a snapshot record
// (or drill report, key, config) is read whole and checked
// (repo.CheckObject) before it is put back. The index follows
// (repo.Repository.PutBack). Each object's result says from where, or
// why not.
func Heal(ctx context.Context, r *repo.Repository, objects []storage.Handle, sources []Source) ([]Healed, error) {
	var out []Healed
	for _, h := range objects {
		res := Healed{Object: h.String()}
		if len(sources) == 0 {
			res.Error = "no replica is configured"
		}
		var why []string
		for _, s := range sources {
			err := healFrom(ctx, r, h, s)
			if ctx.Err() != nil {
				return out, ctx.Err()
			}
			if err == nil {
				res.From, res.Location, res.Error = s.Name, s.Location, ""
				break
			}
			why = append(why, fmt.Sprintf("replica %s: %v", s.Name, err))
		}
		if !res.OK() && len(why) > 0 {
			res.Error = joinWhy(why)
		}
		out = append(out, res)
	}
	return out, nil
}

func joinWhy(why []string) string {
	s := why[0]
	for _, w := range why[1:] {
		s += "; " + w
	}
	return s
}

// healFrom puts back object h from source s.
func healFrom(ctx context.Context, r *repo.Repository, h storage.Handle, s Source) error {
	if h.Kind != storage.Packs {
		b, err := storage.ReadAll(ctx, s.Backend, h, repo.MaxSmallObject)
		if errors.Is(err, storage.ErrNotExist) {
			return errors.New("does not have it")
		}
		if err != nil {
			return err
		}
		if err := repo.CheckObject(r, h, b); err != nil {
			return fmt.Errorf("its copy is damaged too: %w", err)
		}
		return r.PutBack(ctx, h, newBytesReader(b))
	}
	id, err := blob.ParseID(h.Name)
	if err != nil {
		return err
	}
	f, err := s.Backend.Open(ctx, h)
	if errors.Is(err, storage.ErrNotExist) {
		return errors.New("does not have it")
	}
	if err != nil {
		return err
	}
	defer f.Close()
	hr := &hashReader{r: io.NewSectionReader(f, 0, f.Size()), h: sha256.New(), id: id, size: f.Size(), prog: &Progress{}, what: "on the replica"}
	if err := r.PutBack(ctx, h, bufio.NewReaderSize(hr, 1<<20)); err != nil {
		if errors.Is(err, blob.ErrCorrupt) {
			return fmt.Errorf("its copy is damaged too: %w", err)
		}
		return err
	}
	rep := r.VerifyPack(ctx, id)
	if rep.Err != nil || len(rep.Damaged) > 0 {
		return fmt.Errorf("put back, but it does not verify in place: %v %v", rep.Err, rep.Damaged)
	}
	return r.MarkVerified(id)
}
