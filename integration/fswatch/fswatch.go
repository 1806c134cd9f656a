// Package fswatch tells a test whether any process touched a file or
// directory: it watches paths with inotify for opens, reads, writes,
// creations and changes of attributes. The kernel queues an event as the
// access happens, so once a command has exited, [Watch.Events] lists
// everything it did to the watched paths: no waiting, no sleeps.
package fswatch

import (
	"encoding/binary"
	"errors"
	"fmt"
	"strings"
	"syscall"
	"testing"
)

// Watch is a set of watched paths; it is closed when the test ends.
type Watch struct {
	t     testing.TB
	fd    int
	names map[int32]string
}

const mask = syscall.IN_OPEN | syscall.IN_ACCESS | syscall.IN_MODIFY | syscall.IN_CREATE | syscall.IN_ATTRIB | syscall.IN_CLOSE_WRITE | syscall.IN_DELETE

// New watches paths (files, or directories: then also what happens to
// the entries in them).
func New(t testing.TB, paths ...string) *Watch {
	t.Helper()
	fd, err := syscall.InotifyInit1(syscall.IN_NONBLOCK | syscall.IN_CLOEXEC)
	if err != nil {
		t.Fatalf("fswatch: inotify: %v", err)
	}
	t.Cleanup(func() { syscall.Close(fd) })
	w := &Watch{t: t, fd: fd, names: map[int32]string{}}
	for _, p := range paths {
		wd, err := syscall.InotifyAddWatch(fd, p, mask)
		if err != nil {
			t.Fatalf("fswatch: watch %s: %v", p, err)
		}
		w.names[int32(wd)] = p
	}
	return w
}

// Events lists, as "PATH[/NAME] mask 0x…", what happened to the watched
// paths since the last call.
func (w *Watch) Events() []string {
	w.t.Helper()
	var out []string
	buf := make([]byte, 64<<10)
	for {
		n, err := syscall.Read(w.fd, buf)
		if errors.Is(err, syscall.EAGAIN) {
			return out
		}
		if err != nil {
			w.t.Fatalf("fswatch: read: %v", err)
		}
		for off := 0; off+syscall.SizeofInotifyEvent <= n; {
			wd := int32(binary.NativeEndian.Uint32(buf[off:]))
			m := binary.NativeEndian.Uint32(buf[off+4:])
			l := int(binary.NativeEndian.Uint32(buf[off+12:]))
			p := w.names[wd]
			if name := strings.TrimRight(string(buf[off+syscall.SizeofInotifyEvent:off+syscall.SizeofInotifyEvent+l]), "\x00"); name != "" {
				p += "/" + name
			}
			out = append(out, fmt.Sprintf("%s mask %#x", p, m))
			off += syscall.SizeofInotifyEvent + l
		}
	}
}
