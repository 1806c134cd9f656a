package appliance

import (
	"context"
	"sync"
	"time"
)

// JobProgress is what a job run by hand has done so far, for its caller
// to draw (cairn jobs run on a terminal). The drill job reports each
// group's restore, the verify job its reads. Pass one to a run with
// [WithProgress]; its methods are safe for concurrent use, and a nil
// *JobProgress ignores updates.
type JobProgress struct {
	mu    sync.Mutex
	step  string        // what is being done
	start time.Time     // when the step began
	total uint64        // bytes the step handles
	grow  func() uint64 // or, when set, the bytes it handles as known so far
	done  func() uint64 // bytes handled so far
}

// Step starts a step of the job: text says what it is, total how many
// bytes it handles, done how many it has handled so far.
func (p *JobProgress) Step(text string, total uint64, done func() uint64) {
	if p == nil {
		return
	}
	p.mu.Lock()
	defer p.mu.Unlock()
	p.step, p.start, p.total, p.grow, p.done = text, time.Now(), total, nil, done
}

// StepTotal is Step for a step whose total becomes known as it goes
// (replication finds what to copy while it copies).
func (p *JobProgress) StepTotal(text string, total, done func() uint64) {
	if p == nil {
		return
	}
	p.mu.Lock()
	defer p.mu.Unlock()
	p.step, p.start, p.total, p.grow, p.done = text, time.Now(), 0, total, done
}

// Current returns the step going (or last done): its text, the bytes
// handled and to handle, and when it began; text is "" before the first.
func (p *JobProgress) Current() (text string, done, total uint64, start time.Time) {
	p.mu.Lock()
	defer p.mu.Unlock()
	if p.done != nil {
		done = p.done()
	}
	total = p.total
	if p.grow != nil {
		total = p.grow()
	}
	return p.step, done, total, p.start
}

type progressKey struct{}

// WithProgress returns a context that makes the job run with it
// ([Appliance.RunJob]) report to p.
func WithProgress(ctx context.Context, p *JobProgress) context.Context {
	return context.WithValue(ctx, progressKey{}, p)
}

// progressOf returns the JobProgress of ctx, or nil.
func progressOf(ctx context.Context) *JobProgress {
	p, _ := ctx.Value(progressKey{}).(*JobProgress)
	return p
}
