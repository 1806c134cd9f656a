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
	"github.com/cairnbackup/cairn/repo/filter"
	"github.com/cairnbackup/cairn/repo/pack"
	"github.com/cairnbackup/cairn/repo/plan"
	"github.com/cairnbackup/cairn/repo/snapshot"
	"github.com/cairnbackup/cairn/repo/wire"
	"github.com/spf13/cobra"
	"github.com/spf13/pflag"
	"golang.org/x/crypto/ssh"
	"golang.org/x/crypto/ssh/knownhosts"
)

type pushOptions struct {
	backupOptions
	sshOptions
}

// sshOptions say how to reach an appliance over SSH (push, and restore
// --from).
type sshOptions struct {
	identity   string
	knownHosts string
	hostKey    string
	sshCommand string
}

func (o *sshOptions) register(f *pflag.FlagSet) {
	f.StringVarP(&o.identity, "identity", "i", "", "SSH private key (default ~/.ssh/id_ed25519)")
	f.StringVar(&o.knownHosts, "known-hosts", "", "known_hosts file for the appliance's host key (default ~/.ssh/known_hosts)")
	f.StringVar(&o.hostKey, "host-key", "", "the appliance's host key fingerprint (SHA256:...), instead of known_hosts")
	f.StringVar(&o.sshCommand, "ssh-command", "", "use this ssh client command (e.g. \"ssh -i key\") instead of the built-in one")
}

