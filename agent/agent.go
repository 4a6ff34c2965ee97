package agent

import (
	"context"
	"errors"
	"fmt"
	"net/http"
	"os"
	"strings"
	"sync"
	"time"

	apierrors "k8s.io/apimachinery/pkg/api/errors"
	"k8s.io/apimachinery/pkg/fields"
	"k8s.io/apimachinery/pkg/types"
	"k8s.io/apimachinery/pkg/util/wait"
	"k8s.io/client-go/rest"
	"k8s.io/utils/clock"
	"k8s.io/utils/ptr"
	ctrl "sigs.k8s.io/controller-runtime"
	"sigs.k8s.io/controller-runtime/pkg/builder"
	"sigs.k8s.io/controller-runtime/pkg/cache"
	"sigs.k8s.io/controller-runtime/pkg/client"
	"sigs.k8s.io/controller-runtime/pkg/controller"
	"sigs.k8s.io/controller-runtime/pkg/event"
	"sigs.k8s.io/controller-runtime/pkg/log"
	"sigs.k8s.io/controller-runtime/pkg/predicate"
	"sigs.k8s.io/controller-runtime/pkg/reconcile"

	"github.com/bottlerocket-ops/update-operator/agent/hostapi"
	"github.com/bottlerocket-ops/update-operator/api/v1alpha1"
)

// FieldManager is the agent's field manager: it owns status.agent and nothing else.
const FieldManager = "bottlerocket-update-agent"

// Host is the host's update API as the agent uses it; *hostapi.Client implements it against a
// real host (or the simulator).
type Host interface {
	OS(ctx context.Context) (hostapi.OSInfo, error)
	Status(ctx context.Context) (*hostapi.UpdateStatus, error)
	Refresh(ctx context.Context) error
	PrepareOutput(ctx context.Context) (string, error)
	Activate(ctx context.Context) error
	Deactivate(ctx context.Context) error
	Reboot(ctx context.Context) error
	UpdateSettings(ctx context.Context) (hostapi.UpdateSettings, error)
	SetUpdateSettings(ctx context.Context, versionLock string, ignoreWaves bool) error
}

// Agent carries out its node's intent on the host and reports what is true.
type Agent struct {
	// Client reads the node's BottlerocketNode (from a cache holding only that object) and
	// writes its status.agent.
	Client client.Client
	// APIReader reads the node's BottlerocketNode from the API server itself, right before an
	// irreversible step (activate, reboot), so that a withdrawn intent is never carried out
	// from a stale cache. Default: Client.
	APIReader client.Reader
	// Host is the host's update API.
	Host Host
	// NodeName is the node the agent runs on.
	NodeName string
	// BootIDFile holds the host's boot ID (/proc/sys/kernel/random/boot_id).
	BootIDFile string
	// Clock is the agent's only source of time. It is required: the process passes the real
	// clock (main.go), tests a fake or the real one.
	Clock clock.Clock
	// RefreshInterval is how often the host's list of updates is refreshed; each wait is
	// jittered by up to 20% so that a fleet does not refresh in step.
	RefreshInterval time.Duration
	// RetryInterval is how soon the agent looks again when the host is unreachable (for
	// example while it reboots), refuses a reboot, or is shutting down. Default 5s.
	RetryInterval time.Duration
	// SettleTimeout bounds how long the agent refreshes again after pinning the host before it
	// concludes the host is not offered the target: a host applies new settings after it
	// answered them. Default 30s.
	SettleTimeout time.Duration
	// SettleDelay is how soon the list of updates is refreshed again after the agent turned
	// ignore-waves on, so that the report shows what the host is offered with it. Default 5s.
	SettleDelay time.Duration
	// RebootAttempts is how many reboot requests the host may refuse (a shutdown inhibitor),
	// RetryInterval apart, before the reboot is reported failed with the host's words.
	// Default 3.
	RebootAttempts int
	// RebootGrace bounds how long a host that accepted a reboot may keep running the same boot
	// before the reboot is reported failed. Default 15m.
	RebootGrace time.Duration
	// StuckAfter is how long one pass may work before the liveness check (Healthz) fails: the
	// longest host command (prepare, 10 minutes) and then some. Default 15m.
	StuckAfter time.Duration

	nextRefresh time.Time
	// settleAt, when set, is when the list is refreshed again because the host's settings
	// changed (or may have, just before this process started): the host applies them late.
	settleAt time.Time
	started  bool
	refusals int // reboot requests the host refused for the current reboot record

	mu        sync.Mutex
	published *published // the last report the agent wrote: it is status.agent's only writer
	pass      *pass      // the pass in progress
}

