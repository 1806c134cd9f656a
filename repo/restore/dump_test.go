package restore_test

import (
	"archive/tar"
	"bytes"
	"context"
	"errors"
	"fmt"
	"io"
	"os"
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/cairnbackup/cairn/repo"
	"github.com/cairnbackup/cairn/repo/blob"
	"github.com/cairnbackup/cairn/repo/repotest"
	"github.com/cairnbackup/cairn/repo/restore"
	"github.com/cairnbackup/cairn/repo/snapfs"
	"github.com/cairnbackup/cairn/repo/storage"
	"github.com/cairnbackup/cairn/repo/tree"
	"golang.org/x/sys/unix"
)

// builder stores hand-built trees and file contents in a real repository.
type builder struct {
	t *testing.T
	s *repo.Session
}

// piece is one chunk of a file: data, or a hole of hole zero bytes.
type piece struct {
	data string
	hole uint64
}

// file stores the pieces as chunks and returns a file node holding them
// (mode 0644 unless set later) and its contents.
func (b *builder) file(name string, pieces ...piece) (tree.Node, []byte) {
	b.t.Helper()
	n := tree.Node{Name: name, Type: tree.File, Mode: 0o644}
	var all []byte
	for _, p := range pieces {
		if p.hole > 0 {
			n.Content = append(n.Content, tree.Chunk{Size: p.hole})
			all = append(all, make([]byte, p.hole)...)
			continue
		}
		id, _, err := b.s.SaveBlob(b.t.Context(), blob.Data, []byte(p.data))
		if err != nil {
			b.t.Fatal(err)
		}
		n.Content = append(n.Content, tree.Chunk{ID: id, Size: uint64(len(p.data))})
		all = append(all, p.data...)
	}
	n.Size = uint64(len(all))
	n.FileHash = blob.Hash(all)
	return n, all
}

func (b *builder) dir(nodes ...tree.Node) blob.ID {
	b.t.Helper()
	slices.SortFunc(nodes, func(x, y tree.Node) int { return strings.Compare(x.Name, y.Name) })
	data, err := tree.Encode(nil, &tree.Tree{Nodes: nodes})
	if err != nil {
		b.t.Fatal(err)
	}
	id, _, err := b.s.SaveBlob(b.t.Context(), blob.Tree, data)
	if err != nil {
		b.t.Fatal(err)
	}
	return id
}

func (b *builder) flush() {
	b.t.Helper()
	if err := b.s.Flush(b.t.Context()); err != nil {
		b.t.Fatal(err)
	}
}

// entry is what a tar entry must hold.
type entry struct {
	hdr  tar.Header
	data string
}

// describe formats every header field WriteTar sets, plus the entry's
// extended attributes and contents.
func describe(h *tar.Header, data string) string {
	var xattrs []string
	for k, v := range h.PAXRecords {
		if name, ok := strings.CutPrefix(k, "SCHILY.xattr."); ok {
			xattrs = append(xattrs, fmt.Sprintf("%s=%q", name, v))
		}
	}
	slices.Sort(xattrs)
	return fmt.Sprintf("%q type=%c link=%q size=%d mode=%o uid=%d gid=%d uname=%q gname=%q mtime=%d atime=%d ctime=%d dev=%d,%d format=%v xattrs=%v data=%q",
		h.Name, h.Typeflag, h.Linkname, h.Size, h.Mode, h.Uid, h.Gid, h.Uname, h.Gname,
		h.ModTime.UnixNano(), unixNano(h.AccessTime), unixNano(h.ChangeTime), h.Devmajor, h.Devminor, h.Format, xattrs, data)
}

func unixNano(t time.Time) int64 {
	if t.IsZero() {
		return 0
	}
	return t.UnixNano()
}

