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
	mrand "math/rand/v2"
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

// MaxSeed bounds a host's wave seed: a host draws its seed from [0, MaxSeed) at first boot
// (sources/api/bork/src/main.rs) and a release's waves are stated in seeds
// (sources/updater/update_metadata/src/lib.rs, MAX_SEED).
const MaxSeed = 2048

// Wave is one entry of a release's waves as updata writes them into the repository's
// manifest: hosts whose seed is at least Seed, up to the next wave's, get the release from
// Start on, spread over the wave (update_metadata's Update.waves).
type Wave struct {
	Seed  uint32
	Start time.Time
}

// DefaultWaves are Bottlerocket's "normal" waves (sources/updater/waves/default-waves.toml)
// for a release published at published: 1% of the fleet after an hour, 5% after 4 hours, 15%
// after a day, 40% after 2 days, 60% after 4, 90% after 5, everyone after 6 days. The seeds
// are computed as updata's set_waves does (update_metadata/src/lib.rs).
func DefaultWaves(published time.Time) []Wave {
	day := 24 * time.Hour
	steps := []struct {
		after   time.Duration
		percent uint32
	}{{time.Hour, 1}, {4 * time.Hour, 5}, {day, 15}, {2 * day, 40}, {4 * day, 60}, {5 * day, 90}, {6 * day, 100}}
	waves := make([]Wave, 0, len(steps))
	var seed uint32 // the first wave starts at seed 0; each next one where the previous percentage ends
	for _, s := range steps {
		waves = append(waves, Wave{Seed: seed, Start: published.Add(s.after)})
		seed = uint32(float32(s.percent) / 100 * MaxSeed)
	}
	return waves
}

// Release is a version the update repository offers.
type Release struct {
	// Version is the release's version, e.g. "1.26.1".
	Version string
	// Waves are the release's update waves. Empty: Bottlerocket's default waves
	// (DefaultWaves) from the moment the host learns of the release (New or SetAvailable) —
	// a release just published, which has reached almost no host yet.
	Waves []Wave
	// Everywhere marks a release published without waves, or long enough ago that every
	// wave has passed: every host has it.
	Everywhere bool
}

// Releases returns releases for versions, each published just now with the default waves:
// a host is offered them (without ignore-waves) only when its seed's wave has come.
func Releases(versions ...string) []Release {
	rs := make([]Release, len(versions))
	for i, v := range versions {
		rs[i] = Release{Version: v}
	}
	return rs
}

// Reached returns releases for versions that every host is offered, waves or not.
func Reached(versions ...string) []Release {
	rs := Releases(versions...)
	for i := range rs {
		rs[i].Everywhere = true
	}
	return rs
}

// ready is update_metadata's Update::update_ready: whether the release's waves have reached
// a host with seed at now. (Within a wave, the host's position is its seed times the wave's
// time per seed from the wave's start, as upstream computes it.)
func (r Release) ready(seed uint32, now time.Time) bool {
	if r.Everywhere || len(r.Waves) == 0 {
		return true
	}
	var start, end *Wave // the last wave starting below seed, the first at or above it
	for i := range r.Waves {
		w := &r.Waves[i]
		if w.Seed < seed && (start == nil || w.Seed > start.Seed) {
			start = w
		}
		if w.Seed >= seed && w.Seed <= MaxSeed && (end == nil || w.Seed < end.Seed) {
			end = w
		}
	}
	switch {
	case start == nil: // the initial wave: available at once
		return true
	case end == nil: // the last wave: from its start
		return !now.Before(start.Start)
	case !now.Before(end.Start): // the wave has passed
		return true
	case now.Before(start.Start):
		return false
	case end.Seed == start.Seed:
		return true
	}
	perSeed := end.Start.Sub(start.Start) / time.Duration(end.Seed-start.Seed)
	return !now.Before(start.Start.Add(perSeed * time.Duration(seed)))
}