// published is a report the agent wrote, and the object it wrote it to.
type published struct {
	uid    types.UID
	report *v1alpha1.AgentStatus
}

// pass is one Reconcile at work: when it began, for which spec generation, and how to stop
// it when the intent changes under it.
type pass struct {
	since      time.Time
	generation int64
	cancel     context.CancelFunc
}

// CacheOptions restricts the agent's cache to its own node's BottlerocketNode, so that its
// memory does not grow with the cluster.
func CacheOptions(nodeName string) cache.Options {
	return cache.Options{ByObject: map[client.Object]cache.ByObject{
		&v1alpha1.BottlerocketNode{}: {Field: fields.OneTermEqualSelector("metadata.name", nodeName)},
	}}
}

// SetupWithManager registers the agent with a manager whose cache is built with CacheOptions.
func (a *Agent) SetupWithManager(mgr ctrl.Manager) error {
	if a.Clock == nil {
		return errors.New("the agent needs a Clock (clock.RealClock{} outside tests)")
	}
	a.defaults()
	a.Host = instrument(a.Host, a.Clock.Now)
	if a.APIReader == nil {
		a.APIReader = mgr.GetAPIReader()
	}
	return ctrl.NewControllerManagedBy(mgr).
		Named("agent").
		For(&v1alpha1.BottlerocketNode{}, builder.WithPredicates(
			predicate.NewPredicateFuncs(func(o client.Object) bool { return o.GetName() == a.NodeName }),
			predicate.Funcs{UpdateFunc: func(e event.UpdateEvent) bool { a.interrupt(e.ObjectNew); return true }})).
		// One process may hold many agents (a simulated fleet), each with its own manager.
		WithOptions(controller.Options{MaxConcurrentReconciles: 1, SkipNameValidation: ptr.To(true)}).
		Complete(a)
}

func (a *Agent) defaults() {
	for _, d := range []struct {
		v   *time.Duration
		def time.Duration
	}{{&a.RetryInterval, 5 * time.Second}, {&a.SettleTimeout, 30 * time.Second}, {&a.SettleDelay, 5 * time.Second},
		{&a.RebootGrace, 15 * time.Minute}, {&a.StuckAfter, 15 * time.Minute}} {
		if *d.v == 0 {
			*d.v = d.def
		}
	}
	if a.RebootAttempts == 0 {
		a.RebootAttempts = 3
	}
}

// interrupt stops the pass in progress when the intent it works on changed: a host command
// it waits for goes on on the host, and the next pass serves the new intent.
func (a *Agent) interrupt(o client.Object) {
	a.mu.Lock()
	defer a.mu.Unlock()
	if a.pass != nil && o.GetName() == a.NodeName && o.GetGeneration() != a.pass.generation {
		a.pass.cancel()
	}
}

// begin records the pass in progress; end must be called when it is over.
func (a *Agent) begin(ctx context.Context, generation int64) (context.Context, func()) {
	ctx, cancel := context.WithCancel(ctx)
	a.mu.Lock()
	a.pass = &pass{since: a.Clock.Now(), generation: generation, cancel: cancel}
	a.mu.Unlock()
	return ctx, func() {
		a.mu.Lock()
		a.pass = nil
		a.mu.Unlock()
		cancel()
	}
}

// Healthz is the agent's liveness check: it fails while one pass has been working for longer
// than StuckAfter, which no bounded host call takes.
func (a *Agent) Healthz(*http.Request) error {
	a.mu.Lock()
	defer a.mu.Unlock()
	if a.pass != nil {
		if busy := a.Clock.Since(a.pass.since); busy > a.StuckAfter {
			return fmt.Errorf("the agent's worker has been busy for %s (limit %s)", busy.Round(time.Second), a.StuckAfter)
		}
	}
	return nil
}

