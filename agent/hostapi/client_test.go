package hostapi_test

import (
	"context"
	"errors"
	"os"
	"path/filepath"
	"strings"
	"sync"
	"testing"
	"time"

	"k8s.io/apimachinery/pkg/util/wait"
	"k8s.io/utils/clock"
	clocktesting "k8s.io/utils/clock/testing"

	"github.com/bottlerocket-ops/update-operator/agent/hostapi"
	"github.com/bottlerocket-ops/update-operator/test/framework/hostsim"
)

type env struct {
	h      *hostsim.Host
	c      *hostapi.Client
	sock   string
	bootID string // path of the boot ID file
	events chan hostsim.RebootEvent
}

// newEnv starts a simulated host (short durations, unless it runs on a fake clock) and a fast
// client for it on the real clock.
func newEnv(t *testing.T, cfg hostsim.Config, opts ...hostapi.Option) *env {
	t.Helper()
	return newEnvOn(t, cfg, clock.RealClock{}, opts...)
}

// newEnvOn is newEnv with the client on clk.
func newEnvOn(t *testing.T, cfg hostsim.Config, clk clock.Clock, opts ...hostapi.Option) *env {
	t.Helper()
	dir, err := os.MkdirTemp("", "hs") // short: Unix socket paths are limited to 108 bytes
	if err != nil {
		t.Fatal(err)
	}
	e := &env{sock: filepath.Join(dir, "api.sock"), bootID: filepath.Join(dir, "boot_id"), events: make(chan hostsim.RebootEvent, 16)}
	cfg.BootIDFile = e.bootID
	cfg.OnReboot = func(ev hostsim.RebootEvent) { e.events <- ev }
	// The agent runs governed hosts with ignore-waves on: releases just published are offered
	// here whatever the host's seed (the simulator's waves are tested in package hostsim).
	cfg.IgnoreWaves = true
	for _, d := range []*time.Duration{&cfg.RefreshDuration, &cfg.PrepareDuration, &cfg.ActivateDuration, &cfg.RebootDuration} {
		if *d == 0 && cfg.Clock == nil {
			*d = 5 * time.Millisecond
		}
	}
	e.h = hostsim.New(cfg)
	if err := e.h.Start(e.sock); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() {
		e.h.Close()
		_ = os.RemoveAll(dir)
	})
	e.c = hostapi.New(e.sock, clk, append([]hostapi.Option{
		hostapi.WithPollInterval(time.Millisecond),
		hostapi.WithLockBackoff(time.Millisecond, 10*time.Millisecond, 0),
		hostapi.WithHTTPTimeout(5 * time.Second),
	}, opts...)...)
	return e
}

// applied: the host's committed update settings have taken effect.
func applied(s hostsim.State) bool {
	return s.AppliedVersionLock == s.VersionLock && s.AppliedIgnoreWaves == s.IgnoreWaves
}

func ctx(t *testing.T) context.Context {
	c, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	t.Cleanup(cancel)
	return c
}

func must(t *testing.T, err error) {
	t.Helper()
	if err != nil {
		t.Fatal(err)
	}
}

// awaitBoot waits for the host to go down and come back.
func (e *env) awaitBoot(t *testing.T) hostsim.RebootEvent {
	t.Helper()
	for {
		select {
		case ev := <-e.events:
			if ev.Phase == hostsim.RebootUp {
				return ev
			}
		case <-time.After(5 * time.Second):
			t.Fatal("the host did not come back")
		}
	}
}

func (e *env) readBootID(t *testing.T) string {
	t.Helper()
	b, err := os.ReadFile(e.bootID)
	must(t, err)
	return strings.TrimSpace(string(b))
}

// steps runs fns in order and returns the first error.
func steps(c context.Context, fns ...func(context.Context) error) error {
	for _, fn := range fns {
		if err := fn(c); err != nil {
			return err
		}
	}
	return nil
}

// update runs refresh, prepare, activate and reboot, and waits for the boot.
func (e *env) update(t *testing.T) hostsim.RebootEvent {
	t.Helper()
	must(t, steps(ctx(t), e.c.Refresh, e.c.Prepare, e.c.Activate, e.c.Reboot))
	return e.awaitBoot(t)
}

