//go:build race

package seal

// raceEnabled: the race detector's shadow memory is faulted in beside
// the heap, so page fault counts mean little.
const raceEnabled = true