// Reconcile observes the host, carries out the intent in spec, and reports what changed.
func (a *Agent) Reconcile(ctx context.Context, req reconcile.Request) (reconcile.Result, error) {
	logger := log.FromContext(ctx).WithValues("node", a.NodeName)
	ctx = log.IntoContext(ctx, logger)

	var brn v1alpha1.BottlerocketNode
	if err := a.Client.Get(ctx, client.ObjectKey{Name: a.NodeName}, &brn); err != nil {
		if apierrors.IsNotFound(err) {
			logger.V(1).Info("Waiting for the controller to create this node's BottlerocketNode")
			return reconcile.Result{}, nil
		}
		return reconcile.Result{}, fmt.Errorf("reading BottlerocketNode %s: %w", a.NodeName, err)
	}
	stepCtx, end := a.begin(ctx, brn.Generation)
	defer end()

	previous := a.lastReport(&brn)
	for {
		report := previous.DeepCopy()
		err := a.step(stepCtx, &brn, report)
		if perr := a.publish(ctx, &brn, previous, report); perr != nil {
			return reconcile.Result{}, errors.Join(err, perr)
		}
		previous = report
		switch {
		case errors.Is(err, errRecordFirst):
			continue // recorded before acting on the host: now act
		case errors.Is(err, errStale) || stepCtx.Err() != nil && ctx.Err() == nil:
			logger.Info("The intent changed while the agent worked on it; serving the new one", "error", err.Error())
			return reconcile.Result{}, nil
		case errors.Is(err, errWait):
			return reconcile.Result{RequeueAfter: a.RetryInterval}, nil
		case transient(err):
			logger.Info("Host API not answering; will look again", "error", err.Error(), "after", a.RetryInterval)
			return reconcile.Result{RequeueAfter: a.RetryInterval}, nil
		case err != nil:
			return reconcile.Result{}, err
		}
		next := a.nextRefresh
		if !a.settleAt.IsZero() && a.settleAt.Before(next) {
			next = a.settleAt
		}
		// At least a moment: a wait that passed while this pass worked is still to be served.
		return reconcile.Result{RequeueAfter: max(next.Sub(a.Clock.Now()), time.Millisecond)}, nil
	}
}

func transient(err error) bool {
	return errors.Is(err, hostapi.ErrUnavailable) || errors.Is(err, hostapi.ErrLocked) ||
		errors.Is(err, hostapi.ErrOutcomeUnknown) || errors.Is(err, hostapi.ErrCommandTimeout) || hostapi.IsServerError(err)
}

// lastReport is the agent's last report on brn: the one it wrote last (its cache may not have
// caught up with it yet), or, for an object it has not written to, the one brn carries.
func (a *Agent) lastReport(brn *v1alpha1.BottlerocketNode) *v1alpha1.AgentStatus {
	a.mu.Lock()
	defer a.mu.Unlock()
	if a.published != nil && a.published.uid == brn.UID {
		return a.published.report.DeepCopy()
	}
	if brn.Status.Agent != nil {
		return brn.Status.Agent.DeepCopy()
	}
	return &v1alpha1.AgentStatus{}
}

// step observes the host and acts on the intent, recording everything in report.
func (a *Agent) step(ctx context.Context, brn *v1alpha1.BottlerocketNode, report *v1alpha1.AgentStatus) error {
	obs, err := a.observe(ctx, brn, report)
	if err != nil {
		return err
	}
	if err := a.act(ctx, brn, obs, report); err != nil {
		return err
	}
	report.ObservedGeneration = brn.Generation
	return nil
}

// observation is what the agent learned from the host in this pass.
type observation struct {
	status   *hostapi.UpdateStatus // nil while a command holds the host's update lock
	settings hostapi.UpdateSettings
}

// errHostBusy: the intent needs the host's update status, and a command holds its lock.
var errHostBusy = fmt.Errorf("the host's update status is unknown while a command runs: %w", hostapi.ErrLocked)

// observe reads the host (refreshing its list when due, asked for, or lost at a reboot) and
// records the facts in report. It also recognises a reboot the agent asked for, and keeps the
// host's wave setting as governance wants it.
func (a *Agent) observe(ctx context.Context, brn *v1alpha1.BottlerocketNode, report *v1alpha1.AgentStatus) (*observation, error) {
	osInfo, err := a.Host.OS(ctx)
	if err != nil {
		return nil, fmt.Errorf("reading the host's OS release: %w", err)
	}
	if !v1alpha1.IsReleaseVersion(osInfo.VersionID) {
		return nil, fmt.Errorf("the host reports version %q, which is not a release version", osInfo.VersionID)
	}
	bootID, err := a.bootID()
	if err != nil {
		return nil, err
	}
	report.CurrentVersion, report.Variant, report.Arch, report.BootID = osInfo.VersionID, osInfo.VariantID, osInfo.Arch, bootID
	a.recognizeReboot(ctx, report)

	settings, err := a.Host.UpdateSettings(ctx)
	if err != nil {
		return nil, fmt.Errorf("reading the host's update settings: %w", err)
	}
	changed, err := a.govern(ctx, brn, report, &settings)
	if err != nil {
		return nil, err
	}

	status, err := a.readStatus(ctx, brn, report, changed)
	if errors.Is(err, hostapi.ErrLocked) {
		// A command holds the host's update lock (perhaps one the agent stopped waiting for):
		// the status is unknown until it ends. An intent that needs it waits; None does not.
		log.FromContext(ctx).Info("The host's update lock is held; its update status is unknown for now", "error", err.Error())
		return &observation{settings: settings}, nil
	}
	if err != nil {
		return nil, fmt.Errorf("reading the host's update status: %w", err)
	}
	recordStatus(ctx, report, status)
	return &observation{status: status, settings: settings}, nil
}

