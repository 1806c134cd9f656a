package appliance

import (
	"strings"
	"testing"
	"time"

	"github.com/cairnbackup/cairn/repo/wire"
)

const keyA = "ssh-ed25519 AAAAC3NzaC1lZDI1NTE5AAAAIGaJ8oGxv4b0lFqj5wgq0LQ1fNEsR2kYHp4o5X0fWm9S lyra"
const keyB = "ssh-ed25519 AAAAC3NzaC1lZDI1NTE5AAAAIO8iAf2b3ZB4QWIlW/mJ2iYbN5Z8tQWq3ZxEy0XhJb8g vega"

func TestParseConfig(t *testing.T) {
	c, err := ParseConfig([]byte(`
listen: 0.0.0.0:2222
nodes:
  lyra:
    keys: ["`+keyA+`"]
    permissions: [push, read]
  vega:
    keys: ["`+keyB+`"]
    permissions: [admin]
    isolated: true
limits:
  idle_timeout: 90s
`), "test")
	if err != nil {
		t.Fatal(err)
	}
	if c.Listen != "0.0.0.0:2222" || c.Limits.IdleTimeout != 90*time.Second || c.Limits.Sessions != 32 || c.Limits.SessionsPerNode != 4 || c.Limits.MaxBatch != 4096 {
		t.Fatalf("config %+v", c)
	}
	if p := c.Nodes["lyra"].Perms(); p != wire.PermPush|wire.PermRead {
		t.Fatalf("lyra perms %v", p)
	}
	if !c.Nodes["vega"].Isolated || c.Nodes["vega"].Perms() != wire.PermAdmin {
		t.Fatalf("vega %+v", c.Nodes["vega"])
	}
	empty, err := ParseConfig(nil, "empty")
	if err != nil || empty.Listen != DefaultListen || len(empty.Nodes) != 0 {
		t.Fatalf("empty: %+v %v", empty, err)
	}
	def, err := ParseConfig([]byte(DefaultConfigText), "default")
	if err != nil || def.Listen != DefaultListen {
		t.Fatalf("default text: %v", err)
	}
}

func TestParseConfigRejects(t *testing.T) {
	for doc, want := range map[string]string{
		"listen: nowhere":                                                               `listen "nowhere": address nowhere: missing port in address`,
		"nodes:\n  lyra:\n    permissions: [push]":                                      "node lyra: no keys",
		"nodes:\n  lyra:\n    keys: [\"" + keyA + "\"]":                                 "node lyra: no permissions (give push, read or admin)",
		"nodes:\n  lyra:\n    keys: [\"" + keyA + "\"]\n    permissions: [root]":        `node lyra: unknown permission "root" (use push, read, admin)`,
		"nodes:\n  lyra:\n    keys: [\"ssh-ed25519 garbage\"]\n    permissions: [push]": "node lyra: key 1:",
		"nodes:\n  ../x:\n    keys: [\"" + keyA + "\"]\n    permissions: [push]":        `snapshot: node name "../x" starts with a dot`,
		"nodes:\n  a:\n    keys: [\"" + keyA + "\"]\n    permissions: [push]\n  b:\n    keys: [\"" + keyA + "\"]\n    permissions: [push]": "is also the key of node",
		"colour: red": "field colour not found",
	} {
		_, err := ParseConfig([]byte(doc), "test")
		if err == nil || !strings.Contains(err.Error(), want) {
			t.Errorf("%q: err = %v, want %q", doc, err, want)
		}
	}
}
