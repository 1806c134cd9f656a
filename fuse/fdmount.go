package fuse

import (
	"errors"
	"fmt"
	"os"
	"strings"
	"syscall"

	"github.com/cairnbackup/cairn/repo/caps"
)

// mountMaxRead is max_read of every cairn mount: the kernel sends reads
// of up to 1 MiB (gofuse.MountOptions.MaxWrite says the same to go-fuse).
const mountMaxRead = 1 << 20

// MountFD makes the FUSE mount at dir itself and returns the /dev/fuse
// connection, not yet served: the process that gets it (over a unix
// socket) serves it by passing it as [Options.FD] to [Mount]. So a
// mount is made in the mount namespace of the process that asks for it
// (the operator's shell, cairn-mount.service) while the appliance, in a
// namespace of its own under systemd, serves it. The mount has the
// options [Mount] gives its own: "cairn DIR fuse.cairn ro,nosuid,nodev".
// It needs CAP_SYS_ADMIN; requests to dir wait until the connection is
// served (or fail once it is closed unserved: then [Detach] dir).
func MountFD(dir string, allowOther bool) (*os.File, error) {
	if !caps.Have(caps.SysAdmin) {
		return nil, errors.New("mounting needs CAP_SYS_ADMIN (root, or cairn-mount.service)")
	}
	var st syscall.Stat_t
	if err := syscall.Stat(dir, &st); err != nil {
		return nil, &os.PathError{Op: "stat", Path: dir, Err: err}
	}
	f, err := os.OpenFile("/dev/fuse", os.O_RDWR, 0)
	if err != nil {
		return nil, err
	}
	opts := []string{
		fmt.Sprintf("fd=%d", f.Fd()),
		fmt.Sprintf("rootmode=%o", st.Mode&syscall.S_IFMT),
		fmt.Sprintf("user_id=%d", os.Geteuid()),
		fmt.Sprintf("group_id=%d", os.Getegid()),
		fmt.Sprintf("max_read=%d", mountMaxRead),
	}
	if allowOther {
		opts = append(opts, "allow_other", "default_permissions")
	}
	err = syscall.Mount("cairn", dir, "fuse.cairn", syscall.MS_RDONLY|syscall.MS_NOSUID|syscall.MS_NODEV, strings.Join(opts, ","))
	if err != nil {
		f.Close()
		return nil, fmt.Errorf("mount %s: %w", dir, err)
	}
	return f, nil
}

// UnmountDir unmounts the cairn mount at dir, detaching it lazily when
// it is busy, and reports whether it was busy. Its server, wherever it
// runs, then stops (at once, or once the last open file is closed).
func UnmountDir(dir string) (busy bool, err error) {
	if !isMountPoint(dir) {
		return false, nil
	}
	err = syscall.Unmount(dir, 0)
	if errors.Is(err, syscall.EBUSY) {
		return true, Detach(dir)
	}
	if err != nil {
		return false, fmt.Errorf("unmount %s: %w", dir, err)
	}
	return false, nil
}
