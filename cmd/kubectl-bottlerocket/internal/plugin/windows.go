package plugin

import (
	"time"

	"github.com/bottlerocket-ops/update-operator/api/v1alpha1"
)

// windowState is what the maintenance windows of one wave say at an instant.
type windowState struct {
	// none: the wave has no windows (always open).
	none bool
	// open: a window is open now, until change.
	open bool
	// change is when the open window closes, or when the next one opens (zero: never).
	change time.Time
	// zone is the time zone of the window that changes first.
	zone *time.Location
	// zoneName is that zone's IANA name.
	zoneName string
	// err: a window does not parse (the controller fails closed: nothing starts).
	err error
}

// windowsAt reads the maintenance windows that apply to the wave at now, as the controller
// does: the wave's own when it has any, else the policy's.
func windowsAt(spec *v1alpha1.UpdatePolicySpec, wave string, now time.Time) windowState {
	mws := spec.WindowsFor(wave)
	if len(mws) == 0 {
		return windowState{none: true, open: true}
	}
	if _, err := v1alpha1.ParseWindows(mws); err != nil {
		return windowState{err: err}
	}
	var open, closed windowState
	for _, mw := range mws {
		w, _ := mw.Parse()
		o, change := w.State(now)
		name := mw.TimeZone
		if name == "" {
			name = "UTC"
		}
		loc, _ := time.LoadLocation(name)
		s := windowState{open: o, change: change, zone: loc, zoneName: name}
		switch {
		case o && (!open.open || later(change, open.change)):
			open = s // the window open longest decides when disruption stops
		case !o && !change.IsZero() && (closed.change.IsZero() || change.Before(closed.change)):
			closed = s
		}
	}
	if open.open {
		return open
	}
	return closed
}

// later reports whether a is later than b, a zero time standing for "never" (the latest).
func later(a, b time.Time) bool {
	if a.IsZero() {
		return !b.IsZero()
	}
	return !b.IsZero() && a.After(b)
}

// describe says what the windows mean for starting a disruption now.
func (w windowState) describe(now time.Time) string {
	switch {
	case w.err != nil:
		return "invalid: " + w.err.Error()
	case w.none:
		return "always"
	case w.open && w.change.IsZero():
		return "open"
	case w.open:
		return "open until " + when(w.change, now, w.zone, w.zoneName)
	case w.change.IsZero():
		return "never again"
	}
	return when(w.change, now, w.zone, w.zoneName)
}
