package integration

import (
	"context"
	"encoding/json"
	"flag"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"slices"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/cairnbackup/cairn/integration/apptest"
	"github.com/cairnbackup/cairn/integration/testenv"
	"github.com/chromedp/cdproto/emulation"
	"github.com/chromedp/cdproto/network"
	"github.com/chromedp/cdproto/page"
	"github.com/chromedp/chromedp"
)

var updateScreenshot = flag.Bool("update-screenshot", false, "write the status page's screenshots to docs/")

// chromium returns the Chromium binary, or skips (fails under CI=true)
// when there is none.
func chromium(t *testing.T) string {
	t.Helper()
	for _, name := range []string{"chromium", "chromium-browser"} {
		if p, err := exec.LookPath(name); err == nil {
			return p
		}
	}
	testenv.Missing(t, "chromium is not installed (Debian package chromium)")
	return ""
}

// browser starts a headless Chromium with its own profile and returns
// a chromedp context for one tab.
func browser(t *testing.T) context.Context {
	t.Helper()
	alloc, cancelAlloc := chromedp.NewExecAllocator(context.Background(),
		chromedp.ExecPath(chromium(t)),
		chromedp.Headless, chromedp.NoSandbox, chromedp.DisableGPU, chromedp.NoFirstRun,
		chromedp.Flag("disable-quic", true),
		chromedp.Flag("disable-background-networking", true),
		chromedp.Flag("disable-component-update", true),
		chromedp.Flag("disable-sync", true),
		chromedp.Flag("disable-dev-shm-usage", true),
		chromedp.UserDataDir(t.TempDir()),
		chromedp.WindowSize(1280, 900),
	)
	ctx, cancel := chromedp.NewContext(alloc)
	t.Cleanup(func() { cancel(); cancelAlloc() })
	return ctx
}

// pageRow is one row of the page's table of groups as the browser
// shows it.
type pageRow struct {
	Group, State, Bytes, Snapshots, Recovery, Drill, Report string
}

// shown is what the test reads off the rendered page.
type shown struct {
	Rows      []pageRow
	Attention []string
	Stored    string
	Fraction  string
	Charts    int
	Images    int
	Scripts   int
	Bg        string
	Hostile   bool // the hostile path is there, as text
}

const readPage = `(() => {
  const rows = [...document.querySelectorAll('#groups tbody tr')].map(r => ({
    Group: r.dataset.group || '', State: r.dataset.state || '', Bytes: r.dataset.bytes || '',
    Snapshots: r.dataset.snapshots || '', Recovery: r.dataset.recovery || '', Drill: r.dataset.drill || '',
    Report: (r.querySelector('a[href^="/drills/"]') || {}).textContent ? r.querySelector('a[href^="/drills/"]').getAttribute('href') : ''}));
  return {
    Rows: rows,
    Attention: [...document.querySelectorAll('#attention li')].map(l => l.textContent),
    Stored: document.querySelector('[data-stored]').dataset.stored,
    Fraction: document.querySelector('[data-fraction]').dataset.fraction,
    Charts: document.querySelectorAll('svg.chart').length,
    Images: document.querySelectorAll('img').length,
    Scripts: document.querySelectorAll('script').length,
    Bg: getComputedStyle(document.body).backgroundColor,
    Hostile: document.body.textContent.includes('<img src=x onerror=alert(1)>'),
  };
})()`

