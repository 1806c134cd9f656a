package caps

import (
	"os"
	"os/exec"
	"strings"
	"testing"

	"github.com/cairnbackup/cairn/integration/testenv"
)

// Have agrees with the kernel's own account in /proc/self/status.
func TestHaveMatchesProcStatus(t *testing.T) {
	b, err := os.ReadFile("/proc/self/status")
	if err != nil {
		testenv.Missing(t, "no /proc: %v", err)
	}
	var eff uint64
	for _, line := range strings.Split(string(b), "\n") {
		if v, ok := strings.CutPrefix(line, "CapEff:\t"); ok {
			for _, c := range v {
				eff <<= 4
				switch {
				case c >= '0' && c <= '9':
					eff |= uint64(c - '0')
				default:
					eff |= uint64(c-'a') + 10
				}
			}
		}
	}
	for _, c := range []int{Chown, Mknod, SysAdmin} {
		if got, want := Have(c), eff&(1<<c) != 0; got != want {
			t.Errorf("Have(%d) = %v, /proc/self/status says %v", c, got, want)
		}
	}
}

// Under setpriv with every capability dropped, Have says no.
func TestHaveWithoutCapabilities(t *testing.T) {
	if os.Getenv("CAIRN_CAPS_CHILD") == "1" {
		if Have(Chown) || Have(SysAdmin) {
			os.Exit(3)
		}
		os.Exit(0)
	}
	testenv.RequireRoot(t, "dropping capabilities needs them first")
	setpriv := testenv.RequireProgram(t, "setpriv", "util-linux")
	cmd := exec.Command(setpriv, "--inh-caps=-all", "--bounding-set=-all", os.Args[0], "-test.run=^TestHaveWithoutCapabilities$")
	cmd.Env = append(os.Environ(), "CAIRN_CAPS_CHILD=1")
	if out, err := cmd.CombinedOutput(); err != nil {
		t.Fatalf("without capabilities: %v\n%s", err, out)
	}
}
