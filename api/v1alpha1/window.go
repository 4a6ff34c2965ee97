package v1alpha1

import (
	"errors"
	"fmt"
	"strings"
	"time"

	"github.com/robfig/cron/v3"
)

// dstMargin bounds how far a zone's offset can move a wall-clock time from the same time
// read in UTC; window starts are searched this far around the instant asked about.
const dstMargin = 3 * time.Hour

// Window is a parsed MaintenanceWindow: its schedule is read on the wall clock of its time
// zone, so a daily window opens at the same local time on both sides of a daylight saving
// change, and once on each day:
//   - a start that falls in the hour skipped in spring opens the window when the clock jumps;
//   - a start that falls in the hour repeated in autumn opens it at the first occurrence.
//
// The window stays open for Duration of elapsed time from each start.
//
// +kubebuilder:object:generate=false
type Window struct {
	schedule cron.Schedule
	location *time.Location
	duration time.Duration
}

// Parse validates the window: a five-field cron schedule or a descriptor, a positive
// duration and an IANA time zone this process knows (empty means UTC).
func (w MaintenanceWindow) Parse() (Window, error) {
	if strings.Contains(w.Schedule, "TZ=") {
		return Window{}, fmt.Errorf("schedule %q: set the time zone in timeZone, not in the schedule", w.Schedule)
	}
	sched, err := cron.ParseStandard(w.Schedule)
	if err != nil {
		return Window{}, fmt.Errorf("schedule %q: %w", w.Schedule, err)
	}
	if w.Duration.Duration <= 0 {
		return Window{}, fmt.Errorf("schedule %q: duration must be positive", w.Schedule)
	}
	zone := w.TimeZone
	if zone == "" {
		zone = "UTC"
	}
	loc, err := time.LoadLocation(zone)
	if err != nil {
		return Window{}, fmt.Errorf("time zone %q: %w", zone, err)
	}
	return Window{schedule: sched, location: loc, duration: w.Duration.Duration}, nil
}

// wall returns t's wall clock in the window's zone as the same fields in UTC.
func (w Window) wall(t time.Time) time.Time {
	l := t.In(w.location)
	return time.Date(l.Year(), l.Month(), l.Day(), l.Hour(), l.Minute(), l.Second(), 0, time.UTC)
}

// instant returns the instant at which the window's zone shows the wall clock wall (fields
// read in UTC); see Window for times skipped or repeated by a daylight saving change.
func (w Window) instant(wall time.Time) time.Time {
	t := time.Date(wall.Year(), wall.Month(), wall.Day(), wall.Hour(), wall.Minute(), wall.Second(), 0, w.location)
	if w.wall(t).Equal(wall) {
		// A repeated wall clock: prefer its first occurrence.
		_, before := t.Add(-12 * time.Hour).Zone()
		_, after := t.Zone()
		if earlier := t.Add(-time.Duration(before-after) * time.Second); earlier.Before(t) && w.wall(earlier).Equal(wall) {
			return earlier
		}
		return t
	}
	// A skipped wall clock: the first instant whose wall clock is past it.
	lo, hi := t.Add(-dstMargin), t.Add(dstMargin)
	for hi.Sub(lo) > time.Second {
		mid := lo.Add(hi.Sub(lo) / 2)
		if w.wall(mid).After(wall) {
			hi = mid
		} else {
			lo = mid
		}
	}
	return hi.Truncate(time.Second)
}

// starts calls fn with the window's starts, as instants, in wall-clock order from the first
// start after the wall clock of from minus dstMargin, until fn returns false or the schedule
// ends.
func (w Window) starts(from time.Time, fn func(time.Time) bool) {
	for s := w.schedule.Next(w.wall(from).Add(-dstMargin)); !s.IsZero(); s = w.schedule.Next(s) {
		if !fn(w.instant(s)) {
			return
		}
	}
}

// State reports whether the window is open at now, and when that changes: the end of the
// open occurrence, or the next start. change is zero when the schedule never starts again.
func (w Window) State(now time.Time) (open bool, change time.Time) {
	limit := now.Add(2 * dstMargin)
	w.starts(now.Add(-w.duration), func(s time.Time) bool {
		switch {
		case !s.After(now) && now.Before(s.Add(w.duration)):
			open, change = true, s.Add(w.duration)
			return false
		case s.After(now) && (change.IsZero() || s.Before(change)):
			change = s
		}
		return s.Before(limit) || change.IsZero()
	})
	return open, change
}

// Windows is a set of parsed maintenance windows. An empty set is always open.
//
// +kubebuilder:object:generate=false
type Windows []Window

// ParseWindows parses every window; the first error is returned (with every window named).
func ParseWindows(ws []MaintenanceWindow) (Windows, error) {
	parsed := make(Windows, 0, len(ws))
	var errs []error
	for i, w := range ws {
		p, err := w.Parse()
		if err != nil {
			errs = append(errs, fmt.Errorf("maintenanceWindows[%d]: %w", i, err))
			continue
		}
		parsed = append(parsed, p)
	}
	if len(errs) > 0 {
		return nil, errors.Join(errs...)
	}
	return parsed, nil
}

// State reports whether any window is open at now, the earliest time that any window opens
// or closes after now (zero: never), and, when none is open, when the next one opens.
func (ws Windows) State(now time.Time) (open bool, change, nextOpen time.Time) {
	if len(ws) == 0 {
		return true, time.Time{}, time.Time{}
	}
	for _, w := range ws {
		o, c := w.State(now)
		open = open || o
		change = earliest(change, c)
		if !o {
			nextOpen = earliest(nextOpen, c)
		}
	}
	if open {
		nextOpen = time.Time{}
	}
	return open, change, nextOpen
}

// earliest returns the earlier of a and b, a zero time standing for "never".
func earliest(a, b time.Time) time.Time {
	if a.IsZero() || (!b.IsZero() && b.Before(a)) {
		return b
	}
	return a
}

// WindowsFor returns the maintenance windows that apply to the named wave: the wave's own
// when it sets any, else the policy's.
func (s *UpdatePolicySpec) WindowsFor(wave string) []MaintenanceWindow {
	for i := range s.Waves {
		if s.Waves[i].Name == wave && len(s.Waves[i].MaintenanceWindows) > 0 {
			return s.Waves[i].MaintenanceWindows
		}
	}
	return s.MaintenanceWindows
}

// DisruptionAllowed reports whether a node of the named wave may start being disrupted at
// now. It fails closed: an invalid schedule or time zone allows nothing and is returned.
func (s *UpdatePolicySpec) DisruptionAllowed(wave string, now time.Time) (bool, error) {
	ws, err := ParseWindows(s.WindowsFor(wave))
	if err != nil {
		return false, err
	}
	open, _, _ := ws.State(now)
	return open, nil
}
