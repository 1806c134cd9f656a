package appliance

import (
	"bytes"
	"fmt"
	"io"
	"maps"
	"net"
	"net/url"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"syscall"
	"time"

	"github.com/cairnbackup/cairn/repo/internal/yamldoc"
)

// MetricsAuth protects the metrics listener (the status page and
// /metrics): a bearer token, or a user name and password (HTTP basic
// authentication), each secret read from a file. Required when the
// listener is not on a loopback address.
type MetricsAuth struct {
	// TokenFile holds the token that "Authorization: Bearer TOKEN"
	// must carry.
	TokenFile string `yaml:"token_file,omitempty"`
	// User and PasswordFile are the basic authentication credentials.
	User         string `yaml:"user,omitempty"`
	PasswordFile string `yaml:"password_file,omitempty"`

	token, password []byte // read from the files
}

// Set reports whether any credential is configured.
func (m *MetricsAuth) Set() bool {
	return m != nil && (m.TokenFile != "" || m.User != "" || m.PasswordFile != "")
}

// Notifications are the built-in notification targets, beside the
// notify command: each gets every alert (webhooks, ntfy topics), or the
// pushes of one node or node/plan (healthchecks ping URLs).
type Notifications struct {
	Webhooks []WebhookTarget `yaml:"webhooks,omitempty"`
	Ntfy     []NtfyTarget    `yaml:"ntfy,omitempty"`
	// Healthchecks are ping URLs by "node/plan" or "node": URL/start
	// when a push session begins, URL when a snapshot of it is saved,
	// URL/fail when a push fails (the healthchecks.io convention).
	Healthchecks map[string]string `yaml:"healthchecks,omitempty"`
	// Timeout bounds one HTTP request; default 10s, at most 5m.
	Timeout time.Duration `yaml:"timeout,omitempty"`
	// Retries is how many times a failed request is sent again (after
	// 1 s, 2 s, 4 s…); default 3, at most 10.
	Retries int `yaml:"retries,omitempty"`
	// Queue is how many notifications wait per target; when it is full
	// the oldest is dropped (and counted). Default 100, at most 10000.
	Queue int `yaml:"queue,omitempty"`
	// Repeat is how long a condition that lasts (a missed backup, a node
	// never seen, low disk space) stays quiet after it was notified;
	// default 24h.
	Repeat time.Duration `yaml:"repeat,omitempty"`
}

// WebhookTarget gets every alert as a JSON POST ([Event]).
type WebhookTarget struct {
	URL string `yaml:"url"`
}

// NtfyTarget gets every alert as an ntfy message: a POST to the topic
// URL with Title, Priority and Tags headers and the message as body.
type NtfyTarget struct {
	URL string `yaml:"url"`
	// TokenFile holds an ntfy access token, sent to this topic's
	// server alone as "Authorization: Bearer TOKEN".
	TokenFile string `yaml:"token_file,omitempty"`

	token []byte
}

// Defaults of the notifications.
const (
	DefaultNotifyTimeout = 10 * time.Second
	DefaultNotifyRetries = 3
	DefaultNotifyQueue   = 100
	DefaultNotifyRepeat  = 24 * time.Hour
	maxSecretFile        = 4096
)

// Any reports whether a built-in target is configured.
func (n *Notifications) Any() bool {
	return len(n.Webhooks)+len(n.Ntfy)+len(n.Healthchecks) > 0
}

// checkAlerts checks metrics_auth and notifications (see check).
func (c *Config) checkAlerts(d *yamldoc.Doc) {
	if c.MetricsAuth.Set() {
		a := &c.MetricsAuth
		if c.Metrics == "" {
			d.Problemf("metrics_auth", "set, but metrics (the address of the status page and /metrics) is not: nothing listens")
		}
		if a.TokenFile != "" {
			a.token = readSecret(d, "metrics_auth.token_file", a.TokenFile)
		}
		switch {
		case a.User != "" && a.PasswordFile == "":
			d.Problemf("metrics_auth.user", "%q needs a password_file", a.User)
		case a.User == "" && a.PasswordFile != "":
			d.Problemf("metrics_auth.password_file", "needs a user")
		case a.User != "":
			if strings.ContainsAny(a.User, ":\x00\r\n") {
				d.Problemf("metrics_auth.user", "may not contain a colon or control characters")
			}
			a.password = readSecret(d, "metrics_auth.password_file", a.PasswordFile)
		}
	} else if c.Metrics != "" && !loopback(c.Metrics) {
		d.Problemf("metrics", "%s listens beyond this machine: give metrics_auth (token_file, or user and password_file), or listen on 127.0.0.1", c.Metrics)
	}

	n := &c.Notifications
	for i, w := range n.Webhooks {
		checkURL(d, fmt.Sprintf("notifications.webhooks[%d].url", i), w.URL)
	}
	for i := range n.Ntfy {
		t := &n.Ntfy[i]
		key := fmt.Sprintf("notifications.ntfy[%d]", i)
		checkURL(d, key+".url", t.URL)
		if t.TokenFile != "" {
			t.token = readSecret(d, key+".token_file", t.TokenFile)
		}
	}
	for _, k := range slices.Sorted(maps.Keys(n.Healthchecks)) {
		key := "notifications.healthchecks." + k
		if k == "default" {
			d.Problemf(key, "a ping URL belongs to one node or node/plan: give NODE or NODE/PLAN")
			continue
		}
		checkSelector(d, key, k)
		node, _, _ := strings.Cut(k, "/")
		if _, ok := c.Nodes[node]; !ok {
			d.Problemf(key, "node %s is not in nodes: its pushes would never ping", node)
		}
		checkURL(d, key, n.Healthchecks[k])
	}
	if n.Timeout > 5*time.Minute {
		d.Problemf("notifications.timeout", "%s is above the most allowed, 5m", n.Timeout)
	}
	duration(d, "notifications.timeout", &n.Timeout, DefaultNotifyTimeout)
	count(d, "notifications.retries", &n.Retries, DefaultNotifyRetries, 10)
	count(d, "notifications.queue", &n.Queue, DefaultNotifyQueue, 10000)
	duration(d, "notifications.repeat", &n.Repeat, DefaultNotifyRepeat)
}

