package appliance

import (
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"maps"
	"net/http"
	"net/url"
	"os"
	"slices"
	"strings"
	"sync"
	"sync/atomic"
	"time"
	"unicode"

	"github.com/prometheus/client_golang/prometheus"
)

// Built-in notifications: webhooks, ntfy topics and healthchecks ping
// URLs (config: notifications), beside the notify command.
//
// Every HTTP call runs off the path of the push or job that caused it:
// the event is turned into requests and put on each target's queue
// (notifications.queue, default 100), and one goroutine per target
// sends them in order. A full queue drops its oldest request, counted
// (cairn_notifications_dropped_total), so nothing ever waits for a
// target. Each request has notifications.timeout and is sent again
// after 1 s, 2 s, 4 s… (at most 30 s) up to notifications.retries times
// when the answer may change (no answer, 429, 5xx); a target that keeps
// failing is logged, never fatal. Requests follow no redirects, and go
// through the proxy of the environment. Nothing a request carries is
// secret: the event's fields, and for ntfy the token of that topic
// alone. Logs name a target as "webhook[0]", "ntfy[0]" or
// "healthchecks NODE/PLAN" and its host, never the URL (webhook and
// ping URLs are capabilities).

// Event kinds.
const (
	EventPushFailed   = "push_failed"   // a push session failed: the node's or the appliance's error
	EventDrillFailed  = "drill_failed"  // a drill of a group failed, or the drill job did
	EventVerifyFailed = "verify_failed" // verification found damage, or the verify job failed
	EventBackupLate   = "backup_late"   // a node/plan's newest snapshot is older than expected
	EventNeverSeen    = "never_seen"    // a configured node or expected node/plan never backed up
	EventDiskLow      = "disk_low"      // the repository's file system is below the index's reserve
	EventJobFailed    = "job_failed"    // another job failed
	EventReplicaLag   = "replica_lag"   // a replica lags past its schedule: never replicated, or its newest replication that got through is older than two intervals
)

// Event is one notification: what a webhook receives as JSON, and what
// an ntfy topic gets as title and message.
type Event struct {
	Kind     string    `json:"event"`
	Time     time.Time `json:"time"`
	Host     string    `json:"host"` // the appliance's host name
	Node     string    `json:"node,omitempty"`
	Plan     string    `json:"plan,omitempty"`
	Paths    []string  `json:"paths,omitempty"`
	Snapshot string    `json:"snapshot,omitempty"`
	Report   string    `json:"report,omitempty"`
	Job      string    `json:"job,omitempty"`
	Replica  string    `json:"replica,omitempty"` // the replica a replica's job or lag concerns
	Reason   string    `json:"reason,omitempty"`  // why: the error, the drill's first failure, the findings
	Title    string    `json:"title"`
	Message  string    `json:"message"`
}

// maxReason bounds an event's reason and message.
const maxReason = 2000

// clean makes text from a node or a job fit an event: valid UTF-8,
// control characters (but newlines) replaced, at most n bytes.
func clean(s string, n int) string {
	s = strings.ToValidUTF8(s, "\uFFFD")
	s = strings.Map(func(r rune) rune {
		if r != '\n' && unicode.IsControl(r) {
			return '\uFFFD'
		}
		return r
	}, s)
	if len(s) > n {
		s = strings.ToValidUTF8(s[:n], "") + "…"
	}
	return s
}

// request is one HTTP call of a target.
type request struct {
	kind    string // the event kind, or "ping…" for healthchecks
	url     string
	header  http.Header
	body    []byte
	timeout time.Duration // of each attempt
	retries int
}

// target is one notification target with its queue and sender.
type target struct {
	name string // "webhook[0]", never the URL
	host string // the URL's host, for the log
	url  string // never logged

	mu      sync.Mutex
	queue   []request // oldest first, at most max
	max     int
	retired bool // the configuration no longer has it: send what is queued, then stop
	wake    chan struct{}

	sent, failed, dropped atomic.Uint64
}

func (t *target) push(r request) {
	t.mu.Lock()
	if len(t.queue) >= t.max {
		copy(t.queue, t.queue[1:])
		t.queue = t.queue[:len(t.queue)-1]
		t.dropped.Add(1)
	}
	t.queue = append(t.queue, r)
	t.mu.Unlock()
	select {
	case t.wake <- struct{}{}:
	default:
	}
}

