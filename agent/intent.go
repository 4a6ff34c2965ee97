package agent

import (
	"context"
	"errors"
	"fmt"
	"strings"
	"time"

	"sigs.k8s.io/controller-runtime/pkg/client"
	"sigs.k8s.io/controller-runtime/pkg/log"

	"github.com/bottlerocket-ops/update-operator/agent/hostapi"
	"github.com/bottlerocket-ops/update-operator/api/v1alpha1"
	"github.com/bottlerocket-ops/update-operator/internal/clockwait"
)

// act carries out spec.action. Every path is idempotent: where it stands comes from the host's
// status, the spec, and what the agent recorded before rebooting, so a restart at any point
// resumes without doing twice what must not be done twice.
func (a *Agent) act(ctx context.Context, brn *v1alpha1.BottlerocketNode, obs *observation, report *v1alpha1.AgentStatus) error {
	if obs.status == nil && (brn.Spec.Action == v1alpha1.ActionStage || brn.Spec.Action == v1alpha1.ActionReboot) {
		return errHostBusy
	}
	switch brn.Spec.Action {
	case v1alpha1.ActionStage:
		report.RebootRecord = nil
		return a.stage(ctx, brn, obs, report)
	case v1alpha1.ActionReboot:
		return a.reboot(ctx, brn, obs, report)
	default:
		report.RebootRecord = nil
		return a.stand(ctx, obs, report)
	}
}

// gaveUp reports whether the intent already failed for this spec generation: a failure is not
// retried until the controller asks again, which it does with a new generation.
func gaveUp(report *v1alpha1.AgentStatus, brn *v1alpha1.BottlerocketNode) bool {
	last := report.LastAction
	return last != nil && last.Action == brn.Spec.Action && last.TargetVersion == brn.Spec.TargetVersion &&
		last.Result == v1alpha1.ActionFailed && report.ObservedGeneration == brn.Generation
}

// stage pins the host to target, waits until its choice follows the pin, and prepares it while
// workloads still run.
func (a *Agent) stage(ctx context.Context, brn *v1alpha1.BottlerocketNode, obs *observation, report *v1alpha1.AgentStatus) error {
	target := brn.Spec.TargetVersion
	if report.CurrentVersion == target || report.StagedVersion == target && succeeded(report.LastAction, v1alpha1.ActionStage, target) {
		if !succeeded(report.LastAction, v1alpha1.ActionStage, target) {
			report.LastAction = a.result(v1alpha1.ActionStage, target, v1alpha1.ActionSucceeded, "", "the host runs the target")
		}
		return nil
	}
	if gaveUp(report, brn) {
		return nil
	}
	logger := log.FromContext(ctx).WithValues("action", v1alpha1.ActionStage, "target", target)
	if obs.settings.VersionLock != target || !obs.settings.IgnoreWaves {
		if err := rememberOwner(report, obs.settings); err != nil {
			return err
		}
		if err := a.Host.SetUpdateSettings(ctx, target, true); err != nil {
			return fmt.Errorf("pinning the host to %s: %w", target, err)
		}
		logger.Info("Pinned the host to the target")
	}
	st, err := a.settle(ctx, target)
	if err != nil {
		return err
	}
	recordStatus(ctx, report, st)
	if st.ChosenVersion() != target {
		report.LastAction = a.result(v1alpha1.ActionStage, target, v1alpha1.ActionFailed, v1alpha1.ReasonStageFailed,
			fmt.Sprintf("the host's update repository does not offer %s (offered: %v; pinned, waves ignored, for %s)", target, st.AvailableUpdates, a.SettleTimeout))
		return nil
	}
	return a.prepare(ctx, report, target)
}

// prepare downloads and writes target, and reports it staged only if the host's downloader
// says it wrote it: the host records the refresh-time choice as staged whatever it did.
func (a *Agent) prepare(ctx context.Context, report *v1alpha1.AgentStatus, target string) error {
	logger := log.FromContext(ctx).WithValues("action", v1alpha1.ActionStage, "target", target)
	logger.Info("Preparing the update")
	said, err := a.Host.PrepareOutput(ctx)
	if err != nil {
		return a.failed(report, v1alpha1.ActionStage, target, v1alpha1.ReasonStageFailed, "prepare-update", err)
	}
	st, err := a.Host.Status(ctx)
	if err != nil {
		return fmt.Errorf("reading the host's update status after prepare: %w", err)
	}
	recordStatus(ctx, report, st)
	if report.StagedVersion != target || !strings.Contains(said, "Starting update to "+target) {
		report.LastAction = a.result(v1alpha1.ActionStage, target, v1alpha1.ActionFailed, v1alpha1.ReasonStageFailed,
			fmt.Sprintf("prepare-update did not write %s: the host said %q", target, strings.TrimSpace(said)))
		return nil
	}
	report.LastAction = a.result(v1alpha1.ActionStage, target, v1alpha1.ActionSucceeded, "", "target staged")
	logger.Info("Staged the update")
	return nil
}