func TestWriteTarRoundTrip(t *testing.T) {
	r := repotest.New(t)
	b := &builder{t: t, s: r.NewSession()}
	const (
		mtime = 1700000000123456789
		atime = 1700000100000000007
	)
	longName := strings.Repeat("long-name-", 15) // 150 bytes: needs a PAX path record
	bigUser := strings.Repeat("u", 40)           // longer than ustar's 32 bytes

	a, aData := b.file("a.txt", piece{data: "hello "}, piece{data: "world"})
	a.Mode, a.UID, a.GID, a.User, a.Group, a.MTime, a.ATime = 0o640, 1000, 100, "ann", "users", mtime, atime
	a.Xattrs = []tree.Xattr{{Name: "user.comment", Value: []byte("hi\x00there")}, {Name: "user.empty", Value: []byte{}}}
	hard1, hardData := b.file("hard1", piece{data: "shared contents"})
	hard1.HardlinkID, hard1.Links, hard1.MTime = 42, 2, mtime
	hard2 := hard1
	hard2.Name = "hard2"
	sparse, sparseData := b.file("sparse", piece{data: "head"}, piece{hole: 100000}, piece{data: "tail"})
	sparse.MTime = mtime
	setuid, setuidData := b.file("setuid", piece{data: "#!/bin/sh\n"})
	setuid.Mode, setuid.UID, setuid.User, setuid.MTime = 0o4755, 3000000, bigUser, mtime
	old, _ := b.file("old")
	old.MTime = -1500000000000000001 // before 1970, not on a whole second
	deep, deepData := b.file("f", piece{data: "deep"})
	deep.MTime = mtime

	devDir := b.dir(
		tree.Node{Name: "fifo", Type: tree.FIFO, Mode: 0o600, MTime: mtime},
		tree.Node{Name: "null", Type: tree.CharDevice, Mode: 0o666, MTime: mtime, Rdev: unix.Mkdev(1, 3)},
		tree.Node{Name: "sda", Type: tree.BlockDevice, Mode: 0o660, GID: 6, Group: "disk", MTime: mtime, Rdev: unix.Mkdev(8, 16)},
		tree.Node{Name: "sock", Type: tree.Socket, Mode: 0o755, MTime: mtime},
	)
	root := b.dir(
		a,
		tree.Node{Name: "dev", Type: tree.Dir, Mode: 0o755, MTime: mtime, ATime: atime, Subtree: devDir},
		hard1,
		tree.Node{Name: "link", Type: tree.Symlink, Mode: 0o777, MTime: mtime, LinkTarget: "a.txt", Size: 5,
			Xattrs: []tree.Xattr{{Name: "trusted.x", Value: []byte("y")}}},
		tree.Node{Name: longName, Type: tree.Dir, Mode: 0o700, MTime: mtime, Subtree: b.dir(deep)},
		old,
		setuid,
		sparse,
		tree.Node{Name: "sub", Type: tree.Dir, Mode: 0o1777, MTime: mtime, Subtree: b.dir(hard2)},
	)
	b.flush()

	at := func(ns int64) time.Time { return time.Unix(0, ns) }
	pax := tar.FormatPAX
	want := []entry{
		{tar.Header{Name: "a.txt", Typeflag: tar.TypeReg, Size: 11, Mode: 0o640, Uid: 1000, Gid: 100, Uname: "ann", Gname: "users",
			ModTime: at(mtime), AccessTime: at(atime), Format: pax,
			PAXRecords: map[string]string{"SCHILY.xattr.user.comment": "hi\x00there", "SCHILY.xattr.user.empty": ""}}, string(aData)},
		{tar.Header{Name: "dev/", Typeflag: tar.TypeDir, Mode: 0o755, ModTime: at(mtime), AccessTime: at(atime), Format: pax}, ""},
		{tar.Header{Name: "dev/fifo", Typeflag: tar.TypeFifo, Mode: 0o600, ModTime: at(mtime), Format: pax}, ""},
		{tar.Header{Name: "dev/null", Typeflag: tar.TypeChar, Mode: 0o666, ModTime: at(mtime), Devmajor: 1, Devminor: 3, Format: pax}, ""},
		{tar.Header{Name: "dev/sda", Typeflag: tar.TypeBlock, Mode: 0o660, Gid: 6, Gname: "disk", ModTime: at(mtime), Devmajor: 8, Devminor: 16, Format: pax}, ""},
		{tar.Header{Name: "hard1", Typeflag: tar.TypeReg, Size: int64(len(hardData)), Mode: 0o644, ModTime: at(mtime), Format: pax}, string(hardData)},
		{tar.Header{Name: "link", Typeflag: tar.TypeSymlink, Linkname: "a.txt", Mode: 0o777, ModTime: at(mtime), Format: pax,
			PAXRecords: map[string]string{"SCHILY.xattr.trusted.x": "y"}}, ""},
		{tar.Header{Name: longName + "/", Typeflag: tar.TypeDir, Mode: 0o700, ModTime: at(mtime), Format: pax}, ""},
		{tar.Header{Name: longName + "/f", Typeflag: tar.TypeReg, Size: 4, Mode: 0o644, ModTime: at(mtime), Format: pax}, string(deepData)},
		{tar.Header{Name: "old", Typeflag: tar.TypeReg, Mode: 0o644, ModTime: at(old.MTime), Format: pax}, ""},
		{tar.Header{Name: "setuid", Typeflag: tar.TypeReg, Size: int64(len(setuidData)), Mode: 0o4755, Uid: 3000000, Uname: bigUser, ModTime: at(mtime), Format: pax}, string(setuidData)},
		{tar.Header{Name: "sparse", Typeflag: tar.TypeReg, Size: 100008, Mode: 0o644, ModTime: at(mtime), Format: pax}, string(sparseData)},
		{tar.Header{Name: "sub/", Typeflag: tar.TypeDir, Mode: 0o1777, ModTime: at(mtime), Format: pax}, ""},
		{tar.Header{Name: "sub/hard2", Typeflag: tar.TypeLink, Linkname: "hard1", Mode: 0o644, ModTime: at(mtime), Format: pax}, ""},
	}

	var buf bytes.Buffer
	if err := restore.WriteTar(t.Context(), r, tree.Node{Type: tree.Dir, Subtree: root}, &buf); err != nil {
		t.Fatal(err)
	}
	tr := tar.NewReader(&buf)
	var got []string
	for {
		h, err := tr.Next()
		if err == io.EOF {
			break
		}
		if err != nil {
			t.Fatal(err)
		}
		data, err := io.ReadAll(tr)
		if err != nil {
			t.Fatal(err)
		}
		got = append(got, describe(h, string(data)))
	}
	var wantS []string
	for _, e := range want {
		wantS = append(wantS, describe(&e.hdr, e.data))
	}
	if !slices.Equal(got, wantS) {
		t.Errorf("tar entries differ")
		for i := range max(len(got), len(wantS)) {
			g, w := "(none)", "(none)"
			if i < len(got) {
				g = got[i]
			}
			if i < len(wantS) {
				w = wantS[i]
			}
			if g != w {
				t.Errorf("entry %d:\n got %.300s\nwant %.300s", i, g, w)
			}
		}
	}

	// A node that is not a directory is one entry under its own name.
	buf.Reset()
	if err := restore.WriteTar(t.Context(), r, a, &buf); err != nil {
		t.Fatal(err)
	}
	tr = tar.NewReader(&buf)
	h, err := tr.Next()
	if err != nil || h.Name != "a.txt" || h.Size != 11 {
		t.Fatalf("single entry: %v %v", h, err)
	}
	if _, err := tr.Next(); err != io.EOF {
		t.Fatalf("more than one entry: %v", err)
	}
}

