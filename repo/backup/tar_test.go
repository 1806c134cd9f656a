package backup_test

import (
	"archive/tar"
	"bytes"
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/cairnbackup/cairn/repo/backup"
	"github.com/cairnbackup/cairn/repo/repotest"
	"github.com/cairnbackup/cairn/repo/tree"
)

// tarStream writes a tar stream of the given headers (each regular
// file's body is its name).
func tarStream(t *testing.T, hdrs ...*tar.Header) *bytes.Buffer {
	t.Helper()
	var buf bytes.Buffer
	tw := tar.NewWriter(&buf)
	for _, h := range hdrs {
		body := ""
		if h.Typeflag == tar.TypeReg {
			body = h.Name
			h.Size = int64(len(body))
		}
		if err := tw.WriteHeader(h); err != nil {
			t.Fatal(err)
		}
		tw.Write([]byte(body))
	}
	if err := tw.Close(); err != nil {
		t.Fatal(err)
	}
	return &buf
}

// `tar c -C app . | push --tar --name app` stored /app as 0755 0:0 with
// the push time: a volume owned by a service user came back as root's.
// The archive's root member ("./" or ".") gives /NAME its metadata.
func TestTarRootMetadataGoesToName(t *testing.T) {
	mt := time.Date(2020, 1, 2, 3, 4, 5, 6, time.UTC)
	at := time.Date(2021, 2, 3, 4, 5, 6, 7, time.UTC)
	ct := time.Date(2022, 3, 4, 5, 6, 7, 8, time.UTC)
	for _, rootName := range []string{"./", ".", "/"} {
		t.Run(rootName, func(t *testing.T) {
			r := repotest.New(t)
			stream := tarStream(t,
				&tar.Header{Name: rootName, Typeflag: tar.TypeDir, Mode: 0o750, Uid: 100, Gid: 101, Uname: "svc", Gname: "svcgrp",
					ModTime: mt, AccessTime: at, ChangeTime: ct, Format: tar.FormatPAX,
					PAXRecords: map[string]string{"SCHILY.xattr.user.vol": "app"}},
				&tar.Header{Name: "./data/", Typeflag: tar.TypeDir, Mode: 0o700, Uid: 100, Gid: 101, ModTime: mt},
				&tar.Header{Name: "./data/app.db", Typeflag: tar.TypeReg, Mode: 0o600, Uid: 100, Gid: 101, ModTime: mt},
			)
			s := r.NewSession()
			res, err := backup.TarInto(t.Context(), s, stream, "app", opts(r))
			if err != nil {
				t.Fatal(err)
			}
			s.Flush(t.Context())
			wantWarn := []string(nil)
			if rootName == "/" {
				wantWarn = []string{`tar: removed the leading "/" from member names`}
			}
			if !slices.Equal(res.Summary.Warnings, wantWarn) {
				t.Fatalf("warnings %q", res.Summary.Warnings)
			}
			app := node(t, r, res.Tree, "app")
			want := tree.Node{
				Name: "app", Type: tree.Dir, Mode: 0o750, UID: 100, GID: 101, User: "svc", Group: "svcgrp",
				MTime: mt.UnixNano(), ATime: at.UnixNano(), CTime: ct.UnixNano(),
				Xattrs: []tree.Xattr{{Name: "user.vol", Value: []byte("app")}}, Subtree: app.Subtree,
			}
			if !equalNode(app, want) {
				t.Fatalf("/app is\n%+v\nwant\n%+v", app, want)
			}
			if db := node(t, r, res.Tree, "app/data/app.db"); db.Mode != 0o600 || db.UID != 100 || db.GID != 101 {
				t.Fatalf("app.db %+v", db)
			}
		})
	}
}

func equalNode(a, b tree.Node) bool {
	x, err1 := tree.Encode(nil, &tree.Tree{Nodes: []tree.Node{a}})
	y, err2 := tree.Encode(nil, &tree.Tree{Nodes: []tree.Node{b}})
	return err1 == nil && err2 == nil && bytes.Equal(x, y)
}