// settle refreshes the host until it chooses want, for at most SettleTimeout: the host applies
// settings after it answered them, so the first refresh may still choose by the old ones.
func (a *Agent) settle(ctx context.Context, want string) (*hostapi.UpdateStatus, error) {
	deadline := a.Clock.Now().Add(a.SettleTimeout)
	delay := 100 * time.Millisecond
	for {
		st, err := a.refresh(ctx)
		if err != nil || st.ChosenVersion() == want || !a.Clock.Now().Before(deadline) {
			return st, err
		}
		if err := clockwait.Sleep(ctx, a.Clock, min(delay, deadline.Sub(a.Clock.Now()))); err != nil {
			return nil, fmt.Errorf("waiting for the host's settings to take effect: %w", err)
		}
		delay = min(2*delay, 5*time.Second)
	}
}

// errWait asks Reconcile to look again after RetryInterval: the host is shutting down after it
// accepted a reboot, or refused one that is to be asked again.
var errWait = errors.New("waiting for the host")

// reboot records the boot ID and version, activates the staged target and reboots — once: a
// reboot the host accepted is not asked again while the host shuts down, one it refuses is
// asked RebootAttempts times, and after the host came back its outcome (success or fallback)
// was settled by recognizeReboot.
func (a *Agent) reboot(ctx context.Context, brn *v1alpha1.BottlerocketNode, obs *observation, report *v1alpha1.AgentStatus) error {
	target, rec := brn.Spec.TargetVersion, report.RebootRecord
	if rec != nil && rec.ToVersion == target && rec.BootID != report.BootID {
		return nil // rebooted already; the outcome is in lastAction
	}
	if rec == nil && report.CurrentVersion == target {
		if !succeeded(report.LastAction, v1alpha1.ActionReboot, target) {
			report.LastAction = a.result(v1alpha1.ActionReboot, target, v1alpha1.ActionSucceeded, "", "host already runs the target")
		}
		return nil
	}
	if gaveUp(report, brn) {
		return nil // failed; the controller decides what next
	}
	if report.StagedVersion != target {
		report.RebootRecord = nil
		report.LastAction = a.result(v1alpha1.ActionReboot, target, v1alpha1.ActionFailed, v1alpha1.ReasonRebootFailed,
			fmt.Sprintf("cannot reboot into %s: the host has %q staged (state %s)", target, report.StagedVersion, report.UpdateState))
		return nil
	}
	if rec == nil || rec.ToVersion != target {
		// Written before anything changes on the host: the host forgets its update status at
		// the reboot, so this record is how a fallback is told from "never started".
		report.RebootRecord = &v1alpha1.RebootRecord{
			BootID: report.BootID, FromVersion: report.CurrentVersion, ToVersion: target, Time: metaNow(a.Clock),
		}
		report.LastAction = a.result(v1alpha1.ActionReboot, target, v1alpha1.ActionInProgress, "", "rebooting into "+target)
		a.refusals = 0
		return errRecordFirst
	}
	if rec.AcceptedTime != nil {
		return a.awaitShutdown(report, target, rec)
	}
	if err := a.stillWanted(ctx, brn); err != nil {
		return err
	}
	if obs.status.State == hostapi.StateStaged {
		if err := a.Host.Activate(ctx); err != nil {
			report.RebootRecord = nil
			return a.failed(report, v1alpha1.ActionReboot, target, v1alpha1.ReasonRebootFailed, "activate-update", err)
		}
		log.FromContext(ctx).Info("Activated the update", "target", target)
	}
	return a.askReboot(ctx, report, target)
}