func TestUpdateCycle(t *testing.T) {
	e := newEnv(t, hostsim.Config{Version: "1.25.0", Releases: hostsim.Releases("1.25.0", "1.26.0")})
	c := ctx(t)
	info, err := e.c.OS(c)
	if err != nil || info.VersionID != "1.25.0" || info.VariantID != "aws-k8s-1.31" || info.Arch != "x86_64" {
		t.Fatalf("OS = %+v, %v", info, err)
	}
	if _, err := e.c.Status(c); !errors.Is(err, hostapi.ErrStatusUninitialized) {
		t.Fatalf("Status before refresh: %v, want ErrStatusUninitialized", err)
	}
	must(t, e.c.Refresh(c))
	st, err := e.c.Status(c)
	if err != nil || st.State != hostapi.StateAvailable || st.ChosenVersion() != "1.26.0" {
		t.Fatalf("Status = %+v, %v", st, err)
	}
	must(t, steps(c, e.c.Prepare, e.c.Activate, e.c.Deactivate, e.c.Activate))
	st, err = e.c.Status(c)
	if err != nil || st.State != hostapi.StateReady || st.StagedVersion() != "1.26.0" || !st.StagingPartition.NextToBoot {
		t.Fatalf("Status = %+v, %v", st, err)
	}
	oldBoot := e.readBootID(t)
	must(t, e.c.Reboot(c)) // random: answered or dropped
	up := e.awaitBoot(t)
	if info, err := e.c.OS(c); err != nil || info.VersionID != "1.26.0" || up.FellBack {
		t.Fatalf("after reboot OS = %+v, %v; event %+v", info, err, up)
	}
	if _, err := e.c.Status(c); !errors.Is(err, hostapi.ErrStatusUninitialized) {
		t.Fatalf("Status after reboot: %v, want ErrStatusUninitialized", err)
	}
	if id := e.readBootID(t); id == oldBoot || id != up.BootID {
		t.Fatalf("boot ID %q (was %q, event %q)", id, oldBoot, up.BootID)
	}
	must(t, e.c.Refresh(c))
}

func TestRebootAnsweredOrDropped(t *testing.T) {
	for _, mode := range []hostsim.RebootResponse{hostsim.RebootRespond, hostsim.RebootDrop} {
		e := newEnv(t, hostsim.Config{RebootResponse: mode})
		must(t, e.c.Reboot(ctx(t)))
		e.awaitBoot(t)
	}
}

func TestConcurrentCallers(t *testing.T) {
	e := newEnv(t, hostsim.Config{Version: "1.25.0", Releases: hostsim.Releases("1.26.0"),
		PrepareDuration: 30 * time.Millisecond, ActivateDuration: 30 * time.Millisecond})
	c := ctx(t)
	must(t, e.c.Refresh(c))
	both := func(op func(context.Context) error) [2]error {
		var errs [2]error
		var wg sync.WaitGroup
		for i := range errs {
			wg.Go(func() { errs[i] = op(c) })
		}
		wg.Wait()
		return errs
	}
	if errs := both(e.c.Prepare); errs[0] != nil || errs[1] != nil {
		t.Fatalf("concurrent Prepare: %v", errs)
	}
	errs := both(e.c.Activate)
	ok, wrong := 0, 0
	for _, err := range errs {
		switch {
		case err == nil:
			ok++
		case errors.Is(err, hostapi.ErrWrongState):
			wrong++
		}
	}
	if ok != 1 || wrong != 1 {
		t.Fatalf("concurrent Activate: %v, want one success and one ErrWrongState", errs)
	}
}

