// Package torture is cairn's torture suite: it kills the real binary at
// many points of every operation that writes, fills its disk, rots its
// files, attacks the appliance with hostile nodes and hostile input, and
// loads it with many nodes at once, and after each fault proves that
// nothing acknowledged was lost: every snapshot cairn reported as saved
// restores bit-identical to a copy of its source kept by the test.
//
// Without flags the suite runs a bounded subset (part of make test, under
// two minutes on two cores). With -torture it runs in full (make torture):
// hundreds of kills, the whole damage matrix, minutes of load. Random
// choices come from -torture.seed (printed at the start, so a failure can
// be replayed). Every test family adds rows to one table (fault, runs,
// detected, data lost) that TestMain prints at the end as Markdown, and
// writes to -torture.report if given.
package torture

import (
	"flag"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"testing"
	"time"

	"github.com/cairnbackup/cairn/integration/s3test"
)

var (
	fullRun    = flag.Bool("torture", false, "run the full torture suite (several minutes) instead of the bounded subset")
	seedFlag   = flag.Uint64("torture.seed", 0, "seed for every random choice; 0 picks one from the clock (it is printed)")
	reportFile = flag.String("torture.report", "", "write the results table (Markdown) to this file")
)

// cairnBin is the binary under test, built once by TestMain.
var cairnBin string

// seed is the suite's seed: -torture.seed or one from the clock.
var seed uint64

func TestMain(m *testing.M) {
	flag.Parse()
	seed = *seedFlag
	if seed == 0 {
		seed = uint64(time.Now().UnixNano())
	}
	mode := "subset (run with -torture for the full suite)"
	if *fullRun {
		mode = "full"
	}
	fmt.Printf("torture: %s, seed %d (replay with -torture.seed %d)\n", mode, seed, seed)
	cleanStaleMounts()
	dir, err := os.MkdirTemp("", "cairn-torture-")
	if err != nil {
		fmt.Fprintln(os.Stderr, err)
		os.Exit(1)
	}
	os.Chmod(dir, 0o755)
	cairnBin = filepath.Join(dir, "cairn")
	build := exec.Command("go", "build", "-o", cairnBin, "../../cmd/cairn")
	build.Stdout, build.Stderr = os.Stdout, os.Stderr
	if err := build.Run(); err != nil {
		fmt.Fprintln(os.Stderr, "building cairn:", err)
		os.Exit(1)
	}
	start := time.Now()
	code := m.Run()
	table := results.markdown()
	fmt.Printf("\ntorture results (seed %d, %s, %s):\n\n%s", seed, mode, time.Since(start).Round(time.Second), table)
	if *reportFile != "" {
		head := fmt.Sprintf("torture results: seed %d, %s, wall time %s\n\n", seed, mode, time.Since(start).Round(time.Second))
		if err := os.WriteFile(*reportFile, []byte(head+table), 0o644); err != nil {
			fmt.Fprintln(os.Stderr, "writing the report:", err)
			code = 1
		}
	}
	if lost := results.lost(); lost > 0 && code == 0 {
		fmt.Fprintf(os.Stderr, "torture: %d runs lost data\n", lost)
		code = 1
	}
	cleanStaleMounts()
	s3test.StopShared()
	os.RemoveAll(dir)
	os.Exit(code)
}

// scale returns subset in the bounded run and full with -torture.
func scale(subset, full int) int {
	if *fullRun {
		return full
	}
	return subset
}
