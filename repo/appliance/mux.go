package appliance

import (
	"encoding/binary"
	"errors"
	"fmt"
	"io"
	"sync"
)

// The operator socket carries one command per connection, multiplexed
// into frames: a one-byte kind, a 4-byte big-endian length, the data.
const (
	frameRequest  = 'R' // client → appliance: the Request as JSON (first frame)
	frameStdin    = 'I' // client → appliance: standard input
	frameStdinEOF = 'i'
	frameCancel   = 'C' // client → appliance: stop the command (the operator pressed ^C); one byte, the signal's number, or empty
	frameStdout   = 'O' // appliance → client
	frameStderr   = 'E'
	frameExit     = 'X' // appliance → client: 4-byte exit code; the last frame
)

// maxMuxFrame bounds a socket frame.
const maxMuxFrame = 1 << 20

// Request starts a command on the operator socket.
type Request struct {
	// Kind is "operator" (a cairn command line run inside the
	// appliance, as admin) or "node" (a node session relayed by
	// `cairn serve --stdio --node NAME` behind an OpenSSH forced
	// command).
	Kind string `json:"kind"`
	// Args is the command line for operator requests, without "cairn".
	Args []string `json:"args,omitempty"`
	// Cwd resolves relative paths in Args.
	Cwd string `json:"cwd,omitempty"`
	// StderrTerminal says the operator sees stderr on a terminal, so
	// progress may be drawn.
	StderrTerminal bool `json:"stderr_terminal,omitempty"`
	// Node and Command describe a relayed node session: the node the
	// forced command names and the command the client asked for
	// ($SSH_ORIGINAL_COMMAND).
	Node    string `json:"node,omitempty"`
	Command string `json:"command,omitempty"`
	// Repo is the repository directory the caller named (--repo or
	// CAIRN_REPO), absolute. The appliance runs the request only if it
	// serves that directory (the same directory, not just the same
	// path): a socket given with --socket or CAIRN_SOCKET that belongs
	// to another repository's appliance is refused.
	Repo string `json:"repo,omitempty"`
	// FUSE says a /dev/fuse connection the caller mounted comes with
	// the request (SCM_RIGHTS, see passfd.go): `cairn mount` run where
	// the appliance's mounts would not be seen (cairn.service has a
	// mount namespace of its own) mounts itself, and the appliance
	// serves the mount.
	FUSE bool `json:"fuse,omitempty"`
	// TZ is the operator's TZ for operator requests, for times printed
	// in the operator's zone: as the environment has it, ":/etc/localtime"
	// when unset and "UTC" when empty. Empty (an older cairn) means the
	// appliance's zone.
	TZ string `json:"tz,omitempty"`
}

type muxWriter struct {
	mu sync.Mutex
	w  io.Writer
}

func (m *muxWriter) frame(kind byte, data []byte) error {
	m.mu.Lock()
	defer m.mu.Unlock()
	for {
		n := min(len(data), maxMuxFrame)
		var hdr [5]byte
		hdr[0] = kind
		binary.BigEndian.PutUint32(hdr[1:], uint32(n))
		if _, err := m.w.Write(hdr[:]); err != nil {
			return err
		}
		if _, err := m.w.Write(data[:n]); err != nil {
			return err
		}
		data = data[n:]
		if len(data) == 0 {
			return nil
		}
	}
}

// stream is an io.Writer that sends its bytes as frames of one kind.
type stream struct {
	m    *muxWriter
	kind byte
}

func (s stream) Write(p []byte) (int, error) {
	if len(p) == 0 {
		return 0, nil
	}
	if err := s.m.frame(s.kind, p); err != nil {
		return 0, err
	}
	return len(p), nil
}

func readFrame(r io.Reader, buf []byte) (byte, []byte, error) {
	var hdr [5]byte
	if _, err := io.ReadFull(r, hdr[:]); err != nil {
		return 0, nil, err
	}
	n := binary.BigEndian.Uint32(hdr[1:])
	if n > maxMuxFrame {
		return 0, nil, fmt.Errorf("socket frame of %d bytes exceeds %d", n, maxMuxFrame)
	}
	if cap(buf) < int(n) {
		buf = make([]byte, n)
	}
	buf = buf[:n]
	if _, err := io.ReadFull(r, buf); err != nil {
		if errors.Is(err, io.EOF) {
			err = io.ErrUnexpectedEOF
		}
		return 0, nil, err
	}
	return hdr[0], buf, nil
}
