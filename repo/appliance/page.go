package appliance

import (
	"bytes"
	"context"
	"crypto/subtle"
	_ "embed"
	"errors"
	"fmt"
	"html/template"
	"math"
	"net"
	"net/http"
	"regexp"
	"slices"
	"strings"
	"time"

	"github.com/cairnbackup/cairn/repo/blob"
	"github.com/cairnbackup/cairn/repo/chart"
	"github.com/cairnbackup/cairn/repo/drill"
	"github.com/cairnbackup/cairn/repo/status"
	"github.com/minio/sha256-simd"
)

// The status page: a read-only view of the appliance on the metrics
// listener, beside /metrics. "/" is the overview (what needs attention,
// a row per group, the history as SVG charts), "/drills/ID" a drill
// report whole, as cairn drills ID prints it.
//
// Bounds: every request has PageTimeout; the overview's data is
// gathered by one request at a time and kept for PageCache, so any
// number of viewers costs one gathering per PageCache; charts hold a
// bounded number of points (package chart). Only GET and HEAD are
// served: nothing here changes anything. Everything a node chose (node,
// plan and path names, probe output) is inserted through html/template
// or chart, which escape it.
const (
	PageTimeout = 30 * time.Second
	PageCache   = 30 * time.Second
	// pageDrills is how many recent drill reports the overview links.
	pageDrills = 30
)

//go:embed page.html
var pageHTML string

var pageTemplate = template.Must(template.New("page").Funcs(template.FuncMap{
	"bytes":  func(n uint64) string { return status.HumanBytes(n) },
	"ibytes": func(n int64) string { return status.HumanBytes(uint64(max(n, 0))) },
	"pct":    func(f float64) string { return fmt.Sprintf("%.0f%%", f*100) },
	"secs":   func(f float64) string { return shortDur(time.Duration(f * float64(time.Second))) },
	"dur":    shortDur,
	"short":  func(id blob.ID) string { return id.Short() },
}).Parse(pageHTML))

// pageServer serves the metrics listener's pages.
type pageServer struct {
	a        *Appliance
	loopback bool // the listener is on a loopback address

	sem      chan struct{} // one gathering at a time
	cached   *overview
	cachedAt time.Time
}

// metricsHandler is everything the metrics listener serves: the page,
// the drill reports and /metrics, behind the method check, the
// credentials of metrics_auth and PageTimeout.
func (a *Appliance) metricsHandler(ln net.Listener, metrics http.Handler) http.Handler {
	p := &pageServer{a: a, sem: make(chan struct{}, 1)}
	if tcp, ok := ln.Addr().(*net.TCPAddr); ok {
		p.loopback = tcp.IP.IsLoopback()
	}
	mux := http.NewServeMux()
	mux.Handle("/metrics", metrics)
	mux.HandleFunc("/{$}", p.overview)
	mux.HandleFunc("/drills/{id}", p.drill)
	return p.guard(http.TimeoutHandler(mux, PageTimeout, "the status page took too long to gather; try again\n"))
}

// guard refuses methods other than GET and HEAD (405) and requests
// without the configured credentials (401); a listener beyond loopback
// without any configured answers nobody (403), whatever a reload did.
func (p *pageServer) guard(next http.Handler) http.Handler {
	return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		h := w.Header()
		h.Set("X-Content-Type-Options", "nosniff")
		h.Set("Referrer-Policy", "no-referrer")
		h.Set("X-Frame-Options", "DENY")
		h.Set("Content-Security-Policy", "default-src 'none'; style-src 'unsafe-inline'; img-src data:; form-action 'none'; frame-ancestors 'none'")
		if r.Method != http.MethodGet && r.Method != http.MethodHead {
			h.Set("Allow", "GET, HEAD")
			http.Error(w, "method not allowed: the status page is read-only", http.StatusMethodNotAllowed)
			return
		}
		auth := &p.a.Config().MetricsAuth
		switch {
		case !auth.Set() && p.loopback:
		case !auth.Set():
			http.Error(w, "forbidden: this address is not loopback and metrics_auth is not configured", http.StatusForbidden)
			return
		case !authorized(auth, r):
			if auth.User != "" {
				h.Set("WWW-Authenticate", `Basic realm="cairn", charset="UTF-8"`)
			} else {
				h.Set("WWW-Authenticate", `Bearer realm="cairn"`)
			}
			http.Error(w, "unauthorized", http.StatusUnauthorized)
			return
		}
		next.ServeHTTP(w, r)
	})
}

