package appliance

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"slices"
	"strconv"
	"strings"
	"time"

	"github.com/cairnbackup/cairn/repo/snapshot"
	"github.com/cairnbackup/cairn/repo/wire"
)

// Node commands: what a node's words can reach.
//
// A node sends one command line (the SSH exec request, or
// $SSH_ORIGINAL_COMMAND behind a forced command). It is split at white
// space, its first word is looked up in [nodeCommands], the node's
// permissions are checked, and the rest is parsed against that command's
// own flags by [parseNodeFlags], and by nothing else: no general-purpose
// parser sees the node's words. No node command has a global flag
// (--repo, --config, --key-file, --password-file, --socket, --log-level,
// --cpuprofile, --memprofile), a positional argument, or a value that
// names a file on the appliance.
//
// forget and prune, for admin nodes, run the operator's command (the
// same cobra code as `cairn forget` on the appliance, so there is one
// implementation of retention, its output and its JSON) with an argument
// list rebuilt by [nodeArgs.canonical] from the parsed values: the
// command's name, then each flag the node gave as --name=value (a
// number rewritten from its parsed value), so a value can never become a
// flag, and nothing the node wrote reaches the command tree as a word of
// its own. The appliance adds one flag itself: forget's --config, the
// configuration it serves, for the retention policies.

// maxNodeCommand bounds the command line a node may send.
const maxNodeCommand = 4096

type flagKind uint8

const (
	flagBool   flagKind = iota // --name
	flagInt                    // --name N or --name=N: a whole number, 0 to 999999999
	flagString                 // --name VALUE or --name=VALUE, at most once
	flagList                   // like flagString, repeatable
)

// nodeFlag is one flag of a node command.
type nodeFlag struct {
	name string
	kind flagKind
	arg  string // what the value is, for the usage line: N, NAME, SPAN…
}

// nodeCommand is one command a node may run.
type nodeCommand struct {
	name string
	// perm is the permission the node needs (admin may run every
	// command); 0 lets every node run it (cairn-wire checks each
	// request against the node's permissions itself).
	perm  wire.Perm
	flags []nodeFlag
	// check validates the flags together (optional).
	check func(nodeArgs) error
	run   func(a *Appliance, ctx context.Context, s *nodeSession) int
}

// nodeSession is one node command about to run.
type nodeSession struct {
	sess     *session // the tracked session: revocation, its input
	node     string
	perms    wire.Perm
	isolated bool
	line     string // the command line as the node sent it, for the log
	cmd      *nodeCommand
	args     nodeArgs
	stdin    io.Reader
	stdout   io.Writer
	stderr   io.Writer
	start    time.Time
}

// The flags forget and prune share with the operator's commands (see
// cmd/cairn: filterOptions, newForgetCommand, newPruneCommand).
var (
	filterFlags = []nodeFlag{
		{"node", flagString, "NAME"}, {"plan", flagString, "NAME"}, {"tag", flagList, "TAG"}, {"path", flagString, "PATH"},
	}
	policyFlags = []nodeFlag{
		{"keep-last", flagInt, "N"}, {"keep-hourly", flagInt, "N"}, {"keep-daily", flagInt, "N"},
		{"keep-weekly", flagInt, "N"}, {"keep-monthly", flagInt, "N"}, {"keep-yearly", flagInt, "N"},
		{"keep-within", flagString, "SPAN"}, {"keep-tag", flagList, "TAG"},
		{"keep-drilled", flagInt, "N"}, {"group-by", flagString, "FIELDS"},
	}
	dryRunFlag = nodeFlag{"dry-run", flagBool, ""}
	pruneFlags = []nodeFlag{{"max-unused", flagString, "P%"}, {"max-repack", flagString, "SIZE"}}
	jsonFlag   = nodeFlag{"json", flagBool, ""}
)

// nodeCommands is every command a node may run, in the order messages
// list them.
var nodeCommands = []*nodeCommand{
	{name: "cairn-wire", run: runWire},
	{name: "push", perm: wire.PermPush, run: runPush, check: checkPush, flags: []nodeFlag{
		{"tar", flagBool, ""}, {"stdin", flagBool, ""}, {"name", flagString, "NAME"}, {"plan", flagString, "NAME"}, {"tag", flagList, "TAG"},
	}},
	{name: "snapshots", run: runNodeSnapshots},
	{name: "forget", perm: wire.PermAdmin, run: runAdmin, flags: join(filterFlags, policyFlags,
		[]nodeFlag{dryRunFlag, {"explain", flagBool, ""}, {"prune", flagBool, ""}}, pruneFlags, []nodeFlag{jsonFlag})},
	{name: "prune", perm: wire.PermAdmin, run: runAdmin, flags: join([]nodeFlag{dryRunFlag}, pruneFlags, []nodeFlag{jsonFlag})},
}

