package seal

import (
	"runtime/metrics"
	"testing"
	"time"
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
