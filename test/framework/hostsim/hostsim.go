// Package hostsim simulates a Bottlerocket host's API server for tests and
// local development: the update state machine with asynchronous commands and
// 423 locking, A/B partitions, settings transactions, reboots that take the
// API away and lose the update status, and injected faults. It serves the
// real wire protocol on a Unix socket, so clients cannot tell it from a host.
package hostsim

import (
	"context"
	"crypto/rand"
	"errors"
	"fmt"
	"net"
	"net/http"
	"os"
	"path/filepath"
	"sort"
	"sync"
	"time"

	"k8s.io/utils/clock"

	"github.com/bottlerocket-ops/update-operator/agent/hostapi"
	"github.com/bottlerocket-ops/update-operator/api/v1alpha1"
)

// Release is a version the update repository offers.
type Release struct {
	// Version is the release's version, e.g. "1.26.1".
	Version string
	// Withheld marks a release the host's time-based waves do not offer it yet:
	// it is chosen under version-lock "latest" only when ignore-waves is true.
	Withheld bool
}

// Releases returns releases for versions, none withheld.
func Releases(versions ...string) []Release {
	rs := make([]Release, len(versions))
	for i, v := range versions {
		rs[i] = Release{Version: v}
	}
	return rs
}

// RebootResponse says how POST /actions/reboot answers.
type RebootResponse int

const (
	// RebootRandom answers 204 or drops the connection, at random.
	RebootRandom RebootResponse = iota
	// RebootRespond answers 204 before going down.
	RebootRespond
	// RebootDrop drops the connection without an answer.
	RebootDrop
)

// Config describes a simulated host at its first boot.
type Config struct {
	// Version is the running OS version (default "1.25.0").
	Version string
	// Variant is the OS variant (default "aws-k8s-1.31").
	Variant string
	// Arch is the architecture (default "x86_64").
	Arch string
	// Releases are the versions the update repository offers.
	Releases []Release
	// VersionLock is the initial settings.updates.version-lock (default "latest").
	VersionLock string
	// IgnoreWaves is the initial settings.updates.ignore-waves.
	IgnoreWaves bool
	// RefreshDuration, PrepareDuration and ActivateDuration are how long those
	// commands hold the update lock; ActivateDuration also applies to deactivate.
	RefreshDuration, PrepareDuration, ActivateDuration time.Duration
	// RebootDuration is how long the API is unreachable during a reboot.
	RebootDuration time.Duration
	// RebootResponse says whether a reboot request is answered (default random).
	RebootResponse RebootResponse
	// BootIDFile, if set, receives the boot ID (with a newline) at every boot,
	// like /proc/sys/kernel/random/boot_id.
	BootIDFile string
	// OnReboot, if set, is called (from the simulator's goroutine, without its
	// lock held) when the host goes down and when it comes back.
	OnReboot func(RebootEvent)
	// Clock is the host's clock: command records are stamped with its time (a client
	// comparing them with its own requests must use the same clock), and command, reboot
	// and Slow durations elapse on it. Default: the real clock.
	Clock clock.Clock
}

// RebootPhase says which side of a reboot an event reports.
type RebootPhase string

const (
	// RebootDown: the host stopped serving and is rebooting.
	RebootDown RebootPhase = "Down"
	// RebootUp: the host booted and serves again.
	RebootUp RebootPhase = "Up"
)

// RebootEvent reports a reboot to whoever runs the simulator.
type RebootEvent struct {
	// Phase is Down or Up.
	Phase RebootPhase
	// FromVersion is the version that ran before the reboot.
	FromVersion string
	// Version is, for Down, the version set to boot next; for Up, the version now running.
	Version string
	// OldBootID is the boot ID before the reboot.
	OldBootID string
	// BootID is the boot ID now (the new one for Up).
	BootID string
	// FellBack is set on Up when the activated image failed to boot and the
	// host came back on the old version.
	FellBack bool
	// Err is set on Up if the host could not write BootIDFile or serve again.
	Err error
}

