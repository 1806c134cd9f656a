package main

import (
	"context"
	"errors"
	"fmt"
	"net"
	"os"
	"os/signal"
	"runtime/debug"
	"syscall"

	"github.com/cairnbackup/cairn/repo"
	"github.com/cairnbackup/cairn/repo/appliance"
	"github.com/spf13/cobra"
	"golang.org/x/crypto/ssh"
)

type serveOptions struct {
	listen string
	config string
	stdio  bool
	node   string
}

func newServeCommand(g *globalOptions) *cobra.Command {
	o := &serveOptions{}
	cmd := &cobra.Command{
		Use:   "serve [--listen ADDR] | serve --stdio --node NAME",
		Short: "run the appliance: own the repository, serve nodes over SSH and operators over a socket",
		Long: `Run the appliance. It opens the repository (and is then its only writer),
serves nodes on its embedded SSH server (default 127.0.0.1:2222, or
listen: in the configuration DIR.yaml), and runs operator commands that
other cairn invocations send over the socket DIR.sock. SIGHUP rereads
the configuration and applies all of it or, if anything in it is wrong,
none of it; connections and sessions of revoked keys, removed nodes and
lost permissions end at their next request. SIGTERM or SIGINT stop it
gracefully: no new sessions, those in flight get 30 seconds to finish,
then it exits.

--stdio --node NAME serves one node session on standard input and output,
for an OpenSSH forced command in authorized_keys:

  command="cairn --repo /srv/cairn/repo serve --stdio --node lyra",restrict ssh-ed25519 AAAA...

(--repo, or CAIRN_REPO in the environment sshd gives the command, says
which repository: a forced command has no other way to know.) It runs the command the client asked for ($SSH_ORIGINAL_COMMAND) through
the running appliance, or opens the repository itself when none runs.`,
		Args: cobra.NoArgs,
		RunE: func(cmd *cobra.Command, _ []string) error {
			if o.stdio {
				return runServeStdio(cmd.Context(), g, o)
			}
			return runServe(cmd.Context(), g, o)
		},
	}
	f := cmd.Flags()
	f.StringVar(&o.listen, "listen", "", "SSH address (overrides listen: in the configuration)")
	f.StringVar(&o.config, "config", "", "configuration file (default: the repository path + .yaml)")
	f.BoolVar(&o.stdio, "stdio", false, "serve one node session on standard input and output")
	f.StringVar(&o.node, "node", "", "with --stdio: the node the session belongs to")
	return cmd
}

func (o *serveOptions) configPath(g *globalOptions) string { return g.configPath(o.config) }

// serveMemoryLimit is the heap the appliance asks the Go runtime to stay
// near (GOMEMLIMIT overrides it): the blobs in flight
// (appliance.BlobBytesInFlight) plus room for open packs, the index's
// caches and operator commands. Without it, the garbage that a few of
// the largest blobs leave behind lets the heap double before the
// collector runs.
const serveMemoryLimit = appliance.BlobBytesInFlight + 64<<20

