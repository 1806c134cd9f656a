package storage

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"syscall"
	"testing"

	"github.com/cairnbackup/cairn/integration/s3test"
)

// TestMain lets a test run this package's code in a child process with a
// crash point armed (the point is read once per process).
func TestMain(m *testing.M) {
	if dir := os.Getenv("STORAGE_TEST_CHILD_DIR"); dir != "" {
		l := NewLocal(dir)
		for i := range 3 {
			name := strings.Repeat(fmt.Sprintf("%02x", i), 32)
			if err := l.Put(context.Background(), Handle{Kind: Packs, Name: name}, bytes.NewReader(packBytes(i))); err != nil {
				fmt.Fprintln(os.Stderr, err)
				os.Exit(1)
			}
		}
		os.Exit(0)
	}
	if os.Getenv(s3ChildEnv) != "" {
		os.Exit(s3Child())
	}
	code := m.Run()
	s3test.StopShared()
	os.Exit(code)
}

func packBytes(i int) []byte { return bytes.Repeat([]byte{byte('a' + i)}, 1000+i) }

// With storage-half-written counted to the third pack, the first two
// packs are stored whole (the hook once left them half written under
// their final names) and the third is a half-written temporary file.
func TestHalfWrittenCounted(t *testing.T) {
	l := newLocal(t)
	cmd := exec.Command(os.Args[0], "-test.run", "^$")
	cmd.Env = append(os.Environ(), "STORAGE_TEST_CHILD_DIR="+l.Dir(), "CAIRN_CRASHPOINT=storage-half-written:3")
	out, err := cmd.CombinedOutput()
	var ee *exec.ExitError
	if !errors.As(err, &ee) || !ee.Sys().(syscall.WaitStatus).Signaled() {
		t.Fatalf("child not killed: %v\n%s", err, out)
	}
	for i := range 2 {
		name := strings.Repeat(fmt.Sprintf("%02x", i), 32)
		got, err := ReadAll(t.Context(), l, Handle{Kind: Packs, Name: name}, 1<<20)
		if err != nil || !bytes.Equal(got, packBytes(i)) {
			t.Errorf("pack %d: %d bytes, %v; want %d bytes", i, len(got), err, len(packBytes(i)))
		}
	}
	temps, _ := filepath.Glob(filepath.Join(l.Dir(), "packs", "02", TempPrefix+"*"))
	if len(temps) != 1 {
		t.Fatalf("temporary files of the third pack: %v", temps)
	}
	if fi, _ := os.Stat(temps[0]); fi.Size() != int64(len(packBytes(2))/2) {
		t.Errorf("the third pack's temporary file has %d bytes, want half of %d", fi.Size(), len(packBytes(2)))
	}
}
