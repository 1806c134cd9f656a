//go:build race

package backup_test

// raceEnabled: the race detector makes sync.Pool drop a share of what it
// is given, so allocation counts mean little.
const raceEnabled = true