func runServe(ctx context.Context, g *globalOptions, o *serveOptions) error {
	if os.Getenv("GOMEMLIMIT") == "" {
		debug.SetMemoryLimit(serveMemoryLimit)
	}
	r, release, err := g.open(ctx, repo.Options{})
	if err != nil {
		return err
	}
	defer release()
	log := g.logger()
	place, err := g.place()
	if err != nil {
		return err
	}
	hostKey := appliance.HostKeyPath(place)
	if _, err := os.Stat(hostKey); os.IsNotExist(err) {
		fp, err := appliance.GenerateHostKey(hostKey)
		if err != nil {
			return err
		}
		log.Info("created the appliance's host key", "path", hostKey, "fingerprint", fp)
	}
	var a *appliance.Appliance
	b := currentBuild()
	a, err = appliance.New(appliance.Options{
		Repo: r, ConfigPath: o.configPath(g), HostKeyPath: hostKey,
		SocketPath: g.socket, Operator: operator(place.String(), r, &a), Logger: log,
		Build: appliance.Build{Version: b.Version, Commit: b.Commit, GoVersion: b.Go},
	})
	if err != nil {
		return eachLine(err) // a missing configuration file too: an appliance without one serves nobody
	}
	addr := o.listen
	if addr == "" {
		addr = a.Config().Listen
	}
	ln, err := net.Listen("tcp", addr)
	if err != nil {
		return fmt.Errorf("listen: %w", err)
	}
	// The service manager (systemd, Type=notify) hears READY=1 once the
	// appliance serves, RELOADING=1 and READY=1 around each reload, and
	// STOPPING=1 when a signal stops it.
	sm, err := newServiceManager()
	if err != nil {
		log.Warn("not notifying the service manager", "err", err)
	}
	notify := func(state string) {
		if err := sm.notify(state); err != nil {
			log.Warn("notifying the service manager failed", "state", state, "err", err)
		}
	}
	serving := func() string {
		return fmt.Sprintf("READY=1\nSTATUS=serving %d nodes on %s", len(a.Config().Nodes), ln.Addr())
	}
	ready := make(chan struct{})
	hup := make(chan os.Signal, 1)
	signal.Notify(hup, syscall.SIGHUP)
	defer signal.Stop(hup)
	go func() {
		for range hup {
			select {
			case <-ready:
			default:
				// Not serving yet: Run reads the configuration as it starts.
				continue
			}
			notify(reloading())
			if err := a.Reload(); err != nil {
				log.Error("reloading the configuration failed; the old one stays", "err", err)
				notify(serving() + "; reloading the configuration failed, the old one stays: " + err.Error())
				continue
			}
			notify(serving())
		}
	}()
	// "serving" is logged once the socket and the SSH listener accept and
	// the jobs are planned: scripts and tests wait for it.
	ran := make(chan struct{})
	go func() {
		select {
		case <-a.Ready():
			log.Info("serving", "ssh", ln.Addr().String(), "host_key", ssh.FingerprintSHA256(a.HostKey().PublicKey()),
				"socket", g.socketPath(), "nodes", len(a.Config().Nodes), "pid", os.Getpid())
			notify(serving())
			close(ready)
		case <-ran:
		}
	}()
	stopped := make(chan struct{})
	stopping := context.AfterFunc(ctx, func() {
		defer close(stopped)
		select {
		case <-ready:
		default:
			select { // STOPPING=1 after READY=1, never before
			case <-ready:
			case <-ran:
				return
			}
		}
		notify(fmt.Sprintf("STOPPING=1\nSTATUS=stopping: %d sessions in flight", a.InFlight()))
	})
	err = a.Run(ctx, ln)
	close(ran)
	if !stopping() {
		<-stopped // the process must not exit before STOPPING=1 is sent
	}
	log.Info("stopped")
	// Closing flushes the index; its error (a repository directory
	// deleted under the appliance) is the appliance's last word.
	if cerr := r.Close(); cerr != nil {
		err = errors.Join(err, fmt.Errorf("closing the repository %s: %w", place, cerr))
	}
	return err
}

func runServeStdio(ctx context.Context, g *globalOptions, o *serveOptions) error {
	if o.node == "" {
		return usageError{errors.New("serve --stdio needs --node NAME")}
	}
	command := os.Getenv("SSH_ORIGINAL_COMMAND")
	req := &appliance.Request{Kind: "node", Node: o.node, Command: command}
	if g.repoDir != "" {
		req.Repo = g.location()
	}
	code, err := appliance.Call(ctx, g.socketPath(), req, g.stdin, g.stdout, g.stderr)
	if err == nil {
		return &exitError{code: code}
	}
	if !errors.Is(err, appliance.ErrNotRunning) {
		return err
	}
	// No appliance runs: serve the session with the repository opened here.
	r, release, err := g.open(ctx, repo.Options{})
	if err != nil {
		return err
	}
	defer release()
	a, err := appliance.New(appliance.Options{Repo: r, ConfigPath: o.configPath(g), ConfigOptional: o.config == "", Logger: g.logger()})
	if err != nil {
		return eachLine(err)
	}
	code = a.RelayedSession(ctx, o.node, command, g.stdin, g.stdout, g.stderr)
	if code != 0 {
		return &exitError{code: code}
	}
	return nil
}
