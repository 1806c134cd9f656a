package appliance

import (
	"bytes"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"net/http"
	"net/http/httptest"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/cairnbackup/cairn/repo/blob"
	"github.com/cairnbackup/cairn/repo/repotest"
)

// hit is one request a test server received.
type hit struct {
	Method, Path string
	Header       http.Header
	Body         string
}

// receiver is a real HTTP server on 127.0.0.1 that hands every request
// to the test; answer decides the status of each.
type receiver struct {
	*httptest.Server
	hits chan hit
}

func newReceiver(t *testing.T, answer func(h hit) int) *receiver {
	t.Helper()
	r := &receiver{hits: make(chan hit, 100)}
	r.Server = httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, req *http.Request) {
		b, _ := io.ReadAll(req.Body)
		h := hit{req.Method, req.URL.Path, req.Header.Clone(), string(b)}
		code := 200
		if answer != nil {
			code = answer(h)
		}
		r.hits <- h
		w.WriteHeader(code)
	}))
	t.Cleanup(r.Close)
	return r
}

// next waits for the next request (the test's timeout bounds it).
func (r *receiver) next(t *testing.T) hit {
	t.Helper()
	select {
	case h := <-r.hits:
		return h
	case <-t.Context().Done():
		t.Fatal("no request came")
		return hit{}
	}
}

// notifyAppliance is an appliance (not serving) whose configuration is
// cfg, logging to log.
func notifyAppliance(t *testing.T, cfg string, log io.Writer) *Appliance {
	t.Helper()
	r := repotest.New(t)
	path := filepath.Join(t.TempDir(), "a.yaml")
	if err := os.WriteFile(path, []byte(cfg), 0o600); err != nil {
		t.Fatal(err)
	}
	a, err := New(Options{Repo: r, ConfigPath: path, Logger: slog.New(slog.NewTextHandler(log, nil))})
	if err != nil {
		t.Fatal(err)
	}
	a.notes.backoff = time.Millisecond
	t.Cleanup(func() { a.notes.close(time.Second) })
	return a
}

const lyraNode = "nodes:\n  lyra:\n    keys: [\"" + keyA + "\"]\n    permissions: [push]\n"

// Each kind of target gets exactly its request: the webhook the event
// as JSON, ntfy the message with its headers and token, healthchecks a
// ping per node and node/plan with the start, success and fail suffixes.
func TestNotifyRequests(t *testing.T) {
	hook, ntfy, hc := newReceiver(t, nil), newReceiver(t, nil), newReceiver(t, nil)
	tok := filepath.Join(t.TempDir(), "tok")
	os.WriteFile(tok, []byte("tk_secret\n"), 0o600)
	a := notifyAppliance(t, lyraNode+"notifications:\n  webhooks: [{url: \""+hook.URL+"/hook\"}]\n  ntfy: [{url: \""+ntfy.URL+"/alerts\", token_file: "+tok+"}]\n"+
		"  healthchecks:\n    lyra: \""+hc.URL+"/ping/n1\"\n    lyra/git: \""+hc.URL+"/ping/p1/\"\n", io.Discard)

	// Each check has a queue of its own: the two pings of a step come
	// in either order.
	pair := func() string {
		a, b := hc.next(t), hc.next(t)
		if a.Path > b.Path {
			a, b = b, a
		}
		for _, h := range []hit{a, b} {
			if h.Method != "POST" || h.Header.Get("Content-Type") != "text/plain; charset=utf-8" {
				t.Errorf("ping %+v", h)
			}
		}
		return fmt.Sprintf("%s %q, %s %q", a.Path, a.Body, b.Path, b.Body)
	}
	a.pushStarted("lyra", "git")
	if got := pair(); got != `/ping/n1/start "", /ping/p1/start ""` {
		t.Errorf("start pings %s", got)
	}
	id := blob.Hash([]byte("x"))
	a.pushEnded("lyra", []blob.ID{id}, []string{"git"}, nil)
	if got, want := pair(), `/ping/n1 "1 snapshots saved", /ping/p1 "snapshot `+id.String()+` saved"`; got != want {
		t.Errorf("success pings %s\nwant %s", got, want)
	}
	a.pushEnded("lyra", nil, []string{"git"}, errors.New("wire: no frame for 10m0s: idle timeout\x1b[31m"))
	if got, want := pair(), "/ping/n1/fail \"wire: no frame for 10m0s: idle timeout\ufffd[31m\", /ping/p1/fail \"wire: no frame for 10m0s: idle timeout\ufffd[31m\""; got != want {
		t.Errorf("fail pings %s\nwant %s", got, want)
	}
	h := hook.next(t)
	var ev map[string]any
	if err := json.Unmarshal([]byte(h.Body), &ev); err != nil {
		t.Fatal(err)
	}
	host, _ := os.Hostname()
	delete(ev, "time")
	want := map[string]any{"event": "push_failed", "host": host, "node": "lyra", "plan": "git", "reason": "wire: no frame for 10m0s: idle timeout\uFFFD[31m",
		"title": "cairn: push from lyra/git failed", "message": "A push from node lyra, plan git, failed: wire: no frame for 10m0s: idle timeout\uFFFD[31m"}
	if fmt.Sprint(ev) != fmt.Sprint(want) || h.Path != "/hook" || h.Header.Get("Content-Type") != "application/json" || h.Header.Get("Authorization") != "" {
		t.Errorf("webhook %s %v\n%s\nwant %v", h.Path, h.Header, h.Body, want)
	}
	h = ntfy.next(t)
	if h.Path != "/alerts" || h.Header.Get("Title") != "cairn: push from lyra/git failed" || h.Header.Get("Priority") != "high" || h.Header.Get("Tags") != "cairn,push_failed" ||
		h.Header.Get("Authorization") != "Bearer tk_secret" || h.Body != want["message"] {
		t.Errorf("ntfy %s %v %q", h.Path, h.Header, h.Body)
	}
	// The webhook and the pings never carry the ntfy token.
	for _, r := range []*receiver{hook, hc} {
		select {
		case h := <-r.hits:
			t.Errorf("an extra request %+v", h)
		default:
		}
	}
}