// State is a snapshot of the simulated host for tests.
type State struct {
	// Up is false while the host is rebooting (or closed).
	Up bool
	// Busy is true while an update command holds the lock.
	Busy bool
	// Boots counts boots, starting at 1.
	Boots int
	// Version is the running version.
	Version string
	// BootID is the current boot ID.
	BootID string
	// StatusInitialized is false after a boot until the first refresh.
	StatusInitialized bool
	// UpdateState is the update state machine's state.
	UpdateState hostapi.UpdateState
	// Chosen is the chosen update's version, or "".
	Chosen string
	// Staged is the version in the inactive partition set, or "".
	Staged string
	// NextToBoot is the version the firmware boots next.
	NextToBoot string
	// VersionLock and IgnoreWaves are the committed update settings.
	VersionLock string
	IgnoreWaves bool
	// LastCommand is the most recent command record, if any.
	LastCommand *hostapi.Command
}

// Host is a simulated Bottlerocket host. Its methods are safe for concurrent use.
type Host struct {
	cfg   Config
	clock clock.Clock
	mux   *http.ServeMux

	mu      sync.Mutex
	changed chan struct{} // closed and replaced at every state change

	// The machine (kept across reboots).
	parts        [2]*hostapi.Image
	active, next int
	bootID       string
	boots        int
	repo         []Release
	settings     map[string]any
	txs          map[string]map[string]any

	// The update status (tmpfs: lost at every reboot).
	initialized bool
	state       hostapi.UpdateState
	listed      []Release // the manifest as of the last refresh
	chosen      *hostapi.Image
	recent      *hostapi.Command
	busy        bool

	// Faults.
	failCmd    map[hostapi.CommandType]string
	failBoot   bool
	hangReboot bool
	revive     chan struct{}
	fail500    int
	slow       time.Duration
	hang       chan struct{}

	// Serving.
	socket  string
	up      bool
	srv     *http.Server
	stop    chan struct{} // closed when the current server goes away
	quit    chan struct{} // closed by Close
	closed  bool
	started bool
	wg      sync.WaitGroup
}

// New returns a simulated host, booted but not yet serving; see Start.
func New(cfg Config) *Host {
	cfg.Version = orDefault(cfg.Version, "1.25.0")
	cfg.Variant = orDefault(cfg.Variant, "aws-k8s-1.31")
	cfg.Arch = orDefault(cfg.Arch, "x86_64")
	cfg.VersionLock = orDefault(cfg.VersionLock, hostapi.VersionLockLatest)
	h := &Host{
		cfg:     cfg,
		clock:   cfg.Clock,
		changed: make(chan struct{}),
		repo:    append([]Release(nil), cfg.Releases...),
		txs:     map[string]map[string]any{},
		failCmd: map[hostapi.CommandType]string{},
		quit:    make(chan struct{}),
		settings: map[string]any{
			"motd": "Welcome to Bottlerocket!",
			"updates": map[string]any{
				"metadata-base-url": "https://updates.bottlerocket.aws/2020-07-07/" + cfg.Variant + "/" + cfg.Arch + "/",
				"targets-base-url":  "https://updates.bottlerocket.aws/targets/",
				"seed":              float64(1234),
				"version-lock":      cfg.VersionLock,
				"ignore-waves":      cfg.IgnoreWaves,
			},
			"host-containers": map[string]any{
				"admin":   map[string]any{"enabled": false},
				"control": map[string]any{"enabled": true},
			},
			"kubernetes": map[string]any{"cluster-name": "hostsim", "max-pods": float64(110)},
		},
	}
	if h.clock == nil {
		h.clock = clock.RealClock{}
	}
	h.parts[0] = h.image(cfg.Version)
	h.bootLocked()
	h.mux = h.routes()
	return h
}

func orDefault(s, def string) string {
	if s == "" {
		return def
	}
	return s
}

