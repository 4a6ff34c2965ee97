package timeline

import (
	"bytes"
	"encoding/xml"
	"fmt"
	"io"
	"math"
	"os"
	"path/filepath"
	"strings"
	"time"
)

// The picture's layout, in SVG user units: the phases' panel above the unavailability panel,
// one time axis below both, the legend on the right.
const (
	width       = 1000.0
	height      = 540.0
	plotLeft    = 50.0
	plotRight   = 790.0
	phasesTop   = 50.0
	phasesBase  = 310.0
	unavailTop  = 350.0
	unavailBase = 470.0
	legendLeft  = 810.0
)

// Element ids and classes Read relies on.
const (
	idPhases      = "phases"
	idUnavailable = "unavailable"
	classWindow   = "window"
	classSoak     = "soak"
	classWave     = "wave-start"
)

type canvas struct {
	r           *Recorder
	start, end  time.Time
	phaseUnit   float64 // user units per node in the phases' panel
	unavailUnit float64 // user units per node in the unavailability panel
	maxUnavail  int
	buf         bytes.Buffer
}

func newCanvas(r *Recorder) *canvas {
	c := &canvas{r: r, start: r.samples[0].at, end: r.samples[len(r.samples)-1].at}
	// The state after the last change is drawn at least a fiftieth of the picture wide.
	last := len(r.samples) - 1
	for last > 0 && r.samples[last].sameAs(r.samples[last-1]) {
		last--
	}
	changed := r.samples[last].at
	c.end = maxTime(c.end, changed.Add(max(changed.Sub(c.start)/50, time.Second)))
	nodes := 1
	for _, s := range r.samples {
		total := 0
		for _, n := range s.phases {
			total += n
		}
		nodes = max(nodes, total)
		c.maxUnavail = max(c.maxUnavail, s.unavailable, s.budget)
	}
	c.phaseUnit = (phasesBase - phasesTop) / float64(nodes)
	c.unavailUnit = (unavailBase - unavailTop) / float64(max(c.maxUnavail, 1))
	return c
}

// x is where t falls on the time axis.
func (c *canvas) x(t time.Time) float64 {
	return plotLeft + (plotRight-plotLeft)*t.Sub(c.start).Seconds()/c.end.Sub(c.start).Seconds()
}

func (c *canvas) printf(format string, args ...any) { fmt.Fprintf(&c.buf, format, args...) }

func (c *canvas) draw(w io.Writer) error {
	final := c.r.samples[len(c.r.samples)-1]
	c.printf(`<svg xmlns="http://www.w3.org/2000/svg" width="%.0f" height="%.0f" viewBox="0 0 %.0f %.0f" font-family="sans-serif" font-size="12">`+"\n", width, height, width, height)
	title := fmt.Sprintf("Rollout of policy %s", c.r.policy)
	if c.r.target != "" {
		title += " to " + c.r.target
	}
	seen := c.r.samples[len(c.r.samples)-1].at
	title += fmt.Sprintf(", %s to %s (%s)", c.start.In(c.r.loc).Format("2006-01-02 15:04:05 MST"),
		seen.In(c.r.loc).Format("15:04:05"), seen.Sub(c.start).Round(time.Second))
	c.printf("<title>%s</title>\n", esc(title))
	c.printf(`<rect width="100%%" height="100%%" fill="white"/>` + "\n")
	c.printf(`<text x="%.0f" y="24" font-size="15">%s</text>`+"\n", plotLeft, esc(title))
	c.drawWindows()
	c.drawSoaks()
	c.drawPhases()
	c.drawUnavailable()
	c.drawWaves()
	c.drawAxes()
	c.drawLegend(final)
	c.printf("</svg>\n")
	_, err := w.Write(c.buf.Bytes())
	return err
}

