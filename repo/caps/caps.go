// Package caps tells whether this process holds a Linux capability in
// its effective set. Restores, drills and mounts ask it instead of
// whether they run as root: under systemd the appliance runs as its own
// user with exactly the capabilities it needs (see docs/operating.md's
// Install section), and root without a capability (a unit's
// CapabilityBoundingSet) cannot use it.
package caps

import "golang.org/x/sys/unix"

// The capabilities cairn asks about.
const (
	Chown    = unix.CAP_CHOWN     // restore owners
	Mknod    = unix.CAP_MKNOD     // restore device nodes
	SysAdmin = unix.CAP_SYS_ADMIN // mount(2) and umount(2) of FUSE file systems
)

// Have reports whether capability c is in the effective set of the
// calling thread (the same for all threads of a Go program: capabilities
// are set before it starts and never changed). An error reading them
// counts as not having it.
func Have(c int) bool {
	hdr := unix.CapUserHeader{Version: unix.LINUX_CAPABILITY_VERSION_3}
	var data [2]unix.CapUserData
	if err := unix.Capget(&hdr, &data[0]); err != nil {
		return false
	}
	return data[c/32].Effective&(1<<(uint(c)%32)) != 0
}