func (h *Host) image(version string) *hostapi.Image {
	return &hostapi.Image{Arch: h.cfg.Arch, Version: version, Variant: h.cfg.Variant}
}

// Start serves the host API on a Unix socket at socketPath (a stale socket
// file there is replaced). The path must fit the 108-byte Unix limit.
func (h *Host) Start(socketPath string) error {
	h.mu.Lock()
	defer h.mu.Unlock()
	if h.closed || h.started {
		return errors.New("hostsim: already started or closed")
	}
	h.socket, h.started = socketPath, true
	if err := h.writeBootID(); err != nil {
		return err
	}
	return h.listenLocked()
}

// Close stops serving and ends every goroutine of the simulator.
func (h *Host) Close() {
	h.mu.Lock()
	if h.closed {
		h.mu.Unlock()
		return
	}
	h.closed, h.up = true, false
	close(h.quit)
	srv := h.srv
	h.stopLocked()
	h.notifyLocked()
	h.mu.Unlock()
	if srv != nil {
		_ = srv.Close()
	}
	h.wg.Wait()
}

func (h *Host) listenLocked() error {
	if fi, err := os.Lstat(h.socket); err == nil && fi.Mode()&os.ModeSocket != 0 {
		_ = os.Remove(h.socket)
	}
	ln, err := net.Listen("unix", h.socket)
	if err != nil {
		return fmt.Errorf("hostsim: listen: %w", err)
	}
	h.srv = &http.Server{Handler: h, ReadHeaderTimeout: 10 * time.Second}
	h.stop = make(chan struct{})
	h.up = true
	h.notifyLocked()
	srv := h.srv
	h.wg.Add(1)
	go func() {
		defer h.wg.Done()
		_ = srv.Serve(ln)
	}()
	return nil
}

func (h *Host) stopLocked() {
	if h.stop != nil {
		close(h.stop)
		h.stop = nil
	}
}

func (h *Host) notifyLocked() {
	close(h.changed)
	h.changed = make(chan struct{})
}

// bootLocked boots the image set to boot next, or the old one when a boot
// failure is armed, with a new boot ID and a fresh (uninitialized) update status.
func (h *Host) bootLocked() (fellBack bool) {
	if h.failBoot && h.next != h.active {
		h.failBoot, fellBack = false, true
		h.next = h.active // the new image's one try is spent
	}
	h.active = h.next
	h.bootID = newBootID()
	h.boots++
	h.initialized, h.state, h.listed, h.chosen, h.recent, h.busy = false, hostapi.StateIdle, nil, nil, nil, false
	return fellBack
}

func newBootID() string {
	var b [16]byte
	_, _ = rand.Read(b[:])
	b[6] = b[6]&0x0f | 0x40
	b[8] = b[8]&0x3f | 0x80
	return fmt.Sprintf("%x-%x-%x-%x-%x", b[0:4], b[4:6], b[6:8], b[8:10], b[10:16])
}

// writeBootID writes the boot ID file atomically, if one is configured.
func (h *Host) writeBootID() error {
	if h.cfg.BootIDFile == "" {
		return nil
	}
	tmp, err := os.CreateTemp(filepath.Dir(h.cfg.BootIDFile), ".boot_id")
	if err == nil {
		_, err = tmp.WriteString(h.bootID + "\n")
		if cerr := tmp.Close(); err == nil {
			err = cerr
		}
		if err == nil {
			err = os.Rename(tmp.Name(), h.cfg.BootIDFile)
		}
		if err != nil {
			_ = os.Remove(tmp.Name())
		}
	}
	if err != nil {
		return fmt.Errorf("hostsim: write boot ID: %w", err)
	}
	return nil
}

