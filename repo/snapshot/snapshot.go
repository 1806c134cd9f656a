// Package snapshot defines the snapshot record: the small document that
// names a backup's root tree and says whose, what, when and why.
//
// # Format
//
// A record is encoded as canonical JSON (fields in declaration order, no
// insignificant white space, times in UTC with nanoseconds). Its ID is the
// SHA-256 of that encoding. On disk it is sealed as snapshots/<id>; the
// files, together with the packs, are the source of truth for the
// snapshot list. Decode accepts only Version 1, refuses unknown fields,
// and checks every field it can, so a damaged or hostile record is an
// error, never a half-read snapshot.
//
// # Memory
//
// A record is at most [MaxSize] bytes; Decode refuses anything larger
// before parsing.
package snapshot

import (
	"bytes"
	"encoding/json"
	"errors"
	"fmt"
	"path"
	"slices"
	"strings"
	"time"

	"github.com/cairnbackup/cairn/repo/blob"
)

// Version is the record format version written by this build.
const Version = 1

// MaxSize bounds an encoded record.
const MaxSize = 1 << 20

// Snapshot is one backup.
type Snapshot struct {
	Version  int       `json:"version"`
	Time     time.Time `json:"time"`           // when the backup started
	Node     string    `json:"node"`           // the machine the data came from
	Plan     string    `json:"plan,omitempty"` // the plan or source name on that node
	Host     string    `json:"host,omitempty"` // the host name as the node saw it
	Paths    []string  `json:"paths"`          // what was backed up, as given
	Tags     []string  `json:"tags,omitempty"`
	Tree     blob.ID   `json:"tree"`             // the root tree
	Parent   *blob.ID  `json:"parent,omitempty"` // the previous snapshot of the same node, plan and paths (or the one chosen); a backup of files skips its unchanged files
	Excludes []Exclude `json:"excludes,omitempty"`
	Scope    *Scope    `json:"scope,omitempty"` // from a plan: what this source is and why it is backed up
	Summary  Summary   `json:"summary"`
}

// Scope records, for a snapshot made from a plan's source, what the
// source holds and why it is backed up, so the reason travels with the
// data.
type Scope struct {
	PlanFile      string   `json:"plan_file,omitempty"`
	Class         string   `json:"class"`
	Why           string   `json:"why"`
	Command       string   `json:"command,omitempty"`
	Excludes      []string `json:"excludes,omitempty"`
	ExcludeCaches bool     `json:"exclude_caches,omitempty"`
	// Hooks are the source's before and after commands as they ran for
	// this snapshot, in order. Optional: records made before plans had
	// them, and sources without any, have none (and encode as before).
	Hooks []Hook `json:"hooks,omitempty"`
}

// Hook is one before or after command of a plan's source, as it ran.
type Hook struct {
	Phase    string        `json:"phase"` // "before" or "after"
	Command  string        `json:"command"`
	Exit     *int          `json:"exit,omitempty"`   // its exit status, when it exited
	Error    string        `json:"error,omitempty"`  // how it failed ("exit status 1", "timed out after 10m0s"); "" when it succeeded
	Output   string        `json:"output,omitempty"` // standard output and error together, bounded (output.Max)
	Duration time.Duration `json:"duration_ns"`
}

// Bounds of the hooks a record may carry.
const (
	MaxHooks       = 64
	maxHookCommand = 64 << 10
	maxHookOutput  = 16 << 10
)

// Exclude records one rule that left something out, and what it left out.
type Exclude struct {
	Rule  string `json:"rule"`
	Count uint64 `json:"count"`
}

// Summary holds the figures of the backup run that made the snapshot.
type Summary struct {
	Files          uint64        `json:"files"`
	Dirs           uint64        `json:"dirs"`
	Others         uint64        `json:"others,omitempty"`
	FilesNew       uint64        `json:"files_new"`
	FilesChanged   uint64        `json:"files_changed"`
	FilesUnchanged uint64        `json:"files_unchanged"`
	Bytes          uint64        `json:"bytes"`       // total size of all files
	BytesRead      uint64        `json:"bytes_read"`  // read from disk
	BlobsAdded     uint64        `json:"blobs_added"` // new blobs stored
	BytesAdded     uint64        `json:"bytes_added"` // plaintext of new blobs
	StoredAdded    uint64        `json:"stored_added"`
	Duration       time.Duration `json:"duration_ns"`
	Warnings       []string      `json:"warnings,omitempty"`
}