// drawWindows shades, in the unavailability panel, the times a maintenance window of the
// policy was open (the phases' bands fill their panel).
func (c *canvas) drawWindows() {
	c.printf(`<g id="windows" fill="#e5f5e0">` + "\n")
	for _, iv := range c.r.windows(c.start, c.end) {
		c.printf(`<rect class="%s" data-start="%s" data-end="%s" x="%.2f" y="%.0f" width="%.2f" height="%.0f"/>`+"\n",
			classWindow, iv[0].UTC().Format(time.RFC3339), iv[1].UTC().Format(time.RFC3339),
			c.x(iv[0]), unavailTop, c.x(iv[1])-c.x(iv[0]), unavailBase-unavailTop)
	}
	c.printf("</g>\n")
}

// drawSoaks shades, in the unavailability panel, each wave's soak: from its completion for
// its soak time. Only the waves of the last target are drawn (a policy applied before a
// release completes its waves at once for the version the nodes run).
func (c *canvas) drawSoaks() {
	c.printf(`<g id="soaks">` + "\n")
	for _, w := range c.r.waves {
		soak := c.r.soak(w.name)
		if w.target != c.r.target || w.completed.IsZero() || soak <= 0 || w.completed.After(c.end) {
			continue
		}
		from, to := maxTime(w.completed, c.start), minTime(w.completed.Add(soak), c.end)
		c.printf(`<rect class="%s" data-wave="%s" data-start="%s" data-end="%s" x="%.2f" y="%.0f" width="%.2f" height="%.0f" fill="#fff7bc"/>`+"\n",
			classSoak, esc(w.name), from.UTC().Format(time.RFC3339), to.UTC().Format(time.RFC3339),
			c.x(from), unavailTop, c.x(to)-c.x(from), unavailBase-unavailTop)
		c.printf(`<text x="%.2f" y="%.0f" font-size="10" fill="#8c6d31">soak %s</text>`+"\n", c.x(from)+2, unavailTop+12, esc(w.name))
	}
	c.printf("</g>\n")
}

// drawPhases stacks the nodes by phase: one rectangle for each phase and stretch of time in
// which its band stayed where it was.
func (c *canvas) drawPhases() {
	c.printf(`<g id="%s" data-base="%.2f" data-unit="%.6f" shape-rendering="crispEdges">`+"\n", idPhases, phasesBase, c.phaseUnit)
	type band struct {
		from       time.Time
		low, count int
	}
	open := make([]band, len(Phases))
	flush := func(i int, to time.Time) {
		b := open[i]
		if b.count == 0 || !to.After(b.from) {
			return
		}
		top := phasesBase - float64(b.low+b.count)*c.phaseUnit
		c.printf(`<rect data-phase="%s" x="%.2f" y="%.2f" width="%.2f" height="%.2f" fill="%s"/>`+"\n",
			Phases[i], c.x(b.from), top, c.x(to)-c.x(b.from), float64(b.count)*c.phaseUnit, colours[Phases[i]])
	}
	for k, s := range c.r.samples {
		low := 0
		for i, n := range s.phases {
			if k == 0 || open[i].low != low || open[i].count != n {
				if k > 0 {
					flush(i, s.at)
				}
				open[i] = band{from: s.at, low: low, count: n}
			}
			low += n
		}
	}
	for i := range open {
		flush(i, c.end)
	}
	c.printf("</g>\n")
}

// drawUnavailable draws the nodes unavailable and the budget, as steps.
func (c *canvas) drawUnavailable() {
	c.printf(`<g id="%s" data-base="%.2f" data-unit="%.6f" fill="none">`+"\n", idUnavailable, unavailBase, c.unavailUnit)
	for _, series := range []struct {
		name, style string
		value       func(sample) int
	}{
		{"budget", `stroke="#636363" stroke-dasharray="6 4"`, func(s sample) int { return s.budget }},
		{"unavailable", `stroke="#cb181d" stroke-width="2"`, func(s sample) int { return s.unavailable }},
	} {
		var pts []string
		for k, s := range c.r.samples {
			y := unavailBase - float64(series.value(s))*c.unavailUnit
			if k > 0 {
				pts = append(pts, fmt.Sprintf("%.2f,%.2f", c.x(s.at), unavailBase-float64(series.value(c.r.samples[k-1]))*c.unavailUnit))
			}
			pts = append(pts, fmt.Sprintf("%.2f,%.2f", c.x(s.at), y))
		}
		last := c.r.samples[len(c.r.samples)-1]
		pts = append(pts, fmt.Sprintf("%.2f,%.2f", c.x(c.end), unavailBase-float64(series.value(last))*c.unavailUnit))
		c.printf(`<polyline data-series="%s" %s points="%s"/>`+"\n", series.name, series.style, strings.Join(pts, " "))
	}
	c.printf("</g>\n")
}