// rebootLocked takes the host down; the caller has answered (or dropped) the
// request. The host comes back after RebootDuration, or on Revive if hung.
func (h *Host) rebootLocked() {
	ev := RebootEvent{
		Phase:       RebootDown,
		FromVersion: h.parts[h.active].Version,
		Version:     h.parts[h.next].Version,
		OldBootID:   h.bootID,
		BootID:      h.bootID,
	}
	h.up = false
	h.stopLocked()
	h.notifyLocked()
	srv, hang, revive := h.srv, h.hangReboot, h.revive
	h.hangReboot = false
	h.wg.Add(1)
	go func() {
		defer h.wg.Done()
		_ = srv.Close()
		h.emit(ev)
		if !h.pause(h.cfg.RebootDuration, nil) {
			return
		}
		if hang {
			select {
			case <-revive:
			case <-h.quit:
				return
			}
		}
		h.mu.Lock()
		if h.closed {
			h.mu.Unlock()
			return
		}
		up := RebootEvent{Phase: RebootUp, FromVersion: ev.FromVersion, OldBootID: ev.OldBootID}
		up.FellBack = h.bootLocked()
		up.Version, up.BootID = h.parts[h.active].Version, h.bootID
		up.Err = errors.Join(h.writeBootID(), h.listenLocked())
		h.mu.Unlock()
		h.emit(up)
	}()
}

func (h *Host) emit(ev RebootEvent) {
	if h.cfg.OnReboot != nil {
		h.cfg.OnReboot(ev)
	}
}

// pause waits d on the host's clock; it reports false if the host closed or stop closed first.
func (h *Host) pause(d time.Duration, stop <-chan struct{}) bool {
	if d <= 0 { // no wait: a fake clock would hold even a zero timer until it is stepped
		select {
		case <-h.quit:
			return false
		case <-stop:
			return false
		default:
			return true
		}
	}
	t := h.clock.NewTimer(d)
	defer t.Stop()
	select {
	case <-t.C():
		return true
	case <-h.quit:
	case <-stop:
	}
	return false
}

// chooseLocked picks the update the host would install from the listed
// releases under the committed settings, or nil.
func (h *Host) chooseLocked(listed []Release) *hostapi.Image {
	lock, ignoreWaves := h.updateSettingsLocked()
	running := h.parts[h.active].Version
	var best *Release
	for i, r := range listed {
		switch {
		case lock != hostapi.VersionLockLatest:
			if v1alpha1.CompareVersions(r.Version, lock) == 0 && v1alpha1.CompareVersions(r.Version, running) != 0 {
				return h.image(r.Version)
			}
		case r.Withheld && !ignoreWaves:
		case v1alpha1.CompareVersions(r.Version, running) > 0 && (best == nil || v1alpha1.CompareVersions(r.Version, best.Version) > 0):
			best = &listed[i]
		}
	}
	if best == nil {
		return nil
	}
	return h.image(best.Version)
}

func (h *Host) updateSettingsLocked() (versionLock string, ignoreWaves bool) {
	u, _ := h.settings["updates"].(map[string]any)
	versionLock, _ = u["version-lock"].(string)
	ignoreWaves, _ = u["ignore-waves"].(bool)
	if versionLock == "" {
		versionLock = hostapi.VersionLockLatest
	}
	return versionLock, ignoreWaves
}

// allowed is the thar-be-updates state table.
func allowed(cmd hostapi.CommandType, s hostapi.UpdateState) bool {
	switch cmd {
	case hostapi.CommandRefresh:
		return true
	case hostapi.CommandPrepare:
		return s == hostapi.StateAvailable || s == hostapi.StateStaged
	case hostapi.CommandActivate:
		return s == hostapi.StateStaged
	case hostapi.CommandDeactivate:
		return s == hostapi.StateReady
	}
	return false
}