// authorized compares the request's credentials with the configured
// ones in constant time (of SHA-256 digests, so lengths leak nothing).
func authorized(a *MetricsAuth, r *http.Request) bool {
	eq := func(got string, want []byte) bool {
		g, w := sha256.Sum256([]byte(got)), sha256.Sum256(want)
		return subtle.ConstantTimeCompare(g[:], w[:]) == 1
	}
	if a.token != nil {
		if tok, ok := strings.CutPrefix(r.Header.Get("Authorization"), "Bearer "); ok && eq(tok, a.token) {
			return true
		}
	}
	if a.User != "" && a.password != nil {
		if u, pw, ok := r.BasicAuth(); ok {
			// Both compared, always: no early exit on the user.
			userOK, passOK := eq(u, []byte(a.User)), eq(pw, a.password)
			return userOK && passOK
		}
	}
	return false
}

// acquire waits for the gathering slot as long as ctx allows.
func (p *pageServer) acquire(ctx context.Context) (func(), error) {
	select {
	case p.sem <- struct{}{}:
		return func() { <-p.sem }, nil
	case <-ctx.Done():
		return nil, ctx.Err()
	}
}

// overview is what the page shows.
type overview struct {
	Time      string
	Repo      string
	Status    *status.Status
	Rows      []pageRow
	Attention []string
	Verified  string // oldest verification
	Size      template.HTML
	Coverage  template.HTML
	Timeline  template.HTML
	Plans     []planCharts
	Jobs      []pageJob
	Drills    []pageDrill
	Replicas  []pageReplica
}

// pageReplica is one replica's row: last replicated and its lag, last
// verified and drilled.
type pageReplica struct {
	status.Replica
	State                                       string // what needs attention, or "ok"
	Replicated, LagText, Run, Verified, Drilled string
}

// pageRow is one group (or a node/plan never backed up), needing
// attention first.
type pageRow struct {
	status.Group
	Name      string
	PathList  string
	Rank      int    // 0 drill failed, 1 late, 2 never, 3 future-dated, 4 fine
	State     string // what is wrong, or "ok"
	LastText  string // when the newest snapshot was taken
	AgeText   string
	Never     bool
	DrillTime string
}

type planCharts struct {
	Name                     string
	Pushes, Took, Recoveries template.HTML
}

type pageJob struct {
	status.Job
	Last, Next string
}

type pageDrill struct {
	ID, Short, Name, Time, Result string
	Seconds                       float64
}

func (p *pageServer) overview(w http.ResponseWriter, r *http.Request) {
	ov, err := p.gather(r.Context())
	if err != nil {
		p.a.log.Warn("status page", "err", err)
		http.Error(w, "the status could not be gathered: "+err.Error(), http.StatusInternalServerError)
		return
	}
	render(w, "overview", ov)
}

// gather returns the overview, gathered at most once per PageCache.
func (p *pageServer) gather(ctx context.Context) (*overview, error) {
	release, err := p.acquire(ctx)
	if err != nil {
		return nil, err
	}
	defer release()
	if p.cached != nil && time.Since(p.cachedAt) < PageCache {
		return p.cached, nil
	}
	ov, err := p.a.overview(ctx)
	if err != nil {
		return nil, err
	}
	p.cached, p.cachedAt = ov, time.Now()
	return ov, nil
}

