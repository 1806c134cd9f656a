package appliance

import (
	"context"
	"fmt"
	"io"
	"os"
	"path/filepath"
)

// RelayedSession runs a node session relayed by `cairn serve --stdio
// --node NAME` (an OpenSSH forced command in authorized_keys), as the
// node the forced command names. A node that is not in the
// configuration is refused with a log line: the forced command names a
// node the operator never added (or has removed), and such a node gets
// no permission by default.
func (a *Appliance) RelayedSession(ctx context.Context, node, command string, stdin io.Reader, stdout, stderr io.Writer) int {
	n := a.Config().Nodes[node]
	if n == nil {
		a.countRefused(refusedUnknownNode)
		a.log.Warn("session refused", "node", node, "why", "not in the configuration", "config", a.o.ConfigPath)
		fmt.Fprintf(stderr, "cairn: node %s is not in the appliance's configuration; the forced command names a node the operator has not added\n", node)
		return 1
	}
	return a.NodeSession(ctx, node, n.Perms(), n.Isolated, command, stdin, stdout, stderr)
}

// checkRepo checks that dir, the repository a socket request names
// (Request.Repo), is the one this appliance serves. For a directory: the
// same directory (os.SameFile: device and inode), whichever path leads
// to it. The repository's ID cannot tell: it is in the sealed config,
// and nothing unsealed in the repository names it, so only the key
// reveals it; the directory's identity needs nothing but a stat. For an
// object store: the same URL (endpoint, bucket and prefix).
func (a *Appliance) checkRepo(dir string) error {
	place := a.r.Place()
	if place.ObjectStore() {
		if dir == place.String() {
			return nil
		}
		if dir == "" {
			return fmt.Errorf("the request names no repository (--repo or CAIRN_REPO); this appliance serves %s", place)
		}
		return fmt.Errorf("this appliance serves the repository %s, not %s; check --socket, --state-dir, CAIRN_SOCKET and CAIRN_STATE_DIR", place, dir)
	}
	mine, err := filepath.Abs(a.r.Dir())
	if err != nil {
		mine = a.r.Dir()
	}
	if dir == "" {
		return fmt.Errorf("the request names no repository (--repo or CAIRN_REPO); this appliance serves %s", mine)
	}
	own, err := os.Stat(a.r.Dir())
	if err != nil {
		return fmt.Errorf("this appliance's repository %s: %w", mine, err)
	}
	fi, err := os.Stat(dir)
	if err == nil && os.SameFile(fi, own) {
		return nil
	}
	why := ""
	if err != nil {
		why = " (" + err.Error() + ")"
	}
	return fmt.Errorf("this appliance serves the repository %s, not %s%s; check --socket and CAIRN_SOCKET", mine, dir, why)
}