func TestWriteFileWithHole(t *testing.T) {
	r := repotest.New(t)
	b := &builder{t: t, s: r.NewSession()}
	n, want := b.file("sparse", piece{hole: 70000}, piece{data: "middle"}, piece{hole: 200000}, piece{data: "end"})
	b.flush()
	var buf bytes.Buffer
	if err := restore.WriteFile(t.Context(), r, &n, &buf); err != nil {
		t.Fatal(err)
	}
	if !bytes.Equal(buf.Bytes(), want) || buf.Len() != 270009 {
		t.Fatalf("wrote %d bytes, want %d", buf.Len(), len(want))
	}
	d := tree.Node{Name: "d", Type: tree.Dir, Subtree: b.dir()}
	if err := restore.WriteFile(t.Context(), r, &d, &buf); !errors.Is(err, snapfs.ErrNotFile) {
		t.Fatalf("directory: %v", err)
	}
}

// A chunk damaged in its pack is refused by the loader: the error names
// the file and wraps blob.ErrCorrupt, for WriteFile and WriteTar alike.
func TestDumpDamagedChunk(t *testing.T) {
	r := repotest.New(t)
	b := &builder{t: t, s: r.NewSession()}
	n, _ := b.file("victim", piece{data: strings.Repeat("a", 5000)}, piece{data: strings.Repeat("b", 5000)})
	root := b.dir(n)
	b.flush()

	loc, ok, err := r.Lookup(blob.Handle{ID: n.Content[1].ID, Type: blob.Data})
	if err != nil || !ok {
		t.Fatalf("lookup: %v %v", ok, err)
	}
	p := r.Backend().(*storage.Local).Path(storage.Handle{Kind: storage.Packs, Name: loc.Pack.String()})
	f, err := os.OpenFile(p, os.O_RDWR, 0)
	if err != nil {
		t.Fatal(err)
	}
	one := []byte{0}
	off := int64(loc.Offset) + int64(loc.Length)/2
	f.ReadAt(one, off)
	one[0] ^= 0x40
	if _, err := f.WriteAt(one, off); err != nil {
		t.Fatal(err)
	}
	f.Close()

	var buf bytes.Buffer
	err = restore.WriteFile(t.Context(), r, &n, &buf)
	if !errors.Is(err, blob.ErrCorrupt) || !strings.HasPrefix(err.Error(), "victim: offset 5000: ") {
		t.Fatalf("WriteFile: %v", err)
	}
	if buf.Len() != 5000 {
		t.Errorf("wrote %d bytes before the damaged chunk, want 5000", buf.Len())
	}
	buf.Reset()
	err = restore.WriteTar(t.Context(), r, tree.Node{Type: tree.Dir, Subtree: root}, &buf)
	if !errors.Is(err, blob.ErrCorrupt) || !strings.HasPrefix(err.Error(), "victim: offset 5000: ") {
		t.Fatalf("WriteTar: %v", err)
	}
}

