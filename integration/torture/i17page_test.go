package torture

import (
	"fmt"
	"io"
	"net"
	"net/http"
	"os"
	"path/filepath"
	"regexp"
	"strconv"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/cairnbackup/cairn/integration/apptest"
	"golang.org/x/net/html"
)

// silentServer accepts TCP connections on 127.0.0.1 and never answers;
// it holds them until the test ends.
func silentServer(t *testing.T) string {
	t.Helper()
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	var mu sync.Mutex
	var conns []net.Conn
	go func() {
		for {
			c, err := ln.Accept()
			if err != nil {
				return
			}
			mu.Lock()
			conns = append(conns, c)
			mu.Unlock()
		}
	}()
	t.Cleanup(func() {
		ln.Close()
		mu.Lock()
		for _, c := range conns {
			c.Close()
		}
		mu.Unlock()
	})
	return "http://" + ln.Addr().String()
}

// get fetches a page of the metrics listener with the bearer token.
func getPage(t *testing.T, url, token string) (int, string) {
	t.Helper()
	req, _ := http.NewRequest("GET", url, nil)
	req.Header.Set("Authorization", "Bearer "+token)
	c := &http.Client{Timeout: time.Minute}
	resp, err := c.Do(req)
	if err != nil {
		t.Fatalf("GET %s: %v", url, err)
	}
	defer resp.Body.Close()
	b, _ := io.ReadAll(resp.Body)
	return resp.StatusCode, string(b)
}

// Notification targets that accept a connection and never answer (with
// the longest timeout, 5 minutes) must not hold up a single push: each
// target's queue keeps its newest requests and counts what it drops,
// and the appliance still stops on SIGTERM. Every acknowledged snapshot
// restores.
func TestSilentNotificationTargets(t *testing.T) {
	e := newEnv(t)
	e.initRepo()
	silent := silentServer(t)
	metrics := apptest.FreePort(t)
	l := &lifecycle{t: t, e: e, lyra: newNode(t, "lyra", "push, read"), acked: map[string]string{}}
	l.src = filepath.Join(e.dir, "lyra-src")
	newSource(t, l.src, seed^0x17a, smallSpec, 0)
	l.a = e.serve(nil, fmt.Sprintf("metrics: 127.0.0.1:%d\nnotifications:\n  webhooks: [{url: %q}]\n  ntfy: [{url: %q}]\n"+
		"  healthchecks: {lyra: %q, lyra/files: %q}\n  timeout: 5m\n  retries: 10\n  queue: 2\n",
		metrics, silent+"/hook", silent+"/topic", silent+"/hc/1", silent+"/hc/2"), l.lyra)
	pushes := 4
	if *fullRun {
		pushes = 12
	}
	done := 0
	for range pushes {
		if err := l.pushLyra(); err != nil {
			t.Error(err)
			continue
		}
		done++
	}
	// A failed push (a tar stream that is not one): an alert for the
	// webhook and ntfy too, and /fail pings.
	r, err := l.a.open(l.lyra, "push --tar --plan files")
	if err != nil {
		t.Fatal(err)
	}
	r.in.Write([]byte(strings.Repeat("not a tar stream\n", 64)))
	r.in.Close()
	if err := <-r.done; err == nil {
		t.Errorf("a broken tar stream was saved")
	}
	r.client.Close()
	code, body := getPage(t, fmt.Sprintf("http://127.0.0.1:%d/metrics", metrics), "")
	dropped := regexp.MustCompile(`(?m)^cairn_notifications_dropped_total\{target="healthchecks lyra"\} (\d+)$`).FindStringSubmatch(body)
	n := 0
	if dropped != nil {
		n, _ = strconv.Atoi(dropped[1])
	}
	// The node's check got start and success per push: all but the
	// one in flight and the two queued were dropped.
	if code != 200 || n != 2*pushes+2-3 {
		t.Errorf("metrics: %d, dropped %v, want %d\n%s", code, dropped, 2*pushes+2-3, body)
	}
	l.a.Stop()
	lost := l.lost()
	record("silent notification targets (every push acknowledged, drops counted)", pushes, done, lost, "")
}

