package appliance

import (
	"bytes"
	"errors"
	"fmt"
	"io"
	"net"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"time"

	"github.com/cairnbackup/cairn/repo/internal/yamldoc"
	"github.com/cairnbackup/cairn/repo/prune"
	"github.com/cairnbackup/cairn/repo/snapshot"
	"github.com/cairnbackup/cairn/repo/wire"
	"github.com/cairnbackup/cairn/scheduler"
	"golang.org/x/crypto/ssh"
)

// Config is the appliance configuration file (YAML), by default DIR.yaml
// next to the repository DIR. It names the nodes that may connect, their
// public keys and permissions, and where the appliance listens.
type Config struct {
	// Listen is the SSH address; empty means DefaultListen. Listening on
	// all interfaces must be asked for explicitly (0.0.0.0:2222).
	Listen string `yaml:"listen"`
	// Socket is the unix socket for operator commands; empty means
	// DIR.sock next to the repository.
	Socket string `yaml:"socket,omitempty"`
	// Nodes by name.
	Nodes map[string]*Node `yaml:"nodes"`
	// Limits bound what nodes can make the appliance do.
	Limits Limits `yaml:"limits"`
	// Retention is what cairn forget (and the scheduled prune) keeps.
	Retention Retention `yaml:"retention"`
	// Jobs are the scheduled jobs; a job without a schedule does not run.
	Jobs Jobs `yaml:"jobs"`
	// Expect is how often each node/plan ("node/plan", "node" or
	// "default") must back up; older means a missed backup.
	Expect map[string]prune.Span `yaml:"expect,omitempty"`
	// Notify is a command run (with sh -c) when a job fails or needs
	// attention, with the run as JSON on its standard input.
	Notify string `yaml:"notify,omitempty"`
	// Metrics is the address of the Prometheus endpoint (/metrics);
	// empty is off.
	Metrics string `yaml:"metrics,omitempty"`
	// S3Credentials is the absolute path of the file holding the S3
	// credentials of an object-store repository (AWS_ACCESS_KEY_ID=…,
	// AWS_SECRET_ACCESS_KEY=…, mode 0600), used when neither
	// --s3-credentials nor the environment gives them. Read when the
	// repository is opened: a change takes effect at the next start.
	S3Credentials string `yaml:"s3_credentials,omitempty"`
}

// Jobs configure the scheduled jobs.
type Jobs struct {
	Verify    VerifyJob `yaml:"verify"`
	Drill     DrillJob  `yaml:"drill"`
	Prune     Job       `yaml:"prune"`
	Staleness Job       `yaml:"staleness"`
}

// Job is a schedule: cron syntax ("0 3 * * *") or a descriptor
// ("@daily", "@every 6h"), and a random delay.
type Job struct {
	Schedule string        `yaml:"schedule,omitempty"`
	Jitter   time.Duration `yaml:"jitter,omitempty"`
}

// VerifyJob re-reads data so that all of it is verified once per cycle.
type VerifyJob struct {
	Job   `yaml:",inline"`
	Cycle prune.Span `yaml:"cycle,omitempty"` // default 30d
}

// DrillJob restores the newest snapshot of every node/plan.
type DrillJob struct {
	Job         `yaml:",inline"`
	Scratch     string            `yaml:"scratch,omitempty"`      // default the system's temporary directory
	SampleFiles int               `yaml:"sample_files,omitempty"` // 0: every file
	Probes      map[string]string `yaml:"probes,omitempty"`       // extra checks by "node/plan" or plan
}

// Duration approximates a span (months of 30 days, years of 365).
func Duration(s prune.Span) time.Duration {
	return time.Duration(s.Years*365+s.Months*30+s.Days)*24*time.Hour + time.Duration(s.Hours)*time.Hour
}

// CycleDuration is the verification cycle.
func (v VerifyJob) CycleDuration() time.Duration {
	if v.Cycle.IsZero() {
		return 30 * 24 * time.Hour
	}
	return Duration(v.Cycle)
}

// ExpectDurations returns Expect as durations.
func (c *Config) ExpectDurations() map[string]time.Duration {
	out := map[string]time.Duration{}
	for k, s := range c.Expect {
		out[k] = Duration(s)
	}
	return out
}