// RebootResponse says how POST /actions/reboot answers.
type RebootResponse int

const (
	// RebootRespond answers 204 once systemd took the reboot job (the API server's reboot
	// handler), then keeps serving for RebootLinger before it goes down.
	RebootRespond RebootResponse = iota
	// RebootDrop goes down before the answer is written: the connection drops.
	RebootDrop
	// RebootRandom answers as RebootRespond or RebootDrop, at random.
	RebootRandom
)

// Config describes a simulated host at its first boot. The zero value of every field is the
// realistic default; a test that turns a behaviour off says why.
type Config struct {
	// Version is the running OS version (default "1.25.0").
	Version string
	// Variant is the OS variant (default "aws-k8s-1.31").
	Variant string
	// Arch is the architecture (default "x86_64").
	Arch string
	// Releases are the versions the update repository offers.
	Releases []Release
	// Seed is settings.updates.seed, the host's place in every release's waves. Default: a
	// random seed in [0, MaxSeed), as a host draws at its first boot.
	Seed *uint32
	// VersionLock is the initial settings.updates.version-lock (default "latest").
	VersionLock string
	// IgnoreWaves is the initial settings.updates.ignore-waves.
	IgnoreWaves bool
	// RefreshDuration, PrepareDuration and ActivateDuration are how long those
	// commands hold the update lock; ActivateDuration also applies to deactivate.
	RefreshDuration, PrepareDuration, ActivateDuration time.Duration
	// SettingsDelay is how long after POST /tx/commit_and_apply answered the update
	// settings take effect for refresh and prepare (the forked thar-be-settings rewriting
	// /etc/updog.toml and /etc/thar-be-updates.toml), jittered to [d/2, 3d/2]. Default 50ms;
	// negative: at once, before the answer.
	SettingsDelay time.Duration
	// RebootDuration is how long the API is unreachable during a reboot.
	RebootDuration time.Duration
	// RebootLinger is how long the host keeps serving, with the same boot ID, after it
	// accepted a reboot (systemd stopping services, the kubelet's shutdown grace period).
	// Default 100ms; negative: it goes down at once.
	RebootLinger time.Duration
	// RebootResponse says how a reboot request is answered (default RebootRespond).
	RebootResponse RebootResponse
	// BootIDFile, if set, receives the boot ID (with a newline) at every boot,
	// like /proc/sys/kernel/random/boot_id.
	BootIDFile string
	// OnReboot, if set, is called (from the simulator's goroutine, without its
	// lock held) when the host goes down and when it comes back.
	OnReboot func(RebootEvent)
	// Clock is the host's clock: command records are stamped with its time (a client
	// comparing them with its own requests must use the same clock), waves are judged by it,
	// and command, settings, reboot and Slow durations elapse on it. Default: the real clock.
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
	// RebootPending is true between an accepted reboot and the host going down.
	RebootPending bool
	// StatusInitialized is false after a boot until the first update command.
	StatusInitialized bool
	// UpdateState is the update state machine's state.
	UpdateState hostapi.UpdateState
	// Chosen is the chosen update's version, or "".
	Chosen string
	// Staged is the version the inactive partition set really holds, or "" if it holds
	// nothing bootable (whatever the status document says).
	Staged string
	// NextToBoot is the version the firmware boots next.
	NextToBoot string
	// VersionLock and IgnoreWaves are the committed update settings; AppliedVersionLock and
	// AppliedIgnoreWaves those refresh and prepare use (they follow after SettingsDelay).
	VersionLock        string
	IgnoreWaves        bool
	AppliedVersionLock string
	AppliedIgnoreWaves bool
	// Seed is the host's wave seed.
	Seed uint32
	// LastCommand is the most recent command record, if any.
	LastCommand *hostapi.Command
}

// partition is one partition set on disk.
type partition struct {
	image *hostapi.Image // nil: never written
	valid bool           // written completely and marked valid for upgrade (signpost's tries_left > 0)
}

