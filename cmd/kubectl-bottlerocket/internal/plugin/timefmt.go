package plugin

import (
	"fmt"
	"time"
)

// when renders an instant for a person reading it at now: the time of day when it is today,
// the weekday too within a week, the date beyond; in loc, with the zone's name.
func when(t, now time.Time, loc *time.Location, zone string) string {
	l, n := t.In(loc), now.In(loc)
	layout := "Mon 2006-01-02 15:04"
	switch {
	case l.Year() == n.Year() && l.YearDay() == n.YearDay():
		layout = "15:04"
	case l.After(n) && l.Sub(n) < 6*24*time.Hour, n.After(l) && n.Sub(l) < 6*24*time.Hour:
		layout = "Mon 15:04"
	}
	if zone == "" {
		zone = l.Format("MST")
	}
	return l.Format(layout) + " " + zone
}

// relative says how far t is from now: "in 3h12m" or "5m ago".
func relative(t, now time.Time) string {
	d := t.Sub(now)
	if d >= 0 {
		return "in " + short(d)
	}
	return short(-d) + " ago"
}

// short is a duration rounded for a person: seconds under a minute, minutes under a day.
func short(d time.Duration) string {
	switch {
	case d < time.Minute:
		return fmt.Sprintf("%ds", int(d.Seconds()))
	case d < time.Hour:
		return fmt.Sprintf("%dm", int(d.Minutes()))
	case d < 24*time.Hour:
		h := int(d.Hours())
		if m := int(d.Minutes()) - 60*h; m > 0 {
			return fmt.Sprintf("%dh%dm", h, m)
		}
		return fmt.Sprintf("%dh", h)
	}
	days := int(d.Hours()) / 24
	if h := int(d.Hours()) - 24*days; h > 0 {
		return fmt.Sprintf("%dd%dh", days, h)
	}
	return fmt.Sprintf("%dd", days)
}

// at is when plus relative: "Sat 22:00 Europe/Berlin (in 3h12m)".
func at(t, now time.Time, loc *time.Location, zone string) string {
	return when(t, now, loc, zone) + " (" + relative(t, now) + ")"
}