// Without a root member /NAME keeps the defaults (0755, root, the time
// of the push); a root member that is not a directory is refused with a
// warning.
func TestTarRootWithoutMember(t *testing.T) {
	r := repotest.New(t)
	now := time.Date(2026, 5, 6, 7, 8, 9, 0, time.UTC)
	o := opts(r)
	o.Now = func() time.Time { return now }
	stream := tarStream(t,
		&tar.Header{Name: ".", Typeflag: tar.TypeReg, Mode: 0o600, ModTime: now},
		&tar.Header{Name: "f", Typeflag: tar.TypeReg, Mode: 0o644, ModTime: now},
	)
	s := r.NewSession()
	res, err := backup.TarInto(t.Context(), s, stream, "vol", o)
	if err != nil {
		t.Fatal(err)
	}
	s.Flush(t.Context())
	if want := []string{`tar: ".": skipped: the archive's root is not a directory`}; !slices.Equal(res.Summary.Warnings, want) {
		t.Fatalf("warnings %q", res.Summary.Warnings)
	}
	vol := node(t, r, res.Tree, "vol")
	if vol.Mode != 0o755 || vol.UID != 0 || vol.MTime != now.UnixNano() || vol.CTime != now.UnixNano() {
		t.Fatalf("/vol %+v", vol)
	}
}

// A member with a name no file system holds (a component over NAME_MAX,
// 255 bytes) used to be stored, and every restore and drill of the
// snapshot then failed. It is skipped with a warning naming it, as tar
// itself skips a member it cannot create. A path over PATH_MAX is kept:
// restores create it one directory at a time.
func TestTarNameTooLong(t *testing.T) {
	r := repotest.New(t)
	long := strings.Repeat("n", 256)
	deep := strings.Repeat(strings.Repeat("d", 200)+"/", 21) + "f" // 4222 bytes
	stream := tarStream(t,
		&tar.Header{Name: "ok/" + strings.Repeat("n", 255), Typeflag: tar.TypeReg, Mode: 0o644},
		&tar.Header{Name: "ok/" + long, Typeflag: tar.TypeReg, Mode: 0o644},
		&tar.Header{Name: "./" + long + "/f", Typeflag: tar.TypeReg, Mode: 0o644},
		&tar.Header{Name: deep, Typeflag: tar.TypeReg, Mode: 0o644},
	)
	s := r.NewSession()
	res, err := backup.TarInto(t.Context(), s, stream, "vol", opts(r))
	if err != nil {
		t.Fatal(err)
	}
	s.Flush(t.Context())
	want := []string{
		`tar: "ok/` + long + `": skipped: the name "` + long + `" is 256 bytes, longer than a file system allows (255)`,
		`tar: "./` + long + `/f": skipped: the name "` + long + `" is 256 bytes, longer than a file system allows (255)`,
	}
	if !slices.Equal(res.Summary.Warnings, want) {
		t.Fatalf("warnings\n%q\nwant\n%q", res.Summary.Warnings, want)
	}
	if res.Summary.Files != 2 {
		t.Fatalf("%d files stored, want 2", res.Summary.Files)
	}
	node(t, r, res.Tree, "vol/ok/"+strings.Repeat("n", 255))
	node(t, r, res.Tree, "vol/"+deep)
}

// A --name a file system cannot hold is refused before anything is read.
func TestStreamNameTooLong(t *testing.T) {
	r := repotest.New(t)
	long := strings.Repeat("x", 256)
	want := `backup: root name: the name "` + long + `" is 256 bytes, longer than a file system allows (255)`
	if _, err := backup.Stream(t.Context(), r.NewSession(), strings.NewReader("data"), long, opts(r)); err == nil || err.Error() != want {
		t.Errorf("stream: %v", err)
	}
	if _, err := backup.TarInto(t.Context(), r.NewSession(), tarStream(t), long, opts(r)); err == nil || err.Error() != want {
		t.Errorf("tar: %v", err)
	}
}
