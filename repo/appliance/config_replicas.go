package appliance

import (
	"fmt"
	"maps"
	"path/filepath"
	"slices"
	"strings"
	"time"

	"github.com/cairnbackup/cairn/repo"
	"github.com/cairnbackup/cairn/repo/blob"
	"github.com/cairnbackup/cairn/repo/internal/yamldoc"
	"github.com/cairnbackup/cairn/repo/prune"
	"github.com/cairnbackup/cairn/repo/snapshot"
	"github.com/cairnbackup/cairn/scheduler"
	"go.yaml.in/yaml/v3"
)

// Replica is a place the appliance keeps a copy of the repository in
// (replicas: NAME in the configuration): a directory on another disk or
// a bucket of an object store. The copy is the same repository (same ID,
// same keys), brought up to date by the job replicate/NAME, verified by
// verify/NAME and drilled by drill/NAME.
type Replica struct {
	// To is the replica's location: an absolute directory, or an
	// s3:// or s3+http:// URL.
	To string `yaml:"to"`
	// S3Credentials is the credentials file of an object-store replica
	// (mode 0600); default the configuration's s3_credentials, else
	// the environment's AWS_ACCESS_KEY_ID and AWS_SECRET_ACCESS_KEY.
	S3Credentials string `yaml:"s3_credentials,omitempty"`
	// CacheDir holds an object-store replica's index (for its drills and
	// verification) and local lock; default
	// /var/cache/cairn/ID-replica-NAME (repo.DefaultReplicaCacheDir).
	CacheDir string `yaml:"cache_dir,omitempty"`
	// Schedule and Jitter of replicate/NAME; without a schedule the
	// replica is brought up to date only by cairn replicate NAME.
	Schedule string        `yaml:"schedule,omitempty"`
	Jitter   time.Duration `yaml:"jitter,omitempty"`
	// Delete says what happens on the replica to what the primary
	// forgets and prunes: never (the default) or after a delay.
	Delete DeletePolicy `yaml:"delete,omitempty"`
	// Transfers is how many objects are copied at once; default 4, at
	// most 64.
	Transfers int `yaml:"transfers,omitempty"`
	// Verify and Drill schedule the replica's verification and drills;
	// unset, they follow jobs.verify and jobs.drill.
	Verify *VerifyJob `yaml:"verify,omitempty"`
	Drill  *DrillJob  `yaml:"drill,omitempty"`
	// Retention is the replica's own retention, by "node/plan", "node"
	// or "default" as retention.policies: applied, after each
	// replication, to the snapshots the primary no longer has, so the
	// replica keeps a longer history than the primary. Not with
	// delete: after.
	Retention map[string]prune.Policy `yaml:"retention,omitempty"`
}

// DeletePolicy is a replica's delete: "never", or "after SPAN" (such as
// "after 30d"): what the primary no longer has is deleted on the replica
// once it has been missing that long.
type DeletePolicy struct {
	After prune.Span
}

// UnmarshalYAML reads "never" or "after SPAN".
func (d *DeletePolicy) UnmarshalYAML(n *yaml.Node) error {
	return yamldoc.Scalar(n, `"never" or "after SPAN" (such as after 30d)`, func(v string) error {
		v = strings.TrimSpace(v)
		if v == "never" {
			*d = DeletePolicy{}
			return nil
		}
		rest, ok := strings.CutPrefix(v, "after ")
		if !ok {
			return fmt.Errorf("%q: give never, or after SPAN (such as after 30d)", v)
		}
		s, err := prune.ParseSpan(rest)
		if err != nil {
			return err
		}
		if s.IsZero() {
			return fmt.Errorf("%q: a delay of zero deletes at once; give a delay such as after 30d", v)
		}
		d.After = s
		return nil
	})
}

// String is "never" or "after SPAN".
func (d DeletePolicy) String() string {
	if d.After.IsZero() {
		return "never"
	}
	return "after " + d.After.String()
}

// Delay is the delay as a duration; 0 is never.
func (d DeletePolicy) Delay() time.Duration { return Duration(d.After) }

// MaxTransfers bounds a replica's transfers.
const MaxTransfers = 64

// ReplicaNames returns the configured replicas' names, sorted.
func (c *Config) ReplicaNames() []string { return slices.Sorted(maps.Keys(c.Replicas)) }

// VerifyOf returns the verification job of replica name: its own, or
// jobs.verify.
func (c *Config) VerifyOf(name string) VerifyJob {
	if v := c.Replicas[name].Verify; v != nil {
		return *v
	}
	return c.Jobs.Verify
}

