package main

import (
	"context"
	"errors"
	"fmt"
	"io"
	"net"
	"net/url"
	"os"
	"os/exec"
	"path/filepath"
	"slices"
	"strings"
	"time"

	"github.com/cairnbackup/cairn/chunker"
	"github.com/cairnbackup/cairn/repo/backup"
	"github.com/cairnbackup/cairn/repo/blob"
	"github.com/cairnbackup/cairn/repo/pack"
	"github.com/cairnbackup/cairn/repo/snapshot"
	"github.com/cairnbackup/cairn/repo/wire"
	"github.com/spf13/cobra"
	"golang.org/x/crypto/ssh"
	"golang.org/x/crypto/ssh/knownhosts"
)

type pushOptions struct {
	backupOptions
	identity   string
	knownHosts string
	hostKey    string
	sshCommand string
}

func newPushCommand(g *globalOptions) *cobra.Command {
	o := &pushOptions{}
	cmd := &cobra.Command{
		Use:   "push ssh://NODE@HOST[:PORT] PATH... | --stdin --name NAME | --tar",
		Short: "back up to an appliance over SSH",
		Long: `Back up PATHs (or standard input with --stdin --name NAME, or a tar
stream with --tar) to the appliance at HOST as NODE. This machine chunks,
hashes and compresses; the appliance is asked in large batches which
blobs it lacks and only those are sent, pipelined. The appliance
re-hashes every blob, and acknowledges the snapshot only once it is
durable and complete. Unchanged files (compared with the node's latest
snapshot of the same plan and paths, whose trees come from the
appliance) are not read or sent.

By default cairn speaks SSH itself: key --identity (default
~/.ssh/id_ed25519), host key checked against --known-hosts (default
~/.ssh/known_hosts) or pinned with --host-key SHA256:.... With
--ssh-command "ssh -i KEY" the system ssh client is used instead; it
logs in as NODE unless the command gives -l USER (an OpenSSH forced
command on the appliance's account names the node itself, so there use
--ssh-command "ssh -l cairn ..." and the port of that sshd). The default
port is 2222.

Exit code 0: saved. 3: saved, with warnings. 1: failed, nothing saved
(a push that is interrupted leaves no snapshot; the next push reuses the
blobs that reached the appliance).`,
		Args: cobra.MinimumNArgs(1),
		RunE: func(cmd *cobra.Command, args []string) error { return runPush(cmd.Context(), g, o, args[0], args[1:]) },
	}
	host, _ := os.Hostname()
	f := cmd.Flags()
	f.StringVar(&o.plan, "plan", "", "plan or source name recorded in the snapshot")
	f.StringVar(&o.host, "host", host, "host name recorded in the snapshot")
	f.StringArrayVar(&o.tags, "tag", nil, "tag the snapshot (repeatable)")
	f.StringVar(&o.parent, "parent", "", "compare with this snapshot (an ID prefix) instead of the latest of the same plan and paths")
	f.BoolVar(&o.forceRead, "force-read", false, "read every file, even those the parent says are unchanged")
	f.BoolVar(&o.stdin, "stdin", false, "push standard input as one file (needs --name)")
	f.StringVar(&o.name, "name", "", "file name for --stdin")
	f.BoolVar(&o.tar, "tar", false, "push a tar stream read from standard input")
	f.StringArrayVar(&o.excludes, "exclude", nil, "leave out paths matching PATTERN (repeatable)")
	f.StringArrayVar(&o.excludeFiles, "exclude-file", nil, "read exclude patterns from FILE (repeatable)")
	f.BoolVar(&o.excludeCaches, "exclude-caches", false, "leave out the contents of directories with a CACHEDIR.TAG")
	f.BoolVarP(&o.oneFS, "one-file-system", "x", false, "do not cross into other file systems")
	f.StringVarP(&o.identity, "identity", "i", "", "SSH private key (default ~/.ssh/id_ed25519)")
	f.StringVar(&o.knownHosts, "known-hosts", "", "known_hosts file for the appliance's host key (default ~/.ssh/known_hosts)")
	f.StringVar(&o.hostKey, "host-key", "", "the appliance's host key fingerprint (SHA256:...), instead of known_hosts")
	f.StringVar(&o.sshCommand, "ssh-command", "", "use this ssh client command (e.g. \"ssh -i key\") instead of the built-in one")
	return cmd
}

// target is a parsed ssh://NODE@HOST:PORT.
type target struct {
	node, host, port string
}

func parseTarget(s string) (target, error) {
	u, err := url.Parse(s)
	if err != nil || u.Scheme != "ssh" || u.User == nil || u.User.Username() == "" || u.Hostname() == "" || (u.Path != "" && u.Path != "/") {
		return target{}, fmt.Errorf("push: %q is not ssh://NODE@HOST[:PORT]", s)
	}
	t := target{node: u.User.Username(), host: u.Hostname(), port: u.Port()}
	if t.port == "" {
		t.port = "2222"
	}
	return t, snapshot.CheckName("node", t.node)
}