// askReboot asks the host to reboot and records the answer.
func (a *Agent) askReboot(ctx context.Context, report *v1alpha1.AgentStatus, target string) error {
	logger := log.FromContext(ctx).WithValues("action", v1alpha1.ActionReboot, "target", target)
	logger.Info("Rebooting the host")
	err := a.Host.Reboot(ctx)
	switch {
	case err == nil:
		now := metaNow(a.Clock)
		report.RebootRecord.AcceptedTime = &now
		return errRecordFirst
	case hostapi.IsServerError(err):
		a.refusals++
		if a.refusals < a.RebootAttempts {
			logger.Info("The host refused to reboot; asking again", "error", err.Error(), "attempt", a.refusals, "of", a.RebootAttempts)
			return errWait
		}
		report.LastAction = a.result(v1alpha1.ActionReboot, target, v1alpha1.ActionFailed, v1alpha1.ReasonRebootFailed,
			fmt.Sprintf("the host refused to reboot %d times: %v", a.refusals, err))
		report.RebootRecord = nil
		return nil
	}
	return fmt.Errorf("rebooting the host: %w", err)
}

// awaitShutdown waits, bounded by RebootGrace, for a host that accepted a reboot to go down.
func (a *Agent) awaitShutdown(report *v1alpha1.AgentStatus, target string, rec *v1alpha1.RebootRecord) error {
	if a.Clock.Since(rec.AcceptedTime.Time) < a.RebootGrace {
		return errWait
	}
	report.LastAction = a.result(v1alpha1.ActionReboot, target, v1alpha1.ActionFailed, v1alpha1.ReasonRebootFailed,
		fmt.Sprintf("the host accepted the reboot at %s but still runs the same boot (%s) after %s",
			rec.AcceptedTime.UTC().Format(time.RFC3339), rec.BootID, a.RebootGrace))
	report.RebootRecord = nil
	return nil
}

// stillWanted reads the intent from the API server itself right before an irreversible step:
// a cache can lag, and a withdrawn intent must not be carried out.
func (a *Agent) stillWanted(ctx context.Context, brn *v1alpha1.BottlerocketNode) error {
	var fresh v1alpha1.BottlerocketNode
	if err := a.APIReader.Get(ctx, client.ObjectKey{Name: a.NodeName}, &fresh); err != nil {
		return fmt.Errorf("re-reading the intent before rebooting: %w", err)
	}
	if fresh.UID != brn.UID || fresh.Generation != brn.Generation {
		return fmt.Errorf("%w: the intent changed (generation %d, was %d); not rebooting", errStale, fresh.Generation, brn.Generation)
	}
	return nil
}

// errStale means the pass acted on an intent that has since changed; the next pass serves the
// new one.
var errStale = errors.New("stale intent")

// errRecordFirst asks Reconcile to publish the report and go on: what it records must be
// written down before the host changes.
var errRecordFirst = errors.New("record to be published before acting on the host")

// stand is the None intent: nothing disruptive. An update activated but not rebooted into is
// no longer wanted and is deactivated.
func (a *Agent) stand(ctx context.Context, obs *observation, report *v1alpha1.AgentStatus) error {
	if obs.status == nil || obs.status.State != hostapi.StateReady { // a host running a command is not Ready
		return nil
	}
	if err := a.Host.Deactivate(ctx); err != nil {
		return fmt.Errorf("deactivating an update no longer wanted: %w", err)
	}
	log.FromContext(ctx).Info("Deactivated an update that is no longer wanted")
	st, err := a.Host.Status(ctx)
	if err != nil {
		return fmt.Errorf("reading the host's update status after deactivate: %w", err)
	}
	recordStatus(ctx, report, st)
	return nil
}

// failed turns a host's refusal, failure or silence into a failed action in status, or returns
// a transient error.
func (a *Agent) failed(report *v1alpha1.AgentStatus, action v1alpha1.NodeAction, target string, reason v1alpha1.Reason, what string, err error) error {
	var cmdErr *hostapi.CommandFailedError
	if errors.As(err, &cmdErr) || errors.Is(err, hostapi.ErrNoUpdate) || errors.Is(err, hostapi.ErrWrongState) || errors.Is(err, hostapi.ErrCommandTimeout) {
		report.LastAction = a.result(action, target, v1alpha1.ActionFailed, reason, fmt.Sprintf("%s: %v", what, err))
		return nil
	}
	return fmt.Errorf("%s: %w", what, err)
}

func succeeded(last *v1alpha1.AgentAction, action v1alpha1.NodeAction, target string) bool {
	return last != nil && last.Action == action && last.TargetVersion == target && last.Result == v1alpha1.ActionSucceeded
}
