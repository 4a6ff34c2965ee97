package hostsim_test

// These tests talk to the simulator with plain net/http and encoding/json, as
// an independent check of the wire protocol (not through package hostapi).

import (
	"context"
	"encoding/json"
	"io"
	"net"
	"net/http"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"testing"
	"time"

	"k8s.io/apimachinery/pkg/util/wait"
	clocktesting "k8s.io/utils/clock/testing"

	"github.com/bottlerocket-ops/update-operator/test/framework/hostsim"
)

// epoch is where the tests' fake clocks start.
var epoch = time.Date(2025, 3, 30, 1, 30, 0, 0, time.UTC)

// awaitTimers waits (in real time, bounded) until n timers wait on clk, so that a Step lands
// after the waits it is meant to end have begun.
func awaitTimers(t *testing.T, clk *clocktesting.FakeClock, n int) {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
	defer cancel()
	if err := wait.PollUntilContextCancel(ctx, time.Millisecond, true, func(context.Context) (bool, error) {
		return clk.Waiters() >= n, nil
	}); err != nil {
		t.Fatalf("waiting for %d timers on the fake clock (%d): %v", n, clk.Waiters(), err)
	}
}

type rawImage struct {
	Arch, Version, Variant string
}

type rawPartition struct {
	Image      *rawImage `json:"image"`
	NextToBoot bool      `json:"next_to_boot"`
}

type rawStatus struct {
	UpdateState       string        `json:"update_state"`
	AvailableUpdates  []string      `json:"available_updates"`
	ChosenUpdate      *rawImage     `json:"chosen_update"`
	ActivePartition   *rawPartition `json:"active_partition"`
	StagingPartition  *rawPartition `json:"staging_partition"`
	MostRecentCommand *struct {
		CmdType    string  `json:"cmd_type"`
		CmdStatus  string  `json:"cmd_status"`
		Timestamp  string  `json:"timestamp"`
		ExitStatus *int    `json:"exit_status"`
		Stderr     *string `json:"stderr"`
	} `json:"most_recent_command"`
}

func (s rawStatus) chosen() string {
	if s.ChosenUpdate == nil {
		return ""
	}
	return s.ChosenUpdate.Version
}

type rawHost struct {
	t      *testing.T
	h      *hostsim.Host
	dir    string
	c      *http.Client
	events chan hostsim.RebootEvent
}

// start serves a simulated host on a short socket path (Unix paths are
// limited to 108 bytes, t.TempDir's can be longer).
func start(t *testing.T, cfg hostsim.Config) *rawHost {
	t.Helper()
	dir, err := os.MkdirTemp("", "hs")
	if err != nil {
		t.Fatal(err)
	}
	r := &rawHost{t: t, dir: dir, events: make(chan hostsim.RebootEvent, 16)}
	cfg.OnReboot = func(ev hostsim.RebootEvent) { r.events <- ev }
	if cfg.BootIDFile == "" {
		cfg.BootIDFile = filepath.Join(dir, "boot_id")
	}
	sock := filepath.Join(dir, "api.sock")
	r.h = hostsim.New(cfg)
	if err := r.h.Start(sock); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() {
		r.h.Close()
		_ = os.RemoveAll(dir)
	})
	r.c = &http.Client{Timeout: 5 * time.Second, Transport: &http.Transport{
		DisableKeepAlives: true,
		DialContext: func(ctx context.Context, _, _ string) (net.Conn, error) {
			return (&net.Dialer{}).DialContext(ctx, "unix", sock)
		},
	}}
	return r
}

// try sends a request; err is a transport error.
func (r *rawHost) try(method, path, body string) (int, []byte, error) {
	req, err := http.NewRequest(method, "http://localhost"+path, strings.NewReader(body))
	if err != nil {
		r.t.Fatal(err)
	}
	resp, err := r.c.Do(req)
	if err != nil {
		return 0, nil, err
	}
	b, err := io.ReadAll(resp.Body)
	_ = resp.Body.Close() // read whole; the connection is not reused (DisableKeepAlives)
	return resp.StatusCode, b, err
}