func TestErrors(t *testing.T) {
	var host *hostsim.Host
	settled := func(c context.Context) error { return host.WaitFor(c, applied) }
	for _, tc := range []struct {
		name  string
		opts  []hostapi.Option
		setup func(*hostsim.Host)
		call  func(context.Context, *hostapi.Client) error
		ctx   time.Duration
		check func(error) bool
	}{
		{name: "prepare fails with stderr",
			setup: func(h *hostsim.Host) { h.FailPrepare("Failed to download update: 503") },
			call:  func(c context.Context, cl *hostapi.Client) error { return steps(c, cl.Refresh, cl.Prepare) },
			check: func(err error) bool {
				var fe *hostapi.CommandFailedError
				return errors.As(err, &fe) && fe.Command == hostapi.CommandPrepare && fe.ExitStatus == 1 &&
					fe.Stderr == "Failed to download update: 503" && strings.HasPrefix(err.Error(), "prepare-update: ")
			}},
		{name: "activate fails",
			setup: func(h *hostsim.Host) { h.FailActivate("signpost: no such partition") },
			call: func(c context.Context, cl *hostapi.Client) error {
				return steps(c, cl.Refresh, cl.Prepare, cl.Activate)
			},
			check: func(err error) bool {
				var fe *hostapi.CommandFailedError
				return errors.As(err, &fe) && fe.Command == hostapi.CommandActivate && fe.Stderr == "signpost: no such partition"
			}},
		{name: "refresh fails",
			setup: func(h *hostsim.Host) { h.FailRefresh("manifest expired") },
			call:  func(c context.Context, cl *hostapi.Client) error { return cl.Refresh(c) },
			check: func(err error) bool { var fe *hostapi.CommandFailedError; return errors.As(err, &fe) }},
		{name: "500 on status",
			setup: func(h *hostsim.Host) { h.Fail500(1) },
			call:  func(c context.Context, cl *hostapi.Client) error { _, err := cl.Status(c); return err },
			check: func(err error) bool {
				var he *hostapi.HTTPError
				return errors.As(err, &he) && he.StatusCode == 500 && hostapi.IsServerError(err)
			}},
		{name: "500 on every request",
			setup: func(h *hostsim.Host) { h.Fail500(-1) },
			call:  func(c context.Context, cl *hostapi.Client) error { return cl.Refresh(c) },
			check: hostapi.IsServerError},
		{name: "hung host hits the context deadline",
			setup: func(h *hostsim.Host) { h.Hang() },
			call:  func(c context.Context, cl *hostapi.Client) error { _, err := cl.OS(c); return err },
			ctx:   50 * time.Millisecond,
			check: func(err error) bool { return errors.Is(err, context.DeadlineExceeded) }},
		{name: "hung host hits the HTTP timeout",
			opts:  []hostapi.Option{hostapi.WithHTTPTimeout(30 * time.Millisecond)},
			setup: func(h *hostsim.Host) { h.Hang() },
			call:  func(c context.Context, cl *hostapi.Client) error { return cl.Reboot(c) },
			check: func(err error) bool { return errors.Is(err, hostapi.ErrUnavailable) }},
		{name: "slow host still answers",
			setup: func(h *hostsim.Host) { h.Slow(20 * time.Millisecond) },
			call:  func(c context.Context, cl *hostapi.Client) error { return cl.Refresh(c) },
			check: func(err error) bool { return err == nil }},
		{name: "prepare in Idle is the wrong state",
			call: func(c context.Context, cl *hostapi.Client) error { return cl.Prepare(c) },
			check: func(err error) bool {
				return errors.Is(err, hostapi.ErrWrongState) && !hostapi.IsServerError(err)
			}},
		{name: "prepare with nothing chosen",
			setup: func(h *hostsim.Host) { host = h },
			call: func(c context.Context, cl *hostapi.Client) error {
				// Staged, then pinned to the running version: the next refresh chooses nothing.
				pin := func(c context.Context) error { return cl.SetUpdateSettings(c, "1.25.0", true) }
				return steps(c, cl.Refresh, cl.Prepare, pin, settled, cl.Refresh, cl.Prepare)
			},
			check: func(err error) bool { return errors.Is(err, hostapi.ErrNoUpdate) }},
		{name: "locked until the retries run out",
			opts:  []hostapi.Option{hostapi.WithLockBackoff(time.Millisecond, time.Millisecond, 3)},
			setup: func(h *hostsim.Host) {},
			call: func(c context.Context, cl *hostapi.Client) error {
				if err := cl.Refresh(c); err != nil {
					return err
				}
				go func() { _ = cl.Prepare(c) }() // holds the lock for an hour
				for {
					if _, err := cl.Status(c); errors.Is(err, hostapi.ErrLocked) || c.Err() != nil {
						return err
					}
				}
			},
			check: func(err error) bool { return errors.Is(err, hostapi.ErrLocked) }},
	} {
		t.Run(tc.name, func(t *testing.T) {
			cfg := hostsim.Config{Version: "1.25.0", Releases: hostsim.Releases("1.25.0", "1.26.0")}
			if strings.HasPrefix(tc.name, "locked") {
				cfg.PrepareDuration = time.Hour
			}
			e := newEnv(t, cfg, tc.opts...)
			if tc.setup != nil {
				tc.setup(e.h)
			}
			c := ctx(t)
			if tc.ctx > 0 {
				var cancel context.CancelFunc
				c, cancel = context.WithTimeout(c, tc.ctx)
				defer cancel()
			}
			if err := tc.call(c, e.c); !tc.check(err) {
				t.Fatalf("got %v (%T)", err, err)
			}
		})
	}
}

