package agent

import (
	"context"
	"errors"
	"fmt"
	"os"
	"strings"
	"time"

	apierrors "k8s.io/apimachinery/pkg/api/errors"
	"k8s.io/apimachinery/pkg/fields"
	"k8s.io/apimachinery/pkg/util/wait"
	"k8s.io/client-go/rest"
	"k8s.io/utils/clock"
	"k8s.io/utils/ptr"
	ctrl "sigs.k8s.io/controller-runtime"
	"sigs.k8s.io/controller-runtime/pkg/builder"
	"sigs.k8s.io/controller-runtime/pkg/cache"
	"sigs.k8s.io/controller-runtime/pkg/client"
	"sigs.k8s.io/controller-runtime/pkg/controller"
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
	Prepare(ctx context.Context) error
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
	// example while it reboots).
	RetryInterval time.Duration

	nextRefresh time.Time
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
	if a.RetryInterval == 0 {
		a.RetryInterval = 5 * time.Second
	}
	return ctrl.NewControllerManagedBy(mgr).
		Named("agent").
		For(&v1alpha1.BottlerocketNode{}, builder.WithPredicates(
			predicate.NewPredicateFuncs(func(o client.Object) bool { return o.GetName() == a.NodeName }))).
		// One process may hold many agents (a simulated fleet), each with its own manager.
		WithOptions(controller.Options{MaxConcurrentReconciles: 1, SkipNameValidation: ptr.To(true)}).
		Complete(a)
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

	previous := brn.Status.Agent.DeepCopy()
	if previous == nil {
		previous = &v1alpha1.AgentStatus{}
	}
	report := previous.DeepCopy()
	err := a.step(ctx, &brn, report)
	if perr := a.publish(ctx, previous, report); perr != nil {
		return reconcile.Result{}, errors.Join(err, perr)
	}
	switch {
	case errors.Is(err, errRecordFirst):
		// The published record comes back through the watch, which runs the next step.
		return reconcile.Result{}, nil
	case errors.Is(err, hostapi.ErrUnavailable) || errors.Is(err, hostapi.ErrLocked) || errors.Is(err, hostapi.ErrOutcomeUnknown) || hostapi.IsServerError(err):
		logger.Info("Host API not answering; will look again", "error", err.Error(), "after", a.RetryInterval)
		return reconcile.Result{RequeueAfter: a.RetryInterval}, nil
	case err != nil:
		return reconcile.Result{}, err
	}
	return reconcile.Result{RequeueAfter: a.nextRefresh.Sub(a.Clock.Now())}, nil
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
	status   *hostapi.UpdateStatus
	settings hostapi.UpdateSettings
}

// observe reads the host (refreshing its list when due, asked for, or lost at a reboot) and
// records the facts in report. It also recognises a reboot the agent asked for.
func (a *Agent) observe(ctx context.Context, brn *v1alpha1.BottlerocketNode, report *v1alpha1.AgentStatus) (*observation, error) {
	osInfo, err := a.Host.OS(ctx)
	if err != nil {
		return nil, fmt.Errorf("reading the host's OS release: %w", err)
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
	// A host that is no longer governed follows its own releases again. This comes before any
	// refresh: the host chooses its update from the settings it has when it refreshes.
	if brn.Spec.Policy == "" && (settings.VersionLock != hostapi.VersionLockLatest || settings.IgnoreWaves) {
		if err := a.Host.SetUpdateSettings(ctx, hostapi.VersionLockLatest, false); err != nil {
			return nil, fmt.Errorf("releasing the host's version lock: %w", err)
		}
		settings = hostapi.UpdateSettings{VersionLock: hostapi.VersionLockLatest}
		log.FromContext(ctx).Info("Released the host's version lock: node no longer governed")
	}

	status, err := a.Host.Status(ctx)
	refreshDue := !a.Clock.Now().Before(a.nextRefresh) || brn.Spec.RefreshRequest != report.RefreshRequest
	if errors.Is(err, hostapi.ErrStatusUninitialized) || (err == nil && refreshDue) {
		status, err = a.refresh(ctx)
		report.RefreshRequest = brn.Spec.RefreshRequest
	}
	if err != nil {
		return nil, fmt.Errorf("reading the host's update status: %w", err)
	}
	recordStatus(report, status)
	return &observation{status: status, settings: settings}, nil
}

// refresh asks the host to re-read its update repository and returns the new status.
func (a *Agent) refresh(ctx context.Context) (*hostapi.UpdateStatus, error) {
	if err := a.Host.Refresh(ctx); err != nil {
		return nil, fmt.Errorf("refreshing the host's list of updates: %w", err)
	}
	a.nextRefresh = a.Clock.Now().Add(wait.Jitter(a.RefreshInterval, 0.2))
	return a.Host.Status(ctx)
}

// recordStatus copies the host's update status into report.
func recordStatus(report *v1alpha1.AgentStatus, st *hostapi.UpdateStatus) {
	report.UpdateState = v1alpha1.HostUpdateState(st.State)
	if report.UpdateState == "" {
		report.UpdateState = v1alpha1.HostStateUnknown
	}
	report.AvailableVersions = newestFirst(st.AvailableUpdates, 64)
	report.StagedVersion = ""
	if st.State == hostapi.StateStaged || st.State == hostapi.StateReady {
		report.StagedVersion = st.StagedVersion()
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
	return &v1alpha1.AgentAction{
		Action: action, TargetVersion: target, Result: result, Reason: reason, Message: msg,
		Time: metaNow(a.Clock),
	}
}

func inProgress(last *v1alpha1.AgentAction, action v1alpha1.NodeAction) bool {
	return last != nil && last.Action == action && last.Result == v1alpha1.ActionInProgress
}

// NewManager returns a manager running the agent a: its cache holds only a's node's
// BottlerocketNode, and a reads and writes through it. opts gives the rest (scheme, metrics
// and probe addresses).
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
	return mgr, nil
}