// Encode validates s and returns its canonical encoding and ID.
func Encode(s *Snapshot) ([]byte, blob.ID, error) {
	c := *s
	c.Time = c.Time.UTC()
	if err := c.Validate(); err != nil {
		return nil, blob.ID{}, err
	}
	b, err := json.Marshal(&c)
	if err != nil {
		return nil, blob.ID{}, fmt.Errorf("snapshot: encode: %w", err)
	}
	if len(b) > MaxSize {
		return nil, blob.ID{}, fmt.Errorf("snapshot: record of %d bytes exceeds %d", len(b), MaxSize)
	}
	return b, blob.Hash(b), nil
}

// Decode parses and validates an encoded record. Every error wraps
// [blob.ErrCorrupt].
func Decode(b []byte) (*Snapshot, error) {
	if len(b) > MaxSize {
		return nil, fmt.Errorf("snapshot: record of %d bytes exceeds %d: %w", len(b), MaxSize, blob.ErrCorrupt)
	}
	dec := json.NewDecoder(bytes.NewReader(b))
	dec.DisallowUnknownFields()
	var s Snapshot
	if err := dec.Decode(&s); err != nil {
		return nil, fmt.Errorf("snapshot: decode: %w: %w", err, blob.ErrCorrupt)
	}
	if dec.More() {
		return nil, fmt.Errorf("snapshot: trailing data after the record: %w", blob.ErrCorrupt)
	}
	if err := s.Validate(); err != nil {
		return nil, blob.Corrupt(err)
	}
	return &s, nil
}

// Validate checks the record's fields.
func (s *Snapshot) Validate() error {
	switch {
	case s.Version != Version:
		return fmt.Errorf("snapshot: version %d is not supported", s.Version)
	case s.Time.IsZero():
		return errors.New("snapshot: time is not set")
	case s.Tree.IsZero():
		return errors.New("snapshot: root tree is not set")
	case s.Parent != nil && s.Parent.IsZero():
		return errors.New("snapshot: parent is the zero id")
	}
	if err := CheckName("node", s.Node); err != nil {
		return err
	}
	if s.Plan != "" {
		if err := CheckName("plan", s.Plan); err != nil {
			return err
		}
	}
	if len(s.Host) > 255 || strings.ContainsAny(s.Host, "\x00/") {
		return fmt.Errorf("snapshot: invalid host %q", s.Host)
	}
	for _, p := range s.Paths {
		if p == "" || len(p) > 4096 || strings.ContainsRune(p, 0) {
			return fmt.Errorf("snapshot: invalid path %q", p)
		}
	}
	for _, t := range s.Tags {
		if t == "" || len(t) > 255 || strings.ContainsAny(t, "\x00,/") {
			return fmt.Errorf("snapshot: invalid tag %q", t)
		}
	}
	if s.Scope != nil {
		if len(s.Scope.Hooks) > MaxHooks {
			return fmt.Errorf("snapshot: %d hooks, more than %d", len(s.Scope.Hooks), MaxHooks)
		}
		for _, h := range s.Scope.Hooks {
			switch {
			case h.Phase != "before" && h.Phase != "after":
				return fmt.Errorf("snapshot: hook phase %q is not before or after", h.Phase)
			case h.Command == "" || len(h.Command) > maxHookCommand:
				return fmt.Errorf("snapshot: a %s hook's command is empty or longer than %d bytes", h.Phase, maxHookCommand)
			case len(h.Output) > maxHookOutput || len(h.Error) > maxHookOutput:
				return fmt.Errorf("snapshot: a %s hook's output is longer than %d bytes", h.Phase, maxHookOutput)
			}
		}
	}
	return nil
}

// CheckName checks a node or plan name: 1 to 64 characters from
// [A-Za-z0-9._-], not starting with a dot. Names become directory names in
// mounts and appear in commands, so they are kept plain.
func CheckName(what, name string) error {
	if name == "" {
		return fmt.Errorf("snapshot: %s name is empty", what)
	}
	if len(name) > 64 {
		return fmt.Errorf("snapshot: %s name %q is longer than 64 characters", what, name)
	}
	if name[0] == '.' {
		return fmt.Errorf("snapshot: %s name %q starts with a dot", what, name)
	}
	for _, r := range name {
		if !(r >= 'a' && r <= 'z' || r >= 'A' && r <= 'Z' || r >= '0' && r <= '9' || r == '.' || r == '_' || r == '-') {
			return fmt.Errorf("snapshot: %s name %q has the character %q; use letters, digits, '.', '_' and '-'", what, name, r)
		}
	}
	return nil
}

// Entry pairs a snapshot with its ID.
type Entry struct {
	ID blob.ID
	*Snapshot
}

// Sort orders snapshots by time, then ID.
func Sort(list []Entry) {
	slices.SortFunc(list, func(a, b Entry) int {
		if c := a.Time.Compare(b.Time); c != 0 {
			return c
		}
		return bytes.Compare(a.ID[:], b.ID[:])
	})
}

