package appliance

import (
	"bytes"
	"context"
	"net"
	"os"
	"slices"

	"github.com/cairnbackup/cairn/repo"
	"github.com/cairnbackup/cairn/repo/status"
	"github.com/cairnbackup/cairn/repo/wire"
	"golang.org/x/crypto/ssh"
)

// Runbook writes the recovery runbook for node ("" for all nodes) from
// the current state: the status with cfg's expectations, cfg's nodes
// (their permissions and keys) and SSH address, the fingerprint of the
// appliance's host key, and what the git sources' restore points hold.
// `cairn runbook` and the drill job's runbook.md both come from here. A
// node that is neither configured nor has snapshots is an error
// matching status.ErrUnknownNode.
func (a *Appliance) Runbook(ctx context.Context, cfg *Config, node string) ([]byte, error) {
	st, err := a.Status(ctx, cfg)
	if err != nil {
		return nil, err
	}
	place := a.r.Place()
	o := status.RunbookOptions{Repo: place.String(), StateDir: place.StateDir(), Node: node, SSH: NodeAddress(cfg.Listen), HostKey: a.hostKeyFingerprint(),
		Nodes: map[string]status.NodeAccess{}}
	if kf := repo.DefaultKeyFile(place); fileExists(kf) {
		o.KeyFile = kf
	}
	o.Replicas = map[string]status.ReplicaAccess{}
	for name, rc := range cfg.Replicas {
		c := rc.S3Credentials
		if c == "" {
			c = cfg.S3Credentials
		}
		o.Replicas[name] = status.ReplicaAccess{Credentials: c}
	}
	for name, n := range cfg.Nodes {
		acc := status.NodeAccess{Read: n.Perms().Has(wire.PermRead) || n.Perms().Has(wire.PermAdmin)}
		for _, k := range n.Keys {
			if pk, _, _, _, err := ssh.ParseAuthorizedKey([]byte(k)); err == nil {
				acc.Keys = append(acc.Keys, ssh.FingerprintSHA256(pk))
			}
		}
		slices.Sort(acc.Keys)
		o.Nodes[name] = acc
	}
	if node == "" || slices.ContainsFunc(st.Groups, func(g status.Group) bool { return g.Node == node }) {
		if o.Contents, err = status.Inspect(ctx, a.r, st, node); err != nil {
			return nil, err
		}
	}
	var b bytes.Buffer
	if err := status.WriteRunbook(&b, st, o); err != nil {
		return nil, err
	}
	return b.Bytes(), nil
}

// hostKeyFingerprint is the fingerprint of the host key the appliance
// serves with: the one loaded, or (for a command run while the
// appliance is stopped) the one in DIR.host_key; "" when there is none.
func (a *Appliance) hostKeyFingerprint() string {
	k := a.hostKey
	if k == nil {
		var err error
		if k, err = LoadHostKey(HostKeyPath(a.r.Place())); err != nil {
			return ""
		}
	}
	return ssh.FingerprintSHA256(k.PublicKey())
}

// NodeAddress is the address at which nodes reach an appliance that
// listens on listen: listen itself, or when it listens on every address
// (0.0.0.0, ::, or no host) this machine's host name with the port.
func NodeAddress(listen string) string {
	host, port, err := net.SplitHostPort(listen)
	if err != nil {
		return listen
	}
	if ip := net.ParseIP(host); host == "" || ip != nil && ip.IsUnspecified() {
		if h, err := os.Hostname(); err == nil {
			host = h
		}
	}
	return net.JoinHostPort(host, port)
}

func fileExists(p string) bool {
	_, err := os.Stat(p)
	return err == nil
}