// startLocked validates a command and starts it, returning the HTTP status,
// or 0 if the host is going down.
func (h *Host) startLocked(cmd hostapi.CommandType) int {
	if !h.up {
		return 0
	}
	if h.busy {
		return http.StatusLocked
	}
	if !allowed(cmd, h.state) {
		return http.StatusConflict
	}
	d := h.cfg.ActivateDuration
	switch cmd {
	case hostapi.CommandRefresh:
		d = h.cfg.RefreshDuration
	case hostapi.CommandPrepare:
		d = h.cfg.PrepareDuration
		if h.chosen = h.chooseLocked(h.listed); h.chosen == nil { // prepare re-reads the settings
			return http.StatusNotFound
		}
	default:
		if h.parts[1-h.active] == nil {
			return http.StatusNotFound
		}
	}
	stderr, fail := h.failCmd[cmd]
	delete(h.failCmd, cmd)
	h.busy = true
	h.notifyLocked()
	boot, stop := h.boots, h.stop
	h.wg.Add(1)
	go func() {
		defer h.wg.Done()
		if !h.pause(d, stop) {
			return
		}
		h.mu.Lock()
		defer h.mu.Unlock()
		if h.boots != boot || !h.up {
			return // the host rebooted: the command died with it
		}
		h.finishLocked(cmd, fail, stderr)
	}()
	return http.StatusNoContent
}

func (h *Host) finishLocked(cmd hostapi.CommandType, fail bool, stderr string) {
	rec := &hostapi.Command{Type: cmd, Status: hostapi.CommandSuccess, Timestamp: h.clock.Now().UTC(), ExitStatus: new(int), Stderr: new(string)}
	switch {
	case fail:
		*rec.ExitStatus, *rec.Stderr, rec.Status = 1, stderr, hostapi.CommandFailed
		if cmd == hostapi.CommandRefresh && h.state == hostapi.StateAvailable {
			h.state, h.chosen = hostapi.StateIdle, nil
		}
	case cmd == hostapi.CommandRefresh:
		h.listed = append([]Release(nil), h.repo...)
		sort.SliceStable(h.listed, func(i, j int) bool {
			return v1alpha1.CompareVersions(h.listed[i].Version, h.listed[j].Version) > 0
		})
		h.chosen = h.chooseLocked(h.listed)
		if h.state == hostapi.StateIdle || h.state == hostapi.StateAvailable {
			h.state = hostapi.StateIdle
			if h.chosen != nil {
				h.state = hostapi.StateAvailable
			}
		}
	case cmd == hostapi.CommandPrepare:
		img := *h.chosen
		h.parts[1-h.active], h.next, h.state = &img, h.active, hostapi.StateStaged
	case cmd == hostapi.CommandActivate:
		h.next, h.state = 1-h.active, hostapi.StateReady
	case cmd == hostapi.CommandDeactivate:
		h.next, h.state = h.active, hostapi.StateStaged
	}
	h.initialized, h.recent, h.busy = true, rec, false
	h.notifyLocked()
}

// statusLocked builds the update status document.
func (h *Host) statusLocked() hostapi.UpdateStatus {
	st := hostapi.UpdateStatus{
		State:             h.state,
		AvailableUpdates:  []string{},
		ChosenUpdate:      h.chosen,
		ActivePartition:   &hostapi.Partition{Image: h.parts[h.active], NextToBoot: h.next == h.active},
		MostRecentCommand: h.recent,
	}
	for _, r := range h.listed {
		st.AvailableUpdates = append(st.AvailableUpdates, r.Version)
	}
	if img := h.parts[1-h.active]; img != nil {
		st.StagingPartition = &hostapi.Partition{Image: img, NextToBoot: h.next != h.active}
	}
	return st
}

// State returns a snapshot of the host.
func (h *Host) State() State {
	h.mu.Lock()
	defer h.mu.Unlock()
	return h.stateLocked()
}

func (h *Host) stateLocked() State {
	lock, ignore := h.updateSettingsLocked()
	s := State{
		Up: h.up, Busy: h.busy, Boots: h.boots,
		Version: h.parts[h.active].Version, BootID: h.bootID,
		StatusInitialized: h.initialized, UpdateState: h.state,
		NextToBoot:  h.parts[h.next].Version,
		VersionLock: lock, IgnoreWaves: ignore,
	}
	if h.chosen != nil {
		s.Chosen = h.chosen.Version
	}
	if img := h.parts[1-h.active]; img != nil {
		s.Staged = img.Version
	}
	if h.recent != nil {
		rc := *h.recent
		s.LastCommand = &rc
	}
	return s
}

