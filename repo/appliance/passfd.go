package appliance

import (
	"context"
	"errors"
	"fmt"
	"io"
	"net"
	"os"
	"syscall"

	"golang.org/x/sys/unix"
)

// A request may carry one open file with it: the /dev/fuse connection
// of a mount the caller made itself ([Request.FUSE], cairn mount). It
// travels as SCM_RIGHTS with the request frame; the command that runs
// finds it with [PassedFile]. Any other file that arrives is closed.

// fileKey is the context key of the file passed with a request.
type fileKey struct{}

// PassedFile returns the file the caller passed with the request whose
// command ctx belongs to, or nil. The command must not close it: the
// appliance does once the command has returned.
func PassedFile(ctx context.Context) *os.File {
	f, _ := ctx.Value(fileKey{}).(*os.File)
	return f
}

// rightsReader reads from a unix connection and keeps the first file
// descriptor that arrives with the data; any others are closed.
type rightsReader struct {
	c    *net.UnixConn
	file *os.File
}

func (r *rightsReader) Read(p []byte) (int, error) {
	oob := make([]byte, unix.CmsgSpace(4))
	n, oobn, _, _, err := r.c.ReadMsgUnix(p, oob)
	if oobn > 0 {
		msgs, perr := unix.ParseSocketControlMessage(oob[:oobn])
		if perr == nil {
			for _, m := range msgs {
				fds, _ := unix.ParseUnixRights(&m)
				for _, fd := range fds {
					if r.file == nil {
						r.file = os.NewFile(uintptr(fd), "passed")
					} else {
						syscall.Close(fd)
					}
				}
			}
		}
	}
	return n, err
}

// readRequestFrame reads the first frame of a socket connection and the
// file passed with it, if any.
func readRequestFrame(conn net.Conn) (byte, []byte, *os.File, error) {
	uc, ok := conn.(*net.UnixConn)
	if !ok {
		kind, data, err := readFrame(conn, nil)
		return kind, data, nil, err
	}
	rr := &rightsReader{c: uc}
	kind, data, err := readFrame(rr, nil)
	if err != nil && rr.file != nil {
		rr.file.Close()
		rr.file = nil
	}
	return kind, data, rr.file, err
}

// CallWithFile is [Call] for a request that carries a file: once the
// socket answers (else [ErrNotRunning], and open is not called), open
// makes the file (cairn mount mounts), which goes to the appliance with
// the request and is closed here after it was sent.
func CallWithFile(ctx context.Context, path string, req *Request, open func() (*os.File, error), stdin io.Reader, stdout, stderr io.Writer) (int, error) {
	conn, err := net.Dial("unix", path)
	if err != nil {
		return 0, fmt.Errorf("%w (%v)", ErrNotRunning, err)
	}
	defer conn.Close()
	uc, ok := conn.(*net.UnixConn)
	if !ok {
		return 0, errors.New("the operator socket is not a unix socket")
	}
	f, err := open()
	if err != nil {
		return 0, err
	}
	req.FUSE = true
	c := &fileConn{UnixConn: uc, file: f}
	code, err := call(ctx, c, req, stdin, stdout, stderr)
	if !c.sent {
		f.Close()
	}
	return code, err
}

// fileConn sends a file with the first write (the request frame's
// header) and closes it once sent.
type fileConn struct {
	*net.UnixConn
	file *os.File
	sent bool
}

func (c *fileConn) Write(p []byte) (int, error) {
	if c.sent {
		return c.UnixConn.Write(p)
	}
	n, _, err := c.WriteMsgUnix(p, unix.UnixRights(int(c.file.Fd())), nil)
	if err == nil {
		c.sent = true
		c.file.Close()
	}
	return n, err
}

// isFUSEDevice reports whether f is open on the FUSE device (character
// device 10:229), the only file a request may pass.
func isFUSEDevice(f *os.File) bool {
	var st unix.Stat_t
	if err := unix.Fstat(int(f.Fd()), &st); err != nil {
		return false
	}
	return st.Mode&unix.S_IFMT == unix.S_IFCHR && unix.Major(st.Rdev) == 10 && unix.Minor(st.Rdev) == 229
}