// A target that does not answer never holds up the appliance: its
// queue keeps the newest requests and drops the oldest, counted.
func TestNotifyQueueDropsOldest(t *testing.T) {
	release, taken := make(chan struct{}), make(chan struct{})
	first := true
	hook := newReceiver(t, func(h hit) int {
		if first {
			first = false
			close(taken)
			<-release
		}
		return 200
	})
	defer close(release)
	a := notifyAppliance(t, "notifications:\n  webhooks: [{url: \""+hook.URL+"\"}]\n  queue: 3\n", io.Discard)
	cfg := a.Config()
	send := func(i int) {
		a.notes.alert(cfg, Event{Kind: EventJobFailed, Job: fmt.Sprint(i), Title: "t", Message: "m"})
	}
	send(0)
	// The first request is in flight (the server holds it); each
	// further alert returns at once.
	<-taken
	for i := 1; i <= 5; i++ {
		send(i)
	}
	c := a.notes.counts(cfg)[0]
	if c.dropped != 2 {
		t.Errorf("dropped %d, want 2", c.dropped)
	}
	release <- struct{}{}
	var jobs []string
	for range 4 {
		var ev Event
		json.Unmarshal([]byte(hook.next(t).Body), &ev)
		jobs = append(jobs, ev.Job)
	}
	if strings.Join(jobs, " ") != "0 3 4 5" {
		t.Errorf("delivered %v, want 0 3 4 5", jobs)
	}
}

// A request that fails in a way that may pass is sent again, a bounded
// number of times; one that cannot pass is not; a failing target is
// logged (by name and host, never its URL) and counted, never fatal.
func TestNotifyRetries(t *testing.T) {
	n := 0
	flaky := newReceiver(t, func(hit) int {
		n++
		if n <= 2 {
			return 503
		}
		return 200
	})
	gone := newReceiver(t, func(hit) int { return 404 })
	down := newReceiver(t, func(hit) int { return 500 })
	var log bytes.Buffer
	a := notifyAppliance(t, "notifications:\n  webhooks: [{url: \""+flaky.URL+"/a\"}, {url: \""+gone.URL+"/b/secret-token\"}, {url: \""+down.URL+"/c\"}]\n  retries: 2\n", &log)
	cfg := a.Config()
	a.notes.alert(cfg, Event{Kind: EventJobFailed, Title: "t", Message: "m"})
	for range 3 {
		flaky.next(t)
		down.next(t)
	}
	gone.next(t)
	a.notes.close(10 * time.Second)
	c := a.notes.counts(cfg)
	if c[0].sent != 1 || c[0].failed != 0 || c[1].sent != 0 || c[1].failed != 1 || c[2].failed != 1 {
		t.Errorf("counts %+v", c)
	}
	select {
	case h := <-gone.hits:
		t.Errorf("404 sent again: %+v", h)
	case h := <-down.hits:
		t.Errorf("500 sent more than 1+retries times: %+v", h)
	default:
	}
	l := log.String()
	if strings.Contains(l, "secret-token") || strings.Count(l, "notification failed") != 2 ||
		!strings.Contains(l, `target=webhook[1] host=`+strings.TrimPrefix(gone.URL, "http://")+` event=job_failed attempts=1 err="answered 404 Not Found"`) ||
		!strings.Contains(l, `target=webhook[2] host=`+strings.TrimPrefix(down.URL, "http://")+` event=job_failed attempts=3 err="answered 500 Internal Server Error"`) {
		t.Errorf("log:\n%s", l)
	}
}

// Conditions that last are told once per repeat, and again once they
// ended and came back.
func TestNotifyConditionRepeat(t *testing.T) {
	hook := newReceiver(t, nil)
	a := notifyAppliance(t, lyraNode+"notifications:\n  webhooks: [{url: \""+hook.URL+"\"}]\n", io.Discard)
	a.space = func() (int64, int64, error) { return 10 << 20, 40 << 20, nil }
	a.checkDisk()
	a.checkDisk()
	var ev Event
	json.Unmarshal([]byte(hook.next(t).Body), &ev)
	wantWhy := a.r.Dir() + ": 10 MiB free, below the 40 MiB kept for the index: pushes are refused until space is freed (cairn forget --prune)"
	if ev.Kind != EventDiskLow || ev.Reason != wantWhy || ev.Title != "cairn: repository disk space below the reserve" {
		t.Errorf("event %+v", ev)
	}
	a.space = func() (int64, int64, error) { return 50 << 20, 40 << 20, nil }
	a.checkDisk()
	a.space = func() (int64, int64, error) { return 10 << 20, 40 << 20, nil }
	a.checkDisk()
	json.Unmarshal([]byte(hook.next(t).Body), &ev)
	if ev.Kind != EventDiskLow {
		t.Errorf("event %+v", ev)
	}
	select {
	case h := <-hook.hits:
		t.Errorf("told twice: %+v", h)
	default:
	}
	st, err := a.Status(t.Context(), a.Config())
	if err != nil {
		t.Fatal(err)
	}
	if want := "repository disk: 10 MiB free, below the 40 MiB kept for the index: pushes are refused until space is freed (cairn forget --prune)"; !strings.Contains(strings.Join(st.Attention, "\n"), want) {
		t.Errorf("attention %q", st.Attention)
	}
}