// updateSettings is what refresh and prepare read: settings.updates as last rendered into
// the host's config files.
type updateSettings struct {
	versionLock string
	ignoreWaves bool
}

// Host is a simulated Bottlerocket host. Its methods are safe for concurrent use.
type Host struct {
	cfg   Config
	clock clock.Clock
	mux   *http.ServeMux
	seed  uint32

	mu      sync.Mutex
	changed chan struct{} // closed and replaced at every state change

	// The machine (kept across reboots).
	parts        [2]partition
	active, next int
	bootID       string
	boots        int
	repo         []Release
	settings     map[string]any // the datastore: committed settings
	applied      updateSettings // the config files
	txs          map[string]map[string]any

	// The update status (tmpfs: lost at every reboot).
	initialized bool
	state       hostapi.UpdateState
	listed      []string // available_updates as of the last refresh
	chosen      *hostapi.Image
	staging     *hostapi.Partition // the status document's staging_partition
	recent      *hostapi.Command
	busy        bool

	// Faults.
	faults     map[hostapi.CommandType]commandFault
	failBoot   bool
	hangReboot bool
	revive     chan struct{}
	refuse     int    // reboot requests still to refuse; < 0: all
	refusal    string // systemctl's stderr for them
	fail500    int
	slow       time.Duration
	hang       chan struct{}
	release    chan struct{} // closed by ClearFaults: ends commands hung holding the lock

	// Serving.
	socket  string
	up      bool
	leaving bool // a reboot was accepted; the host goes down after RebootLinger
	srv     *http.Server
	stop    chan struct{} // closed when the current server goes away
	quit    chan struct{} // closed by Close
	closed  bool
	started bool
	wg      sync.WaitGroup
}

// commandFault is an injected misbehaviour of the next command of a kind.
type commandFault struct {
	fail     bool   // the command fails with stderr
	stderr   string //
	noRecord bool   // the command ends without writing a record (its program never started)
	hang     bool   // the command holds the lock until ClearFaults
}

// New returns a simulated host, booted but not yet serving; see Start.
func New(cfg Config) *Host {
	cfg.Version = orDefault(cfg.Version, "1.25.0")
	cfg.Variant = orDefault(cfg.Variant, "aws-k8s-1.31")
	cfg.Arch = orDefault(cfg.Arch, "x86_64")
	cfg.VersionLock = orDefault(cfg.VersionLock, hostapi.VersionLockLatest)
	if cfg.SettingsDelay == 0 {
		cfg.SettingsDelay = 50 * time.Millisecond
	}
	if cfg.RebootLinger == 0 {
		cfg.RebootLinger = 100 * time.Millisecond
	}
	h := &Host{
		cfg:     cfg,
		clock:   cfg.Clock,
		changed: make(chan struct{}),
		txs:     map[string]map[string]any{},
		faults:  map[hostapi.CommandType]commandFault{},
		quit:    make(chan struct{}),
		release: make(chan struct{}),
	}
	if h.clock == nil {
		h.clock = clock.RealClock{}
	}
	if cfg.Seed != nil {
		h.seed = *cfg.Seed % MaxSeed
	} else {
		h.seed = mrand.Uint32N(MaxSeed)
	}
	h.settings = map[string]any{
		"motd": "Welcome to Bottlerocket!",
		"updates": map[string]any{
			"metadata-base-url": "https://updates.bottlerocket.aws/2020-07-07/" + cfg.Variant + "/" + cfg.Arch + "/",
			"targets-base-url":  "https://updates.bottlerocket.aws/targets/",
			"seed":              float64(h.seed),
			"version-lock":      cfg.VersionLock,
			"ignore-waves":      cfg.IgnoreWaves,
		},
		"host-containers": map[string]any{
			"admin":   map[string]any{"enabled": false},
			"control": map[string]any{"enabled": true},
		},
		"kubernetes": map[string]any{"cluster-name": "hostsim", "max-pods": float64(110)},
	}
	h.repo = h.publish(cfg.Releases)
	h.parts[0] = partition{image: h.image(cfg.Version), valid: true}
	h.bootLocked()
	h.mux = h.routes()
	return h
}