func join(lists ...[]nodeFlag) []nodeFlag {
	var out []nodeFlag
	for _, l := range lists {
		out = append(out, l...)
	}
	return out
}

func lookupNodeCommand(name string) *nodeCommand {
	for _, c := range nodeCommands {
		if c.name == name {
			return c
		}
	}
	return nil
}

// nodeCommandList says which commands nodes may run.
func nodeCommandList() string {
	var all, admin []string
	for _, c := range nodeCommands {
		if c.perm == wire.PermAdmin {
			admin = append(admin, c.name)
		} else {
			all = append(all, c.name)
		}
	}
	return "nodes may run: " + strings.Join(all, ", ") + ", and with admin " + strings.Join(admin, ", ")
}

// usage is the command's usage line, from its flags.
func (c *nodeCommand) usage() string {
	var b strings.Builder
	b.WriteString(c.name)
	for _, f := range c.flags {
		b.WriteString(" [--" + f.name)
		if f.arg != "" {
			b.WriteString(" " + f.arg)
		}
		b.WriteString("]")
		if f.kind == flagList {
			b.WriteString("...")
		}
	}
	return b.String()
}

func (c *nodeCommand) flag(name string) *nodeFlag {
	for i := range c.flags {
		if c.flags[i].name == name {
			return &c.flags[i]
		}
	}
	return nil
}

// nodeArgs holds the flags a node gave, by name, each value as the
// command will see it.
type nodeArgs map[string][]string

func (v nodeArgs) bool(name string) bool     { return len(v[name]) > 0 }
func (v nodeArgs) list(name string) []string { return v[name] }

func (v nodeArgs) str(name string) string {
	if s := v[name]; len(s) > 0 {
		return s[0]
	}
	return ""
}

// canonical is the command line for the operator's command: the name,
// then the flags given, in the table's order, each as --name or
// --name=value.
func (v nodeArgs) canonical(c *nodeCommand) []string {
	out := []string{c.name}
	for _, f := range c.flags {
		for _, val := range v[f.name] {
			if f.kind == flagBool {
				out = append(out, "--"+f.name)
			} else {
				out = append(out, "--"+f.name+"="+val)
			}
		}
	}
	return out
}

// parseNodeFlags parses a node's words against c's flags. A flag is
// --name, --name=value or --name value; a value in a word of its own
// may not start with "-" (so a forgotten value does not swallow the
// next flag; --name=-x gives one that does).
func parseNodeFlags(c *nodeCommand, words []string) (nodeArgs, error) {
	v := nodeArgs{}
	for i := 0; i < len(words); i++ {
		w := words[i]
		if !strings.HasPrefix(w, "-") {
			return nil, fmt.Errorf("unexpected argument %q", w)
		}
		word, value, hasValue := strings.Cut(w, "=")
		name, long := strings.CutPrefix(word, "--")
		f := c.flag(name)
		if !long || f == nil {
			return nil, fmt.Errorf("unknown flag %q", word)
		}
		if f.kind != flagList && len(v[name]) > 0 {
			return nil, fmt.Errorf("--%s given twice", name)
		}
		if f.kind == flagBool {
			if hasValue {
				return nil, fmt.Errorf("--%s takes no value", name)
			}
			v[name] = []string{"true"}
			continue
		}
		if !hasValue && i+1 < len(words) && !strings.HasPrefix(words[i+1], "-") {
			i++
			value, hasValue = words[i], true
		}
		if !hasValue || value == "" {
			return nil, fmt.Errorf("--%s needs a value", name)
		}
		if f.kind == flagInt {
			n, err := strconv.ParseUint(value, 10, 32)
			if err != nil || n > 999999999 {
				return nil, fmt.Errorf("--%s %q: want a whole number (0 or more)", name, value)
			}
			value = strconv.FormatUint(n, 10)
		}
		v[name] = append(v[name], value)
	}
	if c.check != nil {
		if err := c.check(v); err != nil {
			return nil, err
		}
	}
	return v, nil
}