// Retention holds the forget policies: by "node/plan", by "node", and
// "default" for the rest; the first that exists applies. Groups without
// any are never forgotten.
type Retention struct {
	// TimeZone buckets snapshots into days, weeks and months; empty is
	// the appliance's local zone.
	TimeZone string                  `yaml:"timezone,omitempty"`
	Policies map[string]prune.Policy `yaml:"policies,omitempty"`
	// GroupBy is what tells groups of snapshots apart, for retention,
	// drills, staleness, status and the runbook alike: a comma list of
	// node, plan and paths; unset is all three (prune.DefaultGroupBy).
	GroupBy *prune.GroupBy `yaml:"group_by,omitempty"`
}

// Grouping returns how snapshots are grouped.
func (r Retention) Grouping() prune.GroupBy {
	if r.GroupBy == nil {
		return prune.DefaultGroupBy
	}
	return *r.GroupBy
}

// Location returns the retention time zone.
func (r Retention) Location() (*time.Location, error) {
	if r.TimeZone == "" {
		return time.Local, nil
	}
	loc, err := time.LoadLocation(r.TimeZone)
	if err != nil {
		return nil, fmt.Errorf("retention timezone: %w", err)
	}
	return loc, nil
}

// PolicyFor returns the policy for a group: the one of its node and
// plan (every path group of a node/plan has the same policy).
func (r Retention) PolicyFor(g prune.Group) (prune.Policy, bool) {
	for _, k := range []string{g.Node + "/" + g.Plan, g.Node, "default"} {
		if p, ok := r.Policies[k]; ok {
			return p, true
		}
	}
	return prune.Policy{}, false
}

// Node is one machine allowed to connect.
type Node struct {
	// Keys are public keys in authorized_keys format ("ssh-ed25519 AAAA… comment").
	Keys []string `yaml:"keys"`
	// Permissions: push (append-only: add blobs and snapshots for this
	// node), read (list, restore, mount this node's snapshots), admin
	// (everything).
	Permissions []string `yaml:"permissions"`
	// Isolated nodes never learn whether the repository has a blob they
	// did not send: every dedup question is answered "no" (the blob is
	// still stored once), and the summaries of their push --stdin and
	// --tar count what they sent.
	Isolated bool `yaml:"isolated,omitempty"`
	// MaxSessions limits concurrent sessions of this node; zero means
	// Limits.SessionsPerNode.
	MaxSessions int `yaml:"max_sessions,omitempty"`

	perms wire.Perm
	keys  [][]byte // marshalled public keys
}

// Limits bound resource use per session and overall.
type Limits struct {
	Sessions        int           `yaml:"sessions"`          // all nodes together; default 32
	SessionsPerNode int           `yaml:"sessions_per_node"` // default 4
	IdleTimeout     time.Duration `yaml:"idle_timeout"`      // no frame for this long ends a session; default 10m
	MaxBatch        int           `yaml:"max_batch"`         // handles per have-blobs question; default 4096
	// ClockSkew is how far a node's clock may be off before the
	// appliance dates the node's snapshots itself; default
	// snapshot.ClockSkew (5m).
	ClockSkew time.Duration `yaml:"clock_skew"`
	// SSH connections that have not authenticated yet, all together and
	// from one source address; more are closed at once. Defaults 64, 10.
	Unauthenticated           int `yaml:"unauthenticated"`
	UnauthenticatedPerAddress int `yaml:"unauthenticated_per_address"`
	// HandshakeTimeout bounds an SSH connection's handshake and
	// authentication; default 20s.
	HandshakeTimeout time.Duration `yaml:"handshake_timeout"`
}

// DefaultListen is where the embedded SSH server listens unless told.
const DefaultListen = "127.0.0.1:2222"

// LoadConfig reads and checks a config file. A missing file gives the
// defaults with no nodes.
func LoadConfig(path string) (*Config, error) {
	b, err := os.ReadFile(path)
	if errors.Is(err, os.ErrNotExist) {
		c := &Config{}
		return c, c.check()
	}
	if err != nil {
		return nil, fmt.Errorf("config: %w", err)
	}
	return ParseConfig(b, path)
}

