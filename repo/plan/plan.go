// Package plan reads a node's backup plan: the sources it backs up, each
// with a data class and a reason, so that the scope of every backup is
// explicit, justified and recorded in its snapshot rather than kept in
// someone's memory.
//
// # Format
//
//	# /etc/cairn/plan.yaml
//	sources:
//	  - name: git                       # the snapshot's plan name
//	    class: git                      # git, database, config, volume or files
//	    why: our code; drills run git fsck on it
//	    paths: [/srv/git]
//	  - name: postgres
//	    class: database
//	    why: all application data
//	    command: pg_dumpall             # a streamed source: its output is stored
//	    file: postgres.sql              # under this name
//	  - name: volumes
//	    class: volume
//	    why: container state that is not in git
//	    paths: [/var/lib/docker/volumes]
//	    exclude: ["*.sock"]
//	  - name: home
//	    class: files
//	    why: what people work on
//	    paths: [/home]
//	    exclude_disposable: true        # also leave out build output, caches, temp files
//	  - name: app
//	    class: volume
//	    why: uploads; the app must not write while they are read
//	    paths: [/var/lib/app]
//	    before: systemctl stop app      # one command or a list, run with sh -c
//	    after: systemctl start app      # runs whatever happened
//	    timeout: 2m                     # each before and after command (default 10m)
//
// A source without a why is refused. Every source becomes one snapshot
// whose record carries the source's class, reason, command and the
// exclude rules applied, and the before and after commands that ran
// with their exit status and output (see [Hooks]).
//
// # What is left out
//
// A path source leaves out the contents of directories holding a valid
// CACHEDIR.TAG (a cache says so itself). The [Disposable] patterns (build
// output, caches, temporary and editor files) are left out only where
// they are safe: in git sources, whose build output the repository
// rebuilds, and in sources that say exclude_disposable: true. A files,
// volume, database or config source keeps them: a file named like build
// output there (crt1.o in a C runtime, a node_modules/ a container
// serves) is data. keep_disposable: true keeps everything, CACHEDIR.TAG
// caches too.
package plan

import (
	"fmt"
	"path/filepath"
	"slices"
	"strings"
	"time"

	"github.com/cairnbackup/cairn/repo/filter"
	"github.com/cairnbackup/cairn/repo/internal/yamldoc"
	"github.com/cairnbackup/cairn/repo/snapshot"
	"go.yaml.in/yaml/v3"
)

// Classes of data a source may hold; drills choose their probes by class.
var Classes = []string{"git", "database", "config", "volume", "files"}

// Disposable lists what is left out of git sources, and of sources that
// say exclude_disposable: caches, build output, temporary and editor
// files.
var Disposable = []string{
	".cache/", "__pycache__/", "node_modules/", ".gradle/", ".npm/", ".cargo/registry/",
	"*.pyc", "*.o", "*.tmp", "*.temp", "*.swp", "*~", ".Trash-*/", "lost+found/",
}

// Plan is a parsed plan file.
type Plan struct {
	Sources []Source `yaml:"sources"`
	// Path is where the plan was read from.
	Path string `yaml:"-"`
}

// Source is one thing to back up.
type Source struct {
	Name    string   `yaml:"name"`
	Class   string   `yaml:"class"`
	Why     string   `yaml:"why"`
	Paths   []string `yaml:"paths,omitempty"`
	Command string   `yaml:"command,omitempty"`
	File    string   `yaml:"file,omitempty"`
	Exclude []string `yaml:"exclude,omitempty"`
	// KeepDisposable keeps what a git source leaves out by default, and
	// the contents of CACHEDIR.TAG directories.
	KeepDisposable bool `yaml:"keep_disposable,omitempty"`
	// ExcludeDisposable leaves out the [Disposable] patterns from a
	// source of any class (git sources do by default).
	ExcludeDisposable bool     `yaml:"exclude_disposable,omitempty"`
	Tags              []string `yaml:"tags,omitempty"`
	// Before are commands run (sh -c, in order) before the source is
	// backed up: stop a service, flush, take a file system snapshot.
	// The first that fails (or times out) skips the source.
	Before Commands `yaml:"before,omitempty"`
	// After are commands run once the source was backed up or
	// skipped, whatever happened, each whatever the one before did.
	After Commands `yaml:"after,omitempty"`
	// Timeout bounds each before and after command; zero means
	// [DefaultHookTimeout].
	Timeout time.Duration `yaml:"timeout,omitempty"`
}

// Commands are a source's before or after commands: one command, or a
// list of them.
type Commands []string

// UnmarshalYAML takes a single command or a list of commands.
func (c *Commands) UnmarshalYAML(n *yaml.Node) error {
	if n.Kind == yaml.ScalarNode {
		var one string
		if err := n.Decode(&one); err != nil {
			return err
		}
		*c = Commands{one}
		return nil
	}
	var list []string
	if err := n.Decode(&list); err != nil {
		return err
	}
	*c = list
	return nil
}