// epoch is where the tests' fake clocks start.
var epoch = time.Date(2025, 3, 30, 1, 30, 0, 0, time.UTC)

// awaitTimers waits (in real time, bounded) until n timers wait on clk, so that a Step lands
// after the waits it is meant to end have begun.
func awaitTimers(t *testing.T, clk *clocktesting.FakeClock, n int) {
	t.Helper()
	c, cancel := context.WithTimeout(context.Background(), 5*time.Second)
	defer cancel()
	if err := wait.PollUntilContextCancel(c, time.Millisecond, true, func(context.Context) (bool, error) {
		return clk.Waiters() >= n, nil
	}); err != nil {
		t.Fatalf("waiting for %d timers on the fake clock (%d): %v", n, clk.Waiters(), err)
	}
}

// returned reports what done holds, if anything yet.
func returned[T any](done <-chan T) (T, bool) {
	select {
	case v := <-done:
		return v, true
	default:
		var zero T
		return zero, false
	}
}

// async runs call in a goroutine; its result comes on the channel returned.
func async[T any](call func() T) <-chan T {
	done := make(chan T, 1)
	go func() { done <- call() }()
	return done
}

// drive steps clk by step whenever something waits on it, until done yields (a call under
// ctx(t) returns by its deadline at the latest). A command that takes no time on the host
// may still be seen running by the client's first poll, which then waits on the clock.
func drive[T any](clk *clocktesting.FakeClock, step time.Duration, done <-chan T) T {
	for {
		select {
		case v := <-done:
			return v
		case <-time.After(time.Millisecond):
			if clk.HasWaiters() {
				clk.Step(step)
			}
		}
	}
}

// TestAwaitsOnTheClock runs the client and the host on one fake clock: the client polls a
// command's outcome on its clock, for as long as the command takes on the host's, and takes
// the host's record of it, stamped by the same clock, for the answer to its request.
func TestAwaitsOnTheClock(t *testing.T) {
	clk := clocktesting.NewFakeClock(epoch)
	e := newEnvOn(t, hostsim.Config{Version: "1.25.0", Releases: hostsim.Releases("1.26.0"), PrepareDuration: 10 * time.Second, Clock: clk},
		clk, hostapi.WithPollInterval(time.Second))
	c := ctx(t)
	must(t, drive(clk, time.Second, async(func() error { return e.c.Refresh(c) })))
	start := clk.Now()
	done := async(func() error { return e.c.Prepare(c) })
	for elapsed := time.Duration(0); elapsed < 10*time.Second; elapsed += time.Second {
		awaitTimers(t, clk, 2) // the host's prepare, and the client's wait for its next poll
		if err, ok := returned(done); ok {
			t.Fatalf("Prepare returned %v after %s of a 10s prepare", err, elapsed)
		}
		clk.Step(time.Second)
	}
	// The prepare is over; the client sees it at its next poll, or the one after if it looked
	// just before the host recorded it.
	must(t, drive(clk, time.Second, done))
	if s, want := e.h.State(), start.Add(10*time.Second); s.UpdateState != hostapi.StateStaged || !s.LastCommand.Timestamp.Equal(want) {
		t.Fatalf("host state %+v, want Staged by a prepare stamped %s", s, want)
	}
}