// overview gathers the status (as cairn status does) and the history,
// and records today's size sample.
func (a *Appliance) overview(ctx context.Context) (*overview, error) {
	cfg := a.Config()
	st, err := a.Status(ctx, cfg)
	if err != nil {
		return nil, err
	}
	loc, err := cfg.Retention.Location()
	if err != nil {
		loc = time.Local
	}
	h, err := status.GetHistory(ctx, a.r, status.HistoryOptions{Now: st.Time, GroupBy: cfg.Retention.GroupBy, Loc: loc,
		Expect: cfg.ExpectDurations(), Cycle: cfg.Jobs.Verify.CycleDuration()})
	if err != nil {
		return nil, err
	}
	if err := a.r.PutSizeSample(h.Sizes[len(h.Sizes)-1]); err != nil {
		a.log.Warn("size sample", "err", err)
	}
	when := func(t time.Time) string { return t.In(loc).Format("2006-01-02 15:04 MST") }
	ov := &overview{Time: when(st.Time), Repo: a.r.Dir(), Status: st, Attention: st.Attention, Verified: "never"}
	if !st.OldestVerified.IsZero() {
		ov.Verified = when(st.OldestVerified)
	}
	for _, g := range st.Groups {
		row := pageRow{Group: g, Name: g.Name(), PathList: strings.Join(g.Paths, " "), LastText: when(g.Last.Time), AgeText: shortDur(g.Age), Rank: 4, State: "ok"}
		switch {
		case g.Drill != nil && g.Drill.Result != drill.ResultOK:
			row.Rank, row.State = 0, "drill failed"
		case g.Missing:
			row.Rank, row.State = 1, "late"
		case g.Future > 0:
			row.Rank, row.State = 3, "future-dated snapshots"
		}
		if g.Drill != nil {
			row.DrillTime = when(g.Drill.Time)
		}
		ov.Rows = append(ov.Rows, row)
	}
	for _, n := range st.Never {
		ov.Rows = append(ov.Rows, pageRow{Group: status.Group{Node: n.Node, Plan: n.Plan, Expected: n.Expected}, Name: n.Name(), Never: true, Rank: 2, State: "never backed up", LastText: "never", AgeText: "-"})
	}
	slices.SortStableFunc(ov.Rows, func(x, y pageRow) int {
		if x.Rank != y.Rank {
			return x.Rank - y.Rank
		}
		return strings.Compare(x.Name, y.Name)
	})
	for _, j := range st.Jobs {
		pj := pageJob{Job: j, Last: "-", Next: "-"}
		if !j.LastStart.IsZero() {
			pj.Last = when(j.LastStart)
		}
		if !j.Next.IsZero() {
			pj.Next = when(j.Next)
		}
		ov.Jobs = append(ov.Jobs, pj)
	}
	for _, r := range st.Replicas {
		pr := pageReplica{Replica: r, State: "ok", Replicated: "never", LagText: status.HumanBytes(uint64(max(r.LagBytes, 0))), Run: "-", Verified: "never", Drilled: "never"}
		if !r.Replicated.IsZero() {
			pr.Replicated = when(r.Replicated)
			pr.LagText += ", " + shortDur(r.Lag)
		}
		if !r.LastRun.IsZero() {
			pr.Run = r.LastStatus + " " + when(r.LastRun)
		}
		if !r.LastVerified.IsZero() {
			pr.Verified = r.VerifyStatus + " " + when(r.LastVerified)
		}
		if !r.LastDrilled.IsZero() {
			pr.Drilled = r.DrillStatus + " " + when(r.LastDrilled)
		}
		switch {
		case r.LastStatus == "failed" || r.LastStatus == "attention":
			pr.State = "last replication " + r.LastStatus
		case r.DrillStatus == drill.ResultFailed:
			pr.State = "drill failed"
		case r.VerifyStatus == "attention":
			pr.State = "damage found"
		case r.Overdue:
			pr.State = "late"
		}
		ov.Replicas = append(ov.Replicas, pr)
	}
	ov.charts(h, loc, cfg.Jobs.Verify.CycleDuration())
	drills, _ := drill.Recent(ctx, a.r) // status.Gather failed already if they cannot be read
	for _, d := range drills[:min(len(drills), pageDrills)] {
		name := planName(d.Node, d.Plan)
		if d.Replica != "" {
			name += " on replica " + d.Replica
		}
		ov.Drills = append(ov.Drills, pageDrill{ID: d.ID.String(), Short: d.ID.Short(), Name: name, Time: when(d.Finished), Result: d.Result, Seconds: d.RestoreSeconds})
	}
	return ov, nil
}

func planName(node, plan string) string {
	if plan == "" {
		return node
	}
	return node + "/" + plan
}