// ParseConfig parses a config document; name is used in messages.
func ParseConfig(b []byte, name string) (*Config, error) {
	var c Config
	if err := yamldoc.Decode(b, &c); err != nil && !errors.Is(err, io.EOF) {
		return nil, fmt.Errorf("config %s: %w", name, err)
	}
	if err := c.check(); err != nil {
		return nil, fmt.Errorf("config %s: %w", name, err)
	}
	return &c, nil
}

func (c *Config) check() error {
	if c.Listen == "" {
		c.Listen = DefaultListen
	}
	if _, _, err := net.SplitHostPort(c.Listen); err != nil {
		return fmt.Errorf("listen %q: %w", c.Listen, err)
	}
	if c.Nodes == nil {
		c.Nodes = map[string]*Node{}
	}
	l := &c.Limits
	if l.Sessions <= 0 {
		l.Sessions = 32
	}
	if l.SessionsPerNode <= 0 {
		l.SessionsPerNode = 4
	}
	if l.IdleTimeout <= 0 {
		l.IdleTimeout = 10 * time.Minute
	}
	if l.MaxBatch <= 0 || l.MaxBatch > 65536 {
		l.MaxBatch = 4096
	}
	if l.ClockSkew < 0 {
		return fmt.Errorf("limits: clock_skew %s is negative", l.ClockSkew)
	}
	if l.ClockSkew == 0 {
		l.ClockSkew = snapshot.ClockSkew
	}
	if l.Unauthenticated <= 0 {
		l.Unauthenticated = 64
	}
	if l.UnauthenticatedPerAddress <= 0 {
		l.UnauthenticatedPerAddress = 10
	}
	if l.HandshakeTimeout <= 0 {
		l.HandshakeTimeout = 20 * time.Second
	}
	if c.S3Credentials != "" && !filepath.IsAbs(c.S3Credentials) {
		return fmt.Errorf("s3_credentials %q: give an absolute path", c.S3Credentials)
	}
	if _, err := c.Retention.Location(); err != nil {
		return err
	}
	for k, p := range c.Retention.Policies {
		if p.Empty() {
			return fmt.Errorf("retention policy %s keeps nothing; give at least one keep_* rule (keep_drilled alone keeps nothing until a drill passes)", k)
		}
		if err := p.Check(); err != nil {
			return fmt.Errorf("retention policy %s: %w", k, err)
		}
	}
	if err := c.Jobs.check(); err != nil {
		return err
	}
	seen := map[string]string{}
	for name, n := range c.Nodes {
		if n == nil {
			return fmt.Errorf("node %s: empty", name)
		}
		if err := snapshot.CheckName("node", name); err != nil {
			return err
		}
		if len(n.Keys) == 0 {
			return fmt.Errorf("node %s: no keys", name)
		}
		n.perms = 0
		for _, p := range n.Permissions {
			switch strings.TrimSpace(p) {
			case "push":
				n.perms |= wire.PermPush
			case "read":
				n.perms |= wire.PermRead
			case "admin":
				n.perms |= wire.PermAdmin
			default:
				return fmt.Errorf("node %s: unknown permission %q (use push, read, admin)", name, p)
			}
		}
		if n.perms == 0 {
			return fmt.Errorf("node %s: no permissions (give push, read or admin)", name)
		}
		n.keys = n.keys[:0]
		for i, k := range n.Keys {
			pk, _, _, _, err := ssh.ParseAuthorizedKey([]byte(k))
			if err != nil {
				return fmt.Errorf("node %s: key %d: %w", name, i+1, err)
			}
			m := pk.Marshal()
			if other, ok := seen[string(m)]; ok {
				return fmt.Errorf("node %s: key %d is also the key of node %s; every node needs its own key", name, i+1, other)
			}
			seen[string(m)] = name
			n.keys = append(n.keys, m)
		}
	}
	return nil
}

