package appliance

import (
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
		"listen: nowhere":                                                               "test:1: listen: address nowhere: missing port in address (give HOST:PORT, such as 127.0.0.1:2222)",
		"listen: 127.0.0.1:99999":                                                       `test:1: listen: address 127.0.0.1:99999: invalid port "99999"`,
		"metrics: 127.0.0.1:nosuchservice":                                              `test:1: metrics: address 127.0.0.1:nosuchservice: unknown port "nosuchservice"`,
		"nodes:\n  lyra:\n    permissions: [push]":                                      "test:2: nodes.lyra.keys: none: give the node's public keys (authorized_keys lines)",
		"nodes:\n  lyra:\n    keys: [\"" + keyA + "\"]":                                 "test:2: nodes.lyra.permissions: none: give push, read or admin",
		"nodes:\n  lyra:\n    keys: [\"" + keyA + "\"]\n    permissions: [root]":        `test:4: nodes.lyra.permissions[0]: unknown permission "root" (use push, read, admin)`,
		"nodes:\n  lyra:\n    keys: [\"ssh-ed25519 garbage\"]\n    permissions: [push]": "test:3: nodes.lyra.keys[0]: not a public key: ssh: no key found; last parsing error for ignored line: illegal base64 data at input byte 4",
		"nodes:\n  ../x:\n    keys: [\"" + keyA + "\"]\n    permissions: [push]":        `test:2: nodes.../x: node name "../x" starts with a dot`,
		"nodes:\n  lyra:\n":                                                             "test:2: nodes.lyra: empty: give keys and permissions",
		"nodes:\n  a:\n    keys: [\"" + keyA + "\"]\n    permissions: [push]\n  b:\n    keys: [\"" + keyA + "\"]\n    permissions: [push]": "test:6: nodes.b.keys[0]: also the key of node a; every node needs its own key",
		"colour: red": "test:1: colour: unknown key",
	} {
		_, err := ParseConfig([]byte(doc), "test")
		if err == nil || err.Error() != want {
			t.Errorf("%q:\n got %v\nwant %s", doc, err, want)
		}
	}
}
