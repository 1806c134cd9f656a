package appliance

import (
	"context"
	"encoding/binary"
	"fmt"
	"net"
	"time"

	"golang.org/x/crypto/ssh"
)

// sshConfig builds the server configuration: public keys only, each
// mapped to its node, the user name must be the node's name; ciphers
// limited to AES-GCM (x/crypto's chacha20-poly1305 is several times
// slower, and OpenSSH clients prefer it when offered).
func (a *Appliance) sshConfig() *ssh.ServerConfig {
	c := &ssh.ServerConfig{
		PublicKeyCallback: func(meta ssh.ConnMetadata, key ssh.PublicKey) (*ssh.Permissions, error) {
			cfg := a.Config()
			name, n := cfg.NodeForKey(key)
			if n == nil {
				return nil, fmt.Errorf("unknown key %s", ssh.FingerprintSHA256(key))
			}
			if meta.User() != name {
				return nil, fmt.Errorf("key of node %s used as user %q", name, meta.User())
			}
			return &ssh.Permissions{Extensions: map[string]string{"node": name}}, nil
		},
		ServerVersion: "SSH-2.0-cairn",
		MaxAuthTries:  6,
	}
	c.Ciphers = []string{"aes128-gcm@openssh.com", "aes256-gcm@openssh.com"}
	c.AddHostKey(a.hostKey)
	return c
}

func (a *Appliance) acceptSSH(ctx context.Context, ln net.Listener) {
	cfg := a.sshConfig()
	for {
		conn, err := ln.Accept()
		if err != nil {
			return
		}
		go a.serveSSH(ctx, conn, cfg)
	}
}

// serveSSH authenticates one connection and runs its session channels.
func (a *Appliance) serveSSH(ctx context.Context, conn net.Conn, cfg *ssh.ServerConfig) {
	defer conn.Close()
	// The handshake must finish quickly; sessions then set their own
	// idle limits.
	conn.SetDeadline(time.Now().Add(30 * time.Second))
	sc, chans, reqs, err := ssh.NewServerConn(conn, cfg)
	if err != nil {
		a.log.Warn("ssh connection refused", "remote", conn.RemoteAddr().String(), "err", err)
		return
	}
	conn.SetDeadline(time.Time{})
	defer sc.Close()
	node := sc.Permissions.Extensions["node"]
	go ssh.DiscardRequests(reqs)
	for nc := range chans {
		if nc.ChannelType() != "session" {
			nc.Reject(ssh.UnknownChannelType, "only session channels")
			continue
		}
		ch, chReqs, err := nc.Accept()
		if err != nil {
			continue
		}
		go a.sshSession(ctx, node, ch, chReqs)
	}
}

// sshSession waits for the exec request and runs the node command.
func (a *Appliance) sshSession(ctx context.Context, node string, ch ssh.Channel, reqs <-chan *ssh.Request) {
	defer ch.Close()
	for req := range reqs {
		switch req.Type {
		case "exec":
			var cmd struct{ Command string }
			if err := ssh.Unmarshal(req.Payload, &cmd); err != nil {
				req.Reply(false, nil)
				continue
			}
			req.Reply(true, nil)
			go ssh.DiscardRequests(reqs)
			cfg := a.Config()
			n := cfg.Nodes[node]
			if n == nil {
				fmt.Fprintf(ch.Stderr(), "cairn: node %s was removed from the configuration\n", node)
				exit(ch, 1)
				return
			}
			code := a.NodeSession(ctx, node, n.Perms(), n.Isolated, cmd.Command, ch, ch, ch.Stderr())
			ch.CloseWrite()
			exit(ch, code)
			return
		case "env":
			req.Reply(true, nil) // ignored
		default:
			// No shells, no terminals, no forwarding.
			req.Reply(false, nil)
		}
	}
}

func exit(ch ssh.Channel, code int) {
	var b [4]byte
	binary.BigEndian.PutUint32(b[:], uint32(code))
	ch.SendRequest("exit-status", false, b[:])
}
