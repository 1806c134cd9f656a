package appliance

import (
	"bytes"
	"errors"
	"fmt"
	"io/fs"
	"maps"
	"net"
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
	// MetricsAuth protects the metrics listener; required when it is
	// not on a loopback address.
	MetricsAuth MetricsAuth `yaml:"metrics_auth,omitempty"`
	// Notifications are the built-in notification targets.
	Notifications Notifications `yaml:"notifications,omitempty"`
	// Replicas are the places the repository is copied to, by name.
	Replicas map[string]*Replica `yaml:"replicas,omitempty"`

	// Path is the file the configuration was read from.
	Path string `yaml:"-"`
	// Missing is set when that file does not exist (DefaultConfig).
	Missing bool `yaml:"-"`
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
	// Heal puts back what the verification finds damaged or missing
	// from a replica that holds a good copy (as cairn repair packs).
	Heal bool `yaml:"heal,omitempty"`
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
	MaxBatch        int           `yaml:"max_batch"`         // handles per have-blobs question, at most 65536; default 4096
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

// The defaults of the limits: what a limit that is zero or absent means.
const (
	DefaultSessions                  = 32
	DefaultSessionsPerNode           = 4
	DefaultIdleTimeout               = 10 * time.Minute
	DefaultMaxBatch                  = 4096
	DefaultUnauthenticated           = 64
	DefaultUnauthenticatedPerAddress = 10
	DefaultHandshakeTimeout          = 20 * time.Second
)

// LoadConfig reads the configuration file at path and checks all of it
// (ParseConfig): what cairn serve checks before it serves, what SIGHUP
// checks before it applies anything, and what cairn config check runs.
// The file must exist: a missing one is an error that wraps
// fs.ErrNotExist (see [DefaultConfig] for commands that may do without).
func LoadConfig(path string) (*Config, error) {
	b, err := yamldoc.ReadFile(path)
	if errors.Is(err, fs.ErrNotExist) {
		return nil, &missingError{path}
	}
	if err != nil {
		return nil, fmt.Errorf("configuration: %w", err)
	}
	c, err := ParseConfig(b, path)
	if err != nil {
		return nil, err
	}
	c.Path = path
	return c, nil
}

// Problem is one thing wrong in a configuration or plan file: its Error
// is "FILE:LINE: KEY: message".
type Problem = yamldoc.Problem

// Problems returns the problems of a file that err (from LoadConfig,
// ParseConfig or plan.Load) lists, each with its line and key; nil when
// err is not about what the file holds (it is missing or unreadable).
func Problems(err error) []Problem {
	var ps yamldoc.Problems
	if errors.As(err, &ps) {
		return ps
	}
	return nil
}

// missingError is a configuration file that does not exist.
type missingError struct{ path string }

func (e *missingError) Error() string {
	return e.path + ": no such configuration file (cairn init writes one beside the repository)"
}

func (e *missingError) Unwrap() error { return fs.ErrNotExist }

// DefaultConfig is the configuration of an appliance whose configuration
// file path does not exist: no nodes, no jobs, the default limits.
// Missing is set, and status says so.
func DefaultConfig(path string) *Config {
	c, err := ParseConfig(nil, path)
	if err != nil {
		panic("appliance: the empty configuration is refused: " + err.Error())
	}
	c.Path, c.Missing = path, true
	return c
}

// ParseConfig parses a configuration document and checks all of it;
// name is the file, for messages. The error lists every problem found,
// each as "FILE:LINE: KEY: message" (yamldoc.Problems): syntax errors,
// unknown keys, values of the wrong type, and everything below. A value
// that is zero or absent means its default; a negative or out of range
// value is refused, never replaced.
func ParseConfig(b []byte, name string) (*Config, error) {
	var c Config
	d, err := yamldoc.Parse(b, name, &c)
	if err != nil {
		return nil, err
	}
	c.check(d)
	if err := d.Err(); err != nil {
		return nil, err
	}
	return &c, nil
}

// check checks the configuration, reporting each problem with its key
// in d, and fills in the defaults.
func (c *Config) check(d *yamldoc.Doc) {
	if c.Listen == "" {
		c.Listen = DefaultListen
	}
	checkAddress(d, "listen", c.Listen, "127.0.0.1:2222")
	if c.Metrics != "" {
		checkAddress(d, "metrics", c.Metrics, "127.0.0.1:9100")
	}
	if c.Nodes == nil {
		c.Nodes = map[string]*Node{}
	}
	l := &c.Limits
	count(d, "limits.sessions", &l.Sessions, DefaultSessions, 0)
	count(d, "limits.sessions_per_node", &l.SessionsPerNode, DefaultSessionsPerNode, 0)
	count(d, "limits.max_batch", &l.MaxBatch, DefaultMaxBatch, wire.MaxHandles)
	count(d, "limits.unauthenticated", &l.Unauthenticated, DefaultUnauthenticated, 0)
	count(d, "limits.unauthenticated_per_address", &l.UnauthenticatedPerAddress, DefaultUnauthenticatedPerAddress, 0)
	duration(d, "limits.idle_timeout", &l.IdleTimeout, DefaultIdleTimeout)
	duration(d, "limits.clock_skew", &l.ClockSkew, snapshot.ClockSkew)
	duration(d, "limits.handshake_timeout", &l.HandshakeTimeout, DefaultHandshakeTimeout)
	if c.S3Credentials != "" && !filepath.IsAbs(c.S3Credentials) {
		d.Problemf("s3_credentials", "%q: give an absolute path", c.S3Credentials)
	}
	if _, err := c.Retention.Location(); err != nil {
		d.Problemf("retention.timezone", "%v", errors.Unwrap(err))
	}
	for _, k := range slices.Sorted(maps.Keys(c.Retention.Policies)) {
		key := "retention.policies." + k
		checkSelector(d, key, k)
		p := c.Retention.Policies[k]
		if p.Empty() {
			d.Problemf(key, "keeps nothing; give at least one keep_* rule (keep_drilled alone keeps nothing until a drill passes)")
		} else if err := p.Check(); err != nil {
			d.Problemf(key, "%v", err)
		}
	}
	for _, k := range slices.Sorted(maps.Keys(c.Expect)) {
		key := "expect." + k
		checkSelector(d, key, k)
		if c.Expect[k].IsZero() {
			d.Problemf(key, "a span of zero: every backup would be late; give how often a backup must come, such as 26h")
		}
	}
	c.Jobs.check(d)
	c.checkAlerts(d)
	c.checkReplicas(d)
	seen := map[string]string{}
	for _, name := range slices.Sorted(maps.Keys(c.Nodes)) {
		n := c.Nodes[name]
		key := "nodes." + name
		if err := snapshot.CheckName("node", name); err != nil {
			d.Problemf(key, "%s", strings.TrimPrefix(err.Error(), "snapshot: "))
		}
		if n == nil {
			d.Problemf(key, "empty: give keys and permissions")
			continue
		}
		if len(n.Keys) == 0 {
			d.Problemf(key+".keys", "none: give the node's public keys (authorized_keys lines)")
		}
		n.perms = 0
		for i, p := range n.Permissions {
			switch strings.TrimSpace(p) {
			case "push":
				n.perms |= wire.PermPush
			case "read":
				n.perms |= wire.PermRead
			case "admin":
				n.perms |= wire.PermAdmin
			default:
				d.Problemf(fmt.Sprintf("%s.permissions[%d]", key, i), "unknown permission %q (use push, read, admin)", p)
			}
		}
		if len(n.Permissions) == 0 {
			d.Problemf(key+".permissions", "none: give push, read or admin")
		}
		if n.MaxSessions < 0 {
			d.Problemf(key+".max_sessions", "%d is negative; give a number above 0, or leave it out for limits.sessions_per_node", n.MaxSessions)
		}
		n.keys = n.keys[:0]
		for i, k := range n.Keys {
			kkey := fmt.Sprintf("%s.keys[%d]", key, i)
			pk, _, _, _, err := ssh.ParseAuthorizedKey([]byte(k))
			if err != nil {
				d.Problemf(kkey, "not a public key: %v", err)
				continue
			}
			m := pk.Marshal()
			if other, ok := seen[string(m)]; ok {
				d.Problemf(kkey, "also the key of node %s; every node needs its own key", other)
				continue
			}
			seen[string(m)] = name
			n.keys = append(n.keys, m)
		}
	}
}

// checkAddress reports an address that cannot be listened on: not
// HOST:PORT, or a port that is neither a number up to 65535 nor a
// service name.
func checkAddress(d *yamldoc.Doc, key, addr, example string) {
	_, port, err := net.SplitHostPort(addr)
	if err != nil {
		d.Problemf(key, "%v (give HOST:PORT, such as %s)", err, example)
		return
	}
	if _, err := net.LookupPort("tcp", port); err != nil {
		why := err.Error()
		var de *net.DNSError
		var ae *net.AddrError
		switch {
		case errors.As(err, &de):
			why = de.Err // "unknown port"
		case errors.As(err, &ae):
			why = ae.Err // "invalid port"
		}
		d.Problemf(key, "address %s: %s %q", addr, why, port)
	}
}

// count reports a negative *v, or one above most (when most > 0), and
// makes zero def.
func count(d *yamldoc.Doc, key string, v *int, def, most int) {
	switch {
	case *v < 0:
		d.Problemf(key, "%d is negative; give a number above 0, or leave it out for the default %d", *v, def)
	case most > 0 && *v > most:
		d.Problemf(key, "%d is above the most allowed, %d", *v, most)
	case *v == 0:
		*v = def
	}
}

// duration reports a negative *v and makes zero def.
func duration(d *yamldoc.Doc, key string, v *time.Duration, def time.Duration) {
	switch {
	case *v < 0:
		d.Problemf(key, "%s is negative; give a duration above 0, or leave it out for the default %s", *v, def)
	case *v == 0:
		*v = def
	}
}

// checkSelector reports a key of expect, retention.policies or probes
// that can match no snapshot: "default", a node, or node/plan, each
// name valid.
func checkSelector(d *yamldoc.Doc, key, sel string) {
	if sel == "default" {
		return
	}
	node, plan, hasPlan := strings.Cut(sel, "/")
	err := snapshot.CheckName("node", node)
	if err == nil && hasPlan {
		err = snapshot.CheckName("plan", plan)
	}
	if err != nil {
		d.Problemf(key, "%s (give default, NODE or NODE/PLAN)", strings.TrimPrefix(err.Error(), "snapshot: "))
	}
}

// check refuses what the scheduler would refuse, naming the key, so that
// a configuration is whole before anything of it is used.
func (j *Jobs) check(d *yamldoc.Doc) {
	for _, x := range []struct {
		name string
		job  Job
	}{{"verify", j.Verify.Job}, {"drill", j.Drill.Job}, {"prune", j.Prune}, {"staleness", j.Staleness}} {
		if x.job.Schedule != "" {
			if err := scheduler.CheckSchedule(x.job.Schedule); err != nil {
				d.Problemf("jobs."+x.name+".schedule", "%q: %v", x.job.Schedule, err)
			}
		}
		if x.job.Jitter < 0 {
			d.Problemf("jobs."+x.name+".jitter", "%s is negative", x.job.Jitter)
		}
	}
	if j.Drill.SampleFiles < 0 {
		d.Problemf("jobs.drill.sample_files", "%d is negative; give a number of files, or 0 for all", j.Drill.SampleFiles)
	}
	for _, k := range slices.Sorted(maps.Keys(j.Drill.Probes)) {
		if strings.TrimSpace(k) == "" || strings.TrimSpace(j.Drill.Probes[k]) == "" {
			d.Problemf("jobs.drill.probes."+k, "give a node/plan or plan and a command")
		}
	}
}

// Scheduled returns how many jobs have a schedule.
func (j *Jobs) Scheduled() int {
	n := 0
	for _, s := range []string{j.Verify.Schedule, j.Drill.Schedule, j.Prune.Schedule, j.Staleness.Schedule} {
		if s != "" {
			n++
		}
	}
	return n
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
#   verify:    {schedule: "@daily", cycle: 30d}     # all data re-read once per cycle (heal: true repairs from replicas)
#   drill:     {schedule: "0 4 * * *", jitter: 30m} # restore and check every plan's newest snapshot
#   prune:     {schedule: "0 5 * * 0"}              # the retention policies, then prune
#   staleness: {schedule: "@hourly"}                # report missed backups
# expect: {default: 26h, lyra/git: 8d}              # how often each node/plan must back up
# notify: /usr/local/bin/cairn-notify               # gets a failing job's report as JSON on stdin
# metrics: 127.0.0.1:9100                           # the status page (/) and Prometheus /metrics (off by default)
# metrics_auth: {token_file: /etc/cairn/page.token}  # required when metrics is not on loopback
#   (or user: NAME and password_file: PATH for basic authentication; files mode 0600)
# notifications:                                    # built-in targets beside notify:
#   webhooks: [{url: "https://hooks.example.org/cairn"}]        # every alert as JSON
#   ntfy: [{url: "https://ntfy.sh/my-cairn-alerts"}]             # every alert as a message
#   healthchecks: {lyra/git: "https://hc-ping.com/UUID"}        # a dead man's switch per node/plan

# replicas: complete copies of the repository elsewhere, verified and drilled
# (cairn replicate NAME copies by hand; cairn drill --replica NAME SNAPSHOT).
# replicas:
#   offsite:
#     to: s3://s3.example.net/cairn-rhea       # or a directory: /mnt/usb/cairn
#     s3_credentials: /etc/cairn/offsite.env   # mode 0600
#     schedule: "30 3 * * *"
#     delete: never                             # default; or "after 30d"
#     # verify: {schedule: "@weekly", cycle: 90d}   # default: as jobs.verify
#     # drill: {schedule: "@weekly"}                # default: as jobs.drill

# limits:
#   sessions: 32            # all nodes together
#   sessions_per_node: 4
#   idle_timeout: 10m       # a session silent this long is closed
#   clock_skew: 5m          # a node's snapshot time further off than this is replaced by the appliance's
#   unauthenticated: 64     # SSH connections still logging in, all together;
#   unauthenticated_per_address: 10  # and from one address; more are closed at once
#   handshake_timeout: 20s  # to finish logging in
`