// connect opens the SSH stream to the appliance and runs cairn-wire on it.
func (o *pushOptions) connect(ctx context.Context, g *globalOptions, t target) (io.ReadWriteCloser, error) {
	if o.sshCommand != "" {
		argv := strings.Fields(o.sshCommand)
		dest := t.node + "@" + t.host
		if slices.Contains(argv, "-l") {
			// The login is the command's (the appliance's account, for
			// an OpenSSH forced command that names the node itself).
			dest = t.host
		}
		argv = append(argv, "-p", t.port, dest, "cairn-wire")
		cmd := exec.CommandContext(ctx, argv[0], argv[1:]...)
		cmd.Stderr = g.stderr
		in, err := cmd.StdinPipe()
		if err != nil {
			return nil, err
		}
		out, err := cmd.StdoutPipe()
		if err != nil {
			return nil, err
		}
		if err := cmd.Start(); err != nil {
			return nil, fmt.Errorf("push: %w", err)
		}
		return &cmdStream{r: out, w: in, cmd: cmd}, nil
	}
	home, _ := os.UserHomeDir()
	keyPath := o.identity
	if keyPath == "" {
		keyPath = filepath.Join(home, ".ssh", "id_ed25519")
	}
	kb, err := os.ReadFile(g.abs(keyPath))
	if err != nil {
		return nil, fmt.Errorf("push: identity: %w", err)
	}
	signer, err := ssh.ParsePrivateKey(kb)
	if err != nil {
		return nil, fmt.Errorf("push: identity %s: %w", keyPath, err)
	}
	check, err := o.hostKeyCallback(g, home)
	if err != nil {
		return nil, err
	}
	cfg := &ssh.ClientConfig{
		User: t.node, Auth: []ssh.AuthMethod{ssh.PublicKeys(signer)}, HostKeyCallback: check,
		Timeout: 30 * time.Second,
	}
	cfg.Ciphers = []string{"aes128-gcm@openssh.com", "aes256-gcm@openssh.com"}
	client, err := ssh.Dial("tcp", net.JoinHostPort(t.host, t.port), cfg)
	if err != nil {
		return nil, fmt.Errorf("push: %w", err)
	}
	sess, err := client.NewSession()
	if err != nil {
		client.Close()
		return nil, fmt.Errorf("push: %w", err)
	}
	sess.Stderr = g.stderr
	in, err := sess.StdinPipe()
	if err != nil {
		client.Close()
		return nil, err
	}
	out, err := sess.StdoutPipe()
	if err != nil {
		client.Close()
		return nil, err
	}
	if err := sess.Start("cairn-wire"); err != nil {
		client.Close()
		return nil, fmt.Errorf("push: %w", err)
	}
	return &sshStream{r: out, w: in, sess: sess, client: client}, nil
}

func (o *pushOptions) hostKeyCallback(g *globalOptions, home string) (ssh.HostKeyCallback, error) {
	if o.hostKey != "" {
		want := o.hostKey
		return func(host string, _ net.Addr, key ssh.PublicKey) error {
			if got := ssh.FingerprintSHA256(key); got != want {
				return fmt.Errorf("the host key of %s is %s, not %s as --host-key says", host, got, want)
			}
			return nil
		}, nil
	}
	path := o.knownHosts
	if path == "" {
		path = filepath.Join(home, ".ssh", "known_hosts")
	}
	cb, err := knownhosts.New(g.abs(path))
	if err != nil {
		return nil, fmt.Errorf("push: known hosts: %w (or pin the appliance's key with --host-key SHA256:...)", err)
	}
	return func(host string, remote net.Addr, key ssh.PublicKey) error {
		err := cb(host, remote, key)
		var ke *knownhosts.KeyError
		if errors.As(err, &ke) && len(ke.Want) == 0 {
			return fmt.Errorf("the host key of %s is not in %s: its fingerprint is %s; if cairn serve printed the same, add it or pass --host-key %s", host, path, ssh.FingerprintSHA256(key), ssh.FingerprintSHA256(key))
		}
		return err
	}, nil
}

type sshStream struct {
	r      io.Reader
	w      io.WriteCloser
	sess   *ssh.Session
	client *ssh.Client
}

func (s *sshStream) Read(p []byte) (int, error)  { return s.r.Read(p) }
func (s *sshStream) Write(p []byte) (int, error) { return s.w.Write(p) }
func (s *sshStream) Close() error {
	s.w.Close()
	s.sess.Wait()
	return s.client.Close()
}

type cmdStream struct {
	r   io.Reader
	w   io.WriteCloser
	cmd *exec.Cmd
}

