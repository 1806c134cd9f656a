package torture

import (
	"fmt"
	"slices"
	"strings"
	"sync"
)

// row is one fault of the results table.
type row struct {
	fault    string
	runs     int // faults injected
	detected int // faults the system surfaced: a failed operation, a check or drill finding, a refusal
	lost     int // runs after which acknowledged data was missing or differed, or wrong bytes were returned silently
	notes    []string
}

// table collects the rows of every test family.
type table struct {
	mu   sync.Mutex
	rows []*row
}

var results = &table{}

// record adds to the row of fault (created on first use): runs, detected
// and lost are added, note (if not empty) is appended.
func record(fault string, runs, detected, lost int, note string) {
	results.mu.Lock()
	defer results.mu.Unlock()
	i := slices.IndexFunc(results.rows, func(r *row) bool { return r.fault == fault })
	if i < 0 {
		results.rows = append(results.rows, &row{fault: fault})
		i = len(results.rows) - 1
	}
	r := results.rows[i]
	r.runs += runs
	r.detected += detected
	r.lost += lost
	if note != "" {
		if len(note) > 240 {
			note = strings.ToValidUTF8(note[:240], "") + "…"
		}
		r.notes = append(r.notes, strings.ReplaceAll(note, "\n", " "))
	}
}

func (t *table) lost() int {
	t.mu.Lock()
	defer t.mu.Unlock()
	n := 0
	for _, r := range t.rows {
		n += r.lost
	}
	return n
}

// markdown renders the table, with a total line.
func (t *table) markdown() string {
	t.mu.Lock()
	defer t.mu.Unlock()
	var b strings.Builder
	b.WriteString("| fault | runs | detected | data lost | notes |\n|---|---:|---:|---:|---|\n")
	var runs, det, lost int
	for _, r := range t.rows {
		fmt.Fprintf(&b, "| %s | %d | %d | %d | %s |\n", r.fault, r.runs, r.detected, r.lost, strings.ReplaceAll(strings.Join(r.notes, "; "), "|", "\\|"))
		runs += r.runs
		det += r.detected
		lost += r.lost
	}
	fmt.Fprintf(&b, "| **total** | %d | %d | %d | |\n", runs, det, lost)
	return b.String()
}
