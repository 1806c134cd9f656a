package scheduler

import (
	"bytes"
	"cmp"
	"maps"
	"slices"
	"sync"
)

// History persists runs. The appliance backs it with its index, where job
// history is disposable. Implementations must be safe for concurrent use:
// the scheduler records from the goroutine of each run while status
// readers list. Newest means latest Start; the scheduler works as well
// with a store that orders by recording instead (it reads the two newest
// runs of a job, see Missed runs in the package documentation).
type History interface {
	// Record stores one run.
	Record(r Run) error
	// Last returns the newest run of job, and false when the job has
	// none.
	Last(job string) (Run, bool, error)
	// List returns up to limit runs of job, newest first; job "" lists
	// the runs of all jobs, and a limit of zero or less lists them all.
	List(job string, limit int) ([]Run, error)
}

// MemoryHistoryRuns is how many runs per job the history of
// [NewMemoryHistory] keeps; older runs are dropped.
const MemoryHistoryRuns = 1000

// NewMemoryHistory returns a History held in memory, for tests and for an
// appliance given no store. It orders runs by Start, then by recording,
// keeps the newest [MemoryHistoryRuns] runs of each job and copies runs in and out, so callers may keep or change
// what they pass and get.
func NewMemoryHistory() History {
	return &memoryHistory{runs: make(map[string][]memoryRun)}
}

type memoryHistory struct {
	mu   sync.Mutex
	seq  uint64
	runs map[string][]memoryRun // per job, oldest first: by Start, then seq
}

type memoryRun struct {
	seq uint64 // order of recording, over all jobs; breaks ties of Start
	run Run
}

func (h *memoryHistory) Record(r Run) error {
	r = cloneRun(r)
	h.mu.Lock()
	defer h.mu.Unlock()
	h.seq++
	rs := h.runs[r.Job]
	i := len(rs) // runs arrive nearly in order of Start: look from the end
	for i > 0 && rs[i-1].run.Start.After(r.Start) {
		i--
	}
	rs = slices.Insert(rs, i, memoryRun{h.seq, r})
	if len(rs) > MemoryHistoryRuns {
		rs = rs[1:]
	}
	h.runs[r.Job] = rs
	return nil
}

func (h *memoryHistory) Last(job string) (Run, bool, error) {
	h.mu.Lock()
	defer h.mu.Unlock()
	rs := h.runs[job]
	if len(rs) == 0 {
		return Run{}, false, nil
	}
	return cloneRun(rs[len(rs)-1].run), true, nil
}

func (h *memoryHistory) List(job string, limit int) ([]Run, error) {
	h.mu.Lock()
	defer h.mu.Unlock()
	var all []memoryRun
	if job != "" {
		all = slices.Clone(h.runs[job])
	} else {
		for _, rs := range h.runs {
			all = append(all, rs...)
		}
	}
	slices.SortFunc(all, func(a, b memoryRun) int {
		if c := b.run.Start.Compare(a.run.Start); c != 0 {
			return c
		}
		return cmp.Compare(b.seq, a.seq)
	})
	if limit > 0 && len(all) > limit {
		all = all[:limit]
	}
	out := make([]Run, len(all))
	for i, m := range all {
		out[i] = cloneRun(m.run)
	}
	return out, nil
}

// cloneRun copies the parts of r that share memory.
func cloneRun(r Run) Run {
	r.Result.Figures = maps.Clone(r.Result.Figures)
	r.Result.Detail = bytes.Clone(r.Result.Detail)
	return r
}