func (t *target) pop() (request, bool, bool) {
	t.mu.Lock()
	defer t.mu.Unlock()
	if len(t.queue) == 0 {
		return request{}, false, t.retired
	}
	r := t.queue[0]
	t.queue = t.queue[1:]
	return r, true, false
}

// notifier owns the targets of the configuration in force.
type notifier struct {
	log     *slog.Logger
	host    string
	backoff time.Duration // first wait before a retry

	mu      sync.Mutex
	cfg     *Config
	targets map[string]*target // by kind and URL: kept across reloads
	order   []*target          // in the configuration's order, for metrics
	webhook []*target
	ntfy    []*target
	hc      map[string]*target // by node or node/plan
	tokens  map[*target][]byte // ntfy access tokens
	seen    map[string]time.Time
	closed  bool
	ctx     context.Context
	cancel  context.CancelFunc
	wg      sync.WaitGroup
}

func newNotifier(log *slog.Logger) *notifier {
	host, _ := os.Hostname()
	ctx, cancel := context.WithCancel(context.Background())
	return &notifier{log: log, host: host, backoff: time.Second, targets: map[string]*target{}, seen: map[string]time.Time{}, ctx: ctx, cancel: cancel}
}

// configure builds the targets of cfg, keeping those it had (and their
// queues); targets cfg lacks send what they hold and stop. Called with
// n.mu held.
func (n *notifier) configure(cfg *Config) {
	if n.cfg == cfg {
		return
	}
	n.cfg = cfg
	nc := cfg.Notifications
	keep := map[string]bool{}
	get := func(name, rawURL string) *target {
		key := name + " " + rawURL
		keep[key] = true
		if t := n.targets[key]; t != nil {
			t.mu.Lock()
			t.max = nc.Queue
			t.mu.Unlock()
			return t
		}
		host := ""
		if u, err := url.Parse(rawURL); err == nil {
			host = u.Host
		}
		t := &target{name: name, host: host, url: rawURL, max: nc.Queue, wake: make(chan struct{}, 1)}
		n.targets[key] = t
		n.wg.Add(1)
		go n.run(t)
		return t
	}
	n.webhook, n.ntfy, n.order = nil, nil, nil
	n.hc, n.tokens = map[string]*target{}, map[*target][]byte{}
	for i, w := range nc.Webhooks {
		t := get(fmt.Sprintf("webhook[%d]", i), w.URL)
		n.webhook = append(n.webhook, t)
		n.order = append(n.order, t)
	}
	for i, x := range nc.Ntfy {
		t := get(fmt.Sprintf("ntfy[%d]", i), x.URL)
		n.ntfy = append(n.ntfy, t)
		n.order = append(n.order, t)
		n.tokens[t] = x.token
	}
	for _, sel := range slices.Sorted(maps.Keys(nc.Healthchecks)) {
		t := get("healthchecks "+sel, nc.Healthchecks[sel])
		n.hc[sel] = t
		n.order = append(n.order, t)
	}
	for key, t := range n.targets {
		if !keep[key] {
			delete(n.targets, key)
			t.mu.Lock()
			t.retired = true
			t.mu.Unlock()
			select {
			case t.wake <- struct{}{}:
			default:
			}
		}
	}
}

// run sends t's requests until the notifier closes (or t is retired)
// and its queue is empty.
func (n *notifier) run(t *target) {
	defer n.wg.Done()
	client := &http.Client{
		CheckRedirect: func(*http.Request, []*http.Request) error { return http.ErrUseLastResponse },
		Transport:     http.DefaultTransport.(*http.Transport).Clone(),
	}
	defer client.CloseIdleConnections()
	for {
		r, ok, retired := t.pop()
		if !ok {
			n.mu.Lock()
			closed := n.closed
			n.mu.Unlock()
			if retired || closed {
				return
			}
			select {
			case <-t.wake:
			case <-n.ctx.Done():
				return
			}
			continue
		}
		n.send(client, t, r)
	}
}

