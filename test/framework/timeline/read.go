package timeline

import (
	"encoding/xml"
	"errors"
	"fmt"
	"io"
	"math"
	"strconv"
	"strings"
	"time"

	"github.com/bottlerocket-ops/update-operator/api/v1alpha1"
)

// Figures are what a picture shows, read back from its drawing.
type Figures struct {
	// Final is the number of nodes in each phase at the picture's right edge.
	Final map[v1alpha1.NodePhase]int
	// PeakUnavailable is the highest point of the unavailable line; Budget the budget line's
	// last value.
	PeakUnavailable, Budget int
	// Windows counts the shaded maintenance windows; Soaks are the shaded soaks, WaveStarts
	// name the waves whose start is marked.
	Windows    int
	Soaks      []Soak
	WaveStarts []string

	right map[v1alpha1.NodePhase]float64 // the right end of each phase's rightmost band
}

// Soak is a wave's soak as shaded.
type Soak struct {
	Wave     string
	From, To time.Time
}

// Read parses an SVG picture written by Render (failing on XML that is not well-formed) and
// measures what it draws: the bands' heights at the right edge, the lines' points, in the
// scales each panel declares.
func Read(r io.Reader) (Figures, error) {
	f := Figures{Final: map[v1alpha1.NodePhase]int{}, right: map[v1alpha1.NodePhase]float64{}}
	dec := xml.NewDecoder(r)
	dec.Strict = true
	var group map[string]string // attributes of the innermost <g>
	var sawSVG bool
	for {
		tok, err := dec.Token()
		if errors.Is(err, io.EOF) {
			break
		}
		if err != nil {
			return f, fmt.Errorf("reading the picture: %w", err)
		}
		el, ok := tok.(xml.StartElement)
		if !ok {
			continue
		}
		a := attrs(el)
		switch el.Name.Local {
		case "svg":
			if el.Name.Space != "http://www.w3.org/2000/svg" {
				return f, fmt.Errorf("the root element is in namespace %q, not SVG's", el.Name.Space)
			}
			sawSVG = true
		case "g":
			group = a
		case "rect":
			if err := f.rect(a, group); err != nil {
				return f, err
			}
		case "polyline":
			if err := f.polyline(a, group); err != nil {
				return f, err
			}
		case "line":
			if a["class"] == classWave {
				f.WaveStarts = append(f.WaveStarts, a["data-wave"])
			}
		}
	}
	if !sawSVG {
		return f, errors.New("the picture has no <svg> element")
	}
	for phase, right := range f.right {
		if math.Abs(right-plotRight) > 0.02 { // the coordinates are rounded to 0.01
			delete(f.Final, phase) // its band ended before the picture did
		}
	}
	return f, nil
}

func attrs(el xml.StartElement) map[string]string {
	m := map[string]string{}
	for _, a := range el.Attr {
		m[a.Name.Local] = a.Value
	}
	return m
}

func (f *Figures) rect(a, group map[string]string) error {
	switch {
	case a["class"] == classWindow:
		f.Windows++
	case a["class"] == classSoak:
		from, err1 := time.Parse(time.RFC3339, a["data-start"])
		to, err2 := time.Parse(time.RFC3339, a["data-end"])
		if err := errors.Join(err1, err2); err != nil {
			return fmt.Errorf("the soak of wave %s: %w", a["data-wave"], err)
		}
		f.Soaks = append(f.Soaks, Soak{Wave: a["data-wave"], From: from, To: to})
	case a["data-phase"] != "" && group["id"] == idPhases:
		v, err := floats(a["x"], a["width"], a["height"], group["data-unit"])
		if err != nil {
			return fmt.Errorf("phase band %s: %w", a["data-phase"], err)
		}
		// A phase's band at the right edge is its rightmost rectangle (one that ended a moment
		// before the edge is the band before the last change).
		phase := v1alpha1.NodePhase(a["data-phase"])
		if x, w, h, unit := v[0], v[1], v[2], v[3]; x+w >= f.right[phase] {
			f.right[phase] = x + w
			f.Final[phase] = int(math.Round(h / unit))
		}
	}
	return nil
}

func (f *Figures) polyline(a, group map[string]string) error {
	if group["id"] != idUnavailable {
		return nil
	}
	scale, err := floats(group["data-base"], group["data-unit"])
	if err != nil {
		return fmt.Errorf("the unavailability panel: %w", err)
	}
	base, unit := scale[0], scale[1]
	var values []int
	for _, pt := range strings.Fields(a["points"]) {
		_, ys, ok := strings.Cut(pt, ",")
		y, err := strconv.ParseFloat(ys, 64)
		if !ok || err != nil {
			return fmt.Errorf("series %s: point %q", a["data-series"], pt)
		}
		values = append(values, int(math.Round((base-y)/unit)))
	}
	if len(values) == 0 {
		return fmt.Errorf("series %s has no points", a["data-series"])
	}
	switch a["data-series"] {
	case "unavailable":
		for _, v := range values {
			f.PeakUnavailable = max(f.PeakUnavailable, v)
		}
	case "budget":
		f.Budget = values[len(values)-1]
	}
	return nil
}

// floats parses each of s as a number.
func floats(s ...string) ([]float64, error) {
	out := make([]float64, len(s))
	for i := range s {
		v, err := strconv.ParseFloat(s[i], 64)
		if err != nil {
			return nil, fmt.Errorf("not a number: %q", s[i])
		}
		out[i] = v
	}
	return out, nil
}