// A node's names (a path that is HTML, a probe whose output is) are
// text on the status page and on a drill report's page: no element or
// attribute of theirs reaches the HTML.
func TestHostileNamesOnStatusPage(t *testing.T) {
	e := newEnv(t)
	e.initRepo()
	tok := filepath.Join(e.dir, "token")
	os.WriteFile(tok, []byte("torture\n"), 0o600)
	metrics := apptest.FreePort(t)
	l := &lifecycle{t: t, e: e, lyra: newNode(t, "lyra", "push, read"), acked: map[string]string{}}
	names := []string{`<img src=x onerror=alert(1)>`, `"><svg onload=alert(2)>`, `</td></tr></table><script>`, `{{.Status}}`, `&lt;b&gt;`}
	l.src = filepath.Join(e.dir, strings.ReplaceAll(strings.Join(names[:3], ""), "/", "_"))
	newSource(t, l.src, seed^0x17b, smallSpec, 0)
	for _, n := range names {
		os.WriteFile(filepath.Join(l.src, strings.ReplaceAll(n, "/", "_")), []byte(n), 0o644)
	}
	l.a = e.serve(nil, fmt.Sprintf("metrics: 127.0.0.1:%d\nmetrics_auth: {token_file: %s}\njobs:\n  drill:\n    schedule: \"0 3 1 1 *\"\n    probes: {lyra/files: %q}\n",
		metrics, tok, `printf '%s\n' '<script>alert(3)</script>' '<img src=x onerror=alert(4)>' 'error: </pre><script>'; exit 1`), l.lyra)
	if err := l.pushLyra(); err != nil {
		t.Fatal(err)
	}
	if r := l.run("jobs", "run", "drill"); r.code != 5 {
		t.Fatalf("drill job: %s", r)
	}
	report := regexp.MustCompile(`/drills/([0-9a-f]{64})`)
	runs, detected := 0, 0
	check := func(url string) string {
		t.Helper()
		runs++
		code, body := getPage(t, url, "torture")
		if code != 200 {
			t.Errorf("GET %s: %d\n%s", url, code, body)
			return body
		}
		// Every element and attribute, as a browser's parser sees them.
		var bad []string
		z := html.NewTokenizer(strings.NewReader(body))
		for tt := z.Next(); tt != html.ErrorToken; tt = z.Next() {
			if tt != html.StartTagToken && tt != html.SelfClosingTagToken {
				continue
			}
			tok := z.Token()
			if tok.Data == "script" || tok.Data == "img" || tok.Data == "iframe" {
				bad = append(bad, tok.String())
			}
			for _, a := range tok.Attr {
				if strings.HasPrefix(a.Key, "on") || strings.Contains(a.Val, "javascript:") {
					bad = append(bad, tok.String())
				}
			}
		}
		if len(bad) > 0 || !strings.Contains(body, "&lt;img src=x onerror=alert(1)&gt;") {
			t.Errorf("GET %s: hostile markup %q", url, bad)
		} else {
			detected++
		}
		return body
	}
	page := check(fmt.Sprintf("http://127.0.0.1:%d/", metrics))
	m := report.FindStringSubmatch(page)
	if m == nil {
		t.Fatalf("no drill report linked:\n%s", page)
	}
	body := check(fmt.Sprintf("http://127.0.0.1:%d/drills/%s", metrics, m[1]))
	if !strings.Contains(body, "&lt;script&gt;alert(3)&lt;/script&gt;") {
		t.Errorf("the probe's output is not shown as text:\n%s", body)
	}
	record("hostile node: HTML in names and probe output on the status page", runs, detected, l.lost(), "")
}
