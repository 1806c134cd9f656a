package appliance

import (
	"os"
	"path/filepath"
	"strings"
	"testing"
)

// The status page's credentials and the notification targets are
// checked like the rest of the file: FILE:LINE: KEY: message, nothing
// replaced, secrets never repeated.
func TestConfigAlertsChecked(t *testing.T) {
	dir := t.TempDir()
	secret := func(name, content string, mode os.FileMode) string {
		p := filepath.Join(dir, name)
		if err := os.WriteFile(p, []byte(content), mode); err != nil {
			t.Fatal(err)
		}
		if err := os.Chmod(p, mode); err != nil {
			t.Fatal(err)
		}
		return p
	}
	good := secret("token", "s3cr3t-token\n", 0o600)
	open := secret("open", "s3cr3t-open\n", 0o644)
	empty := secret("empty", "\n", 0o600)
	two := secret("two", "a\nb\n", 0o600)
	link := filepath.Join(dir, "null")
	os.Symlink("/dev/null", link)
	node := "nodes:\n  lyra:\n    keys: [\"" + keyA + "\"]\n    permissions: [push]\n"
	for _, c := range []struct{ doc, want string }{
		{"metrics: 0.0.0.0:9100\n", "/etc/c.yaml:1: metrics: 0.0.0.0:9100 listens beyond this machine: give metrics_auth (token_file, or user and password_file), or listen on 127.0.0.1"},
		{"metrics: :9100\n", "/etc/c.yaml:1: metrics: :9100 listens beyond this machine: give metrics_auth (token_file, or user and password_file), or listen on 127.0.0.1"},
		{"metrics: backup.example.org:9100\n", "/etc/c.yaml:1: metrics: backup.example.org:9100 listens beyond this machine: give metrics_auth (token_file, or user and password_file), or listen on 127.0.0.1"},
		{"metrics_auth: {token_file: " + good + "}\n", "/etc/c.yaml:1: metrics_auth: set, but metrics (the address of the status page and /metrics) is not: nothing listens"},
		{"metrics: 0.0.0.0:9100\nmetrics_auth: {token_file: token}\n", "/etc/c.yaml:2: metrics_auth.token_file: token: give an absolute path"},
		{"metrics: 0.0.0.0:9100\nmetrics_auth:\n  token_file: " + open + "\n", "/etc/c.yaml:3: metrics_auth.token_file: " + open + " has mode 0644, open to group or others: make it 0600 (chmod 600 " + open + ")"},
		{"metrics: 0.0.0.0:9100\nmetrics_auth:\n  token_file: " + empty + "\n", "/etc/c.yaml:3: metrics_auth.token_file: " + empty + " is empty"},
		{"metrics: 0.0.0.0:9100\nmetrics_auth:\n  token_file: " + two + "\n", "/etc/c.yaml:3: metrics_auth.token_file: " + two + " holds more than one line"},
		{"metrics: 0.0.0.0:9100\nmetrics_auth:\n  token_file: " + dir + "/none\n", "/etc/c.yaml:3: metrics_auth.token_file: lstat " + dir + "/none: no such file or directory"},
		{"metrics: 0.0.0.0:9100\nmetrics_auth:\n  token_file: " + link + "\n", "/etc/c.yaml:3: metrics_auth.token_file: " + link + " is not a regular file"},
		{"metrics: 0.0.0.0:9100\nmetrics_auth:\n  token_file: /dev/null\n", "/etc/c.yaml:3: metrics_auth.token_file: /dev/null is not a regular file"},
		{"metrics: 0.0.0.0:9100\nmetrics_auth:\n  token_file: " + dir + "\n", "/etc/c.yaml:3: metrics_auth.token_file: " + dir + " is not a regular file"},
		{"metrics: 0.0.0.0:9100\nmetrics_auth:\n  user: ops\n", `/etc/c.yaml:3: metrics_auth.user: "ops" needs a password_file`},
		{"metrics: 0.0.0.0:9100\nmetrics_auth:\n  password_file: " + good + "\n", "/etc/c.yaml:3: metrics_auth.password_file: needs a user"},
		{"notifications:\n  webhooks:\n    - url: ftp://example.org/x\n", `/etc/c.yaml:3: notifications.webhooks[0].url: scheme "ftp": give an http:// or https:// URL`},
		{"notifications:\n  webhooks:\n    - {}\n", "/etc/c.yaml:3: notifications.webhooks[0].url: missing: give an http:// or https:// URL"},
		{"notifications:\n  ntfy:\n    - url: https:///topic\n", "/etc/c.yaml:3: notifications.ntfy[0].url: no host: give an http:// or https:// URL"},
		{"notifications:\n  ntfy:\n    - url: https://ntfy.example.org/t\n      token_file: " + open + "\n", "/etc/c.yaml:4: notifications.ntfy[0].token_file: " + open + " has mode 0644, open to group or others: make it 0600 (chmod 600 " + open + ")"},
		{"notifications:\n  ntfy:\n    - url: https://ntfy.example.org/t\n      priority: 5\n", "/etc/c.yaml:4: notifications.ntfy[0].priority: unknown key"},
		{node + "notifications:\n  healthchecks:\n    vega: https://hc.example.org/ping/1\n", "/etc/c.yaml:7: notifications.healthchecks.vega: node vega is not in nodes: its pushes would never ping"},
		{node + "notifications:\n  healthchecks:\n    default: https://hc.example.org/ping/1\n", "/etc/c.yaml:7: notifications.healthchecks.default: a ping URL belongs to one node or node/plan: give NODE or NODE/PLAN"},
		{node + "notifications:\n  healthchecks:\n    lyra/g*t: https://hc.example.org/ping/1\n", `/etc/c.yaml:7: notifications.healthchecks.lyra/g*t: plan name "g*t" has the character '*'; use letters, digits, '.', '_' and '-' (give default, NODE or NODE/PLAN)`},
		{node + "notifications:\n  healthchecks:\n    lyra: \"https://hc.example.org/ping/1#x\"\n", "/etc/c.yaml:7: notifications.healthchecks.lyra: has a #fragment, which is never sent"},
		{"notifications:\n  retries: 11\n", "/etc/c.yaml:2: notifications.retries: 11 is above the most allowed, 10"},
		{"notifications:\n  queue: -1\n", "/etc/c.yaml:2: notifications.queue: -1 is negative; give a number above 0, or leave it out for the default 100"},
		{"notifications:\n  timeout: 6m\n", "/etc/c.yaml:2: notifications.timeout: 6m0s is above the most allowed, 5m"},
		{"notifications:\n  repeat: -1h\n", "/etc/c.yaml:2: notifications.repeat: -1h0m0s is negative; give a duration above 0, or leave it out for the default 24h0m0s"},
	} {
		_, err := ParseConfig([]byte(c.doc), "/etc/c.yaml")
		if err == nil || err.Error() != c.want {
			t.Errorf("%q:\n got %v\nwant %s", c.doc, err, c.want)
		}
		if err != nil && strings.Contains(err.Error(), "s3cr3t") {
			t.Errorf("a secret in the message: %v", err)
		}
	}

	// What is accepted: the secrets are read, the defaults filled in.
	pass := secret("pass", "hunter2\n", 0o400)
	linked := filepath.Join(dir, "linked")
	os.Symlink(pass, linked) // a secret linked into place is read
	pass = linked
	cfg, err := ParseConfig([]byte(node+"metrics: 0.0.0.0:9100\nmetrics_auth: {token_file: "+good+", user: ops, password_file: "+pass+"}\n"+
		"notifications:\n  webhooks: [{url: \"http://127.0.0.1:1/hook\"}]\n  healthchecks: {lyra/git: \"https://hc.example.org/p/1\"}\n"), "/etc/c.yaml")
	if err != nil {
		t.Fatal(err)
	}
	if string(cfg.MetricsAuth.token) != "s3cr3t-token" || string(cfg.MetricsAuth.password) != "hunter2" {
		t.Errorf("secrets %q %q", cfg.MetricsAuth.token, cfg.MetricsAuth.password)
	}
	n := cfg.Notifications
	if n.Timeout != DefaultNotifyTimeout || n.Retries != DefaultNotifyRetries || n.Queue != DefaultNotifyQueue || n.Repeat != DefaultNotifyRepeat {
		t.Errorf("defaults %+v", n)
	}
	// Loopback needs no credentials.
	for _, addr := range []string{"127.0.0.1:9100", "localhost:9100", "[::1]:9100", "127.0.0.2:9100"} {
		if _, err := ParseConfig([]byte("metrics: \""+addr+"\"\n"), "/etc/c.yaml"); err != nil {
			t.Errorf("%s: %v", addr, err)
		}
	}
}
