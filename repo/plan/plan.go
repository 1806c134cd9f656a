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
//	    keep_disposable: false          # the default: leave out caches, build output, temp files
//
// A source without a why is refused. Every source becomes one snapshot
// whose record carries the source's class, reason, command and the
// exclude rules applied.
package plan

import (
	"errors"
	"fmt"
	"io"
	"os"
	"path/filepath"
	"slices"
	"strings"

	"github.com/cairnbackup/cairn/repo/internal/yamldoc"
	"github.com/cairnbackup/cairn/repo/snapshot"
)

// Classes of data a source may hold; drills choose their probes by class.
var Classes = []string{"git", "database", "config", "volume", "files"}

// Disposable lists what is left out of a source unless it says
// keep_disposable: caches, build output, temporary and editor files.
// Directories holding a CACHEDIR.TAG are left out too.
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
	Name           string   `yaml:"name"`
	Class          string   `yaml:"class"`
	Why            string   `yaml:"why"`
	Paths          []string `yaml:"paths,omitempty"`
	Command        string   `yaml:"command,omitempty"`
	File           string   `yaml:"file,omitempty"`
	Exclude        []string `yaml:"exclude,omitempty"`
	KeepDisposable bool     `yaml:"keep_disposable,omitempty"`
	Tags           []string `yaml:"tags,omitempty"`
}

// Load reads and checks a plan file.
func Load(path string) (*Plan, error) {
	b, err := os.ReadFile(path)
	if err != nil {
		return nil, fmt.Errorf("plan: %w", err)
	}
	p, err := Parse(b)
	if err != nil {
		return nil, fmt.Errorf("plan %s: %w", path, err)
	}
	p.Path = path
	return p, nil
}

// Parse parses and checks a plan document.
func Parse(b []byte) (*Plan, error) {
	var p Plan
	if err := yamldoc.Decode(b, &p); err != nil {
		if errors.Is(err, io.EOF) {
			return nil, errors.New("no sources")
		}
		return nil, err
	}
	if len(p.Sources) == 0 {
		return nil, errors.New("no sources")
	}
	seen := map[string]bool{}
	for i := range p.Sources {
		s := &p.Sources[i]
		where := fmt.Sprintf("source %d", i+1)
		if s.Name != "" {
			where = fmt.Sprintf("source %q", s.Name)
		}
		if err := snapshot.CheckName("plan", s.Name); err != nil {
			return nil, fmt.Errorf("%s: %w", where, err)
		}
		if seen[s.Name] {
			return nil, fmt.Errorf("%s: the name is used twice", where)
		}
		seen[s.Name] = true
		if strings.TrimSpace(s.Why) == "" {
			return nil, fmt.Errorf("%s: no why: say why this source is backed up (scope must be explicit and justified)", where)
		}
		if !slices.Contains(Classes, s.Class) {
			return nil, fmt.Errorf("%s: class %q is not one of %s", where, s.Class, strings.Join(Classes, ", "))
		}
		switch {
		case s.Command != "" && len(s.Paths) > 0:
			return nil, fmt.Errorf("%s: give paths or a command, not both", where)
		case s.Command == "" && len(s.Paths) == 0:
			return nil, fmt.Errorf("%s: give paths, or a command whose output is stored", where)
		case s.Command != "" && s.File == "":
			return nil, fmt.Errorf("%s: a command needs file: the name its output is stored under", where)
		case s.Command == "" && s.File != "":
			return nil, fmt.Errorf("%s: file names the output of a command; give command too", where)
		}
		for _, p := range s.Paths {
			if !filepath.IsAbs(p) {
				return nil, fmt.Errorf("%s: path %q is not absolute", where, p)
			}
		}
	}
	return &p, nil
}

// Excludes returns the exclude patterns applied to s: its own, then the
// disposable ones unless it keeps them.
func (s *Source) Excludes() []string {
	out := slices.Clone(s.Exclude)
	if !s.KeepDisposable && s.Command == "" {
		out = append(out, Disposable...)
	}
	return out
}

// Scope is what a snapshot records about the source that made it.
func (s *Source) Scope(planPath string) *snapshot.Scope {
	return &snapshot.Scope{
		PlanFile: planPath, Class: s.Class, Why: s.Why, Command: s.Command,
		Excludes: s.Excludes(), ExcludeCaches: !s.KeepDisposable && s.Command == "",
	}
}
