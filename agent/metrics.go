package agent

import (
	"github.com/prometheus/client_golang/prometheus"
	"sigs.k8s.io/controller-runtime/pkg/metrics"
)

// agentWrites counts the agent's writes of status.agent; an idle agent makes none.
var agentWrites = prometheus.NewCounter(prometheus.CounterOpts{
	Name: "bottlerocket_agent_status_writes_total",
	Help: "Writes of the node's BottlerocketNode status.agent by the agent.",
})

func init() {
	metrics.Registry.MustRegister(agentWrites)
}