// drawWaves marks when each wave of the last target had its first node seen disrupted.
func (c *canvas) drawWaves() {
	c.printf(`<g id="waves" stroke="#3182bd" stroke-dasharray="3 3">` + "\n")
	marked := 0
	for _, w := range c.r.waves {
		if w.target != c.r.target || w.started.IsZero() {
			continue
		}
		x := c.x(w.started)
		c.printf(`<line class="%s" data-wave="%s" x1="%.2f" y1="%.0f" x2="%.2f" y2="%.0f"/>`+"\n", classWave, esc(w.name), x, phasesTop, x, unavailBase)
		// Labels of waves that start close together are staggered.
		c.printf(`<text x="%.2f" y="%.0f" stroke="none" fill="#08519c" font-size="10">wave %s</text>`+"\n", x+2, phasesTop+12+12*float64(marked%4), esc(w.name))
		marked++
	}
	c.printf("</g>\n")
}

// drawAxes draws both panels' count axes and the shared time axis.
func (c *canvas) drawAxes() {
	c.printf(`<g id="axes" stroke="#252525" font-size="11">` + "\n")
	nodes := int(math.Round((phasesBase - phasesTop) / c.phaseUnit))
	for _, panel := range []struct {
		base, unit float64
		top        int
		label      string
	}{
		{phasesBase, c.phaseUnit, nodes, "nodes by phase"},
		{unavailBase, c.unavailUnit, max(c.maxUnavail, 1), "unavailable (cordoned, not Ready or being disrupted) vs budget"},
	} {
		c.printf(`<line x1="%.0f" y1="%.2f" x2="%.0f" y2="%.2f"/>`+"\n", plotLeft, panel.base, plotRight, panel.base)
		c.printf(`<line x1="%.0f" y1="%.2f" x2="%.0f" y2="%.2f"/>`+"\n", plotLeft, panel.base, plotLeft, panel.base-float64(panel.top)*panel.unit)
		for _, v := range countTicks(panel.top) {
			y := panel.base - float64(v)*panel.unit
			c.printf(`<line x1="%.0f" y1="%.2f" x2="%.0f" y2="%.2f"/>`+"\n", plotLeft-4, y, plotLeft, y)
			c.printf(`<text x="%.0f" y="%.2f" stroke="none" text-anchor="end">%d</text>`+"\n", plotLeft-6, y+4, v)
		}
		c.printf(`<text x="%.0f" y="%.2f" stroke="none" font-size="11" fill="#525252">%s</text>`+"\n", plotLeft+4, panel.base-float64(panel.top)*panel.unit-6, esc(panel.label))
	}
	step := timeStep(c.end.Sub(c.start))
	layout := "15:04:05"
	switch {
	case c.end.Sub(c.start) > 72*time.Hour:
		layout = "Jan 2"
	case c.end.Sub(c.start) > 2*time.Hour:
		layout = "Mon 15:04"
	}
	for t := c.start.Truncate(step); !t.After(c.end); t = t.Add(step) {
		if t.Before(c.start) {
			continue
		}
		x := c.x(t)
		c.printf(`<line x1="%.2f" y1="%.0f" x2="%.2f" y2="%.0f"/>`+"\n", x, unavailBase, x, unavailBase+4)
		c.printf(`<text x="%.2f" y="%.0f" stroke="none" text-anchor="middle">%s</text>`+"\n", x, unavailBase+18, t.In(c.r.loc).Format(layout))
	}
	c.printf(`<text x="%.0f" y="%.0f" stroke="none" text-anchor="end" fill="#525252">%s</text>`+"\n", plotRight, unavailBase+36, esc("time ("+c.r.loc.String()+")"))
	c.printf("</g>\n")
}