func runWire(a *Appliance, ctx context.Context, s *nodeSession) int {
	cfg := a.Config()
	var closer func() error
	if c, ok := s.stdin.(io.Closer); ok {
		closer = c.Close
	}
	a.pushStarted(s.node, "")
	st, err := wire.Serve(ctx, readWriter{Reader: s.stdin, Writer: s.stdout, close: closer}, a.backend(), wire.SessionConfig{
		Node: s.node, Perms: s.perms, Isolated: s.isolated, MaxBatch: cfg.Limits.MaxBatch, IdleTimeout: cfg.Limits.IdleTimeout,
		Blobs: a.blobs, ClockSkew: cfg.Limits.ClockSkew, Authorized: s.sess.authorized,
	})
	a.logRedated(s.node, st.Redated)
	if st.Pushed {
		a.countPush(s.node, err) // a restore --from or a listing is no push
	}
	a.logPush(s.node, "cairn-wire", st.Snapshots, st.BlobsSent, st.BytesSent, st.BlobsStored, s.start, err)
	a.pushEnded(s.node, st.Snapshots, failedPlan(st, err), err)
	if err != nil {
		return 1
	}
	return 0
}

// pushArgs is what push stores: a tar stream (Tar, placed under Name if
// given) or one file (Stdin, named Name), with the snapshot's plan and
// tags.
type pushArgs struct {
	Tar, Stdin bool
	Name, Plan string
	Tags       []string
}

func checkPush(v nodeArgs) error {
	tar, stdin := v.bool("tar"), v.bool("stdin")
	if tar == stdin || stdin && v.str("name") == "" {
		return errors.New("give --tar [--name NAME] or --stdin --name NAME")
	}
	if plan := v.str("plan"); plan != "" {
		return snapshot.CheckName("plan", plan)
	}
	return nil
}

func runPush(a *Appliance, ctx context.Context, s *nodeSession) int {
	// A stream that sends nothing for idle_timeout is ended, even while
	// the push still works on what it sent: a tiny tar can announce a
	// sparse file of exabytes of zeros.
	ctx, cancel := context.WithCancelCause(ctx)
	defer cancel(nil)
	in := newIdleReader(s.sess.input(s.stdin), a.Config().Limits.IdleTimeout, cancel)
	defer in.stop()
	p := pushArgs{Tar: s.args.bool("tar"), Stdin: s.args.bool("stdin"), Name: s.args.str("name"), Plan: s.args.str("plan"), Tags: s.args.list("tag")}
	a.pushStarted(s.node, p.Plan)
	return a.pushStream(ctx, s.node, s.isolated, p, in, s.stdout, s.stderr, s.start)
}

func runNodeSnapshots(a *Appliance, ctx context.Context, s *nodeSession) int {
	items, err := a.backend().ListSnapshots(ctx, s.node, "")
	if err != nil {
		fmt.Fprintln(s.stderr, "cairn:", err)
		return 1
	}
	out := []json.RawMessage{}
	for _, it := range items {
		out = append(out, append([]byte(`{"id":"`+it.ID.String()+`","record":`), append(it.Record, '}')...))
	}
	b, _ := json.MarshalIndent(out, "", "  ")
	s.stdout.Write(append(b, '\n'))
	return 0
}

// runAdmin runs forget or prune as the operator's command, with the
// canonical argument list (see the top of this file).
func runAdmin(a *Appliance, ctx context.Context, s *nodeSession) int {
	if a.o.Operator == nil {
		fmt.Fprintln(s.stderr, "cairn: this appliance runs no operator commands")
		return 1
	}
	args := s.args.canonical(s.cmd)
	if s.cmd.name == "forget" && a.o.ConfigPath != "" {
		args = append(args, "--config="+a.o.ConfigPath)
	}
	code := a.o.Operator(ctx, &Request{Kind: "operator", Args: args}, strings.NewReader(""), s.stdout, s.stderr)
	a.log.Info("admin command", "node", s.node, "command", s.line, "exit", code, "duration", time.Since(s.start).Round(time.Millisecond),
		"ran", strings.Join(args, " "))
	return code
}

// failedPlan returns the plans of a session's commits (PushStats.Plans:
// one more than its snapshots when a commit failed) and, when the node
// reported a failure of its own (wire.NodeError), the plan that failure
// concerns: the one plan the session listed or committed, if it worked
// on exactly one.
func failedPlan(st wire.PushStats, err error) []string {
	plans := st.Plans
	var ne *wire.NodeError
	if !errors.As(err, &ne) || len(plans) > len(st.Snapshots) {
		return plans
	}
	var named []string
	for _, p := range append(slices.Clone(st.Listed), st.Plans...) {
		if p != "" && !slices.Contains(named, p) {
			named = append(named, p)
		}
	}
	if len(named) != 1 {
		return plans
	}
	return append(slices.Clone(plans), named[0])
}