// readStatus reads the host's update status, refreshing the list first when it is due, asked
// for, lost at a reboot, or the settings changed.
func (a *Agent) readStatus(ctx context.Context, brn *v1alpha1.BottlerocketNode, report *v1alpha1.AgentStatus, changed bool) (*hostapi.UpdateStatus, error) {
	status, err := a.Host.Status(ctx)
	now := a.Clock.Now()
	settling := !a.settleAt.IsZero() && !now.Before(a.settleAt)
	refreshDue := changed || settling || !now.Before(a.nextRefresh) || brn.Spec.RefreshRequest != report.RefreshRequest
	if errors.Is(err, hostapi.ErrStatusUninitialized) || (err == nil && refreshDue) {
		status, err = a.refresh(ctx)
		report.RefreshRequest = brn.Spec.RefreshRequest
		if err == nil && settling {
			a.settleAt = time.Time{}
		}
	}
	return status, err
}

// govern turns ignore-waves on for a governed host (the operator orders the fleet, not
// Bottlerocket's waves, and must see every release the host could take), and gives a host no
// longer governed its own settings back — only if the agent changed them, and as it found
// them. It reports whether it changed the host's settings.
func (a *Agent) govern(ctx context.Context, brn *v1alpha1.BottlerocketNode, report *v1alpha1.AgentStatus, settings *hostapi.UpdateSettings) (bool, error) {
	logger := log.FromContext(ctx)
	if !a.started {
		// A change made just before this process started may not have taken effect yet.
		a.started, a.settleAt = true, a.Clock.Now().Add(a.SettleDelay)
	}
	switch governed := brn.Spec.Policy != ""; {
	case governed && !settings.IgnoreWaves:
		if err := rememberOwner(report, *settings); err != nil {
			return false, err
		}
		// The host applies settings after it answered (and this pass may be cut short after
		// the change): whatever happens, the list is refreshed again after SettleDelay.
		a.settleAt = a.Clock.Now().Add(a.SettleDelay)
		if err := a.Host.SetUpdateSettings(ctx, settings.VersionLock, true); err != nil {
			return false, fmt.Errorf("turning the host's ignore-waves on: %w", err)
		}
		settings.IgnoreWaves = true
		logger.Info("Turned the host's ignore-waves on: the operator orders the fleet's updates", "policy", brn.Spec.Policy)
		return true, nil
	case !governed && report.OwnerSettings != nil:
		own := *report.OwnerSettings
		if settings.VersionLock != own.VersionLock || settings.IgnoreWaves != own.IgnoreWaves {
			a.settleAt = a.Clock.Now().Add(a.SettleDelay)
			if err := a.Host.SetUpdateSettings(ctx, own.VersionLock, own.IgnoreWaves); err != nil {
				return false, fmt.Errorf("restoring the host's own update settings: %w", err)
			}
			*settings = hostapi.UpdateSettings{VersionLock: own.VersionLock, IgnoreWaves: own.IgnoreWaves}
			logger.Info("Gave the host its own update settings back: node no longer governed",
				"versionLock", own.VersionLock, "ignoreWaves", own.IgnoreWaves)
		}
		report.OwnerSettings = nil
		return true, nil
	}
	return false, nil
}

// rememberOwner records the host's own settings before the agent first changes them; the
// record is published before the change (errRecordFirst), so a crash cannot lose it.
func rememberOwner(report *v1alpha1.AgentStatus, s hostapi.UpdateSettings) error {
	if report.OwnerSettings != nil {
		return nil
	}
	report.OwnerSettings = &v1alpha1.HostUpdateSettings{VersionLock: s.VersionLock, IgnoreWaves: s.IgnoreWaves}
	return errRecordFirst
}

// refresh asks the host to re-read its update repository and returns the new status.
func (a *Agent) refresh(ctx context.Context) (*hostapi.UpdateStatus, error) {
	if err := a.Host.Refresh(ctx); err != nil {
		return nil, fmt.Errorf("refreshing the host's list of updates: %w", err)
	}
	a.nextRefresh = a.Clock.Now().Add(wait.Jitter(a.RefreshInterval, 0.2))
	return a.Host.Status(ctx)
}