// charts draws the history.
func (ov *overview) charts(h *status.History, loc *time.Location, cycle time.Duration) {
	hourX := func(v float64) string { return time.Unix(int64(v), 0).In(loc).Format("Jan 02 15:04") }
	x := func(t time.Time) float64 { return float64(t.Unix()) }
	byteY := func(v float64) string { return status.HumanBytes(uint64(math.Max(v, 0))) }
	secY := func(v float64) string { return shortDur(time.Duration(v * float64(time.Second))) }

	var stored, files []chart.Point
	for _, s := range h.Sizes {
		stored = append(stored, chart.Point{X: x(s.Time), Y: float64(s.StoredBytes), Title: fmt.Sprintf("%s: %s stored in %d packs", hourX(x(s.Time)), status.HumanBytes(s.StoredBytes), s.Packs)})
		files = append(files, chart.Point{X: x(s.Time), Y: float64(s.Bytes), Title: fmt.Sprintf("%s: %s in %d snapshots", hourX(x(s.Time)), status.HumanBytes(s.Bytes), s.Snapshots)})
	}
	ov.Size = chart.Line{Title: "Repository size", Time: loc, YFormat: byteY,
		Series: []chart.Series{{Name: "stored in packs", Points: stored}, {Name: "files in the snapshots kept", Points: files}}}.SVG()

	var cover []chart.Point
	for _, c := range h.Cover {
		days := c.Age.Hours() / 24
		cover = append(cover, chart.Point{X: days, Y: c.Fraction, Title: fmt.Sprintf("%.0f%% verified within %.0f days", c.Fraction*100, days)})
	}
	ov.Coverage = chart.Line{Title: "Verified within N days (share of stored bytes)", Steps: true, YMin: 0, YMax: 1,
		Markers: []chart.Marker{{X: cycle.Hours() / 24, Label: "cycle " + shortDur(cycle)}},
		XFormat: func(v float64) string { return fmt.Sprintf("%.0fd", v) }, YFormat: func(v float64) string { return fmt.Sprintf("%.0f%%", v*100) },
		Series: []chart.Series{{Name: "verified", Points: cover}}}.SVG()

	tl := chart.Timeline{Title: "Snapshots per day (a red cell: a missed day)", Width: 1200}
	for _, d := range h.Days {
		tl.Days = append(tl.Days, d.Format("Jan 02"))
	}
	for _, n := range h.Nodes {
		row := chart.Row{Name: n.Node}
		for i, d := range n.Days {
			c := chart.Cell{Count: d.Snapshots, State: chart.Done}
			day := tl.Days[i]
			switch {
			case d.Snapshots > 0:
				c.Title = fmt.Sprintf("%s %s: %d snapshots", n.Node, day, d.Snapshots)
			case d.Before:
				c.State, c.Title = chart.Before, fmt.Sprintf("%s %s: before its first snapshot", n.Node, day)
			case d.Missed:
				c.State, c.Title = chart.Missed, fmt.Sprintf("%s %s: no snapshot (missed)", n.Node, day)
			case i == len(n.Days)-1:
				c.State, c.Title = chart.Today, fmt.Sprintf("%s %s: none yet today", n.Node, day)
			default:
				c.State, c.Title = chart.Before, fmt.Sprintf("%s %s: no snapshot, none expected", n.Node, day)
			}
			row.Cells = append(row.Cells, c)
		}
		tl.Rows = append(tl.Rows, row)
	}
	ov.Timeline = tl.SVG()

	for _, p := range h.Plans {
		pc := planCharts{Name: p.Name()}
		var sizes, took []chart.Series
		for _, g := range p.Groups {
			name := strings.Join(g.Paths, " ")
			if name == "" {
				name = p.Name()
			}
			var s, d []chart.Point
			for _, push := range g.Pushes {
				s = append(s, chart.Point{X: x(push.Time), Y: float64(push.Bytes), Title: fmt.Sprintf("%s %s: %s, %s added", name, hourX(x(push.Time)), status.HumanBytes(push.Bytes), status.HumanBytes(push.Added))})
				d = append(d, chart.Point{X: x(push.Time), Y: push.Duration.Seconds(), Title: fmt.Sprintf("%s %s: took %s", name, hourX(x(push.Time)), shortDur(push.Duration))})
			}
			sizes = append(sizes, chart.Series{Name: name, Points: s})
			took = append(took, chart.Series{Name: name, Points: d})
		}
		var rec []chart.Point
		for _, d := range p.Drills {
			verdict := "ok"
			if !d.OK {
				verdict = "FAILED"
			}
			rec = append(rec, chart.Point{X: x(d.Time), Y: d.Seconds, Bad: !d.OK, Title: fmt.Sprintf("%s: drill %s %s, recovery %.1f s (report %s)", hourX(x(d.Time)), verdict, p.Name(), d.Seconds, d.Report.Short())})
		}
		pc.Pushes = chart.Line{Title: p.Name() + ": size of each snapshot", Time: loc, YFormat: byteY, Series: sizes, Width: 480, Height: 180}.SVG()
		pc.Took = chart.Line{Title: p.Name() + ": how long each push took", Time: loc, YFormat: secY, Series: took, Width: 480, Height: 180}.SVG()
		pc.Recoveries = chart.Line{Title: p.Name() + ": drill recovery time (a cross: failed)", Time: loc, YFormat: secY, Series: []chart.Series{{Name: "recovery", Points: rec}}, Width: 480, Height: 180}.SVG()
		ov.Plans = append(ov.Plans, pc)
	}
}