func (r *rawHost) do(method, path, body string) (int, []byte) {
	r.t.Helper()
	code, b, err := r.try(method, path, body)
	if err != nil {
		r.t.Fatalf("%s %s: %v", method, path, err)
	}
	return code, b
}

func (r *rawHost) wait(cond func(hostsim.State) bool) {
	r.t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
	defer cancel()
	if err := r.h.WaitFor(ctx, cond); err != nil {
		r.t.Fatalf("waiting for the host: %v (state %+v)", err, r.h.State())
	}
}

func idle(s hostsim.State) bool { return !s.Busy }

// command POSTs an update action, waits for it to end and returns the code.
func (r *rawHost) command(action string) int {
	r.t.Helper()
	code, _ := r.do(http.MethodPost, "/actions/"+action, "")
	r.wait(idle)
	return code
}

func (r *rawHost) status() (int, rawStatus) {
	r.t.Helper()
	code, b := r.do(http.MethodGet, "/updates/status", "")
	var s rawStatus
	if code == http.StatusOK {
		if err := json.Unmarshal(b, &s); err != nil {
			r.t.Fatalf("decode status %s: %v", b, err)
		}
	}
	return code, s
}

func (r *rawHost) mustStatus() rawStatus {
	r.t.Helper()
	code, s := r.status()
	if code != http.StatusOK {
		r.t.Fatalf("GET /updates/status = %d", code)
	}
	return s
}

func (r *rawHost) settings(patch string) {
	r.t.Helper()
	if code, b := r.do(http.MethodPatch, "/settings?tx=t1", patch); code != http.StatusNoContent {
		r.t.Fatalf("PATCH /settings = %d %s", code, b)
	}
	if code, b := r.do(http.MethodPost, "/tx/commit_and_apply?tx=t1", ""); code != http.StatusOK {
		r.t.Fatalf("commit = %d %s", code, b)
	}
}

func (r *rawHost) event(phase hostsim.RebootPhase) hostsim.RebootEvent {
	r.t.Helper()
	select {
	case ev := <-r.events:
		if ev.Phase != phase {
			r.t.Fatalf("reboot event %+v, want phase %s", ev, phase)
		}
		return ev
	case <-time.After(5 * time.Second):
		r.t.Fatalf("no reboot event %s", phase)
	}
	return hostsim.RebootEvent{}
}

