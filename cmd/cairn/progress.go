package main

import (
	"encoding/json"
	"fmt"
	"strings"
	"sync"
	"time"
)

// progressInterval is how often progress is shown.
const progressInterval = time.Second

// startProgress calls show every progressInterval while an operation runs
// (and once more, with final set, when the returned stop is called) if
// the output is a terminal or --json is set; otherwise it shows nothing.
func (g *globalOptions) startProgress(show func(final bool)) (stop func()) {
	if !g.json && !g.stderrTTY {
		return func() {}
	}
	return runProgress(show)
}

// startTerminalProgress is startProgress for commands whose progress has
// no JSON form (check, jobs run): it shows only on a terminal.
func (g *globalOptions) startTerminalProgress(show func(final bool)) (stop func()) {
	if !g.stderrTTY {
		return func() {}
	}
	return runProgress(show)
}

// runProgress calls show every progressInterval until stop is called,
// then once more with final set.
func runProgress(show func(final bool)) (stop func()) {
	done := make(chan struct{})
	var wg sync.WaitGroup
	wg.Add(1)
	go func() {
		defer wg.Done()
		t := time.NewTicker(progressInterval)
		defer t.Stop()
		for {
			select {
			case <-t.C:
				show(false)
			case <-done:
				show(true)
				return
			}
		}
	}()
	return func() {
		close(done)
		wg.Wait()
	}
}

// progressLine redraws one status line on stderr with rate and, when the
// total is known, an ETA.
func (g *globalOptions) progressLine(text string, done, total uint64, start time.Time, final bool) {
	el := time.Since(start)
	rate := float64(done) / max(el.Seconds(), 0.001)
	line := fmt.Sprintf("%s, %s/s, %s", text, humanBytes(uint64(rate)), el.Round(time.Second))
	if total > 0 && done < total && rate > 0 {
		eta := time.Duration(float64(total-done) / rate * float64(time.Second))
		line += fmt.Sprintf(", ETA %s", eta.Round(time.Second))
	}
	end := ""
	if final {
		end = "\n"
	}
	fmt.Fprintf(g.stderr, "\r%s\x1b[K%s", strings.TrimSpace(line), end)
}

func (g *globalOptions) printJSONLine(v any) {
	b, err := json.Marshal(v)
	if err != nil {
		return
	}
	g.outMu.Lock()
	defer g.outMu.Unlock()
	fmt.Fprintf(g.stdout, "%s\n", b)
}
