package prune

import (
	"fmt"
	"slices"
	"strings"

	"github.com/cairnbackup/cairn/repo/internal/yamldoc"
	"github.com/cairnbackup/cairn/repo/snapshot"
	"go.yaml.in/yaml/v3"
)

// Group is the key of one source's snapshots: what retention applies a
// policy to, what drills pick the newest snapshot of, and what status,
// staleness and the runbook show one row for. Fields the grouping does
// not use ([GroupBy]) are empty.
type Group struct {
	Node, Plan string
	// Paths are the snapshot's paths, sorted and joined by NUL (paths
	// cannot contain NUL), so that a Group can be a map key; see
	// [Group.PathList].
	Paths string
}

// PathList returns the group's paths, sorted.
func (g Group) PathList() []string {
	if g.Paths == "" {
		return nil
	}
	return strings.Split(g.Paths, "\x00")
}

// String names the group: "node/plan [path path]", "node [/db.sql]"
// without a plan, "all snapshots" when nothing tells groups apart.
func (g Group) String() string {
	s := g.Node
	if g.Plan != "" {
		s += "/" + g.Plan
	}
	if g.Paths != "" {
		if s != "" {
			s += " "
		}
		s += "[" + strings.Join(g.PathList(), " ") + "]"
	}
	if s == "" {
		return "all snapshots"
	}
	return s
}

// Compare orders groups by node, plan, then paths.
func (g Group) Compare(o Group) int {
	if c := strings.Compare(g.Node, o.Node); c != 0 {
		return c
	}
	if c := strings.Compare(g.Plan, o.Plan); c != 0 {
		return c
	}
	return strings.Compare(g.Paths, o.Paths)
}

// GroupBy says which of a snapshot's node, plan and paths tell its group
// apart. The default, [DefaultGroupBy], uses all three, as restic groups
// by host and paths: a node's backup of /etc and its stream push of a
// dump are different sources, and retention never lets one of them use
// up the other's keep-last. A stream or tar push's path is "/NAME".
type GroupBy struct{ Node, Plan, Paths bool }

// DefaultGroupBy groups by node, plan and paths.
var DefaultGroupBy = GroupBy{Node: true, Plan: true, Paths: true}

// ParseGroupBy parses a comma list of node, plan and paths, as
// restic's --group-by does; "" (or "none") is one group for everything.
func ParseGroupBy(v string) (GroupBy, error) {
	var b GroupBy
	v = strings.TrimSpace(v)
	if v == "" || v == "none" {
		return b, nil
	}
	for f := range strings.SplitSeq(v, ",") {
		switch strings.TrimSpace(f) {
		case "node":
			b.Node = true
		case "plan":
			b.Plan = true
		case "paths":
			b.Paths = true
		default:
			return GroupBy{}, fmt.Errorf("group by %q: unknown field %q (use a comma list of node, plan, paths, or \"\")", v, strings.TrimSpace(f))
		}
	}
	return b, nil
}

// String is the comma list ParseGroupBy reads ("" for one group).
func (b GroupBy) String() string {
	var f []string
	if b.Node {
		f = append(f, "node")
	}
	if b.Plan {
		f = append(f, "plan")
	}
	if b.Paths {
		f = append(f, "paths")
	}
	return strings.Join(f, ",")
}

// MarshalText writes the comma list.
func (b GroupBy) MarshalText() ([]byte, error) { return []byte(b.String()), nil }

// UnmarshalText parses a comma list.
func (b *GroupBy) UnmarshalText(t []byte) error { return parseInto(b, string(t), ParseGroupBy) }

// UnmarshalYAML parses a comma list in a YAML file (yamldoc.Parse lists
// a wrong one with its line and key).
func (b *GroupBy) UnmarshalYAML(n *yaml.Node) error {
	return yamldoc.Scalar(n, "a comma list of node, plan, paths", func(s string) error { return b.UnmarshalText([]byte(s)) })
}

// Of returns the group a snapshot belongs to.
func (b GroupBy) Of(s *snapshot.Snapshot) Group {
	var g Group
	if b.Node {
		g.Node = s.Node
	}
	if b.Plan {
		g.Plan = s.Plan
	}
	if b.Paths && len(s.Paths) > 0 {
		ps := slices.Clone(s.Paths)
		slices.Sort(ps)
		g.Paths = strings.Join(ps, "\x00")
	}
	return g
}

// Split groups list (oldest first, as [snapshot.Sort] orders it) by b;
// each group's list stays oldest first. The groups are returned in
// [Group.Compare] order.
func (b GroupBy) Split(list []snapshot.Entry) ([]Group, map[Group][]snapshot.Entry) {
	groups := map[Group][]snapshot.Entry{}
	for _, e := range list {
		g := b.Of(e.Snapshot)
		groups[g] = append(groups[g], e)
	}
	keys := make([]Group, 0, len(groups))
	for g := range groups {
		keys = append(keys, g)
	}
	slices.SortFunc(keys, Group.Compare)
	return keys, groups
}
