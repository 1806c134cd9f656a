package main

import (
	"fmt"
	"net"
	"os"
	"strconv"
	"time"

	"golang.org/x/sys/unix"
)

// serviceManager speaks the sd_notify protocol (sd_notify(3)) to the
// service manager that started the appliance: one datagram per state
// change ("READY=1", "RELOADING=1", "STOPPING=1", with a STATUS= line
// for systemctl status) on the unix datagram socket named by
// $NOTIFY_SOCKET. It is a few lines of code, so no library.
//
// The variable is read once and removed from the environment, so that
// the commands the appliance starts (notify:, drill probes) cannot speak
// for it. Without it every method does nothing.
type serviceManager struct {
	addr *net.UnixAddr // nil: not started by a service manager
}

// notifyTimeout bounds one datagram: the service manager's socket is
// local and its queue short, and a service manager that does not read
// must not stop the appliance.
const notifyTimeout = time.Second

// newServiceManager reads and unsets $NOTIFY_SOCKET. A path or an
// abstract name ("@name", which the net package maps to the abstract
// namespace) is supported; other kinds (vsock:) are reported and ignored.
func newServiceManager() (*serviceManager, error) {
	s := os.Getenv("NOTIFY_SOCKET")
	os.Unsetenv("NOTIFY_SOCKET")
	if s == "" {
		return &serviceManager{}, nil
	}
	if s[0] != '/' && s[0] != '@' {
		return &serviceManager{}, fmt.Errorf("NOTIFY_SOCKET %q: only unix socket paths and abstract names are supported", s)
	}
	return &serviceManager{addr: &net.UnixAddr{Name: s, Net: "unixgram"}}, nil
}

// notify sends one state datagram.
func (m *serviceManager) notify(state string) error {
	if m.addr == nil {
		return nil
	}
	c, err := net.DialUnix("unixgram", nil, m.addr)
	if err != nil {
		return fmt.Errorf("sd_notify %s: %w", m.addr.Name, err)
	}
	defer c.Close()
	c.SetWriteDeadline(time.Now().Add(notifyTimeout))
	if _, err := c.Write([]byte(state)); err != nil {
		return fmt.Errorf("sd_notify %s: %w", m.addr.Name, err)
	}
	return nil
}

// reloading is the message that starts a reload: systemd (Type=notify)
// holds `systemctl reload` until the next READY=1, and MONOTONIC_USEC
// tells it which reload request this is.
func reloading() string {
	var ts unix.Timespec
	unix.ClockGettime(unix.CLOCK_MONOTONIC, &ts)
	usec := uint64(ts.Sec)*1e6 + uint64(ts.Nsec)/1e3
	return "RELOADING=1\nMONOTONIC_USEC=" + strconv.FormatUint(usec, 10)
}