// Bounds of a source's before and after commands.
const (
	maxHookCommands = 16       // per phase
	maxHookCommand  = 64 << 10 // bytes of one command
)

// Load reads and checks a plan file (Parse).
func Load(path string) (*Plan, error) {
	b, err := yamldoc.ReadFile(path)
	if err != nil {
		return nil, fmt.Errorf("plan: %w", err)
	}
	p, err := Parse(b, path)
	if err != nil {
		return nil, err
	}
	p.Path = path
	return p, nil
}

// Parse parses and checks a plan document; name is the file, for
// messages. The error lists every problem found, each as
// "FILE:LINE: KEY: message" (yamldoc.Problems), as the appliance
// configuration's do.
func Parse(b []byte, name string) (*Plan, error) {
	var p Plan
	d, err := yamldoc.Parse(b, name, &p)
	if err != nil {
		return nil, err
	}
	if len(p.Sources) == 0 {
		d.Problemf("sources", "none: give the sources to back up")
	}
	seen := map[string]string{}
	for i := range p.Sources {
		s := &p.Sources[i]
		key := fmt.Sprintf("sources[%d]", i)
		if err := snapshot.CheckName("plan", s.Name); err != nil {
			d.Problemf(key+".name", "%s", strings.TrimPrefix(err.Error(), "snapshot: "))
		} else if first, ok := seen[s.Name]; ok {
			d.Problemf(key+".name", "%q is the name of %s too; every source needs its own", s.Name, first)
		} else {
			seen[s.Name] = key
		}
		if strings.TrimSpace(s.Why) == "" {
			d.Problemf(key+".why", "none: say why this source is backed up (scope must be explicit and justified)")
		}
		if !slices.Contains(Classes, s.Class) {
			d.Problemf(key+".class", "%q is not one of %s", s.Class, strings.Join(Classes, ", "))
		}
		switch {
		case s.Command != "" && len(s.Paths) > 0:
			d.Problemf(key+".command", "give paths or a command, not both")
		case s.Command == "" && len(s.Paths) == 0:
			d.Problemf(key+".paths", "none: give paths, or a command whose output is stored")
		case s.Command != "" && s.File == "":
			d.Problemf(key+".file", "none: a command needs file: the name its output is stored under")
		case s.Command == "" && s.File != "":
			d.Problemf(key+".file", "names the output of a command; give command too")
		}
		for j, p := range s.Paths {
			if !filepath.IsAbs(p) {
				d.Problemf(fmt.Sprintf("%s.paths[%d]", key, j), "%q is not absolute", p)
			}
		}
		s.checkHooks(func(field, format string, args ...any) { d.Problemf(key+"."+field, format, args...) })
		switch {
		case s.KeepDisposable && s.ExcludeDisposable:
			d.Problemf(key+".exclude_disposable", "contradicts keep_disposable: give one")
		case s.ExcludeDisposable && s.Command != "":
			d.Problemf(key+".exclude_disposable", "applies to paths; a command source has none")
		}
	}
	if err := d.Err(); err != nil {
		return nil, err
	}
	return &p, nil
}

// disposable reports whether the [Disposable] patterns apply to s.
func (s *Source) disposable() bool {
	return s.Command == "" && !s.KeepDisposable && (s.Class == "git" || s.ExcludeDisposable)
}

// Excludes returns the exclude patterns applied to s: its own, then the
// disposable ones where they apply.
func (s *Source) Excludes() []string {
	out := slices.Clone(s.Exclude)
	if s.disposable() {
		out = append(out, Disposable...)
	}
	return out
}

// Rules returns the exclude rules of s as a backup applies them, each
// with where it came from ("plan FILE source NAME", and "… disposable"
// for the [Disposable] ones), so a snapshot's record of what each rule
// left out names the rule.
func (s *Source) Rules(planPath string) []filter.Rule {
	where := fmt.Sprintf("plan %s source %s", planPath, s.Name)
	rules := filter.FromFlags(s.Exclude, where)
	if s.disposable() {
		rules = append(rules, filter.FromFlags(Disposable, where+" disposable")...)
	}
	return rules
}

// ExcludeCaches reports whether the contents of directories holding a
// valid CACHEDIR.TAG are left out: for every path source that does not
// keep disposable data.
func (s *Source) ExcludeCaches() bool {
	return s.Command == "" && !s.KeepDisposable
}

// Scope is what a snapshot records about the source that made it.
func (s *Source) Scope(planPath string) *snapshot.Scope {
	return &snapshot.Scope{
		PlanFile: planPath, Class: s.Class, Why: s.Why, Command: s.Command,
		Excludes: s.Excludes(), ExcludeCaches: s.ExcludeCaches(),
	}
}