func TestStateMachine(t *testing.T) {
	actions := []string{"refresh-updates", "prepare-update", "activate-update", "deactivate-update"}
	type outcome struct {
		code  int
		state string
	}
	const ok, conflict = http.StatusNoContent, http.StatusConflict
	for _, tc := range []struct {
		name     string
		releases []string
		setup    []string
		want     [4]outcome // per action, in the order above
	}{
		{"uninitialized", []string{"1.26.0"}, nil,
			[4]outcome{{ok, "Available"}, {conflict, ""}, {conflict, ""}, {conflict, ""}}},
		{"Idle", []string{"1.24.0", "1.25.0"}, []string{"refresh-updates"},
			[4]outcome{{ok, "Idle"}, {conflict, "Idle"}, {conflict, "Idle"}, {conflict, "Idle"}}},
		{"Available", []string{"1.26.0"}, []string{"refresh-updates"},
			[4]outcome{{ok, "Available"}, {ok, "Staged"}, {conflict, "Available"}, {conflict, "Available"}}},
		{"Staged", []string{"1.26.0"}, []string{"refresh-updates", "prepare-update"},
			[4]outcome{{ok, "Staged"}, {ok, "Staged"}, {ok, "Ready"}, {conflict, "Staged"}}},
		{"Ready", []string{"1.26.0"}, []string{"refresh-updates", "prepare-update", "activate-update"},
			[4]outcome{{ok, "Ready"}, {conflict, "Ready"}, {conflict, "Ready"}, {ok, "Staged"}}},
	} {
		for i, action := range actions {
			t.Run(tc.name+"/"+action, func(t *testing.T) {
				r := start(t, hostsim.Config{Version: "1.25.0", Releases: hostsim.Releases(tc.releases...),
					RefreshDuration: time.Millisecond, PrepareDuration: time.Millisecond, ActivateDuration: time.Millisecond})
				for _, s := range tc.setup {
					if code := r.command(s); code != ok {
						t.Fatalf("setup %s = %d", s, code)
					}
				}
				if code := r.command(action); code != tc.want[i].code {
					t.Fatalf("%s = %d, want %d", action, code, tc.want[i].code)
				}
				code, s := r.status()
				if tc.want[i].state == "" {
					if code != http.StatusNotFound {
						t.Fatalf("status = %d, want 404 (uninitialized)", code)
					}
					return
				}
				if code != http.StatusOK || s.UpdateState != tc.want[i].state {
					t.Fatalf("status %d, state %q, want %q", code, s.UpdateState, tc.want[i].state)
				}
				last := actions[i]
				if tc.want[i].code != ok {
					last = tc.setup[len(tc.setup)-1]
				}
				if m := s.MostRecentCommand; m == nil || m.CmdType+"-"+suffix(last) != last || m.CmdStatus != "Success" || *m.ExitStatus != 0 {
					t.Fatalf("most_recent_command %+v, want %s Success", m, last)
				}
				wantNext := s.UpdateState == "Ready"
				if s.UpdateState == "Staged" || s.UpdateState == "Ready" {
					if p := s.StagingPartition; p == nil || p.Image.Version != "1.26.0" || p.NextToBoot != wantNext ||
						s.ActivePartition.NextToBoot == wantNext {
						t.Fatalf("partitions %+v %+v", s.ActivePartition, s.StagingPartition)
					}
				}
			})
		}
	}
}

func suffix(action string) string { return action[strings.Index(action, "-")+1:] }

func TestPrepareRereadsSettings(t *testing.T) {
	r := start(t, hostsim.Config{Version: "1.25.0", Releases: hostsim.Releases("1.25.0", "1.26.0")})
	r.command("refresh-updates")
	r.settings(`{"updates":{"version-lock":"1.25.0"}}`) // pinned to the running version: nothing to choose
	if code := r.command("prepare-update"); code != http.StatusNotFound {
		t.Fatalf("prepare = %d, want 404", code)
	}
	if s := r.mustStatus(); s.UpdateState != "Available" || s.ChosenUpdate != nil {
		t.Fatalf("status %+v", s)
	}
}

func TestFailedRefreshFromAvailable(t *testing.T) {
	r := start(t, hostsim.Config{Version: "1.25.0", Releases: hostsim.Releases("1.26.0")})
	r.command("refresh-updates")
	r.h.FailRefresh("Failed to fetch manifest")
	r.command("refresh-updates")
	s := r.mustStatus()
	if m := s.MostRecentCommand; s.UpdateState != "Idle" || m.CmdStatus != "Failed" || *m.ExitStatus == 0 || *m.Stderr != "Failed to fetch manifest" {
		t.Fatalf("status %+v, command %+v", s, m)
	}
}