// TestLockBackoffOnTheClock checks that a request answered 423 Locked is retried after
// waits on the client's clock (doubling up to the maximum), and only then: the host's
// release of the lock is seen at the retry that follows it.
func TestLockBackoffOnTheClock(t *testing.T) {
	hostClock, clientClock := clocktesting.NewFakeClock(epoch), clocktesting.NewFakeClock(epoch)
	e := newEnvOn(t, hostsim.Config{Version: "1.25.0", Releases: hostsim.Releases("1.26.0"), PrepareDuration: time.Hour, Clock: hostClock},
		clientClock, hostapi.WithLockBackoff(time.Second, 4*time.Second, 0))
	c := ctx(t)
	must(t, drive(clientClock, time.Second, async(func() error { return e.c.Refresh(c) })))
	other := hostapi.New(e.sock, hostClock) // another caller, on the host's clock
	go func() { _ = other.Prepare(c) }()    // holds the lock for an hour
	must(t, e.h.WaitFor(c, func(s hostsim.State) bool { return s.Busy }))

	type result struct {
		st  *hostapi.UpdateStatus
		err error
	}
	done := async(func() result { st, err := e.c.Status(c); return result{st, err} })
	for _, d := range []time.Duration{time.Second, 2 * time.Second, 4 * time.Second, 4 * time.Second} {
		awaitTimers(t, clientClock, 1)
		if r, ok := returned(done); ok {
			t.Fatalf("Status returned %+v while the host is locked", r)
		}
		clientClock.Step(d) // every jittered wait is at most d
	}
	awaitTimers(t, clientClock, 1) // answered 423 again: waiting for the next retry
	awaitTimers(t, hostClock, 2)   // the prepare, and the other caller's poll
	hostClock.Step(time.Hour)
	must(t, e.h.WaitFor(c, func(s hostsim.State) bool { return !s.Busy }))
	if r, ok := returned(done); ok {
		t.Fatalf("Status returned %+v before the client's clock moved", r)
	}
	clientClock.Step(4 * time.Second)
	r := <-done
	if r.err != nil || r.st.State != hostapi.StateStaged {
		t.Fatalf("Status = %+v, %v; want Staged", r.st, r.err)
	}
}

func TestUnreachableHost(t *testing.T) {
	cl := hostapi.New("/nonexistent/api.sock", clock.RealClock{}, hostapi.WithLockBackoff(time.Millisecond, time.Millisecond, 0))
	c := ctx(t)
	for name, err := range map[string]error{"reboot": cl.Reboot(c), "refresh": cl.Refresh(c), "settings": cl.SetUpdateSettings(c, "latest", false)} {
		if !errors.Is(err, hostapi.ErrUnavailable) {
			t.Errorf("%s: %v, want ErrUnavailable", name, err)
		}
	}
}

func TestHungReboot(t *testing.T) {
	e := newEnv(t, hostsim.Config{})
	e.h.HangReboot()
	c := ctx(t)
	must(t, e.c.Reboot(c))
	must(t, e.h.WaitFor(c, func(s hostsim.State) bool { return !s.Up }))
	if _, err := e.c.OS(c); !errors.Is(err, hostapi.ErrUnavailable) {
		t.Fatalf("OS while the reboot hangs: %v, want ErrUnavailable", err)
	}
	e.h.Revive()
	e.awaitBoot(t)
	_, err := e.c.OS(c)
	must(t, err)
}

