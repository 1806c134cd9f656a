package repo

import "time"

// JobRunsKept is how many runs of each job the history keeps: recording
// a run removes the job's older ones, so what reads the history (status,
// the metrics, cairn jobs) costs the same however long the appliance ran.
const JobRunsKept = 100

// PutJobRun records a run of a scheduled job (disposable history) and
// keeps the job's newest [JobRunsKept] runs; a good run (one that got
// through) is also kept as the job's last good run, past the cap.
func (r *Repository) PutJobRun(job string, start time.Time, value []byte, good bool) error {
	return r.idx.PutJobRun(job, start, value, JobRunsKept, good)
}

// LastGoodJobRun returns the newest good run of job, however many runs
// came after it.
func (r *Repository) LastGoodJobRun(job string) (value []byte, ok bool, err error) {
	return r.idx.LastGoodJobRun(job)
}

// JobRuns calls fn with recorded runs, newest first per job.
func (r *Repository) JobRuns(job string, limit int, fn func(job string, value []byte) bool) error {
	return r.idx.JobRuns(job, limit, fn)
}
