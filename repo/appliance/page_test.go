package appliance

import (
	"bytes"
	"io"
	"net"
	"net/http"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/cairnbackup/cairn/repo"
	"github.com/cairnbackup/cairn/repo/backup"
	"github.com/cairnbackup/cairn/repo/blob"
	"github.com/cairnbackup/cairn/repo/drill"
	"github.com/cairnbackup/cairn/repo/output"
	"github.com/cairnbackup/cairn/repo/repotest"
	"github.com/cairnbackup/cairn/repo/snapshot"
	"github.com/cairnbackup/cairn/repo/status"
)

const hostilePath = `/srv/<script>alert("pwned")</script>`

// pageAppliance is an appliance (not serving) on a fresh repository with
// configuration text cfg, and its metrics listener on 127.0.0.1.
func pageAppliance(t *testing.T, cfg string) (*Appliance, *repo.Repository, string) {
	t.Helper()
	r := repotest.New(t)
	dir := t.TempDir()
	path := filepath.Join(dir, "a.yaml")
	if err := os.WriteFile(path, []byte(cfg), 0o600); err != nil {
		t.Fatal(err)
	}
	a, err := New(Options{Repo: r, ConfigPath: path})
	if err != nil {
		t.Fatal(err)
	}
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	srv := &http.Server{Handler: a.metricsHandler(ln, http.NotFoundHandler()), ReadHeaderTimeout: 10 * time.Second}
	go srv.Serve(ln)
	t.Cleanup(func() { srv.Close() })
	return a, r, "http://" + ln.Addr().String()
}

// commitHostile stores a snapshot of lyra/git whose path is hostile
// HTML, and a failed drill report of it whose failure and probe output
// are too.
func commitHostile(t *testing.T, r *repo.Repository) (blob.ID, blob.ID) {
	t.Helper()
	src := filepath.Join(t.TempDir(), "src")
	repotest.WriteTree(t, src, map[string]string{"a.txt": "alpha"})
	s := r.NewSession()
	res, err := backup.Run(t.Context(), s, []string{src}, backup.Options{Params: r.ChunkerParams(), Table: r.ChunkerTable()})
	if err != nil {
		t.Fatal(err)
	}
	id, err := s.Commit(t.Context(), &snapshot.Snapshot{Version: 1, Time: time.Now().Add(-time.Hour), Node: "lyra", Plan: "git", Paths: []string{hostilePath}, Tree: res.Tree,
		Summary: snapshot.Summary{Bytes: 12345, Files: 1, Duration: 3 * time.Second}})
	if err != nil {
		t.Fatal(err)
	}
	code := 1
	rid, err := drill.Save(t.Context(), r, &drill.Report{Version: drill.Version, Snapshot: id, Node: "lyra", Plan: "git", Started: time.Now(), Finished: time.Now(),
		Result: drill.ResultFailed, RestoreSeconds: 1.5, Failures: []drill.Failure{{Path: hostilePath + "/x", Reason: "<b>hash</b> mismatch"}},
		Probes: []drill.Probe{{Name: "custom", Target: hostilePath, Command: "check <img src=x>", Exit: &code, Error: "exit status 1", Output: output.Excerpt("error: <script>alert(2)</script>")[0]}}})
	if err != nil {
		t.Fatal(err)
	}
	return id, rid
}

func get(t *testing.T, method, url string, hdr map[string]string) (int, http.Header, string) {
	t.Helper()
	req, err := http.NewRequestWithContext(t.Context(), method, url, nil)
	if err != nil {
		t.Fatal(err)
	}
	for k, v := range hdr {
		req.Header.Set(k, v)
	}
	resp, err := http.DefaultClient.Do(req)
	if err != nil {
		t.Fatal(err)
	}
	defer resp.Body.Close()
	b, _ := io.ReadAll(resp.Body)
	return resp.StatusCode, resp.Header, string(b)
}