// WaitFor blocks until cond holds for the host's state, or ctx ends.
func (h *Host) WaitFor(ctx context.Context, cond func(State) bool) error {
	for {
		h.mu.Lock()
		s, ch := h.stateLocked(), h.changed
		h.mu.Unlock()
		if cond(s) {
			return nil
		}
		select {
		case <-ch:
		case <-ctx.Done():
			return ctx.Err()
		}
	}
}

// Version returns the running version.
func (h *Host) Version() string { return h.State().Version }

// BootID returns the current boot ID.
func (h *Host) BootID() string { return h.State().BootID }

// SetAvailable replaces the releases the update repository offers (a new
// release appears). The host sees them at its next refresh.
func (h *Host) SetAvailable(releases ...Release) {
	h.mu.Lock()
	defer h.mu.Unlock()
	h.repo = append([]Release(nil), releases...)
	h.notifyLocked()
}

// FailRefresh makes the next refresh fail with stderr.
func (h *Host) FailRefresh(stderr string) { h.failCommand(hostapi.CommandRefresh, stderr) }

// FailPrepare makes the next prepare fail with stderr (a download failure).
func (h *Host) FailPrepare(stderr string) { h.failCommand(hostapi.CommandPrepare, stderr) }

// FailActivate makes the next activate fail with stderr.
func (h *Host) FailActivate(stderr string) { h.failCommand(hostapi.CommandActivate, stderr) }

func (h *Host) failCommand(cmd hostapi.CommandType, stderr string) {
	h.mu.Lock()
	defer h.mu.Unlock()
	h.failCmd[cmd] = stderr
}

// FailBoot makes the next reboot into an activated image fail to boot it:
// its one try is spent and the host comes back on the old version.
func (h *Host) FailBoot() {
	h.mu.Lock()
	defer h.mu.Unlock()
	h.failBoot = true
}

// HangReboot makes the next reboot never come back until Revive or ClearFaults.
func (h *Host) HangReboot() {
	h.mu.Lock()
	defer h.mu.Unlock()
	if !h.hangReboot {
		h.hangReboot, h.revive = true, make(chan struct{})
	}
}

// Revive brings back a host whose reboot hangs (and disarms HangReboot).
func (h *Host) Revive() {
	h.mu.Lock()
	defer h.mu.Unlock()
	h.reviveLocked()
}

func (h *Host) reviveLocked() {
	if h.revive != nil {
		close(h.revive)
	}
	h.hangReboot, h.revive = false, nil
}

// Fail500 makes the next n requests answer 500; n < 0 makes all of them do
// so until ClearFaults, 0 disarms it.
func (h *Host) Fail500(n int) {
	h.mu.Lock()
	defer h.mu.Unlock()
	h.fail500 = n
}

// Slow delays every answer by d (0 disarms it).
func (h *Host) Slow(d time.Duration) {
	h.mu.Lock()
	defer h.mu.Unlock()
	h.slow = d
}

// Hang makes every request hang, unanswered, until ClearFaults.
func (h *Host) Hang() {
	h.mu.Lock()
	defer h.mu.Unlock()
	if h.hang == nil {
		h.hang = make(chan struct{})
	}
}

// ClearFaults disarms every injected fault, releases hung requests and
// revives a hung reboot.
func (h *Host) ClearFaults() {
	h.mu.Lock()
	defer h.mu.Unlock()
	clear(h.failCmd)
	h.failBoot, h.fail500, h.slow = false, 0, 0
	h.reviveLocked()
	if h.hang != nil {
		close(h.hang)
		h.hang = nil
	}
}