// reportRef is what /drills/ID accepts: a report ID or a prefix of at
// least 4 hex digits (blob.MatchPrefix decides), or "latest".
var reportRef = regexp.MustCompile(`^([0-9a-f]{4,64}|latest)$`)

type reportPage struct {
	ID, Text string
}

func (p *pageServer) drill(w http.ResponseWriter, r *http.Request) {
	ref := r.PathValue("id")
	if !reportRef.MatchString(ref) {
		http.Error(w, "not a drill report ID", http.StatusNotFound)
		return
	}
	release, err := p.acquire(r.Context())
	if err != nil {
		http.Error(w, err.Error(), http.StatusServiceUnavailable)
		return
	}
	defer release()
	d, _, err := status.FindDrillReport(r.Context(), p.a.r, ref)
	if errors.Is(err, blob.ErrNotFound) {
		http.Error(w, "no such drill report", http.StatusNotFound)
		return
	}
	if err != nil {
		http.Error(w, "drill report: "+err.Error(), http.StatusNotFound)
		return
	}
	loc, err := p.a.Config().Retention.Location()
	if err != nil {
		loc = time.Local
	}
	var b bytes.Buffer
	status.WriteDrillReport(&b, d, func(t time.Time) string { return t.In(loc).Format("2006-01-02 15:04:05 MST") })
	render(w, "report", reportPage{ID: d.ID.String(), Text: b.String()})
}

// render executes a template into a buffer first, so a failure is a
// clean 500 rather than half a page.
func render(w http.ResponseWriter, name string, data any) {
	var b bytes.Buffer
	if err := pageTemplate.ExecuteTemplate(&b, name, data); err != nil {
		http.Error(w, "status page: "+err.Error(), http.StatusInternalServerError)
		return
	}
	w.Header().Set("Content-Type", "text/html; charset=utf-8")
	w.Header().Set("Cache-Control", "no-store")
	w.Write(b.Bytes())
}

// shortDur shortens a duration for people: 250ms, 12.3s, 5m3s, 26h,
// 1h30m, 2d1h.
func shortDur(d time.Duration) string {
	switch {
	case d < 0:
		return "-" + shortDur(-d)
	case d == 0:
		return "0s"
	case d < time.Second:
		return fmt.Sprintf("%dms", d.Round(time.Millisecond)/time.Millisecond)
	case d < time.Minute:
		return fmt.Sprintf("%.1fs", d.Seconds())
	case d < time.Hour:
		d = d.Round(time.Second)
		return fmt.Sprintf("%dm%ds", d/time.Minute, d%time.Minute/time.Second)
	case d < 48*time.Hour:
		d = d.Round(time.Minute)
		if m := d % time.Hour / time.Minute; m != 0 {
			return fmt.Sprintf("%dh%dm", d/time.Hour, m)
		}
		return fmt.Sprintf("%dh", d/time.Hour)
	}
	d = d.Round(time.Hour)
	days, h := d/(24*time.Hour), d%(24*time.Hour)/time.Hour
	if h == 0 {
		return fmt.Sprintf("%dd", days)
	}
	return fmt.Sprintf("%dd%dh", days, h)
}
