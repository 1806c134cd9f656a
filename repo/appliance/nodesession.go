package appliance

import (
	"context"
	"fmt"
	"io"
	"strings"
	"time"

	"github.com/cairnbackup/cairn/repo/wire"
)

// readWriter joins a session's input and output for wire.Serve; Close
// closes the input (ending a read blocked on it).
type readWriter struct {
	io.Reader
	io.Writer
	close func() error
}

func (rw readWriter) Close() error {
	if rw.close != nil {
		return rw.close()
	}
	return nil
}

// NodeSession runs one node command (see the package documentation and
// nodecmd.go) and returns its exit code. Messages for the node go to
// stderr. Every refusal is exit 2 with a log line.
func (a *Appliance) NodeSession(ctx context.Context, node string, perms wire.Perm, isolated bool, command string, stdin io.Reader, stdout, stderr io.Writer) int {
	stdin = a.receiving(node, stdin)
	ctx, sess, err := a.openSession(ctx, node, perms, isolated, command)
	if err != nil {
		a.log.Warn("session refused", "node", node, "err", err)
		fmt.Fprintln(stderr, "cairn:", err)
		return 1
	}
	defer sess.close()
	logged := command
	if len(logged) > maxNodeCommand {
		logged = logged[:maxNodeCommand] + "…"
	}
	a.log.Info("node session started", "node", node, "command", logged)
	s := &nodeSession{sess: sess, node: node, perms: perms, isolated: isolated, line: command, stdin: stdin, stdout: stdout, stderr: stderr, start: time.Now()}
	refuse := func(name, why, message string) int {
		a.countRefused(refusedCommand)
		a.log.Warn("command refused", "node", node, "command", name, "why", why)
		fmt.Fprint(stderr, "cairn: ", message, "\n")
		return 2
	}
	if len(command) > maxNodeCommand {
		return refuse("", "command too long", fmt.Sprintf("the command is %d bytes long; a node's command is at most %d", len(command), maxNodeCommand))
	}
	words := strings.Fields(command)
	if len(words) == 0 {
		return refuse("", "no command", "no command given; "+nodeCommandList())
	}
	c := lookupNodeCommand(words[0])
	if c == nil {
		return refuse(words[0], "unknown command", fmt.Sprintf("node %s may not run %q; %s", node, words[0], nodeCommandList()))
	}
	if c.perm != 0 && !perms.Has(c.perm) && !perms.Has(wire.PermAdmin) {
		p := c.perm.String()
		message := fmt.Sprintf("node %s may not run %q: it needs the %s permission", node, c.name, p)
		if c.perm == wire.PermAdmin {
			message += " (push and read are append-only)"
		}
		return refuse(c.name, "needs the "+p+" permission", message)
	}
	s.cmd = c
	if s.args, err = parseNodeFlags(c, words[1:]); err != nil {
		return refuse(c.name, err.Error(), fmt.Sprintf("%s: %v\nusage: %s", c.name, err, c.usage()))
	}
	return c.run(a, ctx, s)
}