// Names and paths a node chose, drill failures and probe output are
// hostile input: on the page they are text, never markup.
func TestPageEscapesHostileNames(t *testing.T) {
	a, r, base := pageAppliance(t, "")
	_, rid := commitHostile(t, r)
	code, hdr, body := get(t, "GET", base+"/", nil)
	if code != 200 || hdr.Get("Content-Type") != "text/html; charset=utf-8" {
		t.Fatalf("GET /: %d %v\n%s", code, hdr, body)
	}
	for _, bad := range []string{"<script", "<b>hash", "<img"} {
		if strings.Contains(body, bad) {
			t.Errorf("%q on the page", bad)
		}
	}
	if !strings.Contains(body, `/srv/&lt;script&gt;alert(&#34;pwned&#34;)&lt;/script&gt;`) {
		t.Errorf("the path is not shown as text:\n%s", body)
	}
	if !strings.Contains(body, `data-group="lyra/git [/srv/&lt;script&gt;alert(&#34;pwned&#34;)&lt;/script&gt;]"`) {
		t.Errorf("the group's attribute:\n%s", body)
	}

	code, _, body = get(t, "GET", base+"/drills/"+rid.String(), nil)
	if code != 200 {
		t.Fatalf("GET report: %d\n%s", code, body)
	}
	for _, bad := range []string{"<script", "<b>hash", "<img"} {
		if strings.Contains(body, bad) {
			t.Errorf("%q on the report page", bad)
		}
	}
	// The report page shows cairn drills ID's text, escaped.
	d, _, err := status.FindDrillReport(t.Context(), r, rid.String())
	if err != nil {
		t.Fatal(err)
	}
	var want bytes.Buffer
	loc, _ := a.Config().Retention.Location()
	status.WriteDrillReport(&want, d, func(t time.Time) string { return t.In(loc).Format("2006-01-02 15:04:05 MST") })
	esc := strings.NewReplacer("&", "&amp;", "<", "&lt;", ">", "&gt;", `"`, "&#34;", "'", "&#39;").Replace(want.String())
	if !strings.Contains(body, `<pre id="report">`+esc+`</pre>`) {
		t.Errorf("report page:\n%s\nwant the text:\n%s", body, esc)
	}
}

// The page changes nothing: methods other than GET and HEAD get 405 on
// every path; unknown paths and report IDs 404.
func TestPageReadOnly(t *testing.T) {
	_, _, base := pageAppliance(t, "")
	for _, m := range []string{"POST", "PUT", "DELETE", "PATCH", "OPTIONS"} {
		for _, p := range []string{"/", "/metrics", "/drills/latest", "/nothing"} {
			code, hdr, body := get(t, m, base+p, nil)
			if code != 405 || hdr.Get("Allow") != "GET, HEAD" || body != "method not allowed: the status page is read-only\n" {
				t.Errorf("%s %s: %d %q %q", m, p, code, hdr.Get("Allow"), body)
			}
		}
	}
	if code, _, _ := get(t, "HEAD", base+"/", nil); code != 200 {
		t.Errorf("HEAD /: %d", code)
	}
	for _, p := range []string{"/nothing", "/drills/zz", "/drills/%3Cscript%3E", "/drills/abcd"} {
		if code, _, body := get(t, "GET", base+p, nil); code != 404 {
			t.Errorf("GET %s: %d %q", p, code, body)
		}
	}
}

// With metrics_auth, every path wants the token or the user and
// password; anything else is 401.
func TestPageAuth(t *testing.T) {
	dir := t.TempDir()
	tok, pass := filepath.Join(dir, "tok"), filepath.Join(dir, "pass")
	os.WriteFile(tok, []byte("t0ken\n"), 0o600)
	os.WriteFile(pass, []byte("pa55\n"), 0o600)
	_, _, base := pageAppliance(t, "metrics: 127.0.0.1:0\nmetrics_auth: {token_file: "+tok+", user: ops, password_file: "+pass+"}\n")
	basic := func(u, p string) string {
		req, _ := http.NewRequest("GET", "/", nil)
		req.SetBasicAuth(u, p)
		return req.Header.Get("Authorization")
	}
	for _, c := range []struct {
		auth string
		want int
	}{
		{"", 401}, {"Bearer t0ke", 401}, {"Bearer t0ken2", 401}, {"bearer t0ken", 401}, {basic("ops", "pa5"), 401}, {basic("op", "pa55"), 401},
		{basic("ops", "t0ken"), 401}, {"Bearer pa55", 401},
		{"Bearer t0ken", 200}, {basic("ops", "pa55"), 200},
	} {
		for _, p := range []string{"/", "/metrics"} {
			want := c.want
			if p == "/metrics" && want == 200 {
				want = 404 // the test's metrics handler
			}
			code, hdr, body := get(t, "GET", base+p, map[string]string{"Authorization": c.auth})
			if code != want {
				t.Errorf("%s with %q: %d, want %d: %s", p, c.auth, code, want, body)
			}
			if code == 401 && hdr.Get("WWW-Authenticate") != `Basic realm="cairn", charset="UTF-8"` {
				t.Errorf("WWW-Authenticate %q", hdr.Get("WWW-Authenticate"))
			}
		}
	}
}

// A listener beyond loopback without credentials (a reload removed
// them, say) answers nobody.
func TestPageRefusesWithoutAuthBeyondLoopback(t *testing.T) {
	a, _, _ := pageAppliance(t, "")
	p := &pageServer{a: a, sem: make(chan struct{}, 1), loopback: false}
	h := p.guard(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) { t.Error("served") }))
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	srv := &http.Server{Handler: h, ReadHeaderTimeout: time.Second}
	go srv.Serve(ln)
	defer srv.Close()
	code, _, body := get(t, "GET", "http://"+ln.Addr().String()+"/", nil)
	if code != 403 || body != "forbidden: this address is not loopback and metrics_auth is not configured\n" {
		t.Errorf("%d %q", code, body)
	}
}
