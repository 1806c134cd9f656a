package seal

import (
	"os"
	"runtime/debug"
	"runtime/metrics"
	"syscall"
	"testing"
	"time"

	"golang.org/x/crypto/argon2"
)

// TestUnwrapCollectsKDFMemory: after argon2id, the heap goal is back to
// what the program holds, not twice argon2's memory; before, a command
// opening a repository with a passphrase could grow its heap to twice
// the KDF's 64 MiB before the next collection (peak RSS of check,
// restore and backup; issue 16).
func TestUnwrapCollectsKDFMemory(t *testing.T) {
	const memKiB = 32 << 10
	var m MasterKey
	m[0] = 1
	w, err := Wrap(m, []byte("secret"), KDFParams{Time: 1, MemoryKiB: memKiB, Threads: 1}, time.Unix(0, 0))
	if err != nil {
		t.Fatal(err)
	}
	got, err := w.Unwrap([]byte("secret"))
	if err != nil || got != m {
		t.Fatalf("unwrap: %v", err)
	}
	s := []metrics.Sample{{Name: "/gc/heap/goal:bytes"}}
	metrics.Read(s)
	if goal := s[0].Value.Uint64(); goal >= memKiB<<10 {
		t.Errorf("heap goal after unwrap is %d bytes, want below argon2's %d", goal, memKiB<<10)
	}
}

// argon2 gets memory the process has already written to (prefaultHeap):
// deriving a key faults in almost no pages. Before, argon2's threads
// faulted in its memory themselves, most pages twice (zero page, then a
// copy on write), 16 384+ faults for 32 MiB, with a TLB shootdown each.
func TestKDFMemoryPrefaulted(t *testing.T) {
	if raceEnabled {
		t.Skip("the race detector faults in shadow memory beside argon2's")
	}
	// The background scavenger returns free memory the heap does not
	// need to the kernel when it gets to it, the pages written here
	// among them; with the collector's goal off it leaves them.
	defer debug.SetGCPercent(debug.SetGCPercent(-1))
	const memKiB = 32 << 10
	prefaultHeap(memKiB << 10)
	before := minorFaults(t)
	argon2.IDKey([]byte("secret"), []byte("salt-of-16-bytes"), 1, memKiB, 2, KeySize)
	faults := minorFaults(t) - before
	if pages := int64(memKiB << 10 / os.Getpagesize()); faults > pages/8 {
		t.Errorf("argon2 took %d page faults for its %d pages, want at most %d", faults, pages, pages/8)
	}
}

func minorFaults(t *testing.T) int64 {
	var ru syscall.Rusage
	if err := syscall.Getrusage(syscall.RUSAGE_SELF, &ru); err != nil {
		t.Fatal(err)
	}
	return ru.Minflt
}
