// Package chart draws the status page's small charts as inline SVG on
// the server: lines over time (or any numeric axis) and a grid of days.
// No JavaScript, no fonts or images to fetch: a chart is text that works
// offline. Colours are CSS classes (ln0…ln3, bad, cell, miss, axis,
// grid) that the page styles, so one chart reads in a light and a dark
// theme; hovering a point shows its <title>.
//
// # Bounds
//
// A line keeps at most [MaxPoints] points per series (evenly thinned,
// keeping the first and the last); a timeline at most [MaxDays] days and
// [MaxRows] rows. So the work and the size of a chart are bounded
// whatever the history holds.
//
// # Escaping
//
// Every text that reaches the SVG (titles, series and row names, point
// titles, labels) is escaped with html.EscapeString, in element content
// and in attributes alike: names come from nodes, which may be hostile.
// The result is a template.HTML for html/template, which inserts it as
// it is.
package chart

import (
	"fmt"
	"html"
	"html/template"
	"math"
	"strings"
	"time"
)

// MaxPoints bounds the points of one series drawn.
const MaxPoints = 400

// Point is one value. Bad draws it as a failure (a cross instead of a
// dot); Title is what hovering it shows.
type Point struct {
	X, Y  float64
	Bad   bool
	Title string
}

// Series is one line.
type Series struct {
	Name   string
	Points []Point // in X order
}

// Marker is a vertical line at X with a label (a verification cycle).
type Marker struct {
	X     float64
	Label string
}

// Line is a chart of one or more series (at most 4 are told apart by
// colour) over a shared X axis.
type Line struct {
	Title  string
	Series []Series
	// XFormat and YFormat label the axes' ticks.
	XFormat, YFormat func(float64) string
	// XTicks places the X ticks: nil spreads five over the range.
	XTicks func(lo, hi float64) []float64
	// Time, when set, makes X unix seconds labelled in that zone: hours
	// over a day and a half or less, else dates (XFormat is then unused).
	Time *time.Location
	// YMin and YMax fix the Y range when YMax > YMin (a share: 0 to 1);
	// else it is 0 to a round number above the largest value.
	YMin, YMax float64
	// Steps draws each series as a step line (a cumulative share).
	Steps   bool
	Markers []Marker
	// Width and Height are the view box; zero is 640 × 200.
	Width, Height int
}

const (
	padLeft   = 64
	padRight  = 12
	padTop    = 24
	padBottom = 22
)

