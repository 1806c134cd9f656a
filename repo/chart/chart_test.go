package chart_test

import (
	"encoding/xml"
	"io"
	"strings"
	"testing"

	"github.com/cairnbackup/cairn/repo/chart"
)

const hostile = `lyra/<script>alert("x")</script>&'`

// wellFormed parses the SVG as XML: every name must have been escaped
// for that to succeed, and no element may come from a name.
func wellFormed(t *testing.T, svg string) []string {
	t.Helper()
	d := xml.NewDecoder(strings.NewReader(svg))
	var elems []string
	for {
		tok, err := d.Token()
		if err == io.EOF {
			return elems
		}
		if err != nil {
			t.Fatalf("not well-formed: %v\n%s", err, svg)
		}
		if se, ok := tok.(xml.StartElement); ok {
			elems = append(elems, se.Name.Local)
		}
	}
}

func TestLineEscapesNames(t *testing.T) {
	svg := string(chart.Line{Title: hostile, Series: []chart.Series{
		{Name: hostile, Points: []chart.Point{{X: 1, Y: 2}, {X: 2, Y: 3, Bad: true, Title: hostile}}},
		{Name: "b", Points: []chart.Point{{X: 1, Y: 1}}},
	}}.SVG())
	for _, e := range wellFormed(t, svg) {
		if e == "script" {
			t.Fatalf("a name became an element:\n%s", svg)
		}
	}
	if strings.Contains(svg, "<script") || !strings.Contains(svg, "&lt;script&gt;alert(&#34;x&#34;)&lt;/script&gt;&amp;&#39;") {
		t.Fatalf("not escaped:\n%s", svg)
	}
}

func TestTimelineEscapesNames(t *testing.T) {
	svg := string(chart.Timeline{Title: hostile, Days: []string{"a", "b", "c"}, Rows: []chart.Row{
		{Name: hostile, Cells: []chart.Cell{{State: chart.Before}, {State: chart.Done, Count: 2, Title: hostile}, {State: chart.Missed}}},
	}}.SVG())
	for _, e := range wellFormed(t, svg) {
		if e == "script" {
			t.Fatalf("a name became an element:\n%s", svg)
		}
	}
	for _, want := range []string{`class="before"`, `class="cell"`, `class="miss"`, "&lt;script&gt;"} {
		if !strings.Contains(svg, want) {
			t.Errorf("no %s in\n%s", want, svg)
		}
	}
}

// A series of any length is drawn with at most MaxPoints points, the
// first and the last among them.
func TestLineBoundsPoints(t *testing.T) {
	var ps []chart.Point
	for i := range 100000 {
		ps = append(ps, chart.Point{X: float64(i), Y: float64(i % 7)})
	}
	th := chart.Thin(ps, chart.MaxPoints)
	if len(th) != chart.MaxPoints || th[0].X != 0 || th[len(th)-1].X != 99999 {
		t.Fatalf("thinned to %d points, %v … %v", len(th), th[0], th[len(th)-1])
	}
	svg := string(chart.Line{Title: "t", Series: []chart.Series{{Name: "s", Points: ps}}}.SVG())
	if n := strings.Count(svg, "<circle"); n != chart.MaxPoints {
		t.Fatalf("%d points drawn", n)
	}
	wellFormed(t, svg)
}

func TestEmptyCharts(t *testing.T) {
	if svg := string(chart.Line{Title: "t"}.SVG()); !strings.Contains(svg, "no data yet") {
		t.Errorf("empty line: %s", svg)
	}
	if svg := string(chart.Timeline{Title: "t"}.SVG()); !strings.Contains(svg, "no snapshots yet") {
		t.Errorf("empty timeline: %s", svg)
	}
}