// send makes one request, with retries, and logs a failure.
func (n *notifier) send(client *http.Client, t *target, r request) {
	retries := r.retries
	wait := n.backoff
	var err error
	attempts := 0
	for attempts <= retries {
		attempts++
		var again bool
		if again, err = n.do(client, r); err == nil {
			t.sent.Add(1)
			return
		}
		if !again || attempts > retries {
			break
		}
		select {
		case <-time.After(wait):
		case <-n.ctx.Done():
			t.failed.Add(1)
			n.log.Warn("notification dropped at shutdown", "target", t.name, "host", t.host, "event", r.kind, "err", err)
			return
		}
		wait = min(2*wait, 30*time.Second)
	}
	t.failed.Add(1)
	n.log.Error("notification failed", "target", t.name, "host", t.host, "event", r.kind, "attempts", attempts, "err", err)
}

// do makes the request once; again says whether a retry may succeed.
func (n *notifier) do(client *http.Client, r request) (again bool, err error) {
	ctx, cancel := context.WithTimeout(n.ctx, r.timeout)
	defer cancel()
	req, err := http.NewRequestWithContext(ctx, http.MethodPost, r.url, bytes.NewReader(r.body))
	if err != nil {
		return false, errors.New("the URL does not make a request")
	}
	for k, v := range r.header {
		req.Header[k] = v
	}
	req.Header.Set("User-Agent", "cairn")
	resp, err := client.Do(req)
	if err != nil {
		var ue *url.Error
		if errors.As(err, &ue) {
			err = ue.Err // without the URL
		}
		return true, err
	}
	io.Copy(io.Discard, io.LimitReader(resp.Body, 4096))
	resp.Body.Close()
	switch c := resp.StatusCode; {
	case c >= 200 && c < 300:
		return false, nil
	case c == http.StatusTooManyRequests || c == http.StatusRequestTimeout || c >= 500:
		return true, fmt.Errorf("answered %s", resp.Status)
	default:
		return false, fmt.Errorf("answered %s", resp.Status)
	}
}

// close stops taking events, gives the queues grace to be sent, then
// cancels what is still being sent and waits for the senders.
func (n *notifier) close(grace time.Duration) {
	n.mu.Lock()
	n.closed = true
	for _, t := range n.targets {
		select {
		case t.wake <- struct{}{}:
		default:
		}
	}
	n.mu.Unlock()
	done := make(chan struct{})
	go func() { n.wg.Wait(); close(done) }()
	select {
	case <-done:
	case <-time.After(grace):
		n.cancel()
		<-done
	}
	n.cancel()
}

// alert sends ev to every webhook and ntfy topic of cfg.
func (n *notifier) alert(cfg *Config, ev Event) {
	n.mu.Lock()
	defer n.mu.Unlock()
	if n.closed {
		return
	}
	n.configure(cfg)
	ev.Host, ev.Reason, ev.Message = n.host, clean(ev.Reason, maxReason), clean(ev.Message, maxReason)
	if ev.Time.IsZero() {
		ev.Time = time.Now()
	}
	if len(n.webhook) > 0 {
		b, _ := json.Marshal(ev)
		for _, t := range n.webhook {
			t.push(request{kind: ev.Kind, url: t.url, header: http.Header{"Content-Type": {"application/json"}}, body: b,
				timeout: cfg.Notifications.Timeout, retries: cfg.Notifications.Retries})
		}
	}
	for _, t := range n.ntfy {
		h := http.Header{
			"Content-Type": {"text/plain; charset=utf-8"},
			"Title":        {headerText(ev.Title)},
			"Priority":     {priority(ev.Kind)},
			"Tags":         {"cairn," + ev.Kind},
		}
		if tok := n.tokens[t]; tok != nil {
			h.Set("Authorization", "Bearer "+string(tok))
		}
		t.push(request{kind: ev.Kind, url: t.url, header: h, body: []byte(ev.Message), timeout: cfg.Notifications.Timeout, retries: cfg.Notifications.Retries})
	}
}

// headerText makes s fit an HTTP header: one line of printable ASCII
// (ntfy decodes RFC 2047 for more; a title needs no more).
func headerText(s string) string {
	s = strings.Map(func(r rune) rune {
		if r < 0x20 || r > 0x7e {
			return '?'
		}
		return r
	}, s)
	if len(s) > 200 {
		s = s[:200]
	}
	return s
}

