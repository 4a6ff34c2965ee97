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
	r.wait(applied) // they take effect after the answer (TestSettingsApplyAfterTheAnswer)
}

// applied: the committed update settings have taken effect.
func applied(s hostsim.State) bool {
	return s.AppliedVersionLock == s.VersionLock && s.AppliedIgnoreWaves == s.IgnoreWaves
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
		// Any command creates the status document, even one the state table refuses.
		{"uninitialized", []string{"1.26.0"}, nil,
			[4]outcome{{ok, "Available"}, {conflict, "Idle"}, {conflict, "Idle"}, {conflict, "Idle"}}},
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
				// Reached: every host has the releases; waves are TestWaves' subject.
				r := start(t, hostsim.Config{Version: "1.25.0", Releases: hostsim.Reached(tc.releases...),
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
				if code != http.StatusOK || s.UpdateState != tc.want[i].state {
					t.Fatalf("status %d, state %q, want %q", code, s.UpdateState, tc.want[i].state)
				}
				last := actions[i]
				if tc.want[i].code != ok {
					if len(tc.setup) == 0 {
						if s.MostRecentCommand != nil || s.StagingPartition != nil {
							t.Fatalf("a refused first command recorded %+v, staging %+v", s.MostRecentCommand, s.StagingPartition)
						}
						return
					}
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

// TestPrepareChoosesAgain: thar-be-updates' prepare records the refresh-time chosen_update as
// staged (sources/api/thar-be-updates/src/main.rs, prepare), while `updog update-image`
// chooses again from the settings of that moment and, finding nothing, prints "No update
// required", exits 0 and writes nothing (sources/updater/updog/src/main.rs, main_inner).
func TestPrepareChoosesAgain(t *testing.T) {
	r := start(t, hostsim.Config{Version: "1.25.0", Releases: hostsim.Reached("1.25.0", "1.26.0")})
	r.command("refresh-updates")
	if code := r.command("prepare-update"); code != http.StatusNoContent {
		t.Fatalf("prepare = %d", code)
	}
	if m := r.mustStatus().MostRecentCommand; *m.Stderr != "Starting update to 1.26.0\n" || r.h.State().Staged != "1.26.0" {
		t.Fatalf("a real prepare: stderr %q, staged %q", *m.Stderr, r.h.State().Staged)
	}

	r = start(t, hostsim.Config{Version: "1.25.0", Releases: hostsim.Reached("1.25.0", "1.26.0")})
	r.command("refresh-updates")
	r.settings(`{"updates":{"version-lock":"1.25.0"}}`) // pinned to the running version: nothing to choose
	if code := r.command("prepare-update"); code != http.StatusNoContent {
		t.Fatalf("prepare = %d, want 204", code)
	}
	s := r.mustStatus()
	if m := s.MostRecentCommand; m.CmdStatus != "Success" || *m.Stderr != "No update required\n" {
		t.Fatalf("most_recent_command %+v", m)
	}
	if s.UpdateState != "Staged" || s.StagingPartition == nil || s.StagingPartition.Image.Version != "1.26.0" {
		t.Fatalf("status %+v: want Staged with the refresh-time choice 1.26.0", s)
	}
	if staged := r.h.State().Staged; staged != "" {
		t.Fatalf("the inactive partition holds %q, want nothing", staged)
	}
	if code := r.command("activate-update"); code != http.StatusNoContent || r.mustStatus().MostRecentCommand.CmdStatus != "Failed" {
		t.Fatalf("activating an unwritten partition = %d, %+v", code, r.mustStatus().MostRecentCommand)
	}
}

// TestFailedPrepareUnstages: updog's update_image clears the inactive partition set before
// writing it (sources/updater/updog/src/main.rs), so a failed prepare leaves a previously
// staged image unbootable while the status still shows it Staged, and signpost refuses to
// activate it (sources/updater/signpost/src/state.rs, upgrade_to_inactive).
func TestFailedPrepareUnstages(t *testing.T) {
	r := start(t, hostsim.Config{Version: "1.25.0", Releases: hostsim.Reached("1.26.0")})
	r.command("refresh-updates")
	r.command("prepare-update")
	r.h.FailPrepare("Failed to write target: connection reset by peer")
	r.command("prepare-update")
	s := r.mustStatus()
	if s.UpdateState != "Staged" || s.StagingPartition.Image.Version != "1.26.0" || s.MostRecentCommand.CmdStatus != "Failed" {
		t.Fatalf("status after a failed prepare %+v", s)
	}
	if staged := r.h.State().Staged; staged != "" {
		t.Fatalf("inactive partition %q after a failed prepare, want nothing bootable", staged)
	}
	r.command("activate-update")
	if m := r.mustStatus().MostRecentCommand; m.CmdStatus != "Failed" || !strings.Contains(*m.Stderr, "not been marked valid") {
		t.Fatalf("activate after a failed prepare: %+v", m)
	}
}

// TestErrorTexts: the API server answers every error with its text
// (sources/api/apiserver/src/server/error.rs).
func TestErrorTexts(t *testing.T) {
	clk := clocktesting.NewFakeClock(epoch)
	r := start(t, hostsim.Config{Version: "1.25.0", Releases: hostsim.Reached("1.26.0"), RefreshDuration: time.Hour, Clock: clk})
	for _, tc := range []struct {
		method, path string
		code         int
		text         string
	}{
		{http.MethodGet, "/updates/status", http.StatusNotFound, "Update status is uninitialized, refresh-updates to initialize it"},
		{http.MethodPost, "/actions/activate-update", http.StatusConflict, "Update action not allowed according to update state"},
		{http.MethodPost, "/tx/commit_and_apply?tx=none", http.StatusUnprocessableEntity, "Tried to commit with no pending changes"},
		{http.MethodPost, "/actions/refresh-updates", http.StatusNoContent, ""},
		{http.MethodPost, "/actions/prepare-update", http.StatusLocked, "Update lock held"},
		{http.MethodGet, "/updates/status", http.StatusLocked, "Unable to obtain shared lock for reading update status"},
	} {
		if code, b := r.do(tc.method, tc.path, ""); code != tc.code || !strings.HasPrefix(string(b), tc.text) {
			t.Errorf("%s %s = %d %q, want %d %q", tc.method, tc.path, code, b, tc.code, tc.text)
		}
	}
}

// TestCommandFaults: a command whose program never started ends without a record
// (thar-be-updates writes the status back unchanged), and one hung on the network holds the
// lock (sources/api/thar-be-updates/src/main.rs).
func TestCommandFaults(t *testing.T) {
	r := start(t, hostsim.Config{Version: "1.25.0", Releases: hostsim.Reached("1.26.0")})
	r.command("refresh-updates")
	before := r.mustStatus().MostRecentCommand
	r.h.NoRecord("prepare")
	if code := r.command("prepare-update"); code != http.StatusNoContent {
		t.Fatalf("prepare = %d", code)
	}
	if s := r.mustStatus(); s.MostRecentCommand.CmdType != "refresh" || s.MostRecentCommand.Timestamp != before.Timestamp || s.UpdateState != "Available" {
		t.Fatalf("a command that never ran changed the status: %+v", s)
	}
	r.h.HangCommand("prepare")
	if code, _ := r.do(http.MethodPost, "/actions/prepare-update", ""); code != http.StatusNoContent {
		t.Fatalf("prepare = %d", code)
	}
	for range 3 {
		if code, _ := r.do(http.MethodGet, "/updates/status", ""); code != http.StatusLocked {
			t.Fatalf("status while a command hangs = %d, want 423", code)
		}
	}
	r.h.ClearFaults()
	r.wait(idle)
	if s := r.mustStatus(); s.MostRecentCommand.CmdType != "prepare" || s.UpdateState != "Staged" {
		t.Fatalf("status after the hung command was released %+v", s)
	}
}

func TestLockedWhileCommandRuns(t *testing.T) {
	clk := clocktesting.NewFakeClock(epoch)
	r := start(t, hostsim.Config{Version: "1.25.0", Releases: hostsim.Reached("1.26.0"), PrepareDuration: time.Hour, Clock: clk})
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
		if code, body := r.do(req[0], req[1], ""); code != http.StatusLocked || len(body) == 0 {
			t.Errorf("%s %s = %d %q, want 423 with the error's text", req[0], req[1], code, body)
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

// TestRebootLingersThenTakesRebootDuration: the API server answers 204 once systemd took the
// reboot job (sources/api/apiserver/src/server/mod.rs, reboot); the host keeps serving, with
// the same boot ID, while it shuts down, and is gone for RebootDuration.
func TestRebootLingersThenTakesRebootDuration(t *testing.T) {
	clk := clocktesting.NewFakeClock(epoch)
	r := start(t, hostsim.Config{RebootLinger: 20 * time.Second, RebootDuration: 30 * time.Second, Clock: clk})
	bootID := r.h.BootID()
	if code, _ := r.do(http.MethodPost, "/actions/reboot", ""); code != http.StatusNoContent {
		t.Fatalf("reboot = %d", code)
	}
	awaitTimers(t, clk, 1)
	clk.Step(20*time.Second - time.Nanosecond)
	if code, _ := r.do(http.MethodGet, "/os", ""); code != http.StatusOK || r.h.BootID() != bootID || !r.h.State().RebootPending {
		t.Fatalf("GET /os %s after an accepted reboot = %d, boot ID %s (was %s)", 20*time.Second-time.Nanosecond, code, r.h.BootID(), bootID)
	}
	if code, _ := r.do(http.MethodPost, "/actions/reboot", ""); code != http.StatusNoContent {
		t.Fatalf("a second reboot while shutting down = %d, want 204 (systemd has the job)", code)
	}
	clk.Step(time.Nanosecond)
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
	if code, _ := r.do(http.MethodGet, "/os", ""); code != http.StatusOK || r.h.State().Boots != 2 {
		t.Fatalf("GET /os after the reboot = %d, boots %d (one reboot for two requests)", code, r.h.State().Boots)
	}
}

// TestRebootRefused: `systemctl reboot --check-inhibitors=yes` fails while a shutdown
// inhibitor is held, and the API server answers 500 with systemctl's text, every time
// (sources/api/apiserver/src/server/mod.rs, reboot; error.rs, Reboot).
func TestRebootRefused(t *testing.T) {
	r := start(t, hostsim.Config{})
	bootID := r.h.BootID()
	r.h.RefuseReboot(-1)
	for range 3 {
		code, b := r.do(http.MethodPost, "/actions/reboot", "")
		if code != http.StatusInternalServerError || !strings.HasPrefix(string(b), "Failed to reboot, exit code: 1, stderr: Operation inhibited by") {
			t.Fatalf("refused reboot = %d %q", code, b)
		}
	}
	if s := r.h.State(); !s.Up || s.RebootPending || s.BootID != bootID {
		t.Fatalf("a refused reboot changed the host: %+v", s)
	}
}

// TestWaves: a release reaches a host when its seed's wave has come
// (sources/updater/update_metadata/src/lib.rs, update_ready; waves from
// sources/updater/waves/default-waves.toml); `updog whats --all` lists only those, pins
// included, unless ignore-waves is set (sources/updater/updog/src/main.rs, applicable_updates).
func TestWaves(t *testing.T) {
	day := 24 * time.Hour
	for _, tc := range []struct {
		name  string
		seed  uint32
		after time.Duration
		want  bool
	}{
		{"seed 0 is the initial wave", 0, 0, true},
		{"1% after an hour", 10, time.Hour - time.Second, false},
		{"a seed's place in its wave", 10, time.Hour + 10*(3*time.Hour/20), true},
		{"not before its place", 10, time.Hour + 9*(3*time.Hour/20), false},
		{"seed 1000 before its wave passed", 1000, 5*day - time.Second, false},
		{"seed 1000 once its wave passed", 1000, 5 * day, true},
		{"the last wave", 2000, 6*day - time.Second, false},
		{"everyone after six days", 2000, 6 * day, true},
	} {
		t.Run(tc.name, func(t *testing.T) {
			clk := clocktesting.NewFakeClock(epoch.Add(tc.after))
			r := start(t, hostsim.Config{Version: "1.25.0", Seed: hostsim.Seed(tc.seed), Clock: clk, SettingsDelay: -1,
				Releases: []hostsim.Release{{Version: "1.26.0", Waves: hostsim.DefaultWaves(epoch)}, {Version: "1.25.0", Everywhere: true}}})
			r.command("refresh-updates")
			s := r.mustStatus()
			if got := slices.Contains(s.AvailableUpdates, "1.26.0"); got != tc.want || (s.chosen() == "1.26.0") != tc.want {
				t.Fatalf("seed %d at +%s: listed %v, chosen %q; want offered %t", tc.seed, tc.after, s.AvailableUpdates, s.chosen(), tc.want)
			}
			r.settings(`{"updates":{"version-lock":"1.26.0"}}`)
			r.command("refresh-updates")
			if s := r.mustStatus(); (s.chosen() == "1.26.0") != tc.want {
				t.Fatalf("pinned: chosen %q, want offered %t", s.chosen(), tc.want)
			}
			r.settings(`{"updates":{"ignore-waves":true}}`)
			r.command("refresh-updates")
			if s := r.mustStatus(); s.chosen() != "1.26.0" || strings.Join(s.AvailableUpdates, ",") != "1.26.0,1.25.0" {
				t.Fatalf("ignore-waves: listed %v, chosen %q", s.AvailableUpdates, s.chosen())
			}
		})
	}
	t.Run("a release published just now has not reached a host of seed 500", func(t *testing.T) {
		r := start(t, hostsim.Config{Version: "1.25.0", Seed: hostsim.Seed(500), Releases: hostsim.Releases("1.26.0")})
		r.command("refresh-updates")
		if s := r.mustStatus(); len(s.AvailableUpdates) != 0 || s.UpdateState != "Idle" {
			t.Fatalf("listed %v, state %s right after the release", s.AvailableUpdates, s.UpdateState)
		}
	})
}

// TestSettingsApplyAfterTheAnswer: commit_and_apply answers once the transaction is committed;
// thar-be-settings, forked after, renders the files refresh and prepare read
// (sources/api/apiserver/src/server/mod.rs, commit_transaction_and_apply; controller.rs,
// apply_changes).
func TestSettingsApplyAfterTheAnswer(t *testing.T) {
	clk := clocktesting.NewFakeClock(epoch)
	r := start(t, hostsim.Config{Version: "1.25.0", Releases: hostsim.Reached("1.26.0", "1.25.1"), SettingsDelay: 10 * time.Second, Clock: clk})
	if code, _ := r.do(http.MethodPatch, "/settings?tx=t", `{"updates":{"version-lock":"1.25.1"}}`); code != http.StatusNoContent {
		t.Fatalf("PATCH = %d", code)
	}
	if code, _ := r.do(http.MethodPost, "/tx/commit_and_apply?tx=t", ""); code != http.StatusOK {
		t.Fatalf("commit = %d", code)
	}
	if code, b := r.do(http.MethodGet, "/settings", ""); code != http.StatusOK || !strings.Contains(string(b), `"version-lock":"1.25.1"`) {
		t.Fatalf("GET /settings after the commit = %s", b)
	}
	r.command("refresh-updates")
	if s := r.mustStatus(); s.chosen() != "1.26.0" {
		t.Fatalf("a refresh right after the commit chose %q, want the old settings' 1.26.0", s.chosen())
	}
	awaitTimers(t, clk, 1)
	clk.Step(15 * time.Second) // the delay is jittered to [5s, 15s]
	r.wait(applied)
	r.command("refresh-updates")
	if s := r.mustStatus(); s.chosen() != "1.25.1" {
		t.Fatalf("once applied, chosen %q, want 1.25.1", s.chosen())
	}
}

func TestChosenUpdate(t *testing.T) {
	// 1.26.0 was published just now: its waves have not reached this host (seed 1000).
	releases := []hostsim.Release{{Version: "1.24.0", Everywhere: true}, {Version: "1.25.0", Everywhere: true},
		{Version: "1.25.1", Everywhere: true}, {Version: "1.26.0"}}
	for _, tc := range []struct {
		name, patch, want, state, listed string
	}{
		{"latest skips a release not yet reached", `{"updates":{"version-lock":"latest"}}`, "1.25.1", "Available", "1.25.1,1.25.0,1.24.0"},
		{"latest with ignore-waves", `{"updates":{"ignore-waves":true}}`, "1.26.0", "Available", "1.26.0,1.25.1,1.25.0,1.24.0"},
		{"pin below is a downgrade", `{"updates":{"version-lock":"1.24.0"}}`, "1.24.0", "Available", "1.25.1,1.25.0,1.24.0"},
		{"pin not reached", `{"updates":{"version-lock":"v1.26.0"}}`, "", "Idle", "1.25.1,1.25.0,1.24.0"},
		{"pin not reached, ignore-waves", `{"updates":{"version-lock":"v1.26.0","ignore-waves":true}}`, "1.26.0", "Available", "1.26.0,1.25.1,1.25.0,1.24.0"},
		{"pin running", `{"updates":{"version-lock":"1.25.0"}}`, "", "Idle", "1.25.1,1.25.0,1.24.0"},
		{"pin unlisted", `{"updates":{"version-lock":"1.30.0","ignore-waves":true}}`, "", "Idle", "1.26.0,1.25.1,1.25.0,1.24.0"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			r := start(t, hostsim.Config{Version: "1.25.0", Seed: hostsim.Seed(1000), Releases: releases})
			r.settings(tc.patch)
			r.command("refresh-updates")
			s := r.mustStatus()
			if s.chosen() != tc.want || s.UpdateState != tc.state {
				t.Fatalf("chosen %q state %s, want %q %s", s.chosen(), s.UpdateState, tc.want, tc.state)
			}
			if got := strings.Join(s.AvailableUpdates, ","); got != tc.listed {
				t.Fatalf("available_updates %s, want %s", got, tc.listed)
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
		r.h.SetAvailable(append(releases, hostsim.Release{Version: "1.26.1", Everywhere: true})...)
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
	if code, _ := r.do(http.MethodPost, "/tx/commit_and_apply?tx=x", ""); code != http.StatusUnprocessableEntity {
		t.Fatalf("committing an empty transaction = %d, want 422", code)
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
			r.settings(`{"updates":{"ignore-waves":true}}`) // the release was just published
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
			// The status lives in tmpfs (/run/cache/thar-be-updates): after any boot it is
			// created afresh, with nothing staged (thar-be-updates' initialize_update_status).
			r.command("refresh-updates")
			s := r.mustStatus()
			if s.UpdateState != "Idle" || s.ActivePartition.Image.Version != "1.26.0" || !s.ActivePartition.NextToBoot ||
				s.StagingPartition != nil {
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
	r := start(t, hostsim.Config{Version: "1.25.0", Releases: hostsim.Reached("1.26.0"), Clock: clk})
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
