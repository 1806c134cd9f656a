package xattr_test

import (
	"errors"
	"os"
	"path/filepath"
	"reflect"
	"testing"

	"github.com/cairnbackup/cairn/integration/testenv"
	"github.com/cairnbackup/cairn/repo/internal/xattr"
	"github.com/cairnbackup/cairn/repo/tree"
	"golang.org/x/sys/unix"
)

// Read lists a file's attributes sorted by name, and none for a file
// without any.
func TestRead(t *testing.T) {
	dir := t.TempDir()
	plain := filepath.Join(dir, "plain")
	f := filepath.Join(dir, "f")
	for _, p := range []string{plain, f} {
		if err := os.WriteFile(p, nil, 0o600); err != nil {
			t.Fatal(err)
		}
	}
	for _, x := range []tree.Xattr{{Name: "user.z", Value: []byte("last")}, {Name: "user.a", Value: []byte("first")}, {Name: "user.empty", Value: []byte{}}} {
		if err := unix.Setxattr(f, x.Name, x.Value, 0); err != nil {
			testenv.Missing(t, "user xattrs are not supported on %s: %v", dir, err)
		}
	}
	got, err := xattr.Read(f)
	if err != nil {
		t.Fatal(err)
	}
	want := []tree.Xattr{{Name: "user.a", Value: []byte("first")}, {Name: "user.empty", Value: []byte{}}, {Name: "user.z", Value: []byte("last")}}
	if !reflect.DeepEqual(got, want) {
		t.Errorf("Read(f) = %q, want %q", got, want)
	}
	if got, err := xattr.Read(plain); err != nil || got != nil {
		t.Errorf("Read(plain) = %q, %v; want nil, nil", got, err)
	}
	if _, err := xattr.Read(filepath.Join(dir, "missing")); err == nil {
		t.Error("Read(missing) gave no error")
	}
}

// ReadAt reads an entry through its directory's descriptor without
// following a symbolic link: a link to a file with attributes has none
// of its own.
func TestReadAt(t *testing.T) {
	dir := t.TempDir()
	f := filepath.Join(dir, "f")
	if err := os.WriteFile(f, nil, 0o600); err != nil {
		t.Fatal(err)
	}
	if err := os.Symlink(f, filepath.Join(dir, "link")); err != nil {
		t.Fatal(err)
	}
	if err := unix.Setxattr(f, "user.which", []byte("file"), 0); err != nil {
		testenv.Missing(t, "user xattrs are not supported on %s: %v", dir, err)
	}
	d, err := os.Open(dir)
	if err != nil {
		t.Fatal(err)
	}
	defer d.Close()
	for name, want := range map[string][]tree.Xattr{
		"f":    {{Name: "user.which", Value: []byte("file")}},
		"link": nil,
	} {
		got, err := xattr.ReadAt(int(d.Fd()), name)
		if err != nil || !reflect.DeepEqual(got, want) {
			t.Errorf("ReadAt(dir, %q) = %q, %v; want %q", name, got, err, want)
		}
	}
	if _, err := xattr.ReadAt(int(d.Fd()), "missing"); !errors.Is(err, unix.ENOENT) {
		t.Errorf("ReadAt(dir, missing): %v, want ENOENT", err)
	}
}