func (s *cmdStream) Read(p []byte) (int, error)  { return s.r.Read(p) }
func (s *cmdStream) Write(p []byte) (int, error) { return s.w.Write(p) }
func (s *cmdStream) Close() error {
	s.w.Close()
	return s.cmd.Wait()
}

func runPush(ctx context.Context, g *globalOptions, o *pushOptions, dest string, paths []string) error {
	t, err := parseTarget(dest)
	if err != nil {
		return usageError{err}
	}
	o.node = t.node
	recorded, err := o.check(g, paths)
	if err != nil {
		return err
	}
	excl, err := o.matcher()
	if err != nil {
		return usageError{err}
	}
	conn, err := o.connect(ctx, g, t)
	if err != nil {
		return err
	}
	c, err := wire.Dial(ctx, conn, "cairn "+version, t.node)
	if err != nil {
		conn.Close()
		return fmt.Errorf("push: %w", err)
	}
	defer c.Close()
	w := c.Welcome()
	params := chunker.Params{Min: int(w.ChunkMin), Avg: int(w.ChunkAvg), Max: int(w.ChunkMax)}
	if err := params.Validate(); err != nil {
		return fmt.Errorf("push: the appliance's chunker sizes: %w", err)
	}
	parent, err := o.remoteParent(ctx, c, recorded)
	if err != nil {
		return err
	}
	start := time.Now()
	bo := backup.Options{Params: params, Table: chunker.NewTable(w.ChunkerSeed), Loader: c, ForceRead: o.forceRead,
		Exclude: excl, ExcludeCaches: o.excludeCaches, OneFileSystem: o.oneFS, Progress: &backup.Progress{}}
	if parent != nil {
		bo.Parent = parent.Tree
	}
	stop := g.showBackupProgress(bo.Progress, parent, start)
	id, res, sum, err := o.pushOnce(ctx, g, c, bo, recorded, parent, start)
	stop()
	if err != nil {
		return fmt.Errorf("push: %w", err)
	}
	return g.report(id, res.Tree, sum, parent, res.Excludes)
}

func (o *pushOptions) pushOnce(ctx context.Context, g *globalOptions, c *wire.Client, bo backup.Options, recorded []string, parent *snapshot.Entry, start time.Time) (blob.ID, *backup.Result, snapshot.Summary, error) {
	up := c.NewUploader(pack.LevelDefault)
	defer up.Close()
	var res *backup.Result
	var err error
	switch {
	case o.stdin:
		res, err = backup.Stream(ctx, up, g.stdin, o.name, bo)
	case o.tar:
		res, err = backup.Tar(ctx, up, g.stdin, bo)
	default:
		res, err = backup.Run(ctx, up, recorded, bo)
	}
	if err != nil {
		return blob.ID{}, nil, snapshot.Summary{}, err
	}
	if err := up.Flush(ctx); err != nil {
		return blob.ID{}, nil, snapshot.Summary{}, err
	}
	st := up.Stats()
	sum := res.Summary
	sum.BlobsAdded, sum.BytesAdded, sum.StoredAdded = st.Sent, st.BytesRaw, st.BytesSent
	sum.Duration = time.Since(start)
	sn := &snapshot.Snapshot{Version: snapshot.Version, Time: start, Node: o.node, Plan: o.plan, Host: o.host,
		Paths: recorded, Tags: o.tags, Tree: res.Tree, Excludes: res.Excludes, Summary: sum}
	if parent != nil {
		sn.Parent = &parent.ID
	}
	rec, _, err := snapshot.Encode(sn)
	if err != nil {
		return blob.ID{}, nil, sum, err
	}
	id, err := c.Commit(ctx, rec)
	return id, res, sum, err
}

// remoteParent finds the parent snapshot among the node's snapshots on
// the appliance.
func (o *pushOptions) remoteParent(ctx context.Context, c *wire.Client, paths []string) (*snapshot.Entry, error) {
	if o.forceRead && o.parent == "" {
		return nil, nil
	}
	items, err := c.ListSnapshots(ctx, o.plan)
	if err != nil {
		return nil, fmt.Errorf("push: list snapshots: %w", err)
	}
	var best *snapshot.Entry
	for _, it := range items {
		sn, err := snapshot.Decode(it.Record)
		if err != nil || blob.Hash(it.Record) != it.ID {
			continue
		}
		e := snapshot.Entry{ID: it.ID, Snapshot: sn}
		if o.parent != "" {
			if strings.HasPrefix(it.ID.String(), strings.ToLower(o.parent)) {
				return &e, nil
			}
			continue
		}
		if sn.Plan == o.plan && equalStrings(sn.Paths, paths) && (best == nil || sn.Time.After(best.Time)) {
			best = &e
		}
	}
	if o.parent != "" {
		return nil, fmt.Errorf("push: --parent %s: no such snapshot of node %s", o.parent, o.node)
	}
	return best, nil
}