// recordStatus copies the host's update status into report; versions that are not release
// versions are left out, so that no host can put anything else before the controller.
func recordStatus(ctx context.Context, report *v1alpha1.AgentStatus, st *hostapi.UpdateStatus) {
	report.UpdateState = v1alpha1.HostUpdateState(st.State)
	if report.UpdateState == "" {
		report.UpdateState = v1alpha1.HostStateUnknown
	}
	valid := make([]string, 0, len(st.AvailableUpdates))
	for _, v := range st.AvailableUpdates {
		if v1alpha1.IsReleaseVersion(v) {
			valid = append(valid, v)
		} else {
			log.FromContext(ctx).Info("Left out a version the host lists that is not a release version", "version", v)
		}
	}
	report.AvailableVersions = newestFirst(valid, 64)
	report.StagedVersion = ""
	if staged := st.StagedVersion(); (st.State == hostapi.StateStaged || st.State == hostapi.StateReady) && v1alpha1.IsReleaseVersion(staged) {
		report.StagedVersion = staged
	}
}

// recognizeReboot settles a reboot the agent asked for, once the host booted again: the host
// runs the target (success), or the version it rebooted from (the new image did not boot and
// the firmware fell back). The host's own update status is lost at every reboot, so the
// evidence is the record written before rebooting plus the new boot ID.
func (a *Agent) recognizeReboot(ctx context.Context, report *v1alpha1.AgentStatus) {
	rec := report.RebootRecord
	if rec == nil || rec.BootID == report.BootID || !inProgress(report.LastAction, v1alpha1.ActionReboot) {
		return
	}
	logger := log.FromContext(ctx)
	if report.CurrentVersion == rec.ToVersion {
		report.LastAction = a.result(v1alpha1.ActionReboot, rec.ToVersion, v1alpha1.ActionSucceeded, "",
			fmt.Sprintf("host rebooted from %s into %s", rec.FromVersion, rec.ToVersion))
		logger.Info("Host came back on the target", "version", rec.ToVersion)
		return
	}
	report.LastAction = a.result(v1alpha1.ActionReboot, rec.ToVersion, v1alpha1.ActionFailed, v1alpha1.ReasonFallback,
		fmt.Sprintf("host came back on %s after rebooting into %s: the new image did not boot and the host fell back", report.CurrentVersion, rec.ToVersion))
	logger.Info("Host fell back to its previous version", "version", report.CurrentVersion, "target", rec.ToVersion)
}

// bootID reads the host's boot ID.
func (a *Agent) bootID() (string, error) {
	raw, err := os.ReadFile(a.BootIDFile)
	if err != nil {
		return "", fmt.Errorf("reading the host's boot ID: %w", err)
	}
	return strings.TrimSpace(string(raw)), nil
}

// result is a finished (or started) action for the report.
func (a *Agent) result(action v1alpha1.NodeAction, target string, result v1alpha1.ActionResult, reason v1alpha1.Reason, msg string) *v1alpha1.AgentAction {
	if len(msg) > 4096 {
		msg = msg[:4096]
	}
	recordAction(action, result)
	return &v1alpha1.AgentAction{
		Action: action, TargetVersion: target, Result: result, Reason: reason, Message: msg,
		Time: metaNow(a.Clock),
	}
}

func inProgress(last *v1alpha1.AgentAction, action v1alpha1.NodeAction) bool {
	return last != nil && last.Action == action && last.Result == v1alpha1.ActionInProgress
}

// NewManager returns a manager running the agent a: its cache holds only a's node's
// BottlerocketNode, and a reads and writes through it; its liveness check is a.Healthz.
// opts gives the rest (scheme, metrics and probe addresses).
func NewManager(cfg *rest.Config, a *Agent, opts ctrl.Options) (ctrl.Manager, error) {
	opts.Cache = CacheOptions(a.NodeName)
	mgr, err := ctrl.NewManager(cfg, opts)
	if err != nil {
		return nil, fmt.Errorf("creating the agent's manager: %w", err)
	}
	a.Client = mgr.GetClient()
	if err := a.SetupWithManager(mgr); err != nil {
		return nil, fmt.Errorf("setting up the agent: %w", err)
	}
	if err := mgr.AddHealthzCheck("worker", a.Healthz); err != nil {
		return nil, fmt.Errorf("adding the agent's liveness check: %w", err)
	}
	return mgr, nil
}
