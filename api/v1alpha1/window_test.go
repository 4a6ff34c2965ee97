package v1alpha1_test

import (
	"strings"
	"testing"
	"time"

	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"

	"github.com/bottlerocket-ops/update-operator/api/v1alpha1"
)

func mustZone(t *testing.T, name string) *time.Location {
	t.Helper()
	loc, err := time.LoadLocation(name)
	if err != nil {
		t.Fatal(err)
	}
	return loc
}

func mw(schedule string, d time.Duration, zone string) v1alpha1.MaintenanceWindow {
	return v1alpha1.MaintenanceWindow{Schedule: schedule, Duration: metav1.Duration{Duration: d}, TimeZone: zone}
}

func TestWindowState(t *testing.T) {
	berlin := mustZone(t, "Europe/Berlin")
	newYork := mustZone(t, "America/New_York")
	utc := time.UTC
	tests := []struct {
		name       string
		window     v1alpha1.MaintenanceWindow
		now        time.Time
		wantOpen   bool
		wantChange time.Time // close when open, next start when closed
	}{
		{"before a window across midnight", mw("0 22 * * *", 4*time.Hour, "UTC"),
			time.Date(2026, 6, 1, 21, 59, 0, 0, utc), false, time.Date(2026, 6, 1, 22, 0, 0, 0, utc)},
		{"at its start", mw("0 22 * * *", 4*time.Hour, "UTC"),
			time.Date(2026, 6, 1, 22, 0, 0, 0, utc), true, time.Date(2026, 6, 2, 2, 0, 0, 0, utc)},
		{"after midnight, still open", mw("0 22 * * *", 4*time.Hour, "UTC"),
			time.Date(2026, 6, 2, 1, 59, 59, 0, utc), true, time.Date(2026, 6, 2, 2, 0, 0, 0, utc)},
		{"at its end, closed", mw("0 22 * * *", 4*time.Hour, "UTC"),
			time.Date(2026, 6, 2, 2, 0, 0, 0, utc), false, time.Date(2026, 6, 2, 22, 0, 0, 0, utc)},
		{"weekdays only: Friday night runs into Saturday", mw("0 22 * * 1-5", 4*time.Hour, "UTC"),
			time.Date(2026, 6, 6, 1, 0, 0, 0, utc), true, time.Date(2026, 6, 6, 2, 0, 0, 0, utc)},
		{"weekdays only: Saturday night waits for Monday", mw("0 22 * * 1-5", 4*time.Hour, "UTC"),
			time.Date(2026, 6, 6, 23, 0, 0, 0, utc), false, time.Date(2026, 6, 8, 22, 0, 0, 0, utc)},
		{"read in the zone: 22:00 Berlin is 20:00 UTC in summer", mw("0 22 * * *", time.Hour, "Europe/Berlin"),
			time.Date(2026, 6, 1, 20, 30, 0, 0, utc), true, time.Date(2026, 6, 1, 21, 0, 0, 0, utc)},
		{"and 21:00 UTC in winter", mw("0 22 * * *", time.Hour, "Europe/Berlin"),
			time.Date(2026, 12, 1, 20, 30, 0, 0, utc), false, time.Date(2026, 12, 1, 21, 0, 0, 0, utc)},
		{"the night before spring forward: 22:00 CET", mw("0 22 * * *", 6*time.Hour, "Europe/Berlin"),
			time.Date(2026, 3, 28, 20, 0, 0, 0, utc), false, time.Date(2026, 3, 28, 21, 0, 0, 0, utc)},
		{"across spring forward the window lasts 6 elapsed hours", mw("0 22 * * *", 6*time.Hour, "Europe/Berlin"),
			time.Date(2026, 3, 29, 2, 59, 0, 0, utc), true, time.Date(2026, 3, 29, 3, 0, 0, 0, utc)},
		{"the day after spring forward: 22:00 CEST", mw("0 22 * * *", 6*time.Hour, "Europe/Berlin"),
			time.Date(2026, 3, 29, 12, 0, 0, 0, utc), false, time.Date(2026, 3, 29, 20, 0, 0, 0, utc)},
		{"a start in the skipped hour opens when the clock jumps", mw("30 2 * * *", time.Hour, "Europe/Berlin"),
			time.Date(2026, 3, 28, 12, 0, 0, 0, utc), false, time.Date(2026, 3, 29, 1, 0, 0, 0, utc)},
		{"and is open from then on", mw("30 2 * * *", time.Hour, "Europe/Berlin"),
			time.Date(2026, 3, 29, 1, 0, 0, 0, utc), true, time.Date(2026, 3, 29, 2, 0, 0, 0, utc)},
		{"a start in the repeated hour opens once, at its first occurrence", mw("30 2 * * *", 30*time.Minute, "Europe/Berlin"),
			time.Date(2026, 10, 24, 12, 0, 0, 0, utc), false, time.Date(2026, 10, 25, 0, 30, 0, 0, utc)},
		{"not again an hour later", mw("30 2 * * *", 30*time.Minute, "Europe/Berlin"),
			time.Date(2026, 10, 25, 1, 0, 0, 0, utc), false, time.Date(2026, 10, 26, 1, 30, 0, 0, utc)},
		{"across fall back the window lasts 4 elapsed hours", mw("0 1 * * *", 4*time.Hour, "Europe/Berlin"),
			time.Date(2026, 10, 25, 2, 30, 0, 0, utc), true, time.Date(2026, 10, 25, 3, 0, 0, 0, utc)},
		{"New York spring forward", mw("30 2 * * *", time.Hour, "America/New_York"),
			time.Date(2026, 3, 8, 6, 59, 0, 0, utc), false, time.Date(2026, 3, 8, 3, 0, 0, 0, newYork)},
		{"New York fall back: 01:30 opens at its first (EDT) occurrence", mw("30 1 * * *", 20*time.Minute, "America/New_York"),
			time.Date(2026, 10, 31, 12, 0, 0, 0, utc), false, time.Date(2026, 11, 1, 5, 30, 0, 0, utc)},
		{"descriptor @daily in Berlin", mw("@daily", time.Hour, "Europe/Berlin"),
			time.Date(2026, 6, 1, 22, 30, 0, 0, utc), true, time.Date(2026, 6, 1, 23, 0, 0, 0, utc)},
		{"empty time zone is UTC", mw("@hourly", 10*time.Minute, ""),
			time.Date(2026, 6, 1, 12, 5, 0, 0, utc), true, time.Date(2026, 6, 1, 12, 10, 0, 0, utc)},
		{"a long window overlapping the next start", mw("0 * * * *", 90*time.Minute, "UTC"),
			time.Date(2026, 6, 1, 12, 45, 0, 0, utc), true, time.Date(2026, 6, 1, 13, 30, 0, 0, utc)},
		{"a schedule that never fires", mw("0 0 30 2 *", time.Hour, "UTC"),
			time.Date(2026, 6, 1, 12, 0, 0, 0, utc), false, time.Time{}},
		{"Berlin wall clock check", mw("0 22 * * *", time.Hour, "Europe/Berlin"),
			time.Date(2026, 6, 1, 22, 30, 0, 0, berlin), true, time.Date(2026, 6, 1, 23, 0, 0, 0, berlin)},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			w, err := tt.window.Parse()
			if err != nil {
				t.Fatal(err)
			}
			open, change := w.State(tt.now)
			if open != tt.wantOpen || !change.Equal(tt.wantChange) {
				t.Errorf("State(%s) = %v, %s; want %v, %s", tt.now, open, change.UTC(), tt.wantOpen, tt.wantChange.UTC())
			}
		})
	}
}