// loopback reports whether addr (HOST:PORT, checked) listens on this
// machine alone: localhost or a loopback address. An empty host is
// every address.
func loopback(addr string) bool {
	host, _, err := net.SplitHostPort(addr)
	if err != nil {
		return false
	}
	if host == "localhost" {
		return true
	}
	ip := net.ParseIP(host)
	return ip != nil && ip.IsLoopback()
}

// checkURL reports a URL a notification cannot be sent to. The URL is
// not repeated: it may hold a secret (a webhook's token, a ping UUID).
func checkURL(d *yamldoc.Doc, key, raw string) {
	u, err := url.Parse(raw)
	switch {
	case raw == "":
		d.Problemf(key, "missing: give an http:// or https:// URL")
	case err != nil:
		d.Problemf(key, "not a URL (give an http:// or https:// URL)")
	case u.Scheme != "http" && u.Scheme != "https":
		d.Problemf(key, "scheme %q: give an http:// or https:// URL", u.Scheme)
	case u.Host == "":
		d.Problemf(key, "no host: give an http:// or https:// URL")
	case u.Fragment != "":
		d.Problemf(key, "has a #fragment, which is never sent")
	}
}

// readSecret reads a secret file: an absolute path to a regular file of
// at most 4 KiB, not readable by group or others, holding one line.
// The secret is never repeated in a message.
func readSecret(d *yamldoc.Doc, key, path string) []byte {
	if !filepath.IsAbs(path) {
		d.Problemf(key, "%s: give an absolute path", path)
		return nil
	}
	// Only a regular file is opened (a device's open may act: a
	// watchdog, a tape): symbolic links are resolved first (secrets are
	// often linked into place), the file is opened without following a
	// link and without blocking (a FIFO put there since), and checked
	// again once open.
	real, err := filepath.EvalSymlinks(path)
	if err != nil {
		d.Problemf(key, "%v", err)
		return nil
	}
	lst, err := os.Lstat(real)
	switch {
	case err != nil:
		d.Problemf(key, "%v", err)
		return nil
	case !lst.Mode().IsRegular():
		d.Problemf(key, "%s is not a regular file", path)
		return nil
	}
	f, err := os.OpenFile(real, os.O_RDONLY|syscall.O_NONBLOCK|syscall.O_NOFOLLOW, 0)
	if err != nil {
		d.Problemf(key, "%v", err)
		return nil
	}
	defer f.Close()
	st, err := f.Stat()
	switch {
	case err != nil:
		d.Problemf(key, "%v", err)
		return nil
	case !st.Mode().IsRegular() || !os.SameFile(st, lst):
		d.Problemf(key, "%s is not a regular file", path)
		return nil
	case st.Mode().Perm()&0o077 != 0:
		d.Problemf(key, "%s has mode %04o, open to group or others: make it 0600 (chmod 600 %s)", path, st.Mode().Perm(), path)
		return nil
	}
	b, err := io.ReadAll(io.LimitReader(f, maxSecretFile+1))
	switch {
	case err != nil:
		d.Problemf(key, "%s: %v", path, err)
		return nil
	case len(b) > maxSecretFile:
		d.Problemf(key, "%s is larger than %d bytes", path, maxSecretFile)
		return nil
	}
	b = bytes.TrimRight(b, "\r\n")
	switch {
	case len(b) == 0:
		d.Problemf(key, "%s is empty", path)
		return nil
	case bytes.ContainsAny(b, "\r\n\x00"):
		d.Problemf(key, "%s holds more than one line", path)
		return nil
	}
	return b
}
