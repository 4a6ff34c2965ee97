package controllers

import (
	"github.com/prometheus/client_golang/prometheus"
	"sigs.k8s.io/controller-runtime/pkg/metrics"

	"github.com/bottlerocket-ops/update-operator/controllers/internal/planner"
)

var (
	nodesByPhase = prometheus.NewGaugeVec(prometheus.GaugeOpts{
		Name: "bottlerocket_nodes",
		Help: "Bottlerocket nodes by governing policy and phase.",
	}, []string{"policy", "phase"})
	nodesByVersion = prometheus.NewGaugeVec(prometheus.GaugeOpts{
		Name: "bottlerocket_nodes_by_version",
		Help: "Bottlerocket nodes by the version their agent reports running.",
	}, []string{"version"})
	disruptionsAllowed = prometheus.NewGaugeVec(prometheus.GaugeOpts{
		Name: "bottlerocket_disruptions_allowed",
		Help: "Nodes a policy's budget allows to be unavailable at once.",
	}, []string{"policy"})
	disruptionsConsumed = prometheus.NewGaugeVec(prometheus.GaugeOpts{
		Name: "bottlerocket_disruptions_consumed",
		Help: "Governed nodes unavailable now (cordoned, not Ready or being updated).",
	}, []string{"policy"})
	updateDuration = prometheus.NewHistogramVec(prometheus.HistogramOpts{
		Name:    "bottlerocket_node_update_duration_seconds",
		Help:    "Time from a node leaving Pending to being Updated.",
		Buckets: prometheus.ExponentialBuckets(30, 2, 10),
	}, []string{"policy"})
	failures = prometheus.NewCounterVec(prometheus.CounterOpts{
		Name: "bottlerocket_node_update_failures_total",
		Help: "Node updates that failed, by policy and reason.",
	}, []string{"policy", "reason"})
)

func init() {
	metrics.Registry.MustRegister(nodesByPhase, nodesByVersion, disruptionsAllowed, disruptionsConsumed, updateDuration, failures)
}

// updatePolicyMetrics publishes a policy's budget as allowed and consumed disruptions.
func updatePolicyMetrics(policy string, rep planner.PolicyReport) {
	disruptionsAllowed.WithLabelValues(policy).Set(float64(rep.MaxUnavailable))
	disruptionsConsumed.WithLabelValues(policy).Set(float64(rep.Unavailable))
}

// updateFleetMetrics publishes the fleet by phase and by version, computed afresh each pass.
func updateFleetMetrics(in planner.Input, plan planner.Plan) {
	nodesByPhase.Reset()
	nodesByVersion.Reset()
	for i, d := range plan.Nodes {
		nodesByPhase.WithLabelValues(d.Policy, string(d.Phase)).Inc()
		if brn := in.Nodes[i].BRN; brn != nil && brn.Status.Agent != nil && brn.Status.Agent.CurrentVersion != "" {
			nodesByVersion.WithLabelValues(brn.Status.Agent.CurrentVersion).Inc()
		}
	}
}
