package appliance

import (
	"os"
	"testing"

	"github.com/cairnbackup/cairn/integration/testenv"
)

// Nodes reach the appliance at its listen address, or at its host name
// when it listens on every address.
func TestNodeAddress(t *testing.T) {
	host, err := os.Hostname()
	if err != nil {
		testenv.Missing(t, "no host name: %v", err)
	}
	for listen, want := range map[string]string{
		"127.0.0.1:2222":    "127.0.0.1:2222",
		"192.0.2.7:22":      "192.0.2.7:22",
		"rhea.lan:2222":     "rhea.lan:2222",
		"0.0.0.0:2222":      host + ":2222",
		"[::]:2222":         host + ":2222",
		":2222":             host + ":2222",
		"[2001:db8::1]:222": "[2001:db8::1]:222",
	} {
		if got := NodeAddress(listen); got != want {
			t.Errorf("NodeAddress(%q) = %q, want %q", listen, got, want)
		}
	}
}