func TestLockedWhileCommandRuns(t *testing.T) {
	clk := clocktesting.NewFakeClock(epoch)
	r := start(t, hostsim.Config{Version: "1.25.0", Releases: hostsim.Releases("1.26.0"), PrepareDuration: time.Hour, Clock: clk})
	r.command("refresh-updates")
	if code, _ := r.do(http.MethodPost, "/actions/prepare-update", ""); code != http.StatusNoContent {
		t.Fatalf("prepare = %d", code)
	}
	for _, req := range [][2]string{
		{http.MethodGet, "/updates/status"},
		{http.MethodPost, "/actions/refresh-updates"},
		{http.MethodPost, "/actions/prepare-update"},
		{http.MethodPost, "/actions/activate-update"},
		{http.MethodPost, "/actions/deactivate-update"},
	} {
		if code, body := r.do(req[0], req[1], ""); code != http.StatusLocked || len(body) != 0 {
			t.Errorf("%s %s = %d %q, want 423 with an empty body", req[0], req[1], code, body)
		}
	}
	for _, path := range []string{"/os", "/settings"} {
		if code, _ := r.do(http.MethodGet, path, ""); code != http.StatusOK {
			t.Errorf("GET %s = %d while locked, want 200", path, code)
		}
	}

	// The lock holds for PrepareDuration on the host's clock, not a moment less.
	awaitTimers(t, clk, 1)
	clk.Step(time.Hour - time.Nanosecond)
	if code, _ := r.do(http.MethodGet, "/updates/status", ""); code != http.StatusLocked {
		t.Fatalf("status %s into a one-hour prepare = %d, want 423", time.Hour-time.Nanosecond, code)
	}
	clk.Step(time.Nanosecond)
	r.wait(idle)
	s := r.mustStatus()
	if m := s.MostRecentCommand; s.UpdateState != "Staged" || m.CmdType != "prepare" || m.Timestamp != epoch.Add(time.Hour).Format(time.RFC3339Nano) {
		t.Fatalf("status %+v, command %+v, want Staged by a prepare stamped %s", s, m, epoch.Add(time.Hour))
	}
}

func TestRebootTakesRebootDuration(t *testing.T) {
	clk := clocktesting.NewFakeClock(epoch)
	r := start(t, hostsim.Config{RebootResponse: hostsim.RebootRespond, RebootDuration: 30 * time.Second, Clock: clk})
	if code, _ := r.do(http.MethodPost, "/actions/reboot", ""); code != http.StatusNoContent {
		t.Fatalf("reboot = %d", code)
	}
	down := r.event(hostsim.RebootDown)
	awaitTimers(t, clk, 1)
	clk.Step(30*time.Second - time.Nanosecond)
	if _, _, err := r.try(http.MethodGet, "/os", ""); err == nil || r.h.State().Up {
		t.Fatalf("host answered %s into a %s reboot", 30*time.Second-time.Nanosecond, 30*time.Second)
	}
	clk.Step(time.Nanosecond)
	if up := r.event(hostsim.RebootUp); up.Err != nil || up.BootID == down.BootID {
		t.Fatalf("up event %+v after down %+v", up, down)
	}
	if code, _ := r.do(http.MethodGet, "/os", ""); code != http.StatusOK {
		t.Fatalf("GET /os after the reboot = %d", code)
	}
}

func TestChosenUpdate(t *testing.T) {
	releases := []hostsim.Release{{Version: "1.24.0"}, {Version: "1.25.0"}, {Version: "1.25.1"}, {Version: "1.26.0", Withheld: true}}
	for _, tc := range []struct {
		name, patch, want, state string
	}{
		{"latest skips withheld", `{"updates":{"version-lock":"latest"}}`, "1.25.1", "Available"},
		{"latest with ignore-waves", `{"updates":{"ignore-waves":true}}`, "1.26.0", "Available"},
		{"pin below is a downgrade", `{"updates":{"version-lock":"1.24.0"}}`, "1.24.0", "Available"},
		{"pin withheld", `{"updates":{"version-lock":"v1.26.0"}}`, "1.26.0", "Available"},
		{"pin running", `{"updates":{"version-lock":"1.25.0"}}`, "", "Idle"},
		{"pin unlisted", `{"updates":{"version-lock":"1.30.0"}}`, "", "Idle"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			r := start(t, hostsim.Config{Version: "1.25.0", Releases: releases})
			r.settings(tc.patch)
			r.command("refresh-updates")
			s := r.mustStatus()
			if s.chosen() != tc.want || s.UpdateState != tc.state {
				t.Fatalf("chosen %q state %s, want %q %s", s.chosen(), s.UpdateState, tc.want, tc.state)
			}
			if got := strings.Join(s.AvailableUpdates, ","); got != "1.26.0,1.25.1,1.25.0,1.24.0" {
				t.Fatalf("available_updates %s", got)
			}
		})
	}
	t.Run("nothing newer", func(t *testing.T) {
		r := start(t, hostsim.Config{Version: "1.27.0", Releases: releases})
		r.command("refresh-updates")
		if s := r.mustStatus(); s.ChosenUpdate != nil || s.UpdateState != "Idle" {
			t.Fatalf("status %+v", s)
		}
	})
	t.Run("a new release appears", func(t *testing.T) {
		r := start(t, hostsim.Config{Version: "1.26.0", Releases: releases})
		r.command("refresh-updates")
		r.h.SetAvailable(append(releases, hostsim.Release{Version: "1.26.1"})...)
		r.command("refresh-updates")
		if s := r.mustStatus(); s.chosen() != "1.26.1" {
			t.Fatalf("chosen %q", s.chosen())
		}
	})
}

