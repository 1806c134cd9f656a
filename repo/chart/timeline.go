package chart

import (
	"fmt"
	"html/template"
	"strings"
)

// MaxDays and MaxRows bound a timeline: older days and further rows are
// left out.
const (
	MaxDays = 92
	MaxRows = 64
)

// Cell states of a timeline.
const (
	Before = iota // before the row's first snapshot: nothing was expected
	Done          // one or more snapshots that day
	Missed        // no snapshot that day, after the first one
	Today         // today without a snapshot yet
)

// Cell is one day of a row.
type Cell struct {
	State int
	Count int    // snapshots that day
	Title string // what hovering shows
}

// Row is one line of a timeline (a node).
type Row struct {
	Name  string
	Cells []Cell // one per day of the timeline, oldest first
}

// Timeline is a grid of days (columns) by rows: a day with a snapshot is
// filled, a missed day is marked, so gaps stand out.
type Timeline struct {
	Title string
	Days  []string // a label per column, oldest first
	Rows  []Row
	Width int // zero is 640
}

// SVG renders the timeline.
func (t Timeline) SVG() template.HTML {
	w := t.Width
	if w <= 0 {
		w = 640
	}
	days := t.Days
	skip := 0
	if len(days) > MaxDays {
		skip = len(days) - MaxDays
		days = days[skip:]
	}
	rows := t.Rows
	if len(rows) > MaxRows {
		rows = rows[:MaxRows]
	}
	const label, rowH, top = 120, 18, 24
	h := top + rowH*max(len(rows), 1) + 18
	var b strings.Builder
	fmt.Fprintf(&b, `<svg class="chart" viewBox="0 0 %d %d" width="%d" height="%d" role="img" aria-label="%s">`, w, h, w, h, esc(t.Title))
	fmt.Fprintf(&b, `<title>%s</title><text class="ctitle" x="4" y="14">%s</text>`, esc(t.Title), esc(t.Title))
	if len(rows) == 0 || len(days) == 0 {
		fmt.Fprintf(&b, `<text class="axis" x="%d" y="%d">no snapshots yet</text></svg>`, label, top+12)
		return template.HTML(b.String())
	}
	cw := float64(w-label-8) / float64(len(days))
	for i, r := range rows {
		y := top + i*rowH
		name := r.Name
		if len([]rune(name)) > 18 {
			name = string([]rune(name)[:17]) + "…"
		}
		fmt.Fprintf(&b, `<text class="axis" x="4" y="%d"><title>%s</title>%s</text>`, y+12, esc(r.Name), esc(name))
		cells := r.Cells
		if len(cells) > skip {
			cells = cells[skip:]
		} else {
			cells = nil
		}
		for j, c := range cells {
			if j >= len(days) {
				break
			}
			x := float64(label) + float64(j)*cw
			class := [...]string{"before", "cell", "miss", "today"}[min(max(c.State, 0), Today)]
			title := c.Title
			if title == "" {
				title = fmt.Sprintf("%s %s: %d snapshots", r.Name, days[j], c.Count)
			}
			fmt.Fprintf(&b, `<rect class="%s" x="%.1f" y="%d" width="%.1f" height="%d" rx="2"><title>%s</title></rect>`,
				class, x+1, y+2, max(cw-2, 1), rowH-4, esc(title))
		}
	}
	y := top + len(rows)*rowH + 12
	ticks := []int{0}
	if len(days) > 2 {
		ticks = append(ticks, len(days)/2)
	}
	if len(days) > 1 {
		ticks = append(ticks, len(days)-1)
	}
	for i, j := range ticks {
		x, anchor := float64(label)+(float64(j)+0.5)*cw, "middle"
		switch {
		case i == 0 && len(ticks) > 1:
			x, anchor = float64(label), "start"
		case i == len(ticks)-1 && len(ticks) > 1:
			x, anchor = float64(label)+float64(len(days))*cw, "end"
		}
		fmt.Fprintf(&b, `<text class="axis" x="%.1f" y="%d" text-anchor="%s">%s</text>`, x, y, anchor, esc(days[j]))
	}
	b.WriteString(`</svg>`)
	return template.HTML(b.String())
}
