package apptest

import (
	"strconv"
	"testing"
)

// The configuration names each node with its key and permissions, and
// gets the tests' idle timeout unless the test gives limits of its own.
func TestConfig(t *testing.T) {
	lyra, iso := NewNode(t, "lyra", "push, read"), NewNode(t, "iso", "push")
	iso.Extra = "    isolated: true\n"
	got := Config(2222, "jobs:\n  drill: {schedule: \"0 4 * * *\"}\n", lyra, iso)
	want := "listen: 127.0.0.1:2222\nnodes:\n" +
		"  lyra:\n    keys: [" + strconv.Quote(lyra.Key.PublicLine) + "]\n    permissions: [push, read]\n" +
		"  iso:\n    keys: [" + strconv.Quote(iso.Key.PublicLine) + "]\n    permissions: [push]\n    isolated: true\n" +
		"limits:\n  idle_timeout: 1m\n" +
		"jobs:\n  drill: {schedule: \"0 4 * * *\"}\n"
	if got != want {
		t.Fatalf("config:\n%s\nwant:\n%s", got, want)
	}
	if got, want := Config(1, "limits:\n  sessions: 2\n"), "listen: 127.0.0.1:1\nnodes:\n  {}\nlimits:\n  sessions: 2\n"; got != want {
		t.Fatalf("config with limits:\n%s\nwant:\n%s", got, want)
	}
}

func TestTail(t *testing.T) {
	if got := Tail("a\nb\nc\n", 2); got != "b\nc" {
		t.Fatalf("Tail = %q, want %q", got, "b\nc")
	}
	if got := Tail("a\n", 5); got != "a" {
		t.Fatalf("Tail = %q, want %q", got, "a")
	}
}