// drawLegend names each phase's colour with its count at the end, and the lines and shades.
func (c *canvas) drawLegend(final sample) {
	c.printf(`<g id="legend" font-size="12">` + "\n")
	y := phasesTop
	for i := len(Phases) - 1; i >= 0; i-- {
		c.printf(`<rect x="%.0f" y="%.0f" width="12" height="12" fill="%s" stroke="#969696"/>`+"\n", legendLeft, y, colours[Phases[i]])
		c.printf(`<text x="%.0f" y="%.0f">%s %d</text>`+"\n", legendLeft+18, y+10, Phases[i], final.phases[i])
		y += 20
	}
	peak := 0
	for _, s := range c.r.samples {
		peak = max(peak, s.unavailable)
	}
	c.printf(`<text x="%.0f" y="%.0f" font-size="11" fill="#525252">(nodes at the end)</text>`+"\n", legendLeft, y+4)
	y = unavailTop
	c.printf(`<line x1="%.0f" y1="%.0f" x2="%.0f" y2="%.0f" stroke="#cb181d" stroke-width="2"/>`+"\n", legendLeft, y, legendLeft+14, y)
	c.printf(`<text x="%.0f" y="%.0f">unavailable, peak %d</text>`+"\n", legendLeft+18, y+4, peak)
	y += 20
	c.printf(`<line x1="%.0f" y1="%.0f" x2="%.0f" y2="%.0f" stroke="#636363" stroke-dasharray="6 4"/>`+"\n", legendLeft, y, legendLeft+14, y)
	c.printf(`<text x="%.0f" y="%.0f">budget (maxUnavailable)</text>`+"\n", legendLeft+18, y+4)
	y += 20
	c.printf(`<rect x="%.0f" y="%.0f" width="12" height="12" fill="#fff7bc"/><text x="%.0f" y="%.0f">wave soaking</text>`+"\n", legendLeft, y-6, legendLeft+18, y+4)
	y += 20
	windows := "maintenance window open"
	if c.r.spec == nil || len(c.r.spec.MaintenanceWindows) == 0 {
		windows = "always open (no windows)"
	}
	c.printf(`<rect x="%.0f" y="%.0f" width="12" height="12" fill="#e5f5e0"/><text x="%.0f" y="%.0f">%s</text>`+"\n", legendLeft, y-6, legendLeft+18, y+4, windows)
	c.printf("</g>\n")
}

// countTicks returns at most six round values from 0 to top.
func countTicks(top int) []int {
	step := 1
	for _, s := range []int{1, 2, 5, 10, 20, 25, 50, 100, 200, 250, 500, 1000, 2000, 2500, 5000, 10000, 20000, 25000, 50000} {
		step = s
		if top/s <= 5 {
			break
		}
	}
	var out []int
	for v := 0; v <= top; v += step {
		out = append(out, v)
	}
	return out
}

// timeStep returns a round step that puts at most ten ticks on span.
func timeStep(span time.Duration) time.Duration {
	for _, s := range []time.Duration{time.Second, 2 * time.Second, 5 * time.Second, 10 * time.Second, 15 * time.Second, 30 * time.Second,
		time.Minute, 2 * time.Minute, 5 * time.Minute, 10 * time.Minute, 15 * time.Minute, 30 * time.Minute,
		time.Hour, 2 * time.Hour, 3 * time.Hour, 6 * time.Hour, 12 * time.Hour, 24 * time.Hour} {
		if span/s <= 10 {
			return s
		}
	}
	return 7 * 24 * time.Hour
}

func maxTime(a, b time.Time) time.Time {
	if a.After(b) {
		return a
	}
	return b
}

func esc(s string) string {
	var b strings.Builder
	_ = xml.EscapeText(&b, []byte(s))
	return b.String()
}

func createFile(path string) (*os.File, error) {
	if err := os.MkdirAll(filepath.Dir(path), 0o755); err != nil {
		return nil, fmt.Errorf("creating the directory of %s: %w", path, err)
	}
	f, err := os.Create(path)
	if err != nil {
		return nil, fmt.Errorf("creating %s: %w", path, err)
	}
	return f, nil
}
