package drill

import (
	"fmt"
	"strings"
)

// Reason says in one line why the drill failed: its first failure, and
// how many more there are; "" when it passed. Status, the runbook and the
// drill job's notification all give it.
func (r *Report) Reason() string {
	switch len(r.Failures) {
	case 0:
		return ""
	case 1:
		return r.Failures[0].String()
	}
	return fmt.Sprintf("%s, and %d more", r.Failures[0], len(r.Failures)-1)
}

// FileFailures returns the failures of the restore and the comparison
// with the snapshot: all but those of failed probes (each failed probe
// gives one, naming its target) and the git class's missing repository.
func (r *Report) FileFailures() []Failure {
	var out []Failure
next:
	for _, f := range r.Failures {
		if f.Path == "/" && f.Reason == noGitRepo {
			continue
		}
		for _, p := range r.Probes {
			path := p.Target
			if p.Name == "command" {
				path = "/"
			}
			if !p.OK && f.Path == path && strings.HasPrefix(f.Reason, failPrefix(p)) {
				continue next
			}
		}
		out = append(out, f)
	}
	return out
}