// flipLoader returns the plaintext of data blobs with one bit flipped, as
// a loader that failed to verify would: only the whole-file hash catches
// it.
type flipLoader struct{ l snapfs.BlobLoader }

func (f flipLoader) LoadBlob(ctx context.Context, h blob.Handle, buf []byte) ([]byte, error) {
	out, err := f.l.LoadBlob(ctx, h, buf)
	if err == nil && h.Type == blob.Data && len(out) > 0 {
		out[0] ^= 1
	}
	return out, err
}

// The whole-file SHA-256 is checked after the bytes were written.
func TestWriteFileHashMismatch(t *testing.T) {
	r := repotest.New(t)
	b := &builder{t: t, s: r.NewSession()}
	n, want := b.file("etc/shadow", piece{data: "root:x:0:0"})
	b.flush()
	var buf bytes.Buffer
	err := restore.WriteFile(t.Context(), flipLoader{r}, &n, &buf)
	var me *restore.MismatchError
	if !errors.As(err, &me) || me.Path != "etc/shadow" || me.Want != n.FileHash || !errors.Is(err, blob.ErrCorrupt) {
		t.Fatalf("err %v", err)
	}
	if buf.Len() != len(want) {
		t.Fatalf("wrote %d bytes, want %d", buf.Len(), len(want))
	}
}
