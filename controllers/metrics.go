package controllers

import (
	"sync"
	"time"

	"github.com/prometheus/client_golang/prometheus"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"sigs.k8s.io/controller-runtime/pkg/metrics"

	"github.com/bottlerocket-ops/update-operator/api/v1alpha1"
	"github.com/bottlerocket-ops/update-operator/controllers/internal/planner"
)

// Every label value below is the name of a policy, or one of the enums of api/v1alpha1
// (phases, reasons, rollout phases) or a release version: a series count bounded by the
// policies, never by the nodes.
var (
	nodesByPhase = prometheus.NewGaugeVec(prometheus.GaugeOpts{
		Name: "bottlerocket_nodes",
		Help: "Bottlerocket nodes by governing policy and phase.",
	}, []string{"policy", "phase"})
	nodesByReason = prometheus.NewGaugeVec(prometheus.GaugeOpts{
		Name: "bottlerocket_nodes_by_reason",
		Help: "Bottlerocket nodes by governing policy, phase and the reason they are there or wait.",
	}, []string{"policy", "phase", "reason"})
	nodesByVersion = prometheus.NewGaugeVec(prometheus.GaugeOpts{
		Name: "bottlerocket_nodes_by_version",
		Help: "Bottlerocket nodes by the version their agent reports running.",
	}, []string{"version"})
	oldestPhaseStart = prometheus.NewGaugeVec(prometheus.GaugeOpts{
		Name: "bottlerocket_nodes_oldest_phase_start_timestamp_seconds",
		Help: "When the node that has been longest in a phase with a deadline entered it, by policy and phase.",
	}, []string{"policy", "phase"})
	disruptionsAllowed = prometheus.NewGaugeVec(prometheus.GaugeOpts{
		Name: "bottlerocket_disruptions_allowed",
		Help: "Nodes a policy's budget allows to be unavailable at once.",
	}, []string{"policy"})
	disruptionsConsumed = prometheus.NewGaugeVec(prometheus.GaugeOpts{
		Name: "bottlerocket_disruptions_consumed",
		Help: "Governed nodes unavailable now (cordoned, not Ready or being updated).",
	}, []string{"policy"})
	policyPhase = prometheus.NewGaugeVec(prometheus.GaugeOpts{
		Name: "bottlerocket_update_policy_phase",
		Help: "The rollout phase of a policy: 1 for the phase it is in, 0 for the others.",
	}, []string{"policy", "phase"})
	policyTarget = prometheus.NewGaugeVec(prometheus.GaugeOpts{
		Name: "bottlerocket_update_policy_target_version_info",
		Help: "The version a policy rolls out: always 1, labelled with the version.",
	}, []string{"policy", "version"})
	policyHalted = prometheus.NewGaugeVec(prometheus.GaugeOpts{
		Name: "bottlerocket_update_policy_halted",
		Help: "1 when a policy's rollout halted at its failure budget and waits for a person, else 0.",
	}, []string{"policy"})
	policyProgress = prometheus.NewGaugeVec(prometheus.GaugeOpts{
		Name: "bottlerocket_update_policy_last_progress_timestamp_seconds",
		Help: "When a policy last moved: a node of it became Updated, its target changed, or this controller first saw it.",
	}, []string{"policy"})
	phaseDeadline = prometheus.NewGaugeVec(prometheus.GaugeOpts{
		Name: "bottlerocket_update_policy_phase_deadline_seconds",
		Help: "How long a node of a policy may stay in a phase before the controller fails it (or, draining with onTimeout Force, reboots it).",
	}, []string{"policy", "phase"})
	updateDuration = prometheus.NewHistogramVec(prometheus.HistogramOpts{
		Name:    "bottlerocket_node_update_duration_seconds",
		Help:    "Time from a node leaving Pending to being Updated.",
		Buckets: prometheus.ExponentialBuckets(30, 2, 10),
	}, []string{"policy"})
	failures = prometheus.NewCounterVec(prometheus.CounterOpts{
		Name: "bottlerocket_node_update_failures_total",
		Help: "Node updates that failed, by policy and reason.",
	}, []string{"policy", "reason"})
	// The nodes a budget holds up now are bottlerocket_nodes_by_reason{reason="EvictionBlockedByPDB"}.
	evictionsBlocked = prometheus.NewCounter(prometheus.CounterOpts{
		Name: "bottlerocket_evictions_blocked_total",
		Help: "Evictions of pods from draining nodes that a PodDisruptionBudget refused.",
	})

	// perPolicy are the vectors whose series belong to one policy, deleted with it.
	perPolicy = []interface {
		DeletePartialMatch(prometheus.Labels) int
	}{nodesByPhase, nodesByReason, oldestPhaseStart, disruptionsAllowed, disruptionsConsumed, policyPhase,
		policyTarget, policyHalted, policyProgress, phaseDeadline, updateDuration, failures}

	// rolloutPhases are the states of bottlerocket_update_policy_phase.
	rolloutPhases = []v1alpha1.RolloutPhase{v1alpha1.RolloutUpToDate, v1alpha1.RolloutProgressing, v1alpha1.RolloutWaiting,
		v1alpha1.RolloutPaused, v1alpha1.RolloutHalted, v1alpha1.RolloutInvalid}
)

func init() {
	metrics.Registry.MustRegister(nodesByPhase, nodesByReason, nodesByVersion, oldestPhaseStart, disruptionsAllowed,
		disruptionsConsumed, policyPhase, policyTarget, policyHalted, policyProgress, phaseDeadline, updateDuration,
		failures, evictionsBlocked)
}

