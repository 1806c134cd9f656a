package xattr_test

import (
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