// The status page of a real appliance in a real browser: real pushes
// over SSH (and weeks of history committed over the wire with their own
// dates), a real drill job that passes for one plan and fails for
// another whose pack was damaged, a node that never pushed, and a path
// that is an HTML injection. The failing plan comes first, the numbers
// are those of cairn status --json, the drill report is cairn drills
// ID's text, nothing of the hostile path runs, and the page reads in
// the light and the dark theme. Screenshots: docs/status-page.png and
// docs/status-page-dark.png with -update-screenshot.
func TestStatusPageInBrowser(t *testing.T) {
	ctx := browser(t) // skips (or fails under CI) first, before any work
	e := newEnv(t)
	e.ok("init")
	tok := filepath.Join(e.dir, "page.token")
	os.WriteFile(tok, []byte("browser-token\n"), 0o600)
	lyra, vega, orion := newNode(t, "lyra", "push, read"), newNode(t, "vega", "push"), newNode(t, "orion", "push")
	metricsPort := apptest.FreePort(t)
	yearly := `{schedule: "0 3 1 1 *"}`
	a := e.serveWith(fmt.Sprintf("  clock_skew: 2000h\nexpect: {default: 26h}\nmetrics: 127.0.0.1:%d\nmetrics_auth: {token_file: %s}\n"+
		"jobs:\n  drill: {schedule: \"0 3 1 1 *\", scratch: %s}\n  verify: %s\n  staleness: %s\n  prune: %s\n",
		metricsPort, tok, t.TempDir(), yearly, yearly, yearly), lyra, vega, orion)

	// Weeks of history: lyra/git daily with two missed days, vega/db
	// every day but one; then today's real pushes.
	now := time.Now()
	var lyraAt, vegaAt []time.Time
	var lyraBytes, vegaBytes []uint64
	var lyraTook, vegaTook []time.Duration
	for d := 24; d >= 1; d-- {
		at := now.Add(-time.Duration(d)*24*time.Hour + 30*time.Minute)
		if d != 9 && d != 10 {
			lyraAt = append(lyraAt, at)
			lyraBytes = append(lyraBytes, uint64(120<<10-d*1<<10))
			lyraTook = append(lyraTook, time.Duration(40+d%5*9)*time.Millisecond)
		}
		if d != 4 {
			vegaAt = append(vegaAt, at.Add(2*time.Hour))
			vegaBytes = append(vegaBytes, uint64(100<<10+(24-d)*1<<10))
			vegaTook = append(vegaTook, time.Duration(50+(24-d)*2)*time.Millisecond)
		}
	}
	lyraSrc := filepath.Join(e.dir, "srv", "git")
	repotestWrite(t, lyraSrc, map[string]string{"app/main.go": strings.Repeat("package main // lyra\n", 2000), "app/data.bin": noise(96 << 10)})
	if r := a.push(lyra, nil, "--plan", "git", lyraSrc); r.code != 0 {
		t.Fatalf("push lyra: exit %d\n%s%s", r.code, r.stdout, r.stderr)
	}
	a.backdate(lyra, "git", "git", lyraAt, lyraBytes, lyraTook)
	if r := a.push(lyra, nil, "--plan", "git", lyraSrc); r.code != 0 { // today's, the newest
		t.Fatalf("push lyra: exit %d\n%s%s", r.code, r.stdout, r.stderr)
	}
	// vega's paths hold an HTML injection.
	vegaSrc := filepath.Join(e.dir, "var", "<img src=x onerror=alert(1)>")
	repotestWrite(t, vegaSrc, map[string]string{"db.dump": noise(128 << 10)})
	before := packFiles(t, e.repo)
	if r := a.push(vega, nil, "--plan", "db", vegaSrc); r.code != 0 {
		t.Fatalf("push vega: exit %d\n%s%s", r.code, r.stdout, r.stderr)
	}
	a.backdate(vega, "db", "db", vegaAt, vegaBytes, vegaTook)
	if r := a.push(vega, nil, "--plan", "db", vegaSrc); r.code != 0 {
		t.Fatalf("push vega: exit %d\n%s%s", r.code, r.stdout, r.stderr)
	}
	for _, job := range []string{"drill", "verify"} {
		if r := e.run(nil, "jobs", "run", job); r.code != 0 {
			t.Fatalf("%s job: exit %d\n%s%s", job, r.code, r.stdout, r.stderr)
		}
	}
	damageNewest(t, e.repo, before) // vega's data
	if r := e.run(nil, "jobs", "run", "drill"); r.code != 5 {
		t.Fatalf("drill job: exit %d\n%s%s", r.code, r.stdout, r.stderr)
	}

	r := e.run(nil, "status", "--json")
	var st statusJSON
	if err := json.Unmarshal([]byte(r.stdout), &st); err != nil || r.code != 5 {
		t.Fatalf("status: exit %d %v\n%s%s", r.code, err, r.stdout, r.stderr)
	}

	// The browser. Any JavaScript dialog is a failure (and closed).
	if _, err := chromedp.Run(ctx, chromedp.Title()); err != nil { // starts it
		t.Fatal(err)
	}
	var dialogs []string
	var dmu sync.Mutex
	go func() {
		for ev, err := range chromedp.Events(ctx, page.JavascriptDialogOpening) {
			if err != nil {
				return
			}
			dmu.Lock()
			dialogs = append(dialogs, ev.Message)
			dmu.Unlock()
			chromedp.Call(ctx, page.HandleJavaScriptDialog, page.HandleJavaScriptDialogParams{Accept: true})
		}
	}()
	base := fmt.Sprintf("http://127.0.0.1:%d", metricsPort)
	if _, err := chromedp.Call(ctx, network.Enable, network.EnableParams{}); err != nil {
		t.Fatal(err)
	}
	// Without the token: 401.
	resp, err := chromedp.Run(ctx, chromedp.NavigateResponse(base+"/"))
	if err != nil || resp.Status != 401 {
		t.Fatalf("without the token: %v %+v", err, resp)
	}
	if _, err := chromedp.Call(ctx, network.SetExtraHTTPHeaders, network.SetExtraHTTPHeadersParams{Headers: network.Headers{"Authorization": "Bearer browser-token"}}); err != nil {
		t.Fatal(err)
	}
	look := func(theme string) (shown, []byte) {
		t.Helper()
		if _, err := chromedp.Call(ctx, emulation.SetEmulatedMedia, emulation.SetEmulatedMediaParams{Features: []*emulation.MediaFeature{{Name: "prefers-color-scheme", Value: theme}}}); err != nil {
			t.Fatal(err)
		}
		resp, err := chromedp.Run(ctx, chromedp.NavigateResponse(base+"/"))
		if err != nil || resp.Status != 200 {
			t.Fatalf("GET /: %v %+v", err, resp)
		}
		if err := chromedp.Do(ctx, chromedp.WaitVisible(chromedp.CSS("#groups"))); err != nil {
			t.Fatal(err)
		}
		got, err := chromedp.Run(ctx, chromedp.Evaluate[shown](readPage))
		if err != nil {
			t.Fatal(err)
		}
		png, err := chromedp.Run(ctx, chromedp.FullScreenshot(100))
		if err != nil {
			t.Fatal(err)
		}
		return got, png
	}
	light, lightPNG := look("light")
	dark, darkPNG := look("dark")

	// The failing plan first, then what never backed up, then the rest.
	name := func(i int) string {
		g := st.Groups[i]
		return g.Node + "/" + g.Plan + " [" + strings.Join(g.Paths, " ") + "]"
	}
	var failing int = -1
	for i, g := range st.Groups {
		if g.Drill != nil && g.Drill.Result == "failed" {
			failing = i
		}
	}
	if failing < 0 || st.Groups[failing].Node != "vega" || len(light.Rows) != len(st.Groups)+len(st.Never) {
		t.Fatalf("status %+v\npage %+v", st, light.Rows)
	}
	if r := light.Rows[0]; r.Group != name(failing) || r.State != "drill failed" || r.Drill != "failed" {
		t.Errorf("first row %+v, want %s failing", r, name(failing))
	}
	if r := light.Rows[1]; r.Group != "orion" || r.State != "never backed up" {
		t.Errorf("second row %+v, want orion never backed up", r)
	}
	// Every number as status --json has it.
	for i, g := range st.Groups {
		j := slices.IndexFunc(light.Rows, func(r pageRow) bool { return r.Group == name(i) })
		if j < 0 {
			t.Errorf("no row %s", name(i))
			continue
		}
		r := light.Rows[j]
		want := pageRow{Group: name(i), State: r.State, Bytes: fmt.Sprint(g.Last.Bytes), Snapshots: fmt.Sprint(g.Snapshots),
			Recovery: fmt.Sprint(g.Drill.RestoreSeconds), Drill: g.Drill.Result, Report: "/drills/" + g.Drill.Report}
		if r != want {
			t.Errorf("row %+v\nwant %+v", r, want)
		}
	}
	if !slices.Equal(light.Attention, st.Attention) {
		t.Errorf("attention %q\nwant %q", light.Attention, st.Attention)
	}
	if light.Stored != fmt.Sprint(st.StoredBytes) || light.Fraction != fmt.Sprint(st.VerifiedFraction) {
		t.Errorf("stored %s, verified %s; want %d, %v", light.Stored, light.Fraction, st.StoredBytes, st.VerifiedFraction)
	}
	// Charts: size, coverage, the timeline, three per plan.
	if want := 3 + 3*2; light.Charts != want {
		t.Errorf("%d charts, want %d", light.Charts, want)
	}
	if light.Images != 0 || light.Scripts != 0 || !light.Hostile || len(dialogs) != 0 {
		t.Errorf("the hostile path: %d images, %d scripts, shown as text %v, dialogs %q", light.Images, light.Scripts, light.Hostile, dialogs)
	}
	// Both themes read: the background follows prefers-color-scheme.
	if light.Bg != "rgb(255, 255, 255)" || dark.Bg != "rgb(13, 17, 23)" {
		t.Errorf("backgrounds: light %s, dark %s", light.Bg, dark.Bg)
	}

	// The failing drill's report, as cairn drills ID prints it.
	if _, err := chromedp.Call(ctx, emulation.SetEmulatedMedia, emulation.SetEmulatedMediaParams{Features: []*emulation.MediaFeature{{Name: "prefers-color-scheme", Value: "light"}}}); err != nil {
		t.Fatal(err)
	}
	report := light.Rows[0].Report
	if err := chromedp.Do(ctx, chromedp.Navigate(base+report), chromedp.WaitVisible(chromedp.CSS("#report"))); err != nil {
		t.Fatal(err)
	}
	text, err := chromedp.Run(ctx, chromedp.TextContent(chromedp.CSS("#report")))
	if err != nil {
		t.Fatal(err)
	}
	if want := e.ok("drills", strings.TrimPrefix(report, "/drills/")); text != want || !strings.Contains(text, "verdict:   failed") {
		t.Errorf("report page:\n%s\nwant:\n%s", text, want)
	}
	reportPNG, err := chromedp.Run(ctx, chromedp.FullScreenshot(100))
	if err != nil {
		t.Fatal(err)
	}

	out := t.TempDir()
	if *updateScreenshot {
		out = "../docs"
	}
	for file, png := range map[string][]byte{"status-page.png": lightPNG, "status-page-dark.png": darkPNG, "status-page-drill.png": reportPNG} {
		if err := os.WriteFile(filepath.Join(out, file), png, 0o644); err != nil {
			t.Fatal(err)
		}
	}
	t.Logf("screenshots in %s", out)
}