func TestDowngradeByPin(t *testing.T) {
	e := newEnv(t, hostsim.Config{Version: "1.26.0", Releases: hostsim.Releases("1.25.0", "1.26.0")})
	c := ctx(t)
	must(t, e.c.SetUpdateSettings(c, "1.25.0", true))
	if s, err := e.c.UpdateSettings(c); err != nil || s.VersionLock != "1.25.0" || !s.IgnoreWaves {
		t.Fatalf("UpdateSettings = %+v, %v", s, err)
	}
	must(t, e.h.WaitFor(c, applied)) // settings take effect after the commit's answer
	if up := e.update(t); up.Version != "1.25.0" {
		t.Fatalf("after the update: %+v", up)
	}
	if info, err := e.c.OS(c); err != nil || info.VersionID != "1.25.0" {
		t.Fatalf("OS = %+v, %v", info, err)
	}
}

func TestBootFailureFallback(t *testing.T) {
	e := newEnv(t, hostsim.Config{Version: "1.25.0", Releases: hostsim.Releases("1.26.0")})
	c := ctx(t)
	e.h.FailBoot()
	oldBoot := e.readBootID(t)
	up := e.update(t)
	if !up.FellBack || up.Version != "1.25.0" {
		t.Fatalf("up event %+v, want a fallback to 1.25.0", up)
	}
	if info, err := e.c.OS(c); err != nil || info.VersionID != "1.25.0" {
		t.Fatalf("OS = %+v, %v", info, err)
	}
	if _, err := e.c.Status(c); !errors.Is(err, hostapi.ErrStatusUninitialized) {
		t.Fatalf("Status = %v, want ErrStatusUninitialized", err)
	}
	if id := e.readBootID(t); id == oldBoot {
		t.Fatal("boot ID unchanged after reboot")
	}
	must(t, e.c.Refresh(c))
	st, err := e.c.Status(c)
	if err != nil || st.State != hostapi.StateAvailable || st.StagingPartition != nil {
		t.Fatalf("Status = %+v, %v; want Available with nothing staged after the boot", st, err)
	}
}

// TestCommandTimeout: a command that hangs holding the lock, or ends without a record, is a
// failure once its timeout passed on the client's clock, not a wait without end.
func TestCommandTimeout(t *testing.T) {
	for _, tc := range []struct {
		name  string
		fault func(*hostsim.Host)
		says  string
	}{
		{"hangs holding the lock", func(h *hostsim.Host) { h.HangCommand(hostapi.CommandPrepare) }, "still holds its update lock"},
		{"ends without a record", func(h *hostsim.Host) { h.NoRecord(hostapi.CommandPrepare) }, "no record of it was written"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			clk := clocktesting.NewFakeClock(epoch)
			e := newEnvOn(t, hostsim.Config{Version: "1.25.0", Releases: hostsim.Releases("1.26.0")}, clk,
				hostapi.WithPollInterval(time.Second), hostapi.WithCommandTimeout(hostapi.CommandPrepare, 10*time.Minute))
			c := ctx(t)
			must(t, drive(clk, time.Second, async(func() error { return e.c.Refresh(c) })))
			tc.fault(e.h)
			err := drive(clk, time.Minute, async(func() error { return e.c.Prepare(c) }))
			if !errors.Is(err, hostapi.ErrCommandTimeout) || !strings.Contains(err.Error(), tc.says) || !strings.Contains(err.Error(), "10m0s") {
				t.Fatalf("Prepare = %v, want ErrCommandTimeout saying %q", err, tc.says)
			}
		})
	}
}

// TestOutcomeByRecordNotClock: the host's clock may be far from the client's (it steps at
// boot); the client tells its command's end by the record changing, not by comparing clocks.
func TestOutcomeByRecordNotClock(t *testing.T) {
	hostClock := clocktesting.NewFakeClock(epoch)
	e := newEnvOn(t, hostsim.Config{Version: "1.25.0", Releases: hostsim.Releases("1.26.0"), Clock: hostClock, SettingsDelay: -1},
		clocktesting.NewFakeClock(epoch.Add(time.Hour)), hostapi.WithPollInterval(0))
	c := ctx(t)
	must(t, e.c.Refresh(c))
	must(t, e.c.Prepare(c))
	if st, err := e.c.Status(c); err != nil || st.State != hostapi.StateStaged {
		t.Fatalf("Status = %+v, %v", st, err)
	}
}