// DrillOf returns the drill job of replica name: its own, or jobs.drill
// (its probes are always those of jobs.drill).
func (c *Config) DrillOf(name string) DrillJob {
	d := c.Jobs.Drill
	if own := c.Replicas[name].Drill; own != nil {
		d.Job, d.Scratch, d.SampleFiles = own.Job, own.Scratch, own.SampleFiles
	}
	return d
}

// ReplicaJob names the jobs of a replica: replicate/NAME, verify/NAME,
// drill/NAME, all of the kind replica/NAME (one at a time: each holds
// the replica's lock).
func ReplicaJob(job, name string) string { return job + "/" + name }

// ReplicaCacheDir is the cache directory of replica name of the
// repository with the given ID.
func (r *Replica) ReplicaCacheDir(id blob.ID, name string) string {
	if r.CacheDir != "" {
		return r.CacheDir
	}
	return repo.DefaultReplicaCacheDir(id, name)
}

// checkReplicas checks replicas:.
func (c *Config) checkReplicas(d *yamldoc.Doc) {
	for _, name := range c.ReplicaNames() {
		key := "replicas." + name
		if err := snapshot.CheckName("replica", name); err != nil {
			d.Problemf(key, "%s", strings.TrimPrefix(err.Error(), "snapshot: "))
		}
		r := c.Replicas[name]
		if r == nil {
			d.Problemf(key, "empty: give to: and a schedule:")
			continue
		}
		objectStore := repo.IsObjectStoreURL(r.To)
		switch _, err := repo.ParsePlace(r.To, ""); {
		case r.To == "":
			d.Problemf(key+".to", "missing: give a directory or an s3:// URL")
		case err != nil:
			d.Problemf(key+".to", "%v", err)
		case !objectStore && !filepath.IsAbs(r.To):
			d.Problemf(key+".to", "%q: give an absolute directory", r.To)
		case !objectStore && filepath.Clean(r.To) == "/":
			d.Problemf(key+".to", "%q: give a directory of its own", r.To)
		}
		for _, f := range []struct{ key, v string }{{"s3_credentials", r.S3Credentials}, {"cache_dir", r.CacheDir}} {
			switch {
			case f.v == "":
			case !objectStore && r.To != "":
				d.Problemf(key+"."+f.key, "only for a replica in an object store (s3:// or s3+http://); a directory replica keeps its index inside it")
			case !filepath.IsAbs(f.v):
				d.Problemf(key+"."+f.key, "%q: give an absolute path", f.v)
			}
		}
		if r.Schedule != "" {
			if err := scheduler.CheckSchedule(r.Schedule); err != nil {
				d.Problemf(key+".schedule", "%q: %v", r.Schedule, err)
			}
		}
		if r.Jitter < 0 {
			d.Problemf(key+".jitter", "%s is negative", r.Jitter)
		}
		count(d, key+".transfers", &r.Transfers, 4, MaxTransfers)
		if v := r.Verify; v != nil {
			checkJob(d, key+".verify", v.Job)
		}
		if dj := r.Drill; dj != nil {
			checkJob(d, key+".drill", dj.Job)
			if dj.SampleFiles < 0 {
				d.Problemf(key+".drill.sample_files", "%d is negative; give a number of files, or 0 for all", dj.SampleFiles)
			}
			if len(dj.Probes) > 0 {
				d.Problemf(key+".drill.probes", "probes are those of jobs.drill; give them there")
			}
		}
		for _, k := range slices.Sorted(maps.Keys(r.Retention)) {
			pk := key + ".retention." + k
			checkSelector(d, pk, k)
			p := r.Retention[k]
			if p.Empty() {
				d.Problemf(pk, "keeps nothing; give at least one keep_* rule")
			} else if err := p.Check(); err != nil {
				d.Problemf(pk, "%v", err)
			}
		}
		if len(r.Retention) > 0 && !r.Delete.After.IsZero() {
			d.Problemf(key+".retention", "not with delete: %s: a replica either follows the primary's deletions after a delay or keeps its own history; choose one", r.Delete)
		}
	}
}

// checkJob reports a schedule the scheduler would refuse and a negative
// jitter.
func checkJob(d *yamldoc.Doc, key string, j Job) {
	if j.Schedule != "" {
		if err := scheduler.CheckSchedule(j.Schedule); err != nil {
			d.Problemf(key+".schedule", "%q: %v", j.Schedule, err)
		}
	}
	if j.Jitter < 0 {
		d.Problemf(key+".jitter", "%s is negative", j.Jitter)
	}
}