func TestSettingsTransaction(t *testing.T) {
	r := start(t, hostsim.Config{})
	read := func() map[string]any {
		code, b := r.do(http.MethodGet, "/settings", "")
		var doc struct {
			Updates map[string]any `json:"updates"`
		}
		if err := json.Unmarshal(b, &doc); code != http.StatusOK || err != nil {
			t.Fatalf("GET /settings = %d %s: %v", code, b, err)
		}
		return doc.Updates
	}
	if u := read(); u["version-lock"] != "latest" || u["ignore-waves"] != false || u["seed"] == nil {
		t.Fatalf("initial updates settings %v", u)
	}
	if code, _ := r.do(http.MethodPatch, "/settings?tx=x", `{"updates":{"version-lock":"1.24.0","ignore-waves":true}}`); code != http.StatusNoContent {
		t.Fatalf("PATCH = %d", code)
	}
	if u := read(); u["version-lock"] != "latest" {
		t.Fatalf("uncommitted patch took effect: %v", u)
	}
	if code, b := r.do(http.MethodPost, "/tx/commit_and_apply?tx=x", ""); code != http.StatusOK || !strings.Contains(string(b), "settings.updates.version-lock") {
		t.Fatalf("commit = %d %s", code, b)
	}
	if u := read(); u["version-lock"] != "1.24.0" || u["ignore-waves"] != true || u["seed"] == nil {
		t.Fatalf("committed updates settings %v", u)
	}
	for _, bad := range []string{`{"updates":{"ignore-waves":"yes"}}`, `{"updates":{"version-lock":"newest"}}`, `[1]`, `{`} {
		if code, _ := r.do(http.MethodPatch, "/settings", bad); code != http.StatusBadRequest {
			t.Errorf("PATCH %s = %d, want 400", bad, code)
		}
	}
}

func TestOS(t *testing.T) {
	r := start(t, hostsim.Config{Version: "1.26.1", Variant: "aws-k8s-1.31", Arch: "aarch64"})
	code, b := r.do(http.MethodGet, "/os", "")
	var os map[string]any
	if err := json.Unmarshal(b, &os); code != http.StatusOK || err != nil {
		t.Fatalf("GET /os = %d %s", code, b)
	}
	if os["version_id"] != "1.26.1" || os["variant_id"] != "aws-k8s-1.31" || os["arch"] != "aarch64" || os["pretty_name"] == nil {
		t.Fatalf("GET /os = %v", os)
	}
}