func TestWindowParseFailsClosed(t *testing.T) {
	tests := []struct {
		window v1alpha1.MaintenanceWindow
		want   string
	}{
		{mw("61 * * * *", time.Hour, "UTC"), "schedule"},
		{mw("0 22 * *", time.Hour, "UTC"), "schedule"},
		{mw("CRON_TZ=Asia/Tokyo 0 22 * * *", time.Hour, "UTC"), "timeZone"},
		{mw("0 22 * * *", time.Hour, "Mars/Olympus_Mons"), "time zone"},
		{mw("0 22 * * *", 0, "UTC"), "duration"},
	}
	for _, tt := range tests {
		if _, err := tt.window.Parse(); err == nil || !strings.Contains(err.Error(), tt.want) {
			t.Errorf("Parse(%+v) = %v, want an error about %s", tt.window, err, tt.want)
		}
		spec := v1alpha1.UpdatePolicySpec{MaintenanceWindows: []v1alpha1.MaintenanceWindow{mw("@daily", 24*time.Hour, "UTC"), tt.window}}
		if ok, err := spec.DisruptionAllowed("any", time.Date(2026, 6, 1, 12, 0, 0, 0, time.UTC)); ok || err == nil {
			t.Errorf("DisruptionAllowed with %+v = %v, %v; want false and an error", tt.window, ok, err)
		}
	}
}

func TestWindowsState(t *testing.T) {
	now := time.Date(2026, 6, 1, 12, 0, 0, 0, time.UTC)
	none, _ := v1alpha1.ParseWindows(nil)
	if open, change, next := none.State(now); !open || !change.IsZero() || !next.IsZero() {
		t.Errorf("no windows: %v %s %s, want always open", open, change, next)
	}
	ws, err := v1alpha1.ParseWindows([]v1alpha1.MaintenanceWindow{mw("0 14 * * *", time.Hour, "UTC"), mw("0 13 * * *", 30*time.Minute, "UTC")})
	if err != nil {
		t.Fatal(err)
	}
	if open, change, next := ws.State(now); open || !change.Equal(now.Add(time.Hour)) || !next.Equal(now.Add(time.Hour)) {
		t.Errorf("closed: %v %s %s", open, change, next)
	}
	if open, change, next := ws.State(now.Add(70 * time.Minute)); !open || !change.Equal(now.Add(90*time.Minute)) || !next.IsZero() {
		t.Errorf("open: %v %s %s", open, change, next)
	}
}

func TestWindowsFor(t *testing.T) {
	spec := v1alpha1.UpdatePolicySpec{
		MaintenanceWindows: []v1alpha1.MaintenanceWindow{mw("0 22 * * *", time.Hour, "UTC")},
		Waves: []v1alpha1.Wave{
			{Name: "own", MaintenanceWindows: []v1alpha1.MaintenanceWindow{mw("0 12 * * *", time.Hour, "UTC")}},
			{Name: "inherits"},
		},
	}
	noon := time.Date(2026, 6, 1, 12, 30, 0, 0, time.UTC)
	for wave, want := range map[string]bool{"own": true, "inherits": false, "rest": false} {
		if got, err := spec.DisruptionAllowed(wave, noon); got != want || err != nil {
			t.Errorf("wave %s at noon: %v, %v; want %v", wave, got, err, want)
		}
	}
}
