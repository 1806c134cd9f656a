package repo

import "time"

// PutJobRun records a run of a scheduled job (disposable history).
func (r *Repository) PutJobRun(job string, start time.Time, value []byte) error {
	return r.idx.PutJobRun(job, start, value)
}

// JobRuns calls fn with recorded runs, newest first per job.
func (r *Repository) JobRuns(job string, limit int, fn func(job string, value []byte) bool) error {
	return r.idx.JobRuns(job, limit, fn)
}