func TestReboot(t *testing.T) {
	for _, mode := range []hostsim.RebootResponse{hostsim.RebootRespond, hostsim.RebootDrop} {
		t.Run(map[hostsim.RebootResponse]string{hostsim.RebootRespond: "respond", hostsim.RebootDrop: "drop"}[mode], func(t *testing.T) {
			r := start(t, hostsim.Config{Version: "1.25.0", Releases: hostsim.Releases("1.26.0"), RebootResponse: mode})
			r.settings(`{"updates":{"ignore-waves":true}}`)
			for _, a := range []string{"refresh-updates", "prepare-update", "activate-update"} {
				r.command(a)
			}
			bootFile := filepath.Join(r.dir, "boot_id")
			before, _ := os.ReadFile(bootFile)
			r.h.HangReboot() // stays down until Revive, so "down" can be observed
			code, _, err := r.try(http.MethodPost, "/actions/reboot", "")
			if mode == hostsim.RebootRespond && (err != nil || code != http.StatusNoContent) || mode == hostsim.RebootDrop && err == nil {
				t.Fatalf("reboot = %d, %v", code, err)
			}
			down := r.event(hostsim.RebootDown)
			if down.FromVersion != "1.25.0" || down.Version != "1.26.0" || down.BootID+"\n" != string(before) {
				t.Fatalf("down event %+v, boot ID file %q", down, before)
			}
			if _, _, err := r.try(http.MethodGet, "/os", ""); err == nil {
				t.Fatal("host answered while rebooting")
			}
			r.h.Revive()
			up := r.event(hostsim.RebootUp)
			after, _ := os.ReadFile(bootFile)
			if up.Err != nil || up.FellBack || up.Version != "1.26.0" || up.BootID == down.BootID || up.BootID+"\n" != string(after) || r.h.BootID() != up.BootID {
				t.Fatalf("up event %+v, boot ID file %q", up, after)
			}
			if code, _ := r.status(); code != http.StatusNotFound {
				t.Fatalf("status after reboot = %d, want 404", code)
			}
			if code, b := r.do(http.MethodGet, "/settings", ""); code != http.StatusOK || !strings.Contains(string(b), `"ignore-waves":true`) {
				t.Fatalf("settings lost at reboot: %s", b)
			}
			r.command("refresh-updates")
			s := r.mustStatus()
			if s.UpdateState != "Idle" || s.ActivePartition.Image.Version != "1.26.0" || !s.ActivePartition.NextToBoot ||
				s.StagingPartition.Image.Version != "1.25.0" || s.StagingPartition.NextToBoot {
				t.Fatalf("status after reboot and refresh %+v", s)
			}
		})
	}
}

func TestFail500(t *testing.T) {
	r := start(t, hostsim.Config{})
	r.h.Fail500(1)
	if code, _ := r.do(http.MethodGet, "/os", ""); code != http.StatusInternalServerError {
		t.Fatalf("first GET /os = %d, want 500", code)
	}
	if code, _ := r.do(http.MethodGet, "/os", ""); code != http.StatusOK {
		t.Fatalf("second GET /os = %d, want 200", code)
	}
}

// TestReferenceFixtures decodes the reference documents with plain
// encoding/json and checks that the simulator sends the same fields.
func TestReferenceFixtures(t *testing.T) {
	paths, _ := filepath.Glob("../../../agent/hostapi/testdata/*.json")
	if len(paths) == 0 {
		t.Fatal("no fixtures")
	}
	keys := func(b []byte) string {
		var m map[string]json.RawMessage
		if err := json.Unmarshal(b, &m); err != nil {
			t.Fatal(err)
		}
		var ks []string
		for k := range m {
			if k != "some_future_field" {
				ks = append(ks, k)
			}
		}
		slices.Sort(ks)
		return strings.Join(ks, ",")
	}
	clk := clocktesting.NewFakeClock(epoch.Add(123456789 * time.Nanosecond))
	r := start(t, hostsim.Config{Version: "1.25.0", Releases: hostsim.Releases("1.26.0"), Clock: clk})
	r.command("refresh-updates")
	_, simDoc := r.do(http.MethodGet, "/updates/status", "")
	for _, p := range paths {
		b, err := os.ReadFile(p)
		if err != nil {
			t.Fatal(err)
		}
		var s rawStatus
		if err := json.Unmarshal(b, &s); err != nil {
			t.Errorf("%s: %v", p, err)
		}
		if keys(b) != keys(simDoc) {
			t.Errorf("%s has fields %s, the simulator sends %s", p, keys(b), keys(simDoc))
		}
	}
	ts := r.mustStatus().MostRecentCommand.Timestamp
	if parsed, err := time.Parse(time.RFC3339Nano, ts); err != nil || !strings.HasSuffix(ts, "Z") || !parsed.Equal(clk.Now()) {
		t.Fatalf("timestamp %q: %v, want the host clock's %s in UTC", ts, err, clk.Now())
	}
}
