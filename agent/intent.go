package agent

import (
	"context"
	"errors"
	"fmt"

	"sigs.k8s.io/controller-runtime/pkg/log"

	"github.com/bottlerocket-ops/update-operator/agent/hostapi"
	"github.com/bottlerocket-ops/update-operator/api/v1alpha1"
)

// act carries out spec.action. Every path is idempotent: where it stands comes from the host's
// status, the spec, and what the agent recorded before rebooting, so a restart at any point
// resumes without doing twice what must not be done twice.
func (a *Agent) act(ctx context.Context, brn *v1alpha1.BottlerocketNode, obs *observation, report *v1alpha1.AgentStatus) error {
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

// stage locks the host to target, refreshes and prepares it while workloads still run.
func (a *Agent) stage(ctx context.Context, brn *v1alpha1.BottlerocketNode, obs *observation, report *v1alpha1.AgentStatus) error {
	target := brn.Spec.TargetVersion
	if report.CurrentVersion == target || report.StagedVersion == target {
		if !succeeded(report.LastAction, v1alpha1.ActionStage, target) {
			report.LastAction = a.result(v1alpha1.ActionStage, target, v1alpha1.ActionSucceeded, "", "target staged")
		}
		return nil
	}
	if gaveUp(report, brn) {
		return nil
	}
	logger := log.FromContext(ctx).WithValues("action", v1alpha1.ActionStage, "target", target)
	// Prepare re-reads the settings, and refresh chooses by them: lock first, then refresh.
	if obs.settings.VersionLock != target || !obs.settings.IgnoreWaves {
		if err := a.Host.SetUpdateSettings(ctx, target, true); err != nil {
			return fmt.Errorf("locking the host to %s: %w", target, err)
		}
		logger.Info("Locked the host to the target")
	}
	st, err := a.refresh(ctx)
	if err != nil {
		return err
	}
	recordStatus(report, st)
	if st.ChosenVersion() != target {
		report.LastAction = a.result(v1alpha1.ActionStage, target, v1alpha1.ActionFailed, v1alpha1.ReasonStageFailed,
			fmt.Sprintf("the host's update repository does not offer %s (offered: %v)", target, st.AvailableUpdates))
		return nil
	}
	logger.Info("Preparing the update")
	if err := a.Host.Prepare(ctx); err != nil {
		return a.failed(report, v1alpha1.ActionStage, target, v1alpha1.ReasonStageFailed, "prepare-update", err)
	}
	if st, err = a.Host.Status(ctx); err != nil {
		return fmt.Errorf("reading the host's update status after prepare: %w", err)
	}
	recordStatus(report, st)
	if report.StagedVersion != target {
		report.LastAction = a.result(v1alpha1.ActionStage, target, v1alpha1.ActionFailed, v1alpha1.ReasonStageFailed,
			fmt.Sprintf("prepare-update staged %q, not %s", report.StagedVersion, target))
		return nil
	}
	report.LastAction = a.result(v1alpha1.ActionStage, target, v1alpha1.ActionSucceeded, "", "target staged")
	logger.Info("Staged the update")
	return nil
}

// reboot records the boot ID and version, activates the staged target and reboots. A reboot
// already recorded for this target is never repeated: after the host came back, its outcome
// (success or fallback) was settled by recognizeReboot.
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
	if rec == nil && gaveUp(report, brn) {
		return nil // failed before rebooting; the controller decides what next
	}
	logger := log.FromContext(ctx).WithValues("action", v1alpha1.ActionReboot, "target", target)
	if report.StagedVersion != target {
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
		return errRecordFirst
	}
	if obs.status.State == hostapi.StateStaged {
		if err := a.Host.Activate(ctx); err != nil {
			report.RebootRecord = nil
			return a.failed(report, v1alpha1.ActionReboot, target, v1alpha1.ReasonRebootFailed, "activate-update", err)
		}
		logger.Info("Activated the update")
	}
	logger.Info("Rebooting the host")
	if err := a.Host.Reboot(ctx); err != nil {
		return fmt.Errorf("rebooting the host: %w", err)
	}
	return nil
}

// errRecordFirst asks Reconcile to publish the reboot record and come back before rebooting.
var errRecordFirst = errors.New("reboot record to be published before rebooting")

// stand is the None intent: nothing disruptive. An update activated but not rebooted into is
// no longer wanted and is deactivated.
func (a *Agent) stand(ctx context.Context, obs *observation, report *v1alpha1.AgentStatus) error {
	if obs.status.State != hostapi.StateReady {
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
	recordStatus(report, st)
	return nil
}

// failed turns a host's refusal into a failed action in status, or returns a transient error.
func (a *Agent) failed(report *v1alpha1.AgentStatus, action v1alpha1.NodeAction, target string, reason v1alpha1.Reason, what string, err error) error {
	var cmdErr *hostapi.CommandFailedError
	if errors.As(err, &cmdErr) || errors.Is(err, hostapi.ErrNoUpdate) || errors.Is(err, hostapi.ErrWrongState) {
		report.LastAction = a.result(action, target, v1alpha1.ActionFailed, reason, fmt.Sprintf("%s: %v", what, err))
		return nil
	}
	return fmt.Errorf("%s: %w", what, err)
}

func succeeded(last *v1alpha1.AgentAction, action v1alpha1.NodeAction, target string) bool {
	return last != nil && last.Action == action && last.TargetVersion == target && last.Result == v1alpha1.ActionSucceeded
}