// Find returns the snapshot of list (sorted by [Sort]) that ref names:
// "latest" (the newest that is not future-dated at now, see [Latest]),
// or a prefix of at least 4 hex digits of its ID that no other snapshot
// of list shares. Every command that takes SNAPSHOT[:PATH] resolves it
// here.
//
// sub is the PATH of "latest:PATH" ("" or "/" for none). With a path,
// "latest" is the newest snapshot that holds it (one of its paths is
// the path, lies above it or below it: see [Snapshot.Holds]), so that
// `latest:/etc/ssh` names the newest backup of /etc even when a database
// dump was pushed since. When that is not the newest snapshot of list,
// note says which one was taken and why (for the user's standard error);
// when none holds the path, the error names the newest snapshot and what
// it holds. An ID prefix is taken as it is, whatever sub.
func Find(list []Entry, ref, sub string, now time.Time) (e Entry, note string, err error) {
	if ref == "latest" {
		if len(list) == 0 {
			return Entry{}, "", fmt.Errorf("no snapshot matches: %w", blob.ErrNotFound)
		}
		newest := list[Latest(list, now)]
		p := path.Clean("/" + sub)
		if p == "/" {
			return newest, "", nil
		}
		holding := make([]Entry, 0, len(list))
		for _, e := range list {
			if e.Holds(p) {
				holding = append(holding, e)
			}
		}
		if len(holding) == 0 {
			return Entry{}, "", fmt.Errorf("latest:%s: %w in any snapshot; the newest is %s, which holds %s",
				p, blob.ErrNotFound, newest.describe(), strings.Join(newest.Paths, " "))
		}
		e := holding[Latest(holding, now)]
		if e.ID == newest.ID {
			return e, "", nil
		}
		newer := 0
		for _, o := range list {
			if !o.Holds(p) && !FutureDated(o.Time, now) && o.Time.After(e.Time) {
				newer++
			}
		}
		plural := "snapshot holds"
		if newer != 1 {
			plural = "snapshots hold"
		}
		return e, fmt.Sprintf("latest:%s is snapshot %s, the newest that holds %s (%d newer %s other paths)", p, e.describe(), p, newer, plural), nil
	}
	ids := make([]blob.ID, len(list))
	for i, e := range list {
		ids[i] = e.ID
	}
	i, err := blob.MatchPrefix("snapshot", ref, ids)
	if err != nil {
		return Entry{}, "", err
	}
	return list[i], "", nil
}

// describe names e for messages: "1a2b3c4d (lyra/etc, 2026-11-26T03:00:00Z)".
func (e Entry) describe() string {
	who := e.Node
	if e.Plan != "" {
		who += "/" + e.Plan
	}
	return fmt.Sprintf("%s (%s, %s)", e.ID.Short(), who, e.Time.UTC().Format(time.RFC3339))
}

// Holds reports whether the snapshot's tree has the absolute path p by
// its record: p is one of its paths, lies below one, or is a directory
// above one (the directories leading to a backed-up path are in the
// tree too). Whether a file below a path still existed at backup time
// only the tree says.
func (s *Snapshot) Holds(p string) bool {
	p = path.Clean("/" + p)
	for _, q := range s.Paths {
		q = path.Clean("/" + q)
		if q == p || q == "/" || p == "/" || strings.HasPrefix(p, q+"/") || strings.HasPrefix(q, p+"/") {
			return true
		}
	}
	return false
}

// NoPlan is how a snapshot made without a plan shows its plan, in every
// listing, the mount (nodes/NODE/@none/…) and the runbook, and how
// --plan selects such snapshots. Plan names cannot contain '@'
// ([CheckName]), so it never names a real plan.
const NoPlan = "@none"

// PlanName is plan as shown: the plan, or [NoPlan] when there is none.
func PlanName(plan string) string {
	if plan == "" {
		return NoPlan
	}
	return plan
}

// Filter selects snapshots. Empty fields match everything.
type Filter struct {
	Node string
	Plan string   // [NoPlan] selects the snapshots made without a plan
	Tags []string // a snapshot must carry all of them
	Path string   // a snapshot must include this path
}

// Match reports whether s passes the filter.
func (f Filter) Match(s *Snapshot) bool {
	if f.Node != "" && s.Node != f.Node {
		return false
	}
	if f.Plan != "" && PlanName(s.Plan) != f.Plan {
		return false
	}
	for _, t := range f.Tags {
		if !slices.Contains(s.Tags, t) {
			return false
		}
	}
	if f.Path != "" && !slices.Contains(s.Paths, path.Clean(f.Path)) {
		return false
	}
	return true
}