// SVG renders the chart. A chart without points says so.
func (c Line) SVG() template.HTML {
	w, h := c.Width, c.Height
	if w <= 0 {
		w = 640
	}
	if h <= 0 {
		h = 200
	}
	var b strings.Builder
	fmt.Fprintf(&b, `<svg class="chart" viewBox="0 0 %d %d" width="%d" height="%d" role="img" aria-label="%s">`, w, h, w, h, esc(c.Title))
	fmt.Fprintf(&b, `<title>%s</title>`, esc(c.Title))
	fmt.Fprintf(&b, `<text class="ctitle" x="%d" y="14">%s</text>`, padLeft, esc(c.Title))
	series := make([]Series, len(c.Series))
	lox, hix, hiy := math.Inf(1), math.Inf(-1), 0.0
	for i, s := range c.Series {
		series[i] = Series{Name: s.Name, Points: Thin(s.Points, MaxPoints)}
		for _, p := range series[i].Points {
			lox, hix = math.Min(lox, p.X), math.Max(hix, p.X)
			if !math.IsNaN(p.Y) && !math.IsInf(p.Y, 0) {
				hiy = math.Max(hiy, p.Y)
			}
		}
	}
	for _, m := range c.Markers {
		lox, hix = math.Min(lox, m.X), math.Max(hix, m.X)
	}
	if math.IsInf(lox, 1) {
		fmt.Fprintf(&b, `<text class="axis" x="%d" y="%d">no data yet</text></svg>`, w/2-30, h/2)
		return template.HTML(b.String())
	}
	if hix == lox { // one moment: widen so it is drawn in the middle
		lox, hix = lox-1, hix+1
	}
	loy, ticksY := 0.0, niceTicks(hiy)
	if c.YMax > c.YMin {
		loy, ticksY = c.YMin, spread(c.YMin, c.YMax, 5)
	}
	hy := ticksY[len(ticksY)-1]
	if hy <= loy {
		hy = loy + 1
	}
	x0, x1, y0, y1 := float64(padLeft), float64(w-padRight), float64(h-padBottom), float64(padTop)
	px := func(x float64) float64 { return x0 + (x-lox)/(hix-lox)*(x1-x0) }
	py := func(y float64) float64 { return y0 - (y-loy)/(hy-loy)*(y0-y1) }
	yf, xf := c.YFormat, c.XFormat
	if c.Time != nil {
		layout := "Jan 02"
		if hix-lox <= 36*3600 {
			layout = "15:04"
		}
		xf = func(v float64) string { return time.Unix(int64(v), 0).In(c.Time).Format(layout) }
	}
	if yf == nil {
		yf = func(v float64) string { return fmt.Sprintf("%g", v) }
	}
	if xf == nil {
		xf = yf
	}
	for _, t := range ticksY {
		fmt.Fprintf(&b, `<line class="grid" x1="%.1f" y1="%.1f" x2="%.1f" y2="%.1f"/>`, x0, py(t), x1, py(t))
		fmt.Fprintf(&b, `<text class="axis" x="%.1f" y="%.1f" text-anchor="end">%s</text>`, x0-4, py(t)+4, esc(yf(t)))
	}
	ticksX := spread(lox, hix, 5)
	if c.XTicks != nil {
		ticksX = c.XTicks(lox, hix)
	}
	for i, t := range ticksX {
		anchor := "middle"
		switch i {
		case 0:
			anchor = "start"
		case len(ticksX) - 1:
			anchor = "end"
		}
		fmt.Fprintf(&b, `<text class="axis" x="%.1f" y="%d" text-anchor="%s">%s</text>`, px(t), h-6, anchor, esc(xf(t)))
	}
	fmt.Fprintf(&b, `<line class="axisline" x1="%.1f" y1="%.1f" x2="%.1f" y2="%.1f"/>`, x0, y0, x1, y0)
	for _, m := range c.Markers {
		fmt.Fprintf(&b, `<line class="marker" x1="%.1f" y1="%.1f" x2="%.1f" y2="%.1f"/>`, px(m.X), y0, px(m.X), y1)
		fmt.Fprintf(&b, `<text class="axis" x="%.1f" y="%.1f" text-anchor="end">%s</text>`, px(m.X)-3, y1+10, esc(m.Label))
	}
	for i, s := range series {
		class := fmt.Sprintf("ln%d", i%4)
		if len(s.Points) > 1 {
			fmt.Fprintf(&b, `<polyline class="%s" fill="none" points="`, class)
			for j, p := range s.Points {
				if j > 0 && c.Steps {
					fmt.Fprintf(&b, "%.1f,%.1f ", px(p.X), py(s.Points[j-1].Y))
				}
				fmt.Fprintf(&b, "%.1f,%.1f ", px(p.X), py(p.Y))
			}
			b.WriteString(`"/>`)
		}
		for _, p := range s.Points {
			title := p.Title
			if title == "" {
				title = s.Name + ": " + yf(p.Y) + " at " + xf(p.X)
			}
			if p.Bad {
				x, y := px(p.X), py(p.Y)
				fmt.Fprintf(&b, `<path class="bad" d="M%.1f %.1fL%.1f %.1fM%.1f %.1fL%.1f %.1f"><title>%s</title></path>`,
					x-4, y-4, x+4, y+4, x-4, y+4, x+4, y-4, esc(title))
				continue
			}
			fmt.Fprintf(&b, `<circle class="%s" cx="%.1f" cy="%.1f" r="2.5"><title>%s</title></circle>`, class, px(p.X), py(p.Y), esc(title))
		}
	}
	if len(series) > 1 {
		x := float64(w - padRight)
		for i := len(series) - 1; i >= 0; i-- {
			label := esc(series[i].Name)
			fmt.Fprintf(&b, `<text class="legend ln%d" x="%.1f" y="%d" text-anchor="end">%s</text>`, i%4, x, padTop-2, label)
			x -= float64(7*len([]rune(series[i].Name)) + 14)
		}
	}
	b.WriteString(`</svg>`)
	return template.HTML(b.String())
}

// Thin returns at most n of points, evenly spaced, always with the first
// and the last.
func Thin(points []Point, n int) []Point {
	if len(points) <= n || n < 2 {
		return points
	}
	out := make([]Point, 0, n)
	for i := range n {
		out = append(out, points[i*(len(points)-1)/(n-1)])
	}
	return out
}

// niceTicks returns ticks from 0 to a round number at or above hi.
func niceTicks(hi float64) []float64 {
	if hi <= 0 {
		return []float64{0, 1}
	}
	raw := hi / 4
	mag := math.Pow(10, math.Floor(math.Log10(raw)))
	step := mag
	for _, m := range []float64{1, 2, 2.5, 5, 10} {
		if m*mag >= raw {
			step = m * mag
			break
		}
	}
	var out []float64
	for v := 0.0; ; v += step {
		out = append(out, v)
		if v >= hi || len(out) > 12 {
			return out
		}
	}
}

// spread returns n values from lo to hi.
func spread(lo, hi float64, n int) []float64 {
	out := make([]float64, n)
	for i := range n {
		out[i] = lo + (hi-lo)*float64(i)/float64(n-1)
	}
	return out
}

func esc(s string) string { return html.EscapeString(s) }
