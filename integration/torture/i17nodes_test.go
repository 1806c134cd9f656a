package torture

import (
	"fmt"
	"sync"
	"syscall"
	"testing"
)

// TestSilentApplianceSnapshots: cairn snapshots --from ends like restore
// --from when the appliance falls silent or a signal comes, in each
// phase, with the phase named.
func TestSilentApplianceSnapshots(t *testing.T) {
	lyra := newNode(t, "lyra", "push")
	cases := []struct{ at, how, phase string }{
		{silentTCP, "timeout", "during the SSH handshake"},
		{silentExec, "timeout", "while starting cairn-wire"},
		{silentHello, "timeout", "during the wire handshake"},
		{silentList, "timeout", "while listing snapshots"},
		{silentTCP, "SIGTERM", "during the SSH handshake"},
		{silentList, "SIGINT", "while listing snapshots"},
	}
	var mu sync.Mutex
	runs, detected := 0, 0
	for _, c := range cases {
		runs++
		t.Run(c.at+"/"+c.how, func(t *testing.T) {
			t.Parallel()
			e := newEnv(t)
			f := newFakeAppliance(t, c.at)
			addr := fmt.Sprintf("127.0.0.1:%d", f.port)
			args := []string{"snapshots", "--from", "ssh://lyra@" + addr, "-i", lyra.Key.PrivatePath, "--host-key", f.hostKey}
			var want string
			code := 1
			var p *running
			if c.how == "timeout" {
				p = e.start(append(args, "--timeout", "1s")...)
				f.waitSilent(p)
				want = fmt.Sprintf("cairn: snapshots: the appliance %s was silent for 1s %s (--timeout): nothing was listed\n", addr, c.phase)
			} else {
				p = e.start(args...)
				f.waitSilent(p)
				sig := syscall.SIGINT
				code = 130
				if c.how == "SIGTERM" {
					sig, code = syscall.SIGTERM, 143
				}
				p.cmd.Process.Signal(sig)
				want = fmt.Sprintf("cairn: snapshots interrupted by %s %s (appliance %s): nothing was listed\n", c.how, c.phase, addr)
			}
			r := p.wait(t)
			if r.code == code && r.stderr == want && r.stdout == "" {
				mu.Lock()
				detected++
				mu.Unlock()
			} else {
				t.Fatalf("%s\nwant exit %d and stderr %q", r, code, want)
			}
		})
	}
	t.Cleanup(func() {
		record("silent appliance: cairn snapshots --from", runs, detected, 0,
			fmt.Sprintf("%d of %d runs ended with the phase named and exit 1/130/143", detected, runs))
	})
}
