package agent

import (
	"context"
	"errors"
	"time"

	"github.com/prometheus/client_golang/prometheus"
	ctrlmetrics "sigs.k8s.io/controller-runtime/pkg/metrics"

	"github.com/bottlerocket-ops/update-operator/agent/hostapi"
	"github.com/bottlerocket-ops/update-operator/api/v1alpha1"
)

// Registry holds the agent's own metrics: what is worth knowing about its host. One series
// set per agent, whatever the size of the fleet; label values are enums (operations, error
// kinds, actions, results).
var Registry = prometheus.NewRegistry()

var (
	// agentWrites counts the agent's writes of status.agent; an idle agent makes none.
	agentWrites = prometheus.NewCounter(prometheus.CounterOpts{
		Name: "bottlerocket_agent_status_writes_total",
		Help: "Writes of the node's BottlerocketNode status.agent by the agent.",
	})
	hostErrors = prometheus.NewCounterVec(prometheus.CounterOpts{
		Name: "bottlerocket_agent_host_api_errors_total",
		Help: "Calls to the host's update API that failed, by operation and kind of error.",
	}, []string{"operation", "kind"})
	lastRefresh = prometheus.NewGauge(prometheus.GaugeOpts{
		Name: "bottlerocket_agent_last_refresh_success_timestamp_seconds",
		Help: "When the host last refreshed its list of updates at the agent's request.",
	})
	actions = prometheus.NewCounterVec(prometheus.CounterOpts{
		Name: "bottlerocket_agent_actions_total",
		Help: "Outcomes of the agent's actions on the host as it reports them, by action and result.",
	}, []string{"action", "result"})
)

func init() {
	Registry.MustRegister(agentWrites, hostErrors, lastRefresh, actions)
}

// MetricsRegistry is what the agent's metrics endpoint serves (set it as controller-runtime's
// metrics.Registry before starting the manager): the agent's own metrics, and with runtime
// also the Go runtime's, the process's, the work queue's, the client's and controller-runtime's
// that controller-runtime registers.
func MetricsRegistry(runtime bool) ctrlmetrics.RegistererGatherer {
	if !runtime {
		return Registry
	}
	return registererGatherer{Registerer: Registry, Gatherer: prometheus.Gatherers{ctrlmetrics.Registry, Registry}}
}

type registererGatherer struct {
	prometheus.Registerer
	prometheus.Gatherer
}

// recordAction counts an action's outcome as the agent reports it.
func recordAction(action v1alpha1.NodeAction, result v1alpha1.ActionResult) {
	actions.WithLabelValues(string(action), string(result)).Inc()
}

// errorKind names the kind of a host API error for the metrics.
func errorKind(err error) string {
	var cmdErr *hostapi.CommandFailedError
	switch {
	case errors.Is(err, hostapi.ErrUnavailable):
		return "unavailable"
	case errors.Is(err, hostapi.ErrLocked):
		return "locked"
	case errors.Is(err, hostapi.ErrOutcomeUnknown):
		return "outcome_unknown"
	case errors.Is(err, hostapi.ErrCommandTimeout):
		return "command_timeout"
	case errors.Is(err, hostapi.ErrStatusUninitialized):
		return "status_uninitialized"
	case errors.Is(err, hostapi.ErrWrongState):
		return "wrong_state"
	case errors.Is(err, hostapi.ErrNoUpdate):
		return "no_update"
	case errors.As(err, &cmdErr):
		return "command_failed"
	case hostapi.IsServerError(err):
		return "server_error"
	}
	return "other"
}

// instrumentedHost counts a Host's errors and notes its successful refreshes.
type instrumentedHost struct {
	Host
	now func() time.Time
}

// instrument returns h counting its errors in the agent's metrics; h when already counted.
func instrument(h Host, now func() time.Time) Host {
	if _, ok := h.(instrumentedHost); ok || h == nil {
		return h
	}
	return instrumentedHost{Host: h, now: now}
}

// count records err, if any, for op; a call the agent itself cancelled is no host error.
func count(op string, err error) {
	if err != nil && !errors.Is(err, context.Canceled) {
		hostErrors.WithLabelValues(op, errorKind(err)).Inc()
	}
}

func (h instrumentedHost) OS(ctx context.Context) (hostapi.OSInfo, error) {
	v, err := h.Host.OS(ctx)
	count("os", err)
	return v, err
}

func (h instrumentedHost) Status(ctx context.Context) (*hostapi.UpdateStatus, error) {
	v, err := h.Host.Status(ctx)
	// Uninitialized is the host's answer before its first refresh, which the agent then makes.
	if !errors.Is(err, hostapi.ErrStatusUninitialized) {
		count("status", err)
	}
	return v, err
}

func (h instrumentedHost) Refresh(ctx context.Context) error {
	err := h.Host.Refresh(ctx)
	count("refresh", err)
	if err == nil {
		lastRefresh.Set(float64(h.now().Unix()))
	}
	return err
}

func (h instrumentedHost) PrepareOutput(ctx context.Context) (string, error) {
	v, err := h.Host.PrepareOutput(ctx)
	count("prepare", err)
	return v, err
}

func (h instrumentedHost) Activate(ctx context.Context) error {
	err := h.Host.Activate(ctx)
	count("activate", err)
	return err
}

func (h instrumentedHost) Deactivate(ctx context.Context) error {
	err := h.Host.Deactivate(ctx)
	count("deactivate", err)
	return err
}

func (h instrumentedHost) Reboot(ctx context.Context) error {
	err := h.Host.Reboot(ctx)
	count("reboot", err)
	return err
}

func (h instrumentedHost) UpdateSettings(ctx context.Context) (hostapi.UpdateSettings, error) {
	v, err := h.Host.UpdateSettings(ctx)
	count("get_settings", err)
	return v, err
}

func (h instrumentedHost) SetUpdateSettings(ctx context.Context, versionLock string, ignoreWaves bool) error {
	err := h.Host.SetUpdateSettings(ctx, versionLock, ignoreWaves)
	count("set_settings", err)
	return err
}