// priority is the ntfy priority of an event kind.
func priority(kind string) string {
	switch kind {
	case EventBackupLate, EventNeverSeen, EventReplicaLag:
		return "default"
	}
	return "high"
}

// condition sends ev unless the same condition (kind, node, plan,
// replica) was sent within notifications.repeat: a missed backup or a
// full disk is told once a day while it lasts, not at every check.
func (n *notifier) condition(cfg *Config, ev Event) {
	key := conditionKey(ev.Kind, ev.Node, ev.Plan, ev.Replica)
	n.mu.Lock()
	last, ok := n.seen[key]
	now := time.Now()
	if ok && now.Sub(last) < cfg.Notifications.Repeat {
		n.mu.Unlock()
		return
	}
	n.seen[key] = now
	n.mu.Unlock()
	n.alert(cfg, ev)
}

// over forgets a condition, so that it is told again when it returns.
func (n *notifier) over(kind, node, plan string) { n.forget(conditionKey(kind, node, plan, "")) }

// overReplica forgets a condition of replica name.
func (n *notifier) overReplica(kind, name string) { n.forget(conditionKey(kind, "", "", name)) }

func (n *notifier) forget(key string) {
	n.mu.Lock()
	delete(n.seen, key)
	n.mu.Unlock()
}

func conditionKey(kind, node, plan, replica string) string {
	return kind + "\x00" + node + "\x00" + plan + "\x00" + replica
}

// Healthchecks pings.
const (
	pingStart   = "/start"
	pingSuccess = ""
	pingFail    = "/fail"
)

// ping pings the healthchecks URL of sel ("node" or "node/plan"), if
// configured, with which (pingStart, pingSuccess, pingFail) appended
// and body as the diagnostic text healthchecks keeps with the ping.
func (n *notifier) ping(cfg *Config, sel, which, body string) {
	n.mu.Lock()
	defer n.mu.Unlock()
	if n.closed || len(cfg.Notifications.Healthchecks) == 0 {
		return
	}
	n.configure(cfg)
	t := n.hc[sel]
	if t == nil {
		return
	}
	u := strings.TrimSuffix(t.url, "/") + which
	t.push(request{kind: "ping" + which, url: u, header: http.Header{"Content-Type": {"text/plain; charset=utf-8"}}, body: []byte(clean(body, maxReason)),
		timeout: cfg.Notifications.Timeout, retries: cfg.Notifications.Retries})
}

// targetCounts are a target's counters, for the metrics.
type targetCounts struct {
	name                  string
	sent, failed, dropped uint64
}

func (n *notifier) counts(cfg *Config) []targetCounts {
	n.mu.Lock()
	defer n.mu.Unlock()
	if !n.closed {
		n.configure(cfg) // every configured target is listed, at zero until it sends
	}
	var out []targetCounts
	for _, t := range n.order {
		out = append(out, targetCounts{t.name, t.sent.Load(), t.failed.Load(), t.dropped.Load()})
	}
	return out
}

// notifyCollector exports the targets' counters: requests sent, failed
// (after their retries) and dropped from a full queue, by target.
type notifyCollector struct{ a *Appliance }

var notifyDescs = [3]*prometheus.Desc{
	prometheus.NewDesc("cairn_notifications_sent_total", "Notification requests a target accepted.", []string{"target"}, nil),
	prometheus.NewDesc("cairn_notifications_failed_total", "Notification requests that failed after their retries.", []string{"target"}, nil),
	prometheus.NewDesc("cairn_notifications_dropped_total", "Notification requests dropped because the target's queue was full.", []string{"target"}, nil),
}

func (c notifyCollector) Describe(ch chan<- *prometheus.Desc) {
	for _, d := range notifyDescs {
		ch <- d
	}
}

func (c notifyCollector) Collect(ch chan<- prometheus.Metric) {
	for _, t := range c.a.notes.counts(c.a.Config()) {
		for i, v := range []uint64{t.sent, t.failed, t.dropped} {
			ch <- prometheus.MustNewConstMetric(notifyDescs[i], prometheus.CounterValue, float64(v), t.name)
		}
	}
}