// check refuses what the scheduler would refuse, naming the key, so that
// a configuration is whole before anything of it is used.
func (j *Jobs) check() error {
	for _, x := range []struct {
		name string
		job  Job
	}{{"verify", j.Verify.Job}, {"drill", j.Drill.Job}, {"prune", j.Prune}, {"staleness", j.Staleness}} {
		if x.job.Schedule != "" {
			if err := scheduler.CheckSchedule(x.job.Schedule); err != nil {
				return fmt.Errorf("jobs.%s.schedule %q: %w", x.name, x.job.Schedule, err)
			}
		}
		if x.job.Jitter < 0 {
			return fmt.Errorf("jobs.%s.jitter %s: negative", x.name, x.job.Jitter)
		}
	}
	if j.Drill.SampleFiles < 0 {
		return fmt.Errorf("jobs.drill.sample_files %d: negative", j.Drill.SampleFiles)
	}
	for k, cmd := range j.Drill.Probes {
		if strings.TrimSpace(k) == "" || strings.TrimSpace(cmd) == "" {
			return fmt.Errorf("jobs.drill.probes %q: give a node/plan or plan and a command", k)
		}
	}
	return nil
}

// BackupNodes returns the names of the nodes that may push (push or
// admin permission), sorted: status expects a backup from each.
func (c *Config) BackupNodes() []string {
	var out []string
	for name, n := range c.Nodes {
		if n.perms.Has(wire.PermPush) || n.perms.Has(wire.PermAdmin) {
			out = append(out, name)
		}
	}
	slices.Sort(out)
	return out
}

// Perms returns the node's permissions.
func (n *Node) Perms() wire.Perm { return n.perms }

// NodeForKey returns the node that owns public key k, or "".
func (c *Config) NodeForKey(k ssh.PublicKey) (string, *Node) {
	m := k.Marshal()
	for name, n := range c.Nodes {
		if slices.ContainsFunc(n.keys, func(b []byte) bool { return bytes.Equal(b, m) }) {
			return name, n
		}
	}
	return "", nil
}

// DefaultConfigText is written by init: commented, with no nodes.
const DefaultConfigText = `# cairn appliance configuration. Reload with SIGHUP (cairn serve keeps running).
#
# listen: where the embedded SSH server listens (nodes push here).
# Use 0.0.0.0:2222 to accept other machines; the default is loopback only.
listen: 127.0.0.1:2222

# nodes: the machines allowed to connect, each with its own key(s).
# permissions: push (append-only: add its own snapshots), read (list and
# restore its own snapshots), admin (everything).
nodes: {}
#  lyra:
#    keys:
#      - ssh-ed25519 AAAA... root@lyra
#    permissions: [push, read]

# retention: what cairn forget keeps (by node/plan, node, or default), in
# each group of snapshots of one node, plan and set of paths. Every policy
# also keeps the newest snapshot that passed a drill (keep_drilled: 1).
# retention:
#   timezone: Europe/Berlin
#   group_by: node,plan,paths
#   policies:
#     default: {keep_last: 3, keep_daily: 7, keep_weekly: 4, keep_monthly: 12}
#     lyra/git: {keep_daily: 30, keep_within: 7d, keep_drilled: 2}

# jobs: the appliance's schedule (cron syntax or @daily, @every 6h).
# jobs:
#   verify:    {schedule: "@daily", cycle: 30d}     # all data re-read once per cycle
#   drill:     {schedule: "0 4 * * *", jitter: 30m} # restore and check every plan's newest snapshot
#   prune:     {schedule: "0 5 * * 0"}              # the retention policies, then prune
#   staleness: {schedule: "@hourly"}                # report missed backups
# expect: {default: 26h, lyra/git: 8d}              # how often each node/plan must back up
# notify: /usr/local/bin/cairn-notify               # gets a failing job's report as JSON on stdin
# metrics: 127.0.0.1:9100                           # Prometheus /metrics (off by default)

# limits:
#   sessions: 32            # all nodes together
#   sessions_per_node: 4
#   idle_timeout: 10m       # a session silent this long is closed
#   clock_skew: 5m          # a node's snapshot time further off than this is replaced by the appliance's
#   unauthenticated: 64     # SSH connections still logging in, all together;
#   unauthenticated_per_address: 10  # and from one address; more are closed at once
#   handshake_timeout: 20s  # to finish logging in
`