// policyMetrics remembers, per policy, what its progress timestamp was measured against.
var policyMetrics = struct {
	sync.Mutex
	targets map[string]string // the target each known policy rolls out
}{targets: map[string]string{}}

// updatePolicyMetrics publishes a policy's rollout: phase, target, halt, budget and deadlines.
func updatePolicyMetrics(p *v1alpha1.UpdatePolicy, rep planner.PolicyReport, now time.Time) {
	name := p.Name
	disruptionsAllowed.WithLabelValues(name).Set(float64(rep.MaxUnavailable))
	disruptionsConsumed.WithLabelValues(name).Set(float64(rep.Unavailable))
	for _, ph := range rolloutPhases {
		policyPhase.WithLabelValues(name, string(ph)).Set(boolValue(rep.Phase == ph))
	}
	policyHalted.WithLabelValues(name).Set(boolValue(rep.Halted))
	ready := durationOr(p.Spec.Health.ReadyTimeout, planner.DefaultReadyTimeout)
	for ph, d := range map[v1alpha1.NodePhase]time.Duration{
		v1alpha1.PhaseStaging:     planner.StagingTimeout,
		v1alpha1.PhaseDraining:    durationOr(p.Spec.Drain.Timeout, planner.DefaultDrainTimeout),
		v1alpha1.PhaseRebooting:   ready,
		v1alpha1.PhaseVerifying:   ready,
		v1alpha1.PhaseStabilizing: ready + durationOr(p.Spec.Health.StableFor, planner.DefaultStableFor),
	} {
		phaseDeadline.WithLabelValues(name, string(ph)).Set(d.Seconds())
	}

	policyMetrics.Lock()
	defer policyMetrics.Unlock()
	if target, known := policyMetrics.targets[name]; !known || target != rep.TargetVersion {
		policyMetrics.targets[name] = rep.TargetVersion
		policyTarget.DeletePartialMatch(prometheus.Labels{"policy": name})
		if rep.TargetVersion != "" {
			policyTarget.WithLabelValues(name, rep.TargetVersion).Set(1)
		}
		policyProgress.WithLabelValues(name).Set(float64(now.Unix()))
	}
}

// recordProgress notes that a node of the policy became Updated.
func recordProgress(policy string, now time.Time) {
	policyProgress.WithLabelValues(policy).Set(float64(now.Unix()))
}

// updateFleetMetrics publishes the fleet by phase, reason and version, computed afresh each
// pass, and deletes every series of a policy that no longer exists.
func updateFleetMetrics(in planner.Input, plan planner.Plan) {
	nodesByPhase.Reset()
	nodesByReason.Reset()
	nodesByVersion.Reset()
	oldestPhaseStart.Reset()
	// Counted here, then set once per series: looking a series up per node was a tenth of a
	// pass at 15,000 nodes.
	byReason := map[[3]string]int{}
	byVersion := map[string]int{}
	oldest := map[[2]string]time.Time{}
	for i, d := range plan.Nodes {
		byReason[[3]string{d.Policy, string(d.Phase), string(d.Reason)}]++
		brn := in.Nodes[i].BRN
		if brn == nil {
			continue
		}
		if brn.Status.Agent != nil && brn.Status.Agent.CurrentVersion != "" {
			byVersion[brn.Status.Agent.CurrentVersion]++
		}
		// The phase the node is in (observed), with its start, is what a deadline is measured on.
		if st := brn.Status.PhaseStartTime; st != nil && brn.Status.Phase.InFlight() && d.Policy != "" {
			k := [2]string{d.Policy, string(brn.Status.Phase)}
			if t, ok := oldest[k]; !ok || st.Time.Before(t) {
				oldest[k] = st.Time
			}
		}
	}
	byPhase := map[[2]string]int{}
	for k, n := range byReason {
		nodesByReason.WithLabelValues(k[0], k[1], k[2]).Set(float64(n))
		byPhase[[2]string{k[0], k[1]}] += n
	}
	for k, n := range byPhase {
		nodesByPhase.WithLabelValues(k[0], k[1]).Set(float64(n))
	}
	for version, n := range byVersion {
		nodesByVersion.WithLabelValues(version).Set(float64(n))
	}
	for k, t := range oldest {
		oldestPhaseStart.WithLabelValues(k[0], k[1]).Set(float64(t.Unix()))
	}
	forgetPolicies(in.Policies)
}

// forgetPolicies deletes the series of every policy known to the metrics but not in policies.
func forgetPolicies(policies []v1alpha1.UpdatePolicy) {
	exists := make(map[string]bool, len(policies))
	for i := range policies {
		exists[policies[i].Name] = true
	}
	policyMetrics.Lock()
	defer policyMetrics.Unlock()
	for name := range policyMetrics.targets {
		if exists[name] {
			continue
		}
		delete(policyMetrics.targets, name)
		for _, v := range perPolicy {
			v.DeletePartialMatch(prometheus.Labels{"policy": name})
		}
	}
}

func boolValue(b bool) float64 {
	if b {
		return 1
	}
	return 0
}

// durationOr is d, or def when d is unset (as the planner reads the policy's durations).
func durationOr(d *metav1.Duration, def time.Duration) time.Duration {
	if d == nil {
		return def
	}
	return d.Duration
}