// Seed returns a pointer to seed, for Config.Seed.
func Seed(seed uint32) *uint32 { return &seed }

func orDefault(s, def string) string {
	if s == "" {
		return def
	}
	return s
}

func (h *Host) image(version string) *hostapi.Image {
	return &hostapi.Image{Arch: h.cfg.Arch, Version: version, Variant: h.cfg.Variant}
}

// publish copies releases into the repository, giving those without waves the default
// waves from now.
func (h *Host) publish(releases []Release) []Release {
	out := make([]Release, len(releases))
	for i, r := range releases {
		r.Waves = append([]Wave(nil), r.Waves...)
		if !r.Everywhere && len(r.Waves) == 0 {
			r.Waves = DefaultWaves(h.clock.Now())
		}
		out[i] = r
	}
	return out
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

// bootLocked boots the partition set marked to boot next — or, when a boot failure is
// armed, spends the new image's one try and boots the old set (GRUB's gptprio fallback) —
// with a new boot ID, the settings rendered afresh and no update status (it lives in tmpfs).
func (h *Host) bootLocked() (fellBack bool) {
	if h.failBoot && h.next != h.active {
		h.failBoot, fellBack = false, true
		h.parts[h.next].valid = false // its try is spent
		h.next = h.active
	}
	h.active = h.next
	h.bootID = newBootID()
	h.boots++
	h.applied = h.committedLocked()
	h.initialized, h.busy, h.leaving = false, false, false
	h.resetStatusLocked()
	return fellBack
}

// resetStatusLocked is thar-be-updates' initialize_update_status: Idle, nothing listed,
// chosen or staged, no command recorded.
func (h *Host) resetStatusLocked() {
	h.state, h.listed, h.chosen, h.staging, h.recent = hostapi.StateIdle, nil, nil, nil, nil
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

// leaveLocked schedules the host to go down after RebootLinger: it was told to reboot.
func (h *Host) leaveLocked() {
	if h.leaving {
		return // systemd already has the reboot job
	}
	h.leaving = true
	h.notifyLocked()
	if h.cfg.RebootLinger < 0 {
		h.rebootLocked()
		return
	}
	boot := h.boots
	h.wg.Add(1)
	go func() {
		defer h.wg.Done()
		if !h.pause(h.cfg.RebootLinger, nil) {
			return
		}
		h.mu.Lock()
		defer h.mu.Unlock()
		if h.boots == boot && h.up {
			h.rebootLocked()
		}
	}()
}

// rebootLocked takes the host down now. It comes back after RebootDuration, or on Revive if
// hung.
func (h *Host) rebootLocked() {
	ev := RebootEvent{
		Phase:       RebootDown,
		FromVersion: h.parts[h.active].image.Version,
		Version:     h.parts[h.next].image.Version,
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
		up.Version, up.BootID = h.parts[h.active].image.Version, h.bootID
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

// applicableLocked is updog's applicable_updates: the repository's releases this host's
// waves have reached (all of them with ignore-waves), newest first.
func (h *Host) applicableLocked(ignoreWaves bool) []Release {
	now := h.clock.Now()
	var out []Release
	for _, r := range h.repo {
		if ignoreWaves || r.ready(h.seed, now) {
			out = append(out, r)
		}
	}
	sort.SliceStable(out, func(i, j int) bool { return v1alpha1.CompareVersions(out[i].Version, out[j].Version) > 0 })
	return out
}

// chooseLocked is updog's update_required (and thar-be-updates' update_available_updates):
// under "latest" the newest applicable release above the running one; under a pin exactly
// that release if it is applicable and not the running one.
func (h *Host) chooseLocked(s updateSettings) *hostapi.Image {
	running := h.parts[h.active].image.Version
	for _, r := range h.applicableLocked(s.ignoreWaves) {
		if s.versionLock == hostapi.VersionLockLatest {
			if v1alpha1.CompareVersions(r.Version, running) > 0 {
				return h.image(r.Version)
			}
			return nil
		}
		if v1alpha1.CompareVersions(s.versionLock, running) == 0 {
			return nil
		}
		if v1alpha1.CompareVersions(r.Version, s.versionLock) == 0 {
			return h.image(r.Version)
		}
	}
	return nil
}

// committedLocked reads settings.updates from the datastore.
func (h *Host) committedLocked() updateSettings {
	u, _ := h.settings["updates"].(map[string]any)
	s := updateSettings{versionLock: hostapi.VersionLockLatest}
	if v, _ := u["version-lock"].(string); v != "" {
		s.versionLock = v
	}
	s.ignoreWaves, _ = u["ignore-waves"].(bool)
	return s
}

// applyLater renders the committed settings into the config files after SettingsDelay
// (thar-be-settings, forked by the API server after it answered the commit).
func (h *Host) applyLaterLocked() {
	d := h.cfg.SettingsDelay
	if d < 0 {
		h.applied = h.committedLocked()
		return
	}
	d = d/2 + mrand.N(d+1)
	boot, stop := h.boots, h.stop
	h.wg.Add(1)
	go func() {
		defer h.wg.Done()
		if !h.pause(d, stop) {
			return
		}
		h.mu.Lock()
		defer h.mu.Unlock()
		if h.boots == boot {
			h.applied = h.committedLocked()
			h.notifyLocked()
		}
	}()
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

// The API server's error texts (sources/api/apiserver/src/server/error.rs).
const (
	msgLockHeld      = "Update lock held"
	msgStatusLocked  = "Unable to obtain shared lock for reading update status: Resource temporarily unavailable (os error 11)"
	msgDisallowed    = "Update action not allowed according to update state"
	msgNoChosen      = "Previously chosen Update no longer exists"
	msgNoStaged      = "No update image applied to staging partition"
	msgUninitialized = "Update status is uninitialized, refresh-updates to initialize it"
	msgNoPending     = "Tried to commit with no pending changes"
)

// startLocked is thar-be-updates' run(): take the lock, create the status if there is none,
// check the state table, and fork the command. It returns the HTTP status and error text,
// or 0 if the host is down.
func (h *Host) startLocked(cmd hostapi.CommandType) (int, string) {
	if !h.up {
		return 0, ""
	}
	if h.busy {
		return http.StatusLocked, msgLockHeld
	}
	if !h.initialized { // any command creates the status, even one refused below
		h.initialized = true
		h.resetStatusLocked()
		h.notifyLocked()
	}
	if !allowed(cmd, h.state) {
		return http.StatusConflict, msgDisallowed
	}
	d := h.cfg.ActivateDuration
	switch cmd {
	case hostapi.CommandRefresh:
		d = h.cfg.RefreshDuration
	case hostapi.CommandPrepare:
		d = h.cfg.PrepareDuration
		if h.chosen == nil {
			return http.StatusNotFound, msgNoChosen
		}
	default:
		if h.staging == nil {
			return http.StatusNotFound, msgNoStaged
		}
	}
	fault := h.faults[cmd]
	delete(h.faults, cmd)
	h.busy = true
	h.notifyLocked()
	boot, stop, release := h.boots, h.stop, h.release
	h.wg.Add(1)
	go func() {
		defer h.wg.Done()
		if !h.pause(d, stop) {
			return
		}
		if fault.hang {
			select {
			case <-release:
			case <-stop:
				return
			}
		}
		h.mu.Lock()
		defer h.mu.Unlock()
		if h.boots != boot || !h.up {
			return // the host rebooted: the command died with it
		}
		h.finishLocked(cmd, fault)
	}()
	return http.StatusNoContent, ""
}

// finishLocked ends a command as thar-be-updates' child does: it records the command and
// moves the state.
func (h *Host) finishLocked(cmd hostapi.CommandType, fault commandFault) {
	defer func() {
		h.busy = false
		h.notifyLocked()
	}()
	if fault.noRecord {
		return // the program never ran: the status is written back unchanged
	}
	stderr := fault.stderr
	ok := !fault.fail
	if ok {
		switch cmd {
		case hostapi.CommandRefresh:
			h.refreshLocked()
		case hostapi.CommandPrepare:
			stderr = h.prepareLocked()
		case hostapi.CommandActivate:
			stderr, ok = h.activateLocked()
		case hostapi.CommandDeactivate:
			h.next, h.state = h.active, hostapi.StateStaged
			h.staging.NextToBoot = false
		}
	} else {
		switch {
		case cmd == hostapi.CommandRefresh && h.state == hostapi.StateAvailable:
			h.state = hostapi.StateIdle // refresh() returned false
		case cmd == hostapi.CommandPrepare:
			h.parts[1-h.active].valid = false // update_image cleared the inactive set before failing
		}
	}
	exit := 0
	status := hostapi.CommandSuccess
	if !ok {
		exit, status = 1, hostapi.CommandFailed
	}
	h.recent = &hostapi.Command{Type: cmd, Status: status, Timestamp: h.clock.Now().UTC(), ExitStatus: &exit, Stderr: &stderr}
}

// refreshLocked is `updog whats --all` plus update_available_updates.
func (h *Host) refreshLocked() {
	h.listed = nil
	for _, r := range h.applicableLocked(h.applied.ignoreWaves) {
		h.listed = append(h.listed, r.Version)
	}
	h.chosen = h.chooseLocked(h.applied)
	if h.state == hostapi.StateIdle || h.state == hostapi.StateAvailable {
		h.state = hostapi.StateIdle
		if h.chosen != nil {
			h.state = hostapi.StateAvailable
		}
	}
}

// prepareLocked is `updog update-image`, which chooses again from the settings as they are
// now, and thar-be-updates recording the refresh-time choice as staged whatever updog did.
func (h *Host) prepareLocked() (stderr string) {
	if pick := h.chooseLocked(h.applied); pick != nil {
		h.parts[1-h.active] = partition{image: pick, valid: true}
		stderr = "Starting update to " + pick.Version + "\n"
	} else {
		stderr = "No update required\n" // updog wrote nothing
	}
	img := *h.chosen
	h.staging = &hostapi.Partition{Image: &img}
	h.next, h.state = h.active, hostapi.StateStaged
	return stderr
}

// activateLocked is `updog update-apply` (signpost upgrade-to-inactive), which refuses an
// inactive set that was never completely written.
func (h *Host) activateLocked() (stderr string, ok bool) {
	if !h.parts[1-h.active].valid {
		return "Could not mark inactive partition for boot: Inactive partition /dev/nvme0n1 has not been marked valid for upgrade\n", false
	}
	h.next, h.state = 1-h.active, hostapi.StateReady
	h.staging.NextToBoot = true
	return "", true
}

// statusLocked builds the update status document.
func (h *Host) statusLocked() hostapi.UpdateStatus {
	st := hostapi.UpdateStatus{
		State:             h.state,
		AvailableUpdates:  append([]string{}, h.listed...),
		ChosenUpdate:      h.chosen,
		ActivePartition:   &hostapi.Partition{Image: h.parts[h.active].image, NextToBoot: h.next == h.active},
		StagingPartition:  h.staging,
		MostRecentCommand: h.recent,
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
	committed := h.committedLocked()
	s := State{
		Up: h.up, Busy: h.busy, Boots: h.boots, RebootPending: h.leaving,
		Version: h.parts[h.active].image.Version, BootID: h.bootID,
		StatusInitialized: h.initialized, UpdateState: h.state,
		NextToBoot:  h.parts[h.next].image.Version,
		VersionLock: committed.versionLock, IgnoreWaves: committed.ignoreWaves,
		AppliedVersionLock: h.applied.versionLock, AppliedIgnoreWaves: h.applied.ignoreWaves,
		Seed: h.seed,
	}
	if h.chosen != nil {
		s.Chosen = h.chosen.Version
	}
	if p := h.parts[1-h.active]; p.valid && p.image != nil {
		s.Staged = p.image.Version
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

// SetAvailable replaces the releases the update repository offers (a release is published
// or withdrawn); a release without waves gets the default waves from now. The host sees them
// at its next refresh.
func (h *Host) SetAvailable(releases ...Release) {
	h.mu.Lock()
	defer h.mu.Unlock()
	h.repo = h.publish(releases)
	h.notifyLocked()
}

// FailRefresh makes the next refresh fail with stderr.
func (h *Host) FailRefresh(stderr string) {
	h.fault(hostapi.CommandRefresh, commandFault{fail: true, stderr: stderr})
}

// FailPrepare makes the next prepare fail with stderr (a download failure). Like a real one,
// it leaves the inactive partition set cleared: an image staged before is no longer bootable.
func (h *Host) FailPrepare(stderr string) {
	h.fault(hostapi.CommandPrepare, commandFault{fail: true, stderr: stderr})
}

// FailActivate makes the next activate fail with stderr.
func (h *Host) FailActivate(stderr string) {
	h.fault(hostapi.CommandActivate, commandFault{fail: true, stderr: stderr})
}

// NoRecord makes the next cmd end without writing a command record (thar-be-updates' child
// failed to start updog).
func (h *Host) NoRecord(cmd hostapi.CommandType) { h.fault(cmd, commandFault{noRecord: true}) }

// HangCommand makes the next cmd hold the update lock until ClearFaults (a download stuck on
// the network).
func (h *Host) HangCommand(cmd hostapi.CommandType) { h.fault(cmd, commandFault{hang: true}) }

func (h *Host) fault(cmd hostapi.CommandType, f commandFault) {
	h.mu.Lock()
	defer h.mu.Unlock()
	h.faults[cmd] = f
}

// FailBoot makes the next reboot into an activated image fail to boot it (a kernel panic):
// its one try is spent and the host comes back on the old version.
func (h *Host) FailBoot() {
	h.mu.Lock()
	defer h.mu.Unlock()
	h.failBoot = true
}

// HangReboot makes the next reboot never come back until Revive or ClearFaults (an image
// that hangs without panicking).
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

// InhibitorText is what systemctl prints when a shutdown inhibitor refuses a reboot.
const InhibitorText = "Operation inhibited by \"kubelet\" (PID 1843 \"kubelet\", user root), reason is \"Kubelet needs time to handle node shutdown\".\n" +
	"Please retry operation after closing inhibitors and logging out other users.\n" +
	"Alternatively, ignore inhibitors and users with 'systemctl reboot -i'.\n"

// RefuseReboot makes the next n reboot requests fail as `systemctl reboot
// --check-inhibitors=yes` does when something inhibits shutdown: 500 with systemctl's text
// (n < 0: every one until ClearFaults).
func (h *Host) RefuseReboot(n int) {
	h.mu.Lock()
	defer h.mu.Unlock()
	h.refuse, h.refusal = n, InhibitorText
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

// ClearFaults disarms every injected fault, releases hung requests and commands and
// revives a hung reboot.
func (h *Host) ClearFaults() {
	h.mu.Lock()
	defer h.mu.Unlock()
	clear(h.faults)
	h.failBoot, h.fail500, h.slow, h.refuse = false, 0, 0, 0
	h.reviveLocked()
	if h.hang != nil {
		close(h.hang)
		h.hang = nil
	}
	close(h.release)
	h.release = make(chan struct{})
}