func newPushCommand(g *globalOptions) *cobra.Command {
	o := &pushOptions{}
	cmd := &cobra.Command{
		Use:   "push ssh://NODE@HOST[:PORT] PATH... | --stdin --name NAME | --tar [--name NAME]",
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

--plan FILE.yaml pushes every source of a plan file instead, one
snapshot per source, recording each source's class and reason (see the
README): a source without a reason is refused, CACHEDIR.TAG caches are
left out, build output and temporary files only from git sources and
sources with exclude_disposable, and a command source whose command
fails is not saved. Each snapshot records how many entries each exclude
rule left out.

Exit code 0: saved. 3: saved, with warnings. 1: failed, nothing saved
(a push that is interrupted leaves no snapshot; the next push reuses the
blobs that reached the appliance).`,
		Args: cobra.MinimumNArgs(1),
		RunE: func(cmd *cobra.Command, args []string) error { return runPush(cmd.Context(), g, o, args[0], args[1:]) },
	}
	host, _ := os.Hostname()
	f := cmd.Flags()
	f.StringVar(&o.plan, "plan", "", "plan name recorded in the snapshot, or a plan file (plan.yaml) naming the sources to push")
	f.StringVar(&o.host, "host", host, "host name recorded in the snapshot")
	f.StringArrayVar(&o.tags, "tag", nil, "tag the snapshot (repeatable)")
	f.StringVar(&o.parent, "parent", "", "compare with this snapshot (an ID prefix) instead of the latest of the same plan and paths")
	f.BoolVar(&o.forceRead, "force-read", false, "read every file, even those the parent says are unchanged")
	f.BoolVar(&o.stdin, "stdin", false, "push standard input as one file (needs --name)")
	f.StringVar(&o.name, "name", "", "file name for --stdin; with --tar, the directory the archive's tree is stored under (default: the root)")
	f.BoolVar(&o.tar, "tar", false, "push a tar stream read from standard input")
	f.StringArrayVar(&o.excludes, "exclude", nil, "leave out paths matching PATTERN (repeatable)")
	f.StringArrayVar(&o.excludeFiles, "exclude-file", nil, "read exclude patterns from FILE (repeatable)")
	f.BoolVar(&o.excludeCaches, "exclude-caches", false, "leave out the contents of directories with a CACHEDIR.TAG")
	f.BoolVarP(&o.oneFS, "one-file-system", "x", false, "do not cross into other file systems")
	o.sshOptions.register(f)
	return cmd
}

// target is a parsed ssh://NODE@HOST:PORT.
type target struct {
	node, host, port string
}

func parseTarget(s string) (target, error) {
	u, err := url.Parse(s)
	if err != nil || u.Scheme != "ssh" || u.User == nil || u.User.Username() == "" || u.Hostname() == "" || (u.Path != "" && u.Path != "/") {
		return target{}, fmt.Errorf("%q is not ssh://NODE@HOST[:PORT]", s)
	}
	t := target{node: u.User.Username(), host: u.Hostname(), port: u.Port()}
	if t.port == "" {
		t.port = "2222"
	}
	return t, snapshot.CheckName("node", t.node)
}

// connect opens the SSH stream to the appliance and runs cairn-wire on it.
func (o *sshOptions) connect(ctx context.Context, g *globalOptions, t target) (io.ReadWriteCloser, error) {
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

func (o *sshOptions) hostKeyCallback(g *globalOptions, home string) (ssh.HostKeyCallback, error) {
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

// pushJob is one snapshot to push: from the command line, or one source
// of a plan.
type pushJob struct {
	plan          string
	paths         []string // recorded in the snapshot
	stream        io.Reader
	streamName    string // --stdin / a command source: the file name
	tar           bool
	exclude       *filter.Matcher
	excludeCaches bool
	tags          []string
	scope         *snapshot.Scope
	command       *exec.Cmd // a command source, started; waited for before commit
}

func runPush(ctx context.Context, g *globalOptions, o *pushOptions, dest string, paths []string) error {
	t, err := parseTarget(dest)
	if err != nil {
		return usageError{fmt.Errorf("push: %w", err)}
	}
	o.node = t.node
	var jobs []func() (*pushJob, error)
	if isPlanFile(o.plan) {
		if len(paths) > 0 || o.stdin || o.tar {
			return usageError{errors.New("push: a plan file names its sources: give no PATH, --stdin or --tar")}
		}
		pl, err := plan.Load(g.abs(o.plan))
		if err != nil {
			return err
		}
		for _, src := range pl.Sources {
			jobs = append(jobs, func() (*pushJob, error) { return o.sourceJob(ctx, g, pl, src) })
		}
	} else {
		recorded, err := o.check(g, paths)
		if err != nil {
			return err
		}
		excl, err := o.matcher()
		if err != nil {
			return usageError{err}
		}
		job := &pushJob{plan: o.plan, paths: recorded, exclude: excl, excludeCaches: o.excludeCaches, tags: o.tags, tar: o.tar}
		if o.stdin || o.tar {
			job.stream, job.streamName = g.stdin, o.name
		}
		jobs = append(jobs, func() (*pushJob, error) { return job, nil })
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
	table := chunker.NewTable(w.ChunkerSeed)
	var failed []error
	warned := false
	for _, mk := range jobs {
		job, err := mk()
		if err == nil {
			var rep error
			rep, err = o.push(ctx, g, c, params, table, job)
			var ee *exitError
			if errors.As(rep, &ee) && ee.code == exitWarnings {
				warned = true
			}
		}
		if err != nil {
			if len(jobs) == 1 {
				return fmt.Errorf("push: %w", err)
			}
			fmt.Fprintf(g.stderr, "cairn: %v\n", err)
			failed = append(failed, err)
			var we *wire.ErrorMsg
			if errors.As(err, &we) || errors.Is(err, wire.ErrClosed) {
				break // the session is over
			}
		}
	}
	if len(failed) > 0 {
		return &exitError{code: exitFailed, err: fmt.Errorf("push: %d of %d sources failed", len(failed), len(jobs))}
	}
	if warned {
		return &exitError{code: exitWarnings, err: errors.New("some files could not be read")}
	}
	return nil
}

func isPlanFile(v string) bool {
	if strings.HasSuffix(v, ".yaml") || strings.HasSuffix(v, ".yml") {
		return true
	}
	fi, err := os.Stat(v)
	return err == nil && fi.Mode().IsRegular()
}

// sourceJob prepares one source of a plan; a command source's command is
// started here and its output streamed.
func (o *pushOptions) sourceJob(ctx context.Context, g *globalOptions, pl *plan.Plan, src plan.Source) (*pushJob, error) {
	excl, err := filter.New(src.Rules(pl.Path))
	if err != nil {
		return nil, err
	}
	job := &pushJob{plan: src.Name, paths: src.Paths, exclude: excl, excludeCaches: src.ExcludeCaches(), tags: append(slices.Clone(o.tags), src.Tags...), scope: src.Scope(pl.Path)}
	if src.Command != "" {
		cmd := exec.CommandContext(ctx, "/bin/sh", "-c", src.Command)
		cmd.Stderr = g.stderr
		out, err := cmd.StdoutPipe()
		if err != nil {
			return nil, err
		}
		if err := cmd.Start(); err != nil {
			return nil, fmt.Errorf("source %s: %w", src.Name, err)
		}
		job.stream, job.streamName, job.command = out, src.File, cmd
		job.paths = []string{"/" + src.File}
	}
	return job, nil
}

// push sends one job as one snapshot and prints its report; rep is the
// report's exit status (warnings), err a failure.
func (o *pushOptions) push(ctx context.Context, g *globalOptions, c *wire.Client, params chunker.Params, table *chunker.Table, job *pushJob) (rep, err error) {
	parent, err := o.remoteParent(ctx, c, job.plan, job.paths)
	if err != nil {
		return nil, err
	}
	start := time.Now()
	bo := backup.Options{Params: params, Table: table, Loader: c, ForceRead: o.forceRead,
		Exclude: job.exclude, ExcludeCaches: job.excludeCaches, OneFileSystem: o.oneFS, Progress: &backup.Progress{}}
	if parent != nil && job.stream == nil {
		bo.Parent = parent.Tree
	}
	stop := g.showBackupProgress(bo.Progress, parent, start)
	up := c.NewUploader(pack.LevelDefault)
	var res *backup.Result
	switch {
	case job.stream != nil && job.tar:
		res, err = backup.TarInto(ctx, up, job.stream, job.streamName, bo)
	case job.stream != nil:
		res, err = backup.Stream(ctx, up, job.stream, job.streamName, bo)
	default:
		res, err = backup.Run(ctx, up, job.paths, bo)
	}
	if err == nil {
		err = up.Flush(ctx)
	}
	up.Close()
	stop()
	if job.command != nil {
		// A dump that failed must not be saved as if it were whole.
		if werr := job.command.Wait(); werr != nil && err == nil {
			err = fmt.Errorf("source %s: command %q failed: %w; nothing saved", job.plan, job.command.Args[2], werr)
		}
	}
	if err != nil {
		return nil, err
	}
	st := up.Stats()
	sum := res.Summary
	sum.BlobsAdded, sum.BytesAdded, sum.StoredAdded = st.Sent, st.BytesRaw, st.BytesSent
	sum.Duration = time.Since(start)
	sn := &snapshot.Snapshot{Version: snapshot.Version, Time: start, Node: o.node, Plan: job.plan, Host: o.host,
		Paths: job.paths, Tags: job.tags, Tree: res.Tree, Excludes: res.Excludes, Scope: job.scope, Summary: sum}
	if parent != nil {
		sn.Parent = &parent.ID
	}
	rec, _, err := snapshot.Encode(sn)
	if err != nil {
		return nil, err
	}
	id, err := c.Commit(ctx, rec)
	if err != nil {
		return nil, err
	}
	return g.report(id, res.Tree, sum, parent, res.Excludes), nil
}

// remoteParent finds the parent snapshot among the node's snapshots on
// the appliance.
func (o *pushOptions) remoteParent(ctx context.Context, c *wire.Client, planName string, paths []string) (*snapshot.Entry, error) {
	if o.forceRead && o.parent == "" {
		return nil, nil
	}
	items, err := c.ListSnapshots(ctx, planName)
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
		if sn.Plan == planName && equalStrings(sn.Paths, paths) && (best == nil || sn.Time.After(best.Time)) {
			best = &e
		}
	}
	if o.parent != "" {
		return nil, fmt.Errorf("push: --parent %s: no such snapshot of node %s", o.parent, o.node)
	}
	return best, nil
}
